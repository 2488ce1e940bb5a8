from .adaptive_schedule_hook import AdaptiveScheduleHook
from .graph_sampler_hook import GraphSamplerHook

__all__ = ['AdaptiveScheduleHook', 'GraphSamplerHook']

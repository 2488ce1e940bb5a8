from .adaptive_schedule_hook import AdaptiveScheduleHook
from .epoch_seed_hook import EpochSeedHook
from .graph_sampler_hook import GraphSamplerHook

__all__ = ['AdaptiveScheduleHook', 'EpochSeedHook', 'GraphSamplerHook']

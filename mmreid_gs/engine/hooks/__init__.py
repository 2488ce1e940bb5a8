from .adaptive_schedule_hook import AdaptiveScheduleHook
from .batch_lookalike_share_hook import BatchLookalikeShareHook
from .checkpoint_hook import CheckpointHook
from .epoch_seed_hook import EpochSeedHook
from .graph_sampler_hook import GraphSamplerHook
from .pseudo_label_hook import PseudoLabelHook
from .reid_logger_hook import ReIDLoggerHook
from .reid_visualization_hook import ReIDVisualizationHook
from .wall_clock_hook import WallClockHook, read_clock

__all__ = [
    'AdaptiveScheduleHook', 'BatchLookalikeShareHook', 'CheckpointHook',
    'EpochSeedHook',
    'GraphSamplerHook', 'PseudoLabelHook', 'ReIDLoggerHook',
    'ReIDVisualizationHook',
    'WallClockHook', 'read_clock'
]

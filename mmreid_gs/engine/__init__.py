from .checkpoint import allow_mmengine_checkpoint_types, load_from_local
from .graph import build_class_graph
from .hooks import *  # noqa: F401,F403
from .optimizers import *  # noqa: F401,F403
from .runners import ReIDTestLoop, ReIDValLoop

# Checkpoints of MMEngine runs load with torch.load(weights_only=True).
allow_mmengine_checkpoint_types()

__all__ = [
    'allow_mmengine_checkpoint_types', 'load_from_local',
    'build_class_graph', 'ReIDTestLoop', 'ReIDValLoop'
]

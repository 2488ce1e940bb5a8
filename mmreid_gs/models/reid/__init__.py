from .qaconv_reid import QAConvReID
from .reid_model import ReIDModel

__all__ = ['QAConvReID', 'ReIDModel']

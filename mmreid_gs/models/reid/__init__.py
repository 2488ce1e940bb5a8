from .qaconv_reid import QAConvReID
from .reid_model import ReIDModel
from .transmatcher_reid import TransMatcherReID

__all__ = ['QAConvReID', 'ReIDModel', 'TransMatcherReID']

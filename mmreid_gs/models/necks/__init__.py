from .qaconv_neck import QAConvNeck
from .transmatcher_neck import TransMatcherNeck

__all__ = ['QAConvNeck', 'TransMatcherNeck']

from .qaconv_head import QAConvHead

__all__ = ['QAConvHead']

from .qaconv_reid import QAConvReID

__all__ = ['QAConvReID']

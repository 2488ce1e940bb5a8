from .qaconv_neck import QAConvNeck

__all__ = ['QAConvNeck']

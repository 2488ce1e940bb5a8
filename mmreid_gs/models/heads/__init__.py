from .global_embedding_head import GlobalEmbeddingHead
from .qaconv_head import QAConvHead
from .transmatcher_head import TransMatcherHead

__all__ = ['QAConvHead', 'GlobalEmbeddingHead', 'TransMatcherHead']

from .global_embedding_head import GlobalEmbeddingHead
from .qaconv_head import QAConvHead

__all__ = ['QAConvHead', 'GlobalEmbeddingHead']

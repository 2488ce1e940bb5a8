from .graph_sampler import GraphSampler

__all__ = ['GraphSampler']

from .depth_first_graph_sampler import DepthFirstGraphSampler
from .graph_sampler import (GRAPH_SAMPLER_PROTOCOL, GraphSampler,
                            missing_graph_sampler_members)

__all__ = [
    'GRAPH_SAMPLER_PROTOCOL', 'DepthFirstGraphSampler', 'GraphSampler',
    'missing_graph_sampler_members'
]

"""Class graphs for the Graph Sampler: one feature (map) per class -> each
class's nearest classes. Pure functions (no Runner):

- :mod:`.exact`: every class against every class (the default);
- :mod:`.candidates`: the two-stage graph (cheap proxy, then the matcher on
  the candidates) and the cost model that picks it;
- :mod:`.build`: :func:`build_class_graph`, the entry point;
- :mod:`.rerank`: the k-reciprocal re-ranked graph;
- :mod:`.dump`: the ``graph/epoch_k.npz`` file format.
"""
from .build import build_class_graph
from .candidates import (CANDIDATE_FUNCTIONS, candidate_classes,
                         candidates_decision, two_stage_cost_ratio)
from .dump import (GRAPH_FIELDS, graph_dump_path, load_graph_dump,
                   load_graph_dumps, save_graph_dump)
from .exact import class_graph_from_scores, compute_class_scores
from .rerank import reranked_class_graph

__all__ = [
    'build_class_graph', 'class_graph_from_scores', 'compute_class_scores',
    'candidate_classes', 'candidates_decision', 'two_stage_cost_ratio',
    'CANDIDATE_FUNCTIONS', 'reranked_class_graph', 'GRAPH_FIELDS',
    'graph_dump_path', 'save_graph_dump', 'load_graph_dump',
    'load_graph_dumps'
]

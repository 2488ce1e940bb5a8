"""Two-stage matching: a cheap proxy proposes each query's top-N gallery
candidates, the exact matcher scores only those (through the head's list
kernel, ``match_pairs``, in its index form, or ``match`` on unions of the
lists), and a cost model from the feature shape says when that pays off.

One home for both users (docs/architecture.md, "Two-stage matching"):
the two-stage class graph (:mod:`mmreid_gs.engine.graph.candidates`, each
class against its candidate classes) and the shortlisted test
(:mod:`mmreid_gs.evaluation.functional.shortlist`, each query against its
shortlist). Pure functions on tensors; nothing here imports the engine.

- :mod:`.proxy`: the proxies (``'gap'``, ``'pooled'``) and the top-N
  candidates;
- :mod:`.second_stage`: exact scores of the candidates, union grouping;
- :mod:`.cost`: the cost model.
"""
from .cost import (matcher_pair_macs, proxy_pair_macs,
                   two_stage_cost_ratio)
from .proxy import (PROXIES, pooled_pair_scores, pooled_proxy_features,
                    pooled_proxy_scores, proxy_candidates, proxy_features,
                    proxy_similarity, refine_candidates, top_candidates)
from .second_stage import (MIN_UNION_EFFICIENCY, check_block,
                           resolve_pair_matcher, score_candidates,
                           union_groups, union_pairs)

__all__ = [
    'proxy_features', 'proxy_similarity', 'pooled_proxy_features',
    'pooled_proxy_scores', 'pooled_pair_scores', 'refine_candidates',
    'PROXIES', 'top_candidates', 'proxy_candidates',
    'score_candidates', 'union_groups', 'union_pairs', 'check_block',
    'resolve_pair_matcher', 'MIN_UNION_EFFICIENCY', 'matcher_pair_macs',
    'proxy_pair_macs', 'two_stage_cost_ratio'
]

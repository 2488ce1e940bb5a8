from .distance import sigmoid_distance
from .graph_quality import (batch_lookalike_share, batch_lookalike_shares,
                            graph_cross_group_share, graph_family_share,
                            neighbor_family_share,
                            random_batch_lookalike_share, random_family_share)
from .jaccard import EmbeddingDistance, jaccard_distance, jaccard_neighbors
from .pseudo_labels import cluster_quality, dbscan_pseudo_labels
from .rank import average_precisions, evaluate_rank
from .rerank import re_ranking
from .shortlist import (check_refine, check_shortlist, combine_scores,
                        proxy_features,
                        score_shortlist, shortlist_indices, shortlist_recall,
                        shortlisted_scores)
from .tlift import tlift
from .verification import (format_fpr, pair_scores_and_labels,
                           verification_rates)

__all__ = [
    'evaluate_rank', 'average_precisions', 're_ranking', 'tlift',
    'verification_rates', 'pair_scores_and_labels', 'format_fpr',
    'sigmoid_distance', 'graph_family_share', 'graph_cross_group_share',
    'neighbor_family_share',
    'random_family_share', 'batch_lookalike_share', 'batch_lookalike_shares',
    'random_batch_lookalike_share', 'check_shortlist', 'check_refine',
    'proxy_features',
    'shortlist_indices', 'score_shortlist', 'combine_scores',
    'shortlisted_scores', 'shortlist_recall', 'jaccard_distance',
    'jaccard_neighbors', 'EmbeddingDistance', 'dbscan_pseudo_labels',
    'cluster_quality'
]

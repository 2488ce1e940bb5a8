from .functional import (evaluate_rank, pair_scores_and_labels, re_ranking,
                         tlift, verification_rates)
from .metrics import ReIDMetric

__all__ = [
    'evaluate_rank', 're_ranking', 'tlift', 'verification_rates',
    'pair_scores_and_labels', 'ReIDMetric'
]

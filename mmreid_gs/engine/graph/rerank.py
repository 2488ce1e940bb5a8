"""The re-ranked class graph: all C x C matcher scores, turned into
distances ``1 - sigmoid(score)`` and k-reciprocal re-ranked (Zhong et al.,
CVPR 2017) before the nearest classes are taken
(``GraphSamplerHook(rerank=True)``)."""
import numpy as np
import torch
from torch import Tensor

from mmreid_gs.evaluation.functional import re_ranking, sigmoid_distance
from .exact import class_graph_from_scores


def reranked_class_graph(scores: Tensor,
                         num_neighbors: int,
                         k1: int = 20,
                         k2: int = 6,
                         lambda_value: float = 0.3,
                         groups=None) -> Tensor:
    """Nearest classes after k-reciprocal re-ranking of the class scores.

    The classes are both the probes and the gallery: the distance matrix
    given to :func:`~mmreid_gs.evaluation.functional.re_ranking` is the
    [2C, 2C] block matrix of the C x C distances. With ``groups`` the
    re-ranking runs over all classes and the neighbours are then taken
    within each class's group (see :func:`class_graph_from_scores`).

    Args:
        scores (Tensor): [C, C] similarity logits (higher = more similar).
        num_neighbors (int): Neighbours per class, ``0 <= k < C``.
        k1 (int): k-reciprocal neighbours. Defaults to 20.
        k2 (int): Local query expansion. Defaults to 6.
        lambda_value (float): Weight of the original distance. Defaults to
            0.3.
        groups (array-like, optional): int [C] group of every class (e.g.
            its source dataset); None: neighbours from all classes.
            Defaults to None.

    Returns:
        Tensor: LongTensor [C, num_neighbors] on the CPU, best first.
    """
    num_classes = scores.shape[0]
    dist = sigmoid_distance(scores)
    full = np.block([[dist, dist], [dist, dist]])
    reranked = np.asarray(
        re_ranking(full, num_classes, k1=k1, k2=k2,
                   lambda_value=lambda_value))
    if reranked.shape != (num_classes, num_classes):
        raise ValueError('re_ranking returned shape '
                         f'{list(reranked.shape)}; expected '
                         f'[{num_classes}, {num_classes}].')
    return class_graph_from_scores(
        torch.from_numpy(reranked), num_neighbors, largest=False,
        groups=groups)

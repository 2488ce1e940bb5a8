"""Distances from matching scores."""
import numpy as np

from mmreid_gs.utils.arrays import to_numpy


def sigmoid_distance(scores) -> np.ndarray:
    """``1 - sigmoid(scores)``, computed without cancellation.

    Equal to ``sigmoid(-scores)``: a distance in (0, 1) that is monotone
    decreasing in the score (the ranking of ``-scores`` is unchanged),
    bounded and non-negative, as k-reciprocal re-ranking requires (it divides
    columns by their maximum and weights neighbours by ``exp(-distance)``).
    It is also the probability of "different identity" that the pairwise BCE
    loss of QAConv trains the logits for.

    Args:
        scores (np.ndarray | torch.Tensor): Logits, any shape.

    Returns:
        np.ndarray: float64 distances, same shape.
    """
    x = to_numpy(scores, np.float64, 'scores')
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, e / (1.0 + e), 1.0 / (1.0 + e))

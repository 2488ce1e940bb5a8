"""Verification rates: true-positive rate at fixed false-positive rates."""
import math
from typing import Dict, Sequence, Tuple

import numpy as np

from mmreid_gs.utils.arrays import to_numpy


def format_fpr(fpr: float) -> str:
    """Short name of a false-positive rate: ``1e-3``, ``0.05``."""
    exponent = math.log10(fpr)
    if abs(exponent - round(exponent)) < 1e-9:
        return f'1e{int(round(exponent))}'
    return f'{fpr:g}'


def verification_rates(
    scores,
    labels,
    fprs: Sequence[float] = (1e-2, 1e-3, 1e-4)
) -> Dict[str, float]:
    """True-positive rate of a pair verifier at target false-positive rates.

    A pair is accepted when its score is *strictly greater* than a threshold.
    For a target rate ``f`` with ``n_neg`` negative pairs, at most
    ``k = floor(f * n_neg)`` false positives are allowed: the threshold is
    the ``(k + 1)``-th largest negative score, so the achieved false-positive
    rate is at most ``f`` (exactly ``k / n_neg`` without ties). With
    ``k >= n_neg`` every pair is accepted (threshold ``-inf``).

    Args:
        scores (array-like): Similarity of each pair, any shape (flattened);
            higher means more likely the same identity.
        labels (array-like): Same shape, True for same-identity pairs.
        fprs (Sequence[float]): Target false-positive rates in (0, 1].

    Returns:
        dict: For each rate ``f`` (named by :func:`format_fpr`):
        ``'TPR@FPR=<f>'`` (float in [0, 1]) and ``'threshold@FPR=<f>'``
        (the score threshold, float).

    Raises:
        ValueError: On a shape mismatch, non-finite scores, a rate outside
            (0, 1], or when positives or negatives are missing.
    """
    s = to_numpy(scores, np.float64, 'scores').reshape(-1)
    y = to_numpy(labels, name='labels')
    if y.size != s.size:
        raise ValueError(f'labels has {y.size} entries but scores has '
                         f'{s.size}')
    y = y.reshape(-1).astype(bool)
    if not np.isfinite(s).all():
        raise ValueError('scores must be finite')
    pos = np.sort(s[y])
    neg = np.sort(s[~y])[::-1]  # descending
    if pos.size == 0 or neg.size == 0:
        raise ValueError(
            'verification needs positive and negative pairs, got '
            f'{pos.size} positive and {neg.size} negative pairs')
    out = {}
    for fpr in fprs:
        fpr = float(fpr)
        if not 0.0 < fpr <= 1.0:
            raise ValueError(f'false-positive rates must be in (0, 1], got '
                             f'{fpr}')
        k = int(math.floor(fpr * neg.size + 1e-9))
        thr = float(neg[k]) if k < neg.size else -math.inf
        accepted = pos.size - np.searchsorted(pos, thr, side='right')
        name = format_fpr(fpr)
        out[f'TPR@FPR={name}'] = float(accepted / pos.size)
        out[f'threshold@FPR={name}'] = thr
    return out


def pair_scores_and_labels(scores, query_pids,
                           gallery_pids) -> Tuple[np.ndarray, np.ndarray]:
    """All query/gallery pairs of a score matrix, with same-identity labels.

    Args:
        scores (array-like): Scores ``[q, g]``.
        query_pids (array-like): Identities ``[q]``.
        gallery_pids (array-like): Identities ``[g]``.

    Returns:
        tuple[np.ndarray, np.ndarray]: Flattened scores ``[q * g]`` and bool
        labels ``[q * g]`` (True when the identities are equal), row-major.
    """
    s = to_numpy(scores, name='scores')
    q = to_numpy(query_pids, name='query_pids').reshape(-1)
    g = to_numpy(gallery_pids, name='gallery_pids').reshape(-1)
    if s.ndim != 2 or s.shape != (q.size, g.size):
        raise ValueError(f'scores must have shape [{q.size}, {g.size}] '
                         f'(queries x gallery), got {s.shape}')
    labels = q[:, None] == g[None, :]
    return s.reshape(-1), labels.reshape(-1)

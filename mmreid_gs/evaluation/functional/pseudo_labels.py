"""Pseudo-labels by clustering, and their agreement with true identities.

What unsupervised / domain-adaptive re-ID (SpCL, Cluster Contrast) does
every epoch: DBSCAN on the k-reciprocal Jaccard distance of the target's
images; its clusters are the classes, the points it leaves alone
(outliers) sit the epoch out.
"""
from typing import Dict

import numpy as np

from mmreid_gs.utils.arrays import to_numpy


def dbscan_pseudo_labels(jaccard,
                         eps: float = 0.6,
                         min_samples: int = 4,
                         keep_outliers: bool = False) -> np.ndarray:
    """Cluster with DBSCAN on a precomputed (Jaccard) distance.

    scikit-learn's ``DBSCAN(eps, min_samples, metric='precomputed')``, the
    clustering of SpCL and Cluster Contrast (whose defaults are eps 0.6,
    min_samples 4).

    Args:
        jaccard (np.ndarray | scipy.sparse matrix): ``[N, N]`` distances:
            dense (:func:`jaccard_distance`) or the sparse radius graph of
            :func:`jaccard_neighbors` with ``max_distance >= eps`` (the same
            clusters, without the dense matrix).
        eps (float): DBSCAN radius, > 0. Defaults to 0.6.
        min_samples (int): Neighbours (the point included) of a core
            point, >= 1. Defaults to 4.
        keep_outliers (bool): Give every outlier a class of its own
            (labels ``C..C+O-1`` after the clusters) instead of -1.
            Defaults to False.

    Returns:
        np.ndarray: int64 [N] labels ``0..C-1`` by order of discovery;
        -1 for outliers unless ``keep_outliers``.

    Raises:
        ValueError: If ``jaccard`` is not square or an argument is out of
            range.
    """
    from scipy import sparse
    from sklearn.cluster import DBSCAN
    if isinstance(min_samples, bool) or not isinstance(
            min_samples, (int, np.integer)) or min_samples < 1:
        raise ValueError(f'min_samples must be an int >= 1, got '
                         f'{min_samples!r}')
    if not float(eps) > 0:
        raise ValueError(f'eps must be > 0, got {eps!r}')
    if not sparse.issparse(jaccard):
        jaccard = to_numpy(jaccard, np.float32, 'jaccard')
    if jaccard.ndim != 2 or jaccard.shape[0] != jaccard.shape[1]:
        raise ValueError('jaccard must be a square [N, N] distance matrix, '
                         f'got shape {tuple(jaccard.shape)}')
    labels = DBSCAN(
        eps=float(eps), min_samples=int(min_samples),
        metric='precomputed', n_jobs=1).fit_predict(jaccard)
    labels = labels.astype(np.int64)
    if keep_outliers:
        out = labels < 0
        labels[out] = labels.max(initial=-1) + 1 + np.arange(
            int(out.sum()))
    return labels


def cluster_quality(labels, true_ids) -> Dict[str, float]:
    """How well pseudo-labels agree with the true identities.

    Args:
        labels (array-like): int [N] cluster of every image, -1 for an
            outlier.
        true_ids (array-like): int [N] true identity of every image.

    Returns:
        dict: ``num_clusters`` and ``num_outliers`` (ints); ``nmi`` and
        ``ari`` (scikit-learn's normalized mutual information, arithmetic
        mean, and adjusted Rand index) over all images, every outlier a
        cluster of its own (so leaving images out is not rewarded);
        ``purity``: over the clustered images, the share that belong to
        their cluster's most frequent identity (nan when none is
        clustered).

    Raises:
        ValueError: If the two arrays differ in length.
    """
    from sklearn.metrics import (adjusted_rand_score,
                                 normalized_mutual_info_score)
    labels = to_numpy(labels, np.int64, 'labels').reshape(-1)
    true_ids = to_numpy(true_ids, np.int64, 'true_ids').reshape(-1)
    if labels.shape != true_ids.shape:
        raise ValueError(f'labels ({labels.size}) and true_ids '
                         f'({true_ids.size}) must have one entry per image')
    out = labels < 0
    num_clusters = int(labels.max(initial=-1)) + 1
    singles = labels.copy()
    singles[out] = num_clusters + np.arange(int(out.sum()))
    clustered = ~out
    if clustered.any():
        _, ids = np.unique(true_ids[clustered], return_inverse=True)
        table = np.zeros((num_clusters, int(ids.max()) + 1), dtype=np.int64)
        np.add.at(table, (labels[clustered], ids.reshape(-1)), 1)
        purity = float(table.max(axis=1).sum() / clustered.sum())
    else:
        purity = float('nan')
    return dict(
        num_clusters=num_clusters,
        num_outliers=int(out.sum()),
        nmi=float(normalized_mutual_info_score(true_ids, singles)),
        ari=float(adjusted_rand_score(true_ids, singles)),
        purity=purity)

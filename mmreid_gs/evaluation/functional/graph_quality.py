"""How often the Graph Sampler's neighbours are look-alikes: the share of
each class's graph neighbours that belong to its family, and what random
neighbours would give; how often they come from another source dataset
(pooled multi-source training); and how hard the batches of any sampler
are: the share of a batch's classes that meet a look-alike in the batch."""
from typing import Dict, Iterable

import numpy as np


def _check(neighbors, families):
    nbrs = np.asarray(neighbors)
    fams = np.asarray(families).reshape(-1)
    if nbrs.ndim != 2:
        raise ValueError(f'neighbors must be [C, k], got shape {nbrs.shape}')
    if fams.size < nbrs.shape[0]:
        raise ValueError(f'families has {fams.size} entries for '
                         f'{nbrs.shape[0]} classes')
    if nbrs.size and (nbrs.min() < 0 or nbrs.max() >= fams.size):
        raise ValueError(f'neighbour ids must be in [0, {fams.size}), got '
                         f'{nbrs.min()}..{nbrs.max()}')
    return nbrs.astype(np.int64), fams[:nbrs.shape[0]].astype(np.int64)


def neighbor_family_share(neighbors, families) -> np.ndarray:
    """Share of each class's neighbours that belong to its family.

    Args:
        neighbors (array-like): int [C, k] neighbour classes of each class
            (row i: the nearest classes of class i).
        families (array-like): int [C] family of every class, -1 unknown.

    Returns:
        np.ndarray: float64 [C]; NaN for classes of unknown family or
        without neighbours.
    """
    nbrs, fams = _check(neighbors, families)
    if nbrs.shape[1] == 0:
        return np.full(nbrs.shape[0], np.nan)
    same = fams[nbrs] == fams[:, None]
    share = same.mean(axis=1)
    share[fams < 0] = np.nan
    return share


def random_family_share(families) -> np.ndarray:
    """Expected share for neighbours drawn uniformly at random (without
    replacement) from the other C - 1 classes: ``(n_f - 1) / (C - 1)`` for a
    class of a family with ``n_f`` classes (the mean of the hypergeometric
    distribution, whatever the number of neighbours).

    Args:
        families (array-like): int [C] family of every class, -1 unknown.

    Returns:
        np.ndarray: float64 [C]; NaN for classes of unknown family (and for
        C < 2).
    """
    fams = np.asarray(families).reshape(-1).astype(np.int64)
    out = np.full(fams.size, np.nan)
    if fams.size < 2:
        return out
    known = fams >= 0
    _, inverse, counts = np.unique(fams[known], return_inverse=True,
                                   return_counts=True)
    out[known] = (counts[inverse] - 1) / (fams.size - 1)
    return out


def graph_family_share(neighbors, families) -> Dict[str, float]:
    """Mean look-alike share of a class graph and its random baseline, over
    the classes of known family.

    Args:
        neighbors (array-like): int [C, k] neighbour classes.
        families (array-like): int [C] family of every class, -1 unknown.

    Returns:
        dict: ``share`` (mean of :func:`neighbor_family_share`), ``random``
        (mean of :func:`random_family_share`), ``best`` (the most a graph
        with k neighbours can reach: the mean of ``min(n_f - 1, k) / k``),
        ``num_classes`` (classes of known family); the means are NaN without
        such classes.
    """
    nbrs, fams = _check(neighbors, families)
    share = neighbor_family_share(nbrs, fams)
    rand = random_family_share(fams)
    known = ~np.isnan(share)
    if not known.any():
        return dict(share=float('nan'), random=float('nan'),
                    best=float('nan'), num_classes=0)
    k = nbrs.shape[1]
    others = rand * (fams.size - 1)  # n_f - 1
    return dict(share=float(share[known].mean()),
                random=float(rand[known].mean()),
                best=float(np.mean(np.minimum(others[known], k) / k)),
                num_classes=int(known.sum()))


def graph_cross_group_share(neighbors, groups) -> Dict[str, float]:
    """Share of the graph's neighbours that lie in another group than their
    class (e.g. another source dataset), and its random baseline.

    Args:
        neighbors (array-like): int [C, k] neighbour classes.
        groups (array-like): int [C] group of every class.

    Returns:
        dict: ``share`` (mean over the classes of the share of their
        neighbours from another group), ``random`` (the same for neighbours
        drawn uniformly from the other C - 1 classes: ``(C - n_g) / (C - 1)``
        for a class of a group of ``n_g`` classes, averaged) and
        ``num_classes``; the means are NaN without neighbours.

    Example:
        >>> # groups 0 0 1 1; class 0's neighbour is 1 (same group), ...
        >>> graph_cross_group_share([[1], [2], [3], [0]], [0, 0, 1, 1])
        {'share': 0.5, 'random': 0.6666666666666666, 'num_classes': 4}
    """
    nbrs, grp = _check(neighbors, groups)
    num = int(grp.size)
    if nbrs.shape[1] == 0 or num < 2:
        return dict(share=float('nan'), random=float('nan'),
                    num_classes=num)
    share = (grp[nbrs] != grp[:, None]).mean(axis=1)
    _, inverse, counts = np.unique(grp, return_inverse=True,
                                   return_counts=True)
    rand = (num - counts[inverse]) / (num - 1)
    return dict(share=float(share.mean()), random=float(rand.mean()),
                num_classes=num)


def _families_1d(families) -> np.ndarray:
    fams = np.asarray(families).reshape(-1)
    if fams.size and not np.issubdtype(fams.dtype, np.integer):
        raise ValueError(f'families must be integers, got dtype {fams.dtype}')
    return fams.astype(np.int64)


def batch_lookalike_shares(batches: Iterable, families) -> np.ndarray:
    """For each batch, the share of its classes that have a look-alike
    (another class of the same family) among the other classes of the
    batch.

    A batch is given by the labels of its samples (repeats, e.g. the K
    images of a class, count once). Classes of unknown family (-1) count
    neither as a class nor as a look-alike.

    Args:
        batches (Iterable[array-like]): Labels of each batch, int [B_i]
            (an int array [num_batches, B] works too).
        families (array-like): int [C] family of every label, -1 unknown.

    Returns:
        np.ndarray: float64 [num_batches]; NaN for a batch without a class
        of known family.

    Example:
        >>> # families 0 0 1 1 2; batch {0, 1, 2, 4}: classes 0 and 1 are
        >>> # look-alikes, 2 and 4 meet none -> 2 / 4
        >>> batch_lookalike_shares([[0, 0, 1, 1, 2, 2, 4, 4]],
        ...                        [0, 0, 1, 1, 2])
        array([0.5])
    """
    fams = _families_1d(families)
    out = []
    for labels in batches:
        classes = np.unique(np.asarray(labels, dtype=np.int64).reshape(-1))
        if classes.size and (classes.min() < 0 or
                             classes.max() >= fams.size):
            raise ValueError(f'batch labels must be in [0, {fams.size}) '
                             f'(families has {fams.size} entries), got '
                             f'{classes.min()}..{classes.max()}')
        fam = fams[classes]
        fam = fam[fam >= 0]
        if not fam.size:
            out.append(np.nan)
            continue
        _, inverse, counts = np.unique(fam, return_inverse=True,
                                       return_counts=True)
        out.append(float((counts[inverse] > 1).mean()))
    return np.asarray(out, dtype=np.float64)


def batch_lookalike_share(batches: Iterable, families) -> float:
    """Mean over batches of :func:`batch_lookalike_shares` (batches without
    a class of known family left out).

    Args:
        batches (Iterable[array-like]): Labels of each batch.
        families (array-like): int [C] family of every label, -1 unknown.

    Returns:
        float: The mean share in [0, 1]; NaN without any such batch.
    """
    shares = batch_lookalike_shares(batches, families)
    shares = shares[~np.isnan(shares)]
    return float(shares.mean()) if shares.size else float('nan')


def random_batch_lookalike_share(families, classes_per_batch: int) -> float:
    """Expected :func:`batch_lookalike_share` of random PK batches: ``P``
    distinct classes drawn uniformly, so a class of a family with ``n_f``
    classes meets none of its ``n_f - 1`` look-alikes among the ``P - 1``
    other classes with probability ``C(C - n_f, P - 1) / C(C - 1, P - 1)``
    (hypergeometric), averaged over the classes of known family.

    Args:
        families (array-like): int [C] family of every class, -1 unknown
            (unknown classes still take batch slots).
        classes_per_batch (int): ``P`` (``batch_size / num_instances``).

    Returns:
        float: The expected share; NaN without a class of known family.
    """
    fams = _families_1d(families)
    p, num = int(classes_per_batch), fams.size
    if p < 1 or p > num:
        raise ValueError(f'classes_per_batch must be in [1, {num}] (the '
                         f'number of classes), got {classes_per_batch}')
    known = fams >= 0
    if not known.any():
        return float('nan')
    _, inverse, counts = np.unique(fams[known], return_inverse=True,
                                   return_counts=True)
    others = counts[inverse] - 1  # look-alikes of each class

    draws, pool = p - 1, num - 1
    free = (pool - others).astype(np.float64)  # classes that are no
    miss = np.ones(free.size)  # look-alike of it, drawn P - 1 times
    for j in range(draws):
        miss *= np.clip(free - j, 0, None) / (pool - j)
    return float(np.mean(1. - miss))

"""How often the Graph Sampler's neighbours are look-alikes: the share of
each class's graph neighbours that belong to its family, and what random
neighbours would give."""
from typing import Dict

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

"""The k-reciprocal Jaccard distance that unsupervised re-ID clusters on.

SpCL (Ge et al., NeurIPS 2020) and Cluster Contrast (Dai et al., ACCV 2022)
cluster the target domain's images with DBSCAN on this distance, computed
from any non-negative ``[N, N]`` distance ``d`` (``2 - 2 cos`` of
L2-normalised embeddings there; QAConv's ``1 - sigmoid(score)`` here). Their
nearest-neighbour search returns ``k1`` points per row (the point itself
first), hence the differences from :func:`re_ranking`'s encoding (which
ranks ``k1 + 1`` neighbours of column-normalised distances):

1. ``rank[i]``: the ``k1`` nearest items of row ``i`` of ``d`` (stable
   order: ties by index).
2. ``R(i, k)``: the first ``k + 1`` entries of ``rank[i]`` (at most the
   ``k1`` there are), kept where ``i`` is also in ``R(j, k)``.
3. The expanded set: ``R(i, k1)`` plus ``R(c, h)`` of each member ``c``
   (``h = numpy.round(k1 / 2)``) when more than 2/3 of ``R(c, h)`` lies in
   ``R(i, k1)``.
4. ``V[i]``: ``softmax(-d[i, j])`` over the expanded set, zero elsewhere.
5. Local query expansion (``k2 != 1``): ``V[i]`` = the mean of the rows
   ``V[rank[i, :k2]]``.
6. ``jaccard[i, j] = 1 - m / (2 - m)``, ``m = sum(min(V[i], V[j]))``;
   negatives (rounding) set to 0.

Steps 3, 5 and the sums of step 6 are :mod:`.rerank`'s code. ``V`` is
sparse (about ``N * k1 * k2`` entries); step 6 goes through an inverted
index, one block of rows at a time, so only the output is ``O(N^2)``:
:func:`jaccard_distance` returns it dense (10 GB at N = 50,000), while
:func:`jaccard_neighbors` keeps only the pairs within a radius (what DBSCAN
needs) and, with :class:`EmbeddingDistance`, never holds an ``[N, N]``
matrix at all.
"""
from typing import Iterator, Tuple, Union

import numpy as np

from mmreid_gs.utils.arrays import check_int, stable_topk, to_numpy
from .rerank import (InvertedIndex, expanded_reciprocal_sets,
                     local_query_expansion)

# Bytes of the float64 temporaries of one block of rows.
_BLOCK_BYTES = 64 << 20


class EmbeddingDistance:
    """``2 - 2 cos`` distances of embeddings, computed when asked for.

    The distance of SpCL / Cluster Contrast (squared Euclidean distance of
    the L2-normalised features). It gives :func:`jaccard_neighbors` rows
    and pairs without an ``[N, N]`` matrix in memory.

    Args:
        features (np.ndarray | torch.Tensor): ``[N, d]`` embeddings; they
            are L2-normalised here (float32).

    Raises:
        ValueError: If the features are not a finite, non-empty 2-D array
            or a row is all zeros.
    """

    def __init__(self, features) -> None:
        feats = to_numpy(features, np.float32, 'features')
        if feats.ndim != 2 or feats.shape[0] == 0:
            raise ValueError('EmbeddingDistance: features must be [N, d] '
                             f'with N >= 1, got shape {tuple(feats.shape)}')
        if not np.isfinite(feats).all():
            raise ValueError('EmbeddingDistance: features must be finite')
        norm = np.linalg.norm(feats, axis=1, keepdims=True)
        if (norm == 0).any():
            raise ValueError('EmbeddingDistance: row '
                             f'{int(np.flatnonzero(norm == 0)[0])} of the '
                             'features is all zeros (no direction)')
        self.features = np.ascontiguousarray(feats / norm)
        self.shape = (feats.shape[0], feats.shape[0])

    def rows(self, start: int, stop: int) -> np.ndarray:
        """float32 ``[stop - start, N]`` distances of rows ``start:stop``."""
        out = self.features[start:stop] @ self.features.T
        out *= -2.0
        out += 2.0
        return np.maximum(out, 0.0, out=out)

    def pairs(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """float64 ``[M]`` distances of the pairs ``(rows[m], cols[m])``."""
        out = np.empty(rows.shape[0], dtype=np.float64)
        step = 1 << 16
        for s in range(0, rows.shape[0], step):
            a = self.features[rows[s:s + step]]
            b = self.features[cols[s:s + step]]
            out[s:s + step] = 2.0 - 2.0 * np.einsum(
                'ij,ij->i', a, b, dtype=np.float64)
        return np.maximum(out, 0.0, out=out)


class _DenseDistance:
    """A checked dense ``[N, N]`` distance matrix, read as
    :class:`EmbeddingDistance` is."""

    def __init__(self, dist) -> None:
        d = to_numpy(dist, np.float32, 'dist')
        if d.ndim != 2 or d.shape[0] != d.shape[1] or d.shape[0] == 0:
            raise ValueError('dist must be a square, non-empty [N, N] '
                             f'distance matrix, got shape {tuple(d.shape)}')
        if not np.isfinite(d).all():
            raise ValueError('dist must be finite (found NaN or inf)')
        if (d < 0).any():
            raise ValueError('dist must be non-negative (a distance); its '
                             f'minimum is {float(d.min())}')
        self.dist = np.ascontiguousarray(d)
        self.shape = d.shape

    def rows(self, start: int, stop: int) -> np.ndarray:
        return self.dist[start:stop]

    def pairs(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        return self.dist[rows, cols].astype(np.float64)


def _source(dist) -> Union[EmbeddingDistance, _DenseDistance]:
    if isinstance(dist, EmbeddingDistance):
        return dist
    return _DenseDistance(dist)


def _encoding(src, k1: int, k2: int) -> Tuple[np.ndarray, ...]:
    """Steps 1-5: the sparse ``V`` (rows, cols, values; CSR order)."""
    n = src.shape[0]
    k_rank = min(k1, n)
    k_half = min(int(np.around(k1 / 2.0)) + 1, k_rank)
    rank = np.empty((n, k_rank), dtype=np.int64)
    step = max(1, _BLOCK_BYTES // (n * 8))
    for s in range(0, n, step):
        rank[s:s + step] = stable_topk(src.rows(s, min(n, s + step)),
                                        k_rank)
    v_row, v_col = expanded_reciprocal_sets(rank, k_rank, k_half)
    d = src.pairs(v_row, v_col)
    # softmax(-d) per row, shifted by the row minimum (no underflow)
    row_min = np.full(n, np.inf)
    np.minimum.at(row_min, v_row, d)
    weight = np.exp(-(d - row_min[v_row]))
    v_val = weight / np.bincount(v_row, weights=weight, minlength=n)[v_row]
    if k2 != 1:
        v_row, v_col, v_val = local_query_expansion(
            v_row, v_col, v_val, rank[:, :min(k2, k_rank)])
    return v_row, v_col, v_val


def _jaccard_blocks(src, k1: int,
                    k2: int) -> Iterator[Tuple[int, np.ndarray]]:
    """Step 6, one block of rows at a time.

    Yields:
        tuple: ``(start, block)``: float32 ``[b, N]`` Jaccard distances of
        rows ``start:start + b``.
    """
    n = src.shape[0]
    v_row, v_col, v_val = _encoding(src, k1, k2)
    index = InvertedIndex(v_row, v_col, v_val, n)
    row_len = np.bincount(v_row, minlength=n)
    row_ptr = np.concatenate([[0], np.cumsum(row_len)])
    step = max(1, _BLOCK_BYTES // (n * 8))
    for s in range(0, n, step):
        e = min(n, s + step)
        sl = slice(row_ptr[s], row_ptr[e])
        min_sum = np.zeros((e - s) * n, dtype=np.float64)
        for base, span, target, contrib in index.min_sum_batches(
                v_row[sl] - s, v_col[sl], v_val[sl], n):
            min_sum[base:base + span] += np.bincount(
                target, weights=contrib, minlength=span)
        block = 1.0 - min_sum / (2.0 - min_sum)
        block[block < 0] = 0.0
        yield s, block.astype(np.float32).reshape(e - s, n)


def _check_ks(k1, k2) -> Tuple[int, int]:
    return check_int(k1, 'k1', 1), check_int(k2, 'k2', 1)


def jaccard_distance(dist, k1: int = 30, k2: int = 6) -> np.ndarray:
    """The k-reciprocal Jaccard distance of SpCL / Cluster Contrast.

    See the module docstring for the exact steps. Memory: the ``[N, N]``
    output plus ``O(N * k1 * k2)``; for large ``N`` use
    :func:`jaccard_neighbors`.

    Args:
        dist (np.ndarray | torch.Tensor | EmbeddingDistance): Non-negative,
            finite ``[N, N]`` distances (converted to float32; not
            necessarily symmetric: row ``i`` ranks ``i``'s neighbours and
            weighs them with ``d[i, j]``), or an :class:`EmbeddingDistance`.
        k1 (int): Neighbours per row (the item itself included), >= 1;
            values >= N use all N. Defaults to 30.
        k2 (int): Neighbours of the local query expansion (1 disables
            it). Defaults to 6.

    Returns:
        np.ndarray: float32 ``[N, N]`` distances in ``[0, 1]`` (1 for pairs
        whose expanded sets do not meet).

    Raises:
        ValueError: If ``dist`` is not square, negative or not finite, or
            ``k1`` / ``k2`` is not a positive int.
    """
    k1, k2 = _check_ks(k1, k2)
    src = _source(dist)
    n = src.shape[0]
    out = np.empty((n, n), dtype=np.float32)
    for s, block in _jaccard_blocks(src, k1, k2):
        out[s:s + block.shape[0]] = block
    return out


def jaccard_neighbors(dist,
                      k1: int = 30,
                      k2: int = 6,
                      max_distance: float = 0.6):
    """The pairs of :func:`jaccard_distance` within ``max_distance``.

    The radius-neighbour graph that DBSCAN needs (``eps = max_distance``):
    entries with a distance ``<= max_distance`` are stored (zeros
    included, e.g. the diagonal), the others are absent. The values are
    those of :func:`jaccard_distance`, computed one block of rows at a
    time, so memory stays ``O(N * k1 * k2 + stored pairs)`` (with an
    :class:`EmbeddingDistance`; a dense ``dist`` is ``4 N^2`` bytes
    itself).

    Args:
        dist (np.ndarray | torch.Tensor | EmbeddingDistance): As for
            :func:`jaccard_distance`.
        k1 (int): As for :func:`jaccard_distance`. Defaults to 30.
        k2 (int): As for :func:`jaccard_distance`. Defaults to 6.
        max_distance (float): Radius in ``[0, 1)`` (pairs at distance 1
            share nothing and are never stored). Defaults to 0.6.

    Returns:
        scipy.sparse.csr_matrix: float32 ``[N, N]``, sorted indices.

    Raises:
        ValueError: As :func:`jaccard_distance`, or if ``max_distance`` is
            not in ``[0, 1)``.
    """
    from scipy import sparse  # a dependency of scikit-learn
    k1, k2 = _check_ks(k1, k2)
    max_distance = float(max_distance)
    if not 0.0 <= max_distance < 1.0:
        raise ValueError('max_distance must be in [0, 1), got '
                         f'{max_distance}')
    src = _source(dist)
    n = src.shape[0]
    counts, cols, vals = [], [], []
    for _, block in _jaccard_blocks(src, k1, k2):
        keep = block <= max_distance
        r, c = np.nonzero(keep)
        counts.append(np.count_nonzero(keep, axis=1))
        cols.append(c.astype(np.int64))
        vals.append(block[r, c])
    indptr = np.concatenate([[0], np.cumsum(np.concatenate(counts))])
    return sparse.csr_matrix(
        (np.concatenate(vals), np.concatenate(cols), indptr), shape=(n, n))

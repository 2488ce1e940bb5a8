"""k-reciprocal re-ranking (Zhong et al., CVPR 2017), sparse and vectorised.

The maths is that of the classic implementation, with two conventions of
this project: distances are *not* squared, and the input must be a
non-negative ``(q + g) x (q + g)`` distance matrix, queries first. Steps:

1. ``original = transpose(D / max(D, axis=0))`` in float32 (each column
   divided by its maximum, then transposed).
2. ``initial_rank``: the neighbours of every item by increasing
   ``original`` distance (ties broken by index, as a stable argsort). Only
   the first ``max(k1 + 1, round(k1 / 2) + 1, k2)`` are ever used, so they
   are found by ``argpartition`` over blocks of rows.
3. k-reciprocal set ``R(i)``: the ``j`` among the first ``k1 + 1``
   neighbours of ``i`` that have ``i`` among their first ``k1 + 1``.
   Expansion: for every ``c`` in ``R(i)``, its reciprocal set ``R'(c)``
   with ``round(k1 / 2) + 1`` neighbours is added when
   ``|R'(c) & R(i)| > 2/3 |R'(c)|``.
4. ``V[i, j] = exp(-original[i, j])`` over the expanded set, normalised to
   sum 1 (a sparse matrix with about ``N * k1`` entries).
5. Local query expansion (``k2 > 1``): ``V[i] = mean(V[initial_rank[i,
   :k2]])``.
6. Jaccard distance ``1 - sum(min(V[i], V[j])) / sum(max(V[i], V[j]))``
   (``sum max = 2 - sum min`` as rows sum to 1), computed only for the query
   rows and gallery columns by enumerating the pairs that share a non-zero
   column (an inverted index), accumulated with ``np.bincount``.
7. ``final = (1 - lambda) * jaccard + lambda * original`` on the query rows
   and gallery columns.

Everything but the blocks of ``original`` rows and the ``[q, g]`` output is
O(N * k1 * k2) memory. Only numpy is needed. Steps 3, 5 and the sums of
step 6 (:func:`expanded_reciprocal_sets`, :func:`local_query_expansion`,
:class:`InvertedIndex`) are also those of :func:`jaccard_distance`, the
variant that unsupervised re-ID clusters on.
"""

import numpy as np

from mmreid_gs.utils.arrays import check_int, stable_topk, to_numpy

# Rows of the normalised matrix handled at once (bounded temporaries).
_ROW_BLOCK_BYTES = 64 << 20
# Side of the tiles of the blocked transposition.
_TILE = 256
# Query/gallery pairs sharing a column accumulated at once (Jaccard step).
_PAIR_BATCH = 1 << 18


def _ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Concatenation of ``arange(start, start + length)`` for each pair."""
    lengths = lengths.astype(np.int64)
    offsets = np.cumsum(lengths) - lengths
    return (np.repeat(starts.astype(np.int64) - offsets, lengths) +
            np.arange(int(lengths.sum()), dtype=np.int64))


def _normalised_rows(dist: np.ndarray, col_max: np.ndarray, start: int,
                     stop: int) -> np.ndarray:
    """Rows ``start:stop`` of ``transpose(dist / max(dist, axis=0))``."""
    n = dist.shape[0]
    out = np.empty((stop - start, n), dtype=np.float32)
    # transpose in tiles: much faster than one strided copy
    for j in range(0, n, _TILE):
        out[:, j:j + _TILE] = dist[j:j + _TILE, start:stop].T
    out /= col_max[start:stop, None]
    return out


class _RowSets:
    """Membership tests ``value in sets[row]`` for many pairs at once.

    Args:
        sets (np.ndarray): ``[N, K]`` int entries in ``[0, n)``; the value
            ``n`` marks padding.
        n (int): Number of items.
    """

    def __init__(self, sets: np.ndarray, n: int) -> None:
        self.n = n
        rows = np.arange(sets.shape[0], dtype=np.int64)[:, None]
        self.keys = (rows * (n + 1) + np.sort(sets, axis=1)).reshape(-1)

    def contains(self, rows: np.ndarray, values: np.ndarray) -> np.ndarray:
        query = rows.astype(np.int64) * (self.n + 1) + values
        pos = np.searchsorted(self.keys, query)
        np.minimum(pos, self.keys.shape[0] - 1, out=pos)
        return self.keys[pos] == query


def _reciprocal(rank: np.ndarray, k: int) -> np.ndarray:
    """``mask[i, a]``: ``i`` is among the first ``k`` neighbours of
    ``rank[i, a]`` (for ``a < k``)."""
    first = rank[:, :k]
    sets = _RowSets(first, rank.shape[0])
    return sets.contains(first, np.arange(rank.shape[0])[:, None])


def expanded_reciprocal_sets(rank: np.ndarray, k_full: int,
                             k_half: int) -> tuple:
    """The expanded k-reciprocal set of every item (Zhong et al., step 3).

    ``R(i)``: the ``j`` among the first ``k_full`` entries of ``rank[i]``
    that have ``i`` among their own first ``k_full``. For every ``c`` in
    ``R(i)``, its set ``R'(c)`` with ``k_half`` entries is added when
    ``|R'(c) & R(i)| > 2/3 |R'(c)|``. Shared by :func:`re_ranking`
    (``k_full = k1 + 1``) and :func:`jaccard_distance` (``k_full = k1``).

    Args:
        rank (np.ndarray): int64 ``[N, >= max(k_full, k_half)]``: the
            neighbours of every item, nearest first.
        k_full (int): Entries of the rankings that make ``R(i)``.
        k_half (int): Entries that make ``R'(c)``.

    Returns:
        tuple[np.ndarray, np.ndarray]: ``(rows, cols)`` int64 [M]: the
        members ``cols`` of the expanded set of ``rows``, sorted by row then
        column, without duplicates.
    """
    n = rank.shape[0]
    recip = _reciprocal(rank, k_full)
    recip_half = _reciprocal(rank, k_half)
    forward = rank[:, :k_full]
    recip_sets = _RowSets(np.where(recip, forward, n), n)
    v_rows, v_cols = [], []
    block = max(1, (1 << 20) // (k_full * k_half))
    for s in range(0, n, block):
        e = min(n, s + block)
        fwd = forward[s:e]  # [b, K]
        rec = recip[s:e]  # [b, K]
        half_set = rank[fwd, :k_half]  # [b, K, H]: neighbours of candidates
        half_ok = recip_half[fwd]  # [b, K, H]: ... that are reciprocal
        in_r = recip_sets.contains(
            np.arange(s, e)[:, None, None], half_set)  # ... and in R(i)
        count = np.count_nonzero(in_r & half_ok, axis=2)
        size = np.count_nonzero(half_ok, axis=2)
        accept = rec & (count > 2. / 3 * size)
        keep_half = half_ok & accept[..., None]
        # expanded set: R(i) and the accepted half sets, deduplicated
        members = np.concatenate([
            np.where(rec, fwd, n),
            np.where(keep_half, half_set, n).reshape(e - s, -1)
        ], axis=1)
        members.sort(axis=1)
        unique = members < n
        unique[:, 1:] &= members[:, 1:] != members[:, :-1]
        r, c = np.nonzero(unique)
        v_rows.append(r + s)
        v_cols.append(members[r, c])
    return np.concatenate(v_rows), np.concatenate(v_cols)


def local_query_expansion(v_row: np.ndarray, v_col: np.ndarray,
                          v_val: np.ndarray, neighbours: np.ndarray) -> tuple:
    """``V[i] = mean(V[neighbours[i]])`` on a sparse ``V`` (step 5).

    Args:
        v_row (np.ndarray): int64 [M] rows of the entries of ``V``, sorted
            (CSR order).
        v_col (np.ndarray): int64 [M] their columns.
        v_val (np.ndarray): float64 [M] their values.
        neighbours (np.ndarray): int64 ``[N, k]``: the rows averaged into
            each row (the item's ``k`` nearest, itself included).

    Returns:
        tuple[np.ndarray, np.ndarray, np.ndarray]: ``(rows, cols, values)``
        of the expanded ``V``, sorted by row then column.
    """
    n, k = neighbours.shape
    row_len = np.bincount(v_row, minlength=n)
    row_ptr = np.cumsum(row_len) - row_len
    nb = neighbours.reshape(-1)
    owner = np.repeat(np.arange(n), k)
    entries = _ranges(row_ptr[nb], row_len[nb])
    key = np.repeat(owner, row_len[nb]) * n + v_col[entries]
    key, inverse = np.unique(key, return_inverse=True)
    v_val = np.bincount(inverse.reshape(-1), weights=v_val[entries]) / k
    return key // n, key % n, v_val


class InvertedIndex:
    """The entries of a sparse ``V`` (rows = targets) by column, to sum
    ``min(V_query[i], V[j])`` over the columns that rows share (step 6).

    Args:
        rows (np.ndarray): int64 [M] target row of every entry, in
            ``[0, num_targets)``.
        cols (np.ndarray): int64 [M] column of every entry, in ``[0, n)``.
        vals (np.ndarray): float64 [M] values.
        n (int): Number of columns.
    """

    def __init__(self, rows: np.ndarray, cols: np.ndarray, vals: np.ndarray,
                 n: int) -> None:
        order = np.argsort(cols, kind='stable')
        self.rows, self.vals = rows[order], vals[order]
        self.len = np.bincount(cols, minlength=n)
        self.ptr = np.cumsum(self.len) - self.len

    def min_sum_batches(self, q_row: np.ndarray, q_col: np.ndarray,
                        q_val: np.ndarray, num_targets: int,
                        pair_batch: int = _PAIR_BATCH):
        """Contributions ``min(V_q[i, t], V[j, t])`` of all the pairs that
        share a column ``t``, in batches of about ``pair_batch`` pairs.

        Args:
            q_row (np.ndarray): int64 [Q] query rows, sorted.
            q_col (np.ndarray): int64 [Q] their columns.
            q_val (np.ndarray): float64 [Q] their values.
            num_targets (int): Number of target rows ``T``.
            pair_batch (int): Pairs per batch. Defaults to 2**18.

        Yields:
            tuple: ``(base, span, target, contrib)``: the contributions
            ``contrib`` (float64) to the entries ``base + target`` of the
            flat ``[num_query_rows, T]`` sum (``target`` in ``[0, span)``,
            one batch covers whole query rows).
        """
        pairs = self.len[q_col]
        cum = np.cumsum(pairs)
        start = 0
        while start < q_col.shape[0]:
            # query entries (in row order) whose pairs fit in one batch
            stop = int(np.searchsorted(cum, cum[start] - pairs[start] +
                                       pair_batch, side='right'))
            stop = max(stop, start + 1)
            sl = slice(start, stop)
            rep = pairs[sl]
            gi = _ranges(self.ptr[q_col[sl]], rep)
            base = int(q_row[start]) * num_targets
            target = np.repeat(q_row[sl], rep) * num_targets + \
                self.rows[gi] - base
            contrib = np.minimum(np.repeat(q_val[sl], rep), self.vals[gi])
            span = (int(q_row[stop - 1]) + 1) * num_targets - base
            yield base, span, target, contrib
            start = stop


def re_ranking(distmat_all,
               num_query: int,
               k1: int = 20,
               k2: int = 6,
               lambda_value: float = 0.3) -> np.ndarray:
    """k-reciprocal re-ranking of Zhong et al. (CVPR 2017).

    Args:
        distmat_all (np.ndarray | torch.Tensor): Non-negative, finite
            distances between all items, shape ``[N, N]`` with
            ``N = num_query + num_gallery``, queries first. It is converted
            to float32. Not squared. A column whose maximum is 0 is left
            unscaled.
        num_query (int): Number of queries ``q`` (the first rows/columns),
            ``1 <= q < N``.
        k1 (int): Size of the k-reciprocal neighbourhoods (``k1 + 1``
            neighbours including the item itself; the expansion uses
            ``round(k1 / 2) + 1``). Values >= N are clipped to the data, as
            slicing does in the classic implementation. Defaults to 20.
        k2 (int): Neighbours of the local query expansion (1 disables it).
            Defaults to 6.
        lambda_value (float): Weight of the original distance in
            ``[0, 1]``. Defaults to 0.3.

    Returns:
        np.ndarray: float32 re-ranked distances, shape ``[q, N - q]``
        (query rows, gallery columns).

    Raises:
        ValueError: If the matrix is not square, is negative or not finite,
            or an argument is out of range.
    """
    dist = np.ascontiguousarray(
        to_numpy(distmat_all, np.float32, 'distmat_all'))
    if dist.ndim != 2 or dist.shape[0] != dist.shape[1]:
        raise ValueError('distmat_all must be a square (num_query + '
                         'num_gallery)^2 matrix, got shape '
                         f'{tuple(dist.shape)}')
    n = dist.shape[0]
    num_query = check_int(num_query, 'num_query', 1)
    if num_query >= n:
        raise ValueError(f'num_query must be < {n} (the matrix size) so that '
                         f'there is a gallery, got {num_query}')
    k1 = check_int(k1, 'k1', 1)
    k2 = check_int(k2, 'k2', 1)
    lambda_value = float(lambda_value)
    if not 0.0 <= lambda_value <= 1.0:
        raise ValueError(f'lambda_value must be in [0, 1], got {lambda_value}')
    if not np.isfinite(dist).all():
        raise ValueError('distmat_all must be finite (found NaN or inf)')
    if (dist < 0).any():
        raise ValueError('distmat_all must be non-negative (a distance); '
                         f'its minimum is {float(dist.min())}')
    q = num_query
    g = n - q
    col_max = dist.max(axis=0)
    col_max[col_max == 0] = 1

    k_full = min(k1 + 1, n)
    k_half = min(int(np.around(k1 / 2.0)) + 1, n)
    k_qe = min(k2, n)
    k_top = max(k_full, k_half, k_qe)

    # Step 1-2: normalised rows in blocks -> initial ranks; keep query rows.
    rows_per_block = max(1, _ROW_BLOCK_BYTES // (n * 16))
    rank = np.empty((n, k_top), dtype=np.int64)
    original_qg = np.empty((q, g), dtype=np.float32)
    for s in range(0, n, rows_per_block):
        e = min(n, s + rows_per_block)
        rows = _normalised_rows(dist, col_max, s, e)
        rank[s:e] = stable_topk(rows, k_top)
        if s < q:
            original_qg[s:min(e, q)] = rows[:min(e, q) - s, q:]
    if lambda_value == 1.0:
        return original_qg

    # Steps 3-6: the k-reciprocal encoding shared with jaccard_distance.
    v_row, v_col = expanded_reciprocal_sets(rank, k_full, k_half)
    orig_vals = (dist[v_col, v_row] / col_max[v_row]).astype(np.float32)
    weight = np.exp(-orig_vals.astype(np.float64))
    v_val = weight / np.bincount(v_row, weights=weight, minlength=n)[v_row]
    if k2 != 1:
        v_row, v_col, v_val = local_query_expansion(v_row, v_col, v_val,
                                                    rank[:, :k_qe])
    is_query = v_row < q
    index = InvertedIndex(v_row[~is_query] - q, v_col[~is_query],
                          v_val[~is_query], n)
    min_sum = np.zeros(q * g, dtype=np.float64)
    for base, span, target, contrib in index.min_sum_batches(
            v_row[is_query], v_col[is_query], v_val[is_query], g):
        min_sum[base:base + span] += np.bincount(
            target, weights=contrib, minlength=span)
    min_sum = min_sum.reshape(q, g)
    jaccard = 1.0 - min_sum / (2.0 - min_sum)

    # Step 7: blend.
    final = jaccard * (1.0 - lambda_value) + original_qg * lambda_value
    return final.astype(np.float32)

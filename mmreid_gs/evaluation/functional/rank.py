"""CMC, mAP, mINP and per-query AP of a ranking under the Market-1501
protocol.

The evaluation is vectorised (no Python loop over queries) and exact. It
rests on one observation: CMC, AP and INP of a query depend only on the
1-based positions of its *valid matches* (same identity, other camera) in
the ranked list of its *valid gallery* (everything but same identity & same
camera). The rank of the k-th valid match (matches sorted by distance) is
``k + N_k``, where ``N_k`` counts the gallery items of *other* identities
ranked before it. Valid matches are few (tens per query), so no gallery row
is argsorted:

1. The same-identity pairs (valid matches and junk) are enumerated from the
   gallery grouped by identity, without any ``[q, g]`` pass, and sorted by
   ``(query, distance, gallery index)``.
2. Queries are processed in chunks of rows (size from a memory budget). One
   comparison pass marks the other-identity items that are not farther than
   the query's hardest valid match: only those can precede a match.
3. Rows with few marked items ("sparse" rows, typical for a useful model)
   gather them, encode ``(row, distance)`` as exact int64 keys (float32
   input), sort them once and find every match by binary search. Rows with
   many marked items ("dense" rows, and every row of float64 input) count
   ``distance < match`` in cache-sized blocks of rows, one vectorised pass
   per match. A cost model picks the strategy of each row.
4. Ties between a match and other-identity items are broken by gallery
   index (as a stable argsort would); they are detected cheaply and only the
   affected matches are recounted exactly.

For untied distances the numbers equal those of the classic per-query loop.
"""
from typing import Dict, NamedTuple, Tuple, Union

import numpy as np
import torch

from mmreid_gs.utils.arrays import to_numpy

ArrayLike = Union[np.ndarray, torch.Tensor, list, tuple]

# Bytes of temporaries per element of a chunk of rows in the worst case
# (mask, flat index, row, key and sorted key of every marked element).
_BYTES_PER_ELEMENT = 40
# Cost model choosing the sparse or dense strategy of a row: nanoseconds per
# marked element (sparse) and per element and match (dense).
_SPARSE_COST = 35.0
_DENSE_COST = 0.4
# Target bytes of one block of rows of the dense strategy (fits in L2).
_DENSE_BLOCK_BYTES = 1 << 20
# Rows gathered at once when recounting ties.
_TIE_BATCH = 64


def _check_ids(x: ArrayLike, name: str, length: int,
               what: str) -> np.ndarray:
    """Check a 1-D id array against the matching distmat dimension."""
    arr = to_numpy(x, name=name)
    if arr.ndim != 1:
        raise ValueError(f'{name} must be 1-D, got shape {arr.shape}')
    if arr.shape[0] != length:
        raise ValueError(f'{name} has {arr.shape[0]} entries but distmat has '
                         f'{length} {what}')
    return arr


def _keys32(rows: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Exact, order-preserving int64 keys of ``(row, float32 value)``."""
    # +0.0 turns -0.0 into +0.0, which compares equal to it as a float
    bits = (values + np.float32(0)).view(np.int32).astype(np.int64)
    # map the float bits to integers with the same order (sign-magnitude ->
    # two's complement) and shift them to [0, 2^32)
    bits ^= (bits >> 31) & 0x7FFFFFFF
    bits += 1 << 31
    return (rows.astype(np.int64) << 32) | bits


def _same_identity_pairs(dist, q_pids, g_pids, q_cams, g_cams) -> Tuple:
    """Same-identity (query, gallery) pairs sorted by (query, value, index).

    Returns:
        tuple: ``pair_q, pair_g, is_pos, num_less, num_equal_before,
        num_equal``: for each pair, the number of same-identity items of its
        query strictly closer, those at the same distance with a smaller
        gallery index, and all those at the same distance (itself included).
    """
    num_q, num_g = dist.shape
    g_order = np.argsort(g_pids, kind='stable')
    uniq, first, counts = np.unique(
        g_pids[g_order], return_index=True, return_counts=True)
    slot = np.minimum(np.searchsorted(uniq, q_pids), uniq.shape[0] - 1)
    found = uniq[slot] == q_pids
    q_count = np.where(found, counts[slot], 0)
    q_first = first[slot]
    pair_q = np.repeat(np.arange(num_q), q_count)
    group_start = np.cumsum(q_count) - q_count
    within = np.arange(pair_q.shape[0]) - group_start[pair_q]
    pair_g = g_order[q_first[pair_q] + within]
    pair_v = dist[pair_q, pair_g]
    order = np.lexsort((pair_g, pair_v, pair_q))
    pair_q, pair_g, pair_v = pair_q[order], pair_g[order], pair_v[order]
    is_pos = g_cams[pair_g] != q_cams[pair_q]
    # runs of equal (query, value)
    idx = np.arange(pair_q.shape[0])
    new_run = np.ones(pair_q.shape[0], dtype=bool)
    new_run[1:] = (pair_q[1:] != pair_q[:-1]) | (pair_v[1:] != pair_v[:-1])
    run_start = np.maximum.accumulate(np.where(new_run, idx, 0))
    num_less = run_start - group_start[pair_q]
    num_equal_before = idx - run_start
    run_id = np.cumsum(new_run) - 1
    num_equal = np.bincount(run_id)[run_id]
    return pair_q, pair_g, is_pos, num_less, num_equal_before, num_equal


def _recount_ties(dist, pos_q, pos_g, pos_v, same_equal_before):
    """Other-identity items at a match's distance with a smaller index."""
    out = np.empty(pos_q.shape[0], dtype=np.int64)
    cols = np.arange(dist.shape[1])
    for s in range(0, pos_q.shape[0], _TIE_BATCH):
        e = s + _TIE_BATCH
        rows = dist[pos_q[s:e]]
        before = (rows == pos_v[s:e, None]) & (cols < pos_g[s:e, None])
        out[s:e] = before.sum(axis=1) - same_equal_before[s:e]
    return out


def evaluate_rank(distmat: ArrayLike,
                  query_pids: ArrayLike,
                  gallery_pids: ArrayLike,
                  query_camids: ArrayLike,
                  gallery_camids: ArrayLike,
                  max_rank: int = 50,
                  *,
                  max_memory_mb: float = 256) -> Dict[str, object]:
    """Evaluate a query/gallery ranking with the Market-1501 protocol.

    For each query, gallery items of the same identity *and* the same camera
    are ignored (removed from its ranked list); the remaining items of the
    same identity are its valid matches. Queries without any valid match are
    skipped. Items are ranked by increasing distance, ties broken by gallery
    index.

    - CMC: ``cmc[k]`` is the fraction of valid queries whose first valid
      match is within the top ``k + 1`` of the filtered list.
    - AP: mean over the valid matches of the precision at their rank (the
      same number as ``sklearn.metrics.average_precision_score`` for untied
      distances; per query: :func:`average_precisions`); mAP is its mean
      over valid queries.
    - INP (Ye et al., "Deep Learning for Person Re-identification: A Survey
      and Outlook", TPAMI 2021): ``num_matches / rank_of_hardest_match``;
      mINP is its mean over valid queries.

    Args:
        distmat (np.ndarray | torch.Tensor): Distances, shape ``[q, g]``;
            smaller means more similar. Must be finite. float32 input takes
            the fastest path (float64 is exact as well).
        query_pids (array-like): Identities of the queries, shape ``[q]``.
        gallery_pids (array-like): Identities of the gallery, shape ``[g]``.
        query_camids (array-like): Cameras of the queries, shape ``[q]``.
        gallery_camids (array-like): Cameras of the gallery, shape ``[g]``.
        max_rank (int): Length of the returned CMC curve. When it exceeds the
            gallery size the curve keeps this length: entries past the end
            of a filtered gallery repeat the last value (1.0, since every
            valid query has its first match somewhere). Defaults to 50.
        max_memory_mb (float): Budget in MiB of the temporaries of one chunk
            of queries (keyword only). Defaults to 256.

    Returns:
        dict: ``cmc`` (np.ndarray float64 ``[max_rank]``, fractions),
        ``mAP`` (float in [0, 1]), ``mINP`` (float in [0, 1]) and
        ``num_valid_queries`` (int).

    Raises:
        ValueError: On shape mismatches, non-finite distances, a
            ``max_rank`` < 1, or when no query has a valid match.
    """
    if isinstance(max_rank, bool) or not isinstance(
            max_rank, (int, np.integer)) or max_rank < 1:
        raise ValueError(f'max_rank must be a positive int, got {max_rank!r}')
    max_rank = int(max_rank)
    ranks = _match_ranks(distmat, query_pids, gallery_pids, query_camids,
                         gallery_camids, max_memory_mb)
    valid = ranks.num_pos > 0
    num_valid = int(valid.sum())
    if num_valid == 0:
        raise ValueError(
            'No query has a valid match: every gallery item with a query\'s '
            'identity is from the query\'s camera (or absent). Check the '
            'identities / cameras of the query and gallery sets.')
    ap = _average_precisions(ranks)[valid]
    first_rank = ranks.pos_rank[ranks.pos_start[valid]]
    pos_last = ranks.pos_start[valid] + ranks.num_pos[valid] - 1
    inp = ranks.num_pos[valid] / ranks.pos_rank[pos_last]
    hist = np.bincount(np.minimum(first_rank, max_rank + 1) - 1,
                       minlength=max_rank + 1)[:max_rank]
    cmc = np.cumsum(hist) / num_valid
    return dict(
        cmc=cmc.astype(np.float64),
        mAP=float(ap.mean()),
        mINP=float(inp.mean()),
        num_valid_queries=num_valid)


def average_precisions(distmat: ArrayLike,
                       query_pids: ArrayLike,
                       gallery_pids: ArrayLike,
                       query_camids: ArrayLike,
                       gallery_camids: ArrayLike,
                       *,
                       max_memory_mb: float = 256) -> np.ndarray:
    """AP of every query under the Market-1501 protocol, as
    :func:`evaluate_rank` computes it (its mAP is the mean of the non-NaN
    entries, in query order).

    Args:
        distmat (np.ndarray | torch.Tensor): Distances, shape ``[q, g]``;
            smaller means more similar. Must be finite.
        query_pids (array-like): Identities of the queries, shape ``[q]``.
        gallery_pids (array-like): Identities of the gallery, shape ``[g]``.
        query_camids (array-like): Cameras of the queries, shape ``[q]``.
        gallery_camids (array-like): Cameras of the gallery, shape ``[g]``.
        max_memory_mb (float): Budget in MiB of the temporaries of one chunk
            of queries (keyword only). Defaults to 256.

    Returns:
        np.ndarray: float64 ``[q]``; NaN for a query without a valid match.

    Raises:
        ValueError: On shape mismatches or non-finite distances.
    """
    return _average_precisions(
        _match_ranks(distmat, query_pids, gallery_pids, query_camids,
                     gallery_camids, max_memory_mb))


class _MatchRanks(NamedTuple):
    """Ranks of the valid matches ("positives") of every query.

    Positives are grouped by query (queries in order) and sorted by
    (distance, gallery index) within a query.
    """
    pos_q: np.ndarray  # [p] query of each positive
    pos_k: np.ndarray  # [p] 1-based rank among its query's positives
    pos_rank: np.ndarray  # [p] 1-based rank in its query's valid gallery
    num_pos: np.ndarray  # [q] positives of each query
    pos_start: np.ndarray  # [q] index of each query's first positive


def _average_precisions(ranks: _MatchRanks) -> np.ndarray:
    """Per-query AP (float64 [q], NaN without a valid match)."""
    valid = ranks.num_pos > 0
    total = np.bincount(ranks.pos_q, weights=ranks.pos_k / ranks.pos_rank,
                        minlength=ranks.num_pos.shape[0])
    ap = np.full(ranks.num_pos.shape[0], np.nan)
    ap[valid] = total[valid] / ranks.num_pos[valid]
    return ap


def _match_ranks(distmat, query_pids, gallery_pids, query_camids,
                 gallery_camids, max_memory_mb) -> _MatchRanks:
    """Check the inputs and rank the valid matches of every query."""
    dist = to_numpy(distmat, name='distmat')
    if dist.ndim != 2:
        raise ValueError(f'distmat must be 2-D [num_query, num_gallery], got '
                         f'shape {dist.shape}')
    num_q, num_g = dist.shape
    if num_q == 0 or num_g == 0:
        raise ValueError(f'distmat is empty (shape {dist.shape})')
    q_pids = _check_ids(query_pids, 'query_pids', num_q, 'rows (queries)')
    g_pids = _check_ids(gallery_pids, 'gallery_pids', num_g,
                        'columns (gallery items)')
    q_cams = _check_ids(query_camids, 'query_camids', num_q, 'rows (queries)')
    g_cams = _check_ids(gallery_camids, 'gallery_camids', num_g,
                        'columns (gallery items)')
    if dist.dtype.kind != 'f':
        dist = dist.astype(np.float64)
    elif dist.dtype.itemsize < 4:
        dist = dist.astype(np.float32)
    dist = np.ascontiguousarray(dist)
    fast_keys = dist.dtype == np.float32

    # 1. Same-identity pairs and the sorted valid matches ("positives").
    (pair_q, pair_g, is_pos, same_less, same_eq_before,
     same_eq_count) = _same_identity_pairs(dist, q_pids, g_pids, q_cams,
                                           g_cams)
    pos_q, pos_g = pair_q[is_pos], pair_g[is_pos]
    pos_v = dist[pos_q, pos_g]
    same_less, same_eq_before, same_eq_count = (
        same_less[is_pos], same_eq_before[is_pos], same_eq_count[is_pos])
    num_pos = np.bincount(pos_q, minlength=num_q)
    pos_start = np.cumsum(num_pos) - num_pos
    valid = num_pos > 0
    pos_k = np.arange(pos_q.shape[0]) - pos_start[pos_q] + 1
    # N_k: other-identity items ranked before each positive
    num_before = np.zeros(pos_q.shape[0], dtype=np.int64)
    if not valid.any():
        return _MatchRanks(pos_q, pos_k, pos_k + num_before, num_pos,
                           pos_start)
    pos_last = pos_start[valid] + num_pos[valid] - 1
    hardest = np.full(num_q, -np.inf, dtype=dist.dtype)
    hardest[valid] = pos_v[pos_last]
    tie_flag = np.zeros(pos_q.shape[0], dtype=bool)

    # 2. Chunks of queries.
    budget = max(1.0, float(max_memory_mb)) * 2**20
    chunk = int(max(1, min(num_q, budget // (_BYTES_PER_ELEMENT * num_g))))
    mask_buf = np.empty(chunk * num_g, dtype=bool)
    # summing booleans into a narrow integer type is much faster
    count_dtype = np.uint16 if num_g < 2**16 else np.int64
    dense_rows_per_block = max(
        1, _DENSE_BLOCK_BYTES // (num_g * dist.dtype.itemsize))
    for s in range(0, num_q, chunk):
        e = min(num_q, s + chunk)
        if not valid[s:e].any():
            continue
        block = dist[s:e]
        if not np.isfinite(block).all():
            raise ValueError('distmat must be finite; found NaN or inf in '
                             f'query rows {s}..{e - 1}')
        c = e - s
        mask = mask_buf[:c * num_g].reshape(c, num_g)
        np.less_equal(block, hardest[s:e, None], out=mask)
        lo, hi = np.searchsorted(pair_q, [s, e])
        mask[pair_q[lo:hi] - s, pair_g[lo:hi]] = False
        num_marked = np.add.reduce(mask, axis=1, dtype=count_dtype)
        m = num_pos[s:e]
        sparse = valid[s:e] & (num_marked.astype(np.int64) * _SPARSE_COST <
                               m * num_g * _DENSE_COST)
        if not fast_keys:
            sparse[:] = False
        dense = valid[s:e] & ~sparse
        if sparse.any():
            _sparse_rows(block, mask, s, sparse, dense, pos_q, pos_v,
                         pos_start, num_pos, num_before, tie_flag)
        if dense.any():
            _dense_rows(block, s, np.flatnonzero(dense), pos_v, pos_start,
                        num_pos, same_less, same_eq_count, num_before,
                        tie_flag, dense_rows_per_block)

    # 3. Ties between positives and other-identity items.
    if tie_flag.any():
        t = np.flatnonzero(tie_flag)
        num_before[t] += _recount_ties(dist, pos_q[t], pos_g[t], pos_v[t],
                                       same_eq_before[t])
    return _MatchRanks(pos_q, pos_k, pos_k + num_before, num_pos, pos_start)


def _sparse_rows(block, mask, s, sparse, dense, pos_q, pos_v, pos_start,
                 num_pos, num_before, tie_flag):
    """Sparse strategy: sort the marked items of the rows by exact keys."""
    num_g = block.shape[1]
    mask[dense] = False
    flat = np.flatnonzero(mask)
    rows = flat // num_g
    keys = _keys32(rows, block.reshape(-1)[flat])
    keys.sort()
    rows_sparse = np.flatnonzero(sparse)
    p = _ranges(pos_start[s + rows_sparse], num_pos[s + rows_sparse])
    p_keys = _keys32(pos_q[p] - s, pos_v[p])
    left = np.searchsorted(keys, p_keys, side='left')
    right = np.searchsorted(keys, p_keys, side='right')
    row_begin = np.searchsorted(keys, (pos_q[p] - s).astype(np.int64) << 32)
    num_before[p] = left - row_begin
    tie_flag[p] |= right > left


def _ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Concatenation of ``arange(start, start + length)`` for each pair."""
    total = int(lengths.sum())
    offsets = np.cumsum(lengths) - lengths
    return np.repeat(starts - offsets, lengths) + np.arange(total)


def _dense_rows(block, s, rows, pos_v, pos_start, num_pos, same_less,
                same_eq_count, num_before, tie_flag, rows_per_block):
    """Dense strategy: one counting pass per positive over blocks of rows."""
    num_g = block.shape[1]
    count_dtype = np.uint16 if num_g < 2**16 else np.int64
    rows = rows[np.argsort(-num_pos[s + rows], kind='stable')]
    buf = np.empty((min(rows_per_block, rows.shape[0]), num_g), dtype=bool)
    for b in range(0, rows.shape[0], rows_per_block):
        r = rows[b:b + rows_per_block]
        sub = block[r]
        m = num_pos[s + r]
        width = int(m.max())
        # padded matrix of the positives' indices / values of these rows
        k = np.arange(width)
        real = k[None, :] < m[:, None]
        p_idx = np.where(real, pos_start[s + r][:, None] + k[None, :], -1)
        p_val = np.where(real, pos_v[p_idx], np.inf).astype(block.dtype)
        out = buf[:r.shape[0]]
        for j in range(width):
            live = real[:, j]
            if not live.all():
                n_live = int(live.sum())
                sub, out, p_val, p_idx, real = (sub[:n_live], out[:n_live],
                                                p_val[:n_live],
                                                p_idx[:n_live],
                                                real[:n_live])
            t = p_val[:, j:j + 1]
            idx = p_idx[:, j]
            np.less(sub, t, out=out)
            less = np.add.reduce(out, axis=1, dtype=count_dtype)
            num_before[idx] = less.astype(np.int64) - same_less[idx]
            np.equal(sub, t, out=out)
            # more equal items than same-identity ones at that distance means
            # a tie with another identity: recount those exactly later
            if np.count_nonzero(out) != int(same_eq_count[idx].sum()):
                equal = np.add.reduce(out, axis=1, dtype=np.int64)
                tie_flag[idx] |= equal > same_eq_count[idx]

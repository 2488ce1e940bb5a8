"""TLift: temporal lifting of matching scores (Liao & Shao, ECCV 2020).

"Interpretable and Generalizable Person Re-Identification with
Query-Adaptive Convolution and Temporal Lifting". TLift is model-free: it
reweights the scores of a query with a temporal co-occurrence prior. People
who walk together are seen together by a camera and, later, together by
another camera. For a query ``i`` seen by camera ``p`` at time ``t_i``:

1. Its *co-occurring* queries are the queries of the same camera ``p`` with
   ``|t_j - t_i| < tau`` (``i`` itself included).
2. For every gallery camera ``c``, take the scores of the co-occurring
   queries against the gallery items of camera ``c``. The pivot set ``P`` is
   every (query, gallery) entry of that sub-matrix scoring at least its
   ``K``-th largest value (all of its entries when it has at most ``K``);
   each pivot contributes the timestamp of its gallery item (a multiset).
3. The weight of gallery item ``m`` of camera ``c`` is the mean over the
   pivots of ``exp(-(t_m - t_pivot)^2 / sigma^2)``: items seen close in time
   to where the query's companions were matched get lifted.
4. ``lifted = (weight + alpha) * score``.

Scores should be similarities in [0, 1] (for QAConv: ``sigmoid(logits)``);
the default ``alpha`` assumes such scores with a small mean, as noted by the
authors. Timestamps are frame numbers on a clock common to all cameras
(Market-1501: 25 fps, so ``tau=100`` is 4 s and ``sigma=200`` is 8 s).
"""
import numpy as np

from mmreid_gs.utils.arrays import to_numpy

# Candidate entries (window rows x per-row lists) of the queries handled at
# once.
_CANDIDATE_BATCH = 1 << 20
# Elements of the [queries, gallery] float32 blocks of the Gaussian sums (fits
# in L2).
_WEIGHT_BATCH = 1 << 15


def _array(x, name: str, ndim: int) -> np.ndarray:
    arr = to_numpy(x, name=name)
    if arr.ndim != ndim:
        raise ValueError(f'{name} must be {ndim}-D, got shape {arr.shape}')
    return arr


def _pivot_weights(sub: np.ndarray, q_time: np.ndarray, g_time: np.ndarray,
                   tau: float, sigma: float, K: int) -> np.ndarray:
    """TLift weights of the queries of one camera vs the gallery of another.

    Args:
        sub (np.ndarray): Scores ``[n_q, n_g]``, rows sorted by time.
        q_time (np.ndarray): Sorted query times ``[n_q]``.
        g_time (np.ndarray): Gallery times ``[n_g]``.

    Returns:
        np.ndarray: float32 weights ``[n_q, n_g]`` in [0, 1].
    """
    n_q, n_g = sub.shape
    k_row = min(K, n_g)
    # each row's k_row best entries: the K best of any union of rows lie in
    # the union of its rows' lists; also keep the next best of each row
    if k_row < n_g:
        part = np.argpartition(-sub, k_row, axis=1)[:, :k_row + 1]
        top = part[:, :k_row]
        next_best = np.take_along_axis(sub, part[:, k_row:], axis=1)[:, 0]
    else:
        top = np.broadcast_to(np.arange(n_g), (n_q, n_g))
    top_val = np.take_along_axis(sub, top, axis=1)
    # co-occurring queries: the window lo..hi-1 of the time-sorted rows;
    # queries with the same window share their weights
    lo = np.searchsorted(q_time, q_time - tau, side='right')
    hi = np.searchsorted(q_time, q_time + tau, side='left')
    windows, inverse = np.unique(
        np.stack([lo, hi], axis=1), axis=0, return_inverse=True)
    lo, hi = windows[:, 0], windows[:, 1]
    n_w = windows.shape[0]
    width = int((hi - lo).max())
    weights = np.empty((n_w, n_g), dtype=np.float32)
    step = max(1, _CANDIDATE_BATCH // (width * k_row))
    for s in range(0, n_w, step):
        e = min(n_w, s + step)
        rows = lo[s:e, None] + np.arange(width)[None, :]  # [b, width]
        in_win = rows < hi[s:e, None]
        rows = np.where(in_win, rows, lo[s:e, None])
        cand_val = np.where(in_win[:, :, None], top_val[rows],
                            -np.inf).reshape(e - s, -1)
        k_sel = min(K, cand_val.shape[1]) - 1
        kth = -np.partition(-cand_val, k_sel, axis=1)[:, k_sel]
        # at most K entries: all of them are pivots (threshold = minimum)
        small = (hi[s:e] - lo[s:e]) * n_g <= K
        if small.any():
            kth[small] = np.where(in_win[small].repeat(k_row, axis=1),
                                  cand_val[small], np.inf).min(axis=1)
        # pivot gallery times, compacted to the left, padded with +inf
        pr, pc = np.nonzero(cand_val >= kth[:, None])
        num_piv = np.bincount(pr, minlength=e - s)
        slot = np.arange(pr.shape[0]) - (np.cumsum(num_piv) - num_piv)[pr]
        p_time = np.full((e - s, int(num_piv.max())), np.inf)
        p_time[pr, slot] = g_time[top[rows].reshape(e - s, -1)[pr, pc]]
        weights[s:e] = _gauss_mean(g_time, p_time, num_piv, sigma)
        # a row whose next best entry (outside its list) still reaches the
        # threshold holds more pivots (ties): recount those windows exactly
        if k_row < n_g:
            spill = (in_win & (next_best[rows] >= kth[:, None])).any(axis=1)
            for i in np.flatnonzero(spill):
                cols = np.nonzero(sub[lo[s + i]:hi[s + i]] >= kth[i])[1]
                weights[s + i] = _gauss_mean(g_time, g_time[cols][None, :],
                                             np.array([cols.shape[0]]),
                                             sigma)[0]
    return weights[inverse.reshape(-1)]


def _gauss_mean(g_time: np.ndarray, p_time: np.ndarray, num: np.ndarray,
                sigma: float) -> np.ndarray:
    """``sum_p exp(-(g_time - p_time[:, p])^2 / sigma^2) / num`` per row.

    Evaluated in float32 (float64 ``exp`` is several times slower); times are
    shifted to start at 0 first so that frame numbers stay exact. Padding
    pivots are ``+inf`` and contribute 0. Returns float32 ``[n_q, n_g]``.
    """
    n_q, n_p = p_time.shape
    n_g = g_time.shape[0]
    origin = g_time.min()
    g32 = (g_time - origin).astype(np.float32)
    p32 = (p_time - origin).astype(np.float32)
    neg_inv_s2 = np.float32(-1.0 / float(sigma)**2)
    out = np.empty((n_q, n_g), dtype=np.float32)
    step = max(1, _WEIGHT_BATCH // n_g)
    buf = np.empty((min(step, n_q), n_g), dtype=np.float32)
    acc = np.empty_like(buf)
    for s in range(0, n_q, step):
        e = min(n_q, s + step)
        b, a = buf[:e - s], acc[:e - s]
        a.fill(0)
        for k in range(n_p):
            np.subtract(g32[None, :], p32[s:e, k:k + 1], out=b)
            np.multiply(b, b, out=b)
            np.multiply(b, neg_inv_s2, out=b)
            np.exp(b, out=b)
            a += b
        out[s:e] = a
    out /= num[:, None]
    return out


def tlift(scores,
          query_cams,
          gallery_cams,
          query_times,
          gallery_times,
          tau: float = 100,
          sigma: float = 200,
          K: int = 10,
          alpha: float = 0.2) -> np.ndarray:
    """Temporal lifting of query/gallery matching scores.

    Args:
        scores (np.ndarray | torch.Tensor): Similarities ``[q, g]``, higher
            means more similar, ideally in [0, 1] (e.g. ``sigmoid`` of QAConv
            logits).
        query_cams (array-like): Camera of each query ``[q]`` (any ids).
        gallery_cams (array-like): Camera of each gallery item ``[g]``.
        query_times (array-like): Timestamp of each query ``[q]``, in frames
            on a clock shared by all cameras.
        gallery_times (array-like): Timestamp of each gallery item ``[g]``,
            same unit.
        tau (float): Queries of the same camera with ``|dt| < tau`` frames
            co-occur (100 frames = 4 s at 25 fps). Must be > 0.
            Defaults to 100.
        sigma (float): Temporal sensitivity of the Gaussian weight, in
            frames (200 = 8 s at 25 fps). Must be > 0. Defaults to 200.
        K (int): Number of top entries defining the pivot set.
            Defaults to 10.
        alpha (float): Regulariser of the multiplicative fusion: the result
            is ``(weight + alpha) * score``. Defaults to 0.2.

    Returns:
        np.ndarray: Lifted scores ``[q, g]`` (float32 for float32 input,
        float64 otherwise).
    """
    s = _array(scores, 'scores', 2)
    if s.dtype != np.float32:
        s = s.astype(np.float64)
    num_q, num_g = s.shape
    q_cam = _array(query_cams, 'query_cams', 1)
    g_cam = _array(gallery_cams, 'gallery_cams', 1)
    q_time = _array(query_times, 'query_times', 1).astype(np.float64)
    g_time = _array(gallery_times, 'gallery_times', 1).astype(np.float64)
    for name, arr, size in (('query_cams', q_cam, num_q),
                            ('query_times', q_time, num_q),
                            ('gallery_cams', g_cam, num_g),
                            ('gallery_times', g_time, num_g)):
        if arr.shape[0] != size:
            raise ValueError(f'{name} has {arr.shape[0]} entries, expected '
                             f'{size} (scores has shape {s.shape})')
    if not (np.isfinite(s).all() and np.isfinite(q_time).all()
            and np.isfinite(g_time).all()):
        raise ValueError('scores and timestamps must be finite')
    if not tau > 0 or not sigma > 0:
        raise ValueError(f'tau and sigma must be > 0, got tau={tau}, '
                         f'sigma={sigma}')
    if isinstance(K, bool) or not isinstance(K, (int, np.integer)) or K < 1:
        raise ValueError(f'K must be a positive int, got {K!r}')
    # gallery columns grouped by camera (np.take is much faster than fancy
    # column indexing), queries grouped by camera and sorted by time
    g_order = np.argsort(g_cam, kind='stable')
    _, g_first = np.unique(g_cam[g_order], return_index=True)
    g_bounds = np.append(g_first, num_g)
    work = np.take(s, g_order, axis=1)
    g_time = g_time[g_order]
    q_groups = []
    for p in np.unique(q_cam):
        qi = np.flatnonzero(q_cam == p)
        q_groups.append(qi[np.argsort(q_time[qi], kind='stable')])
    for a, b in zip(g_bounds[:-1], g_bounds[1:]):
        for qi in q_groups:
            sub = work[qi, a:b]
            w = _pivot_weights(sub, q_time[qi], g_time[a:b], tau, sigma,
                               int(K)).astype(s.dtype, copy=False)
            w += alpha
            w *= sub
            work[qi, a:b] = w
    return np.take(work, np.argsort(g_order), axis=1)

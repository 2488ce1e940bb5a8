"""What a ranked list shows: the top-k gallery items of a query, which of
them the Market-1501 protocol counts as matches, non-matches or ignores,
and the query's AP and first-hit rank (pure functions, no drawing; the AP
is :func:`mmreid_gs.evaluation.functional.average_precisions` on
``-scores``)."""
from typing import Dict, Optional, Sequence

import numpy as np

from mmreid_gs.evaluation.functional import rank as rank_metrics

#: Kinds of gallery items in a ranked list.
MATCH, NON_MATCH, IGNORED = 'match', 'non-match', 'ignored'


def _check_row(scores, gallery_pids, gallery_camids) -> tuple:
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    g_pids = np.asarray(gallery_pids).reshape(-1)
    g_cams = np.asarray(gallery_camids).reshape(-1)
    if not (s.size == g_pids.size == g_cams.size):
        raise ValueError(
            f'ranked list: scores ({s.size}), gallery_pids ({g_pids.size}) '
            f'and gallery_camids ({g_cams.size}) must have the same length')
    if s.size == 0:
        raise ValueError('ranked list: the gallery is empty')
    if not np.isfinite(s).all():
        raise ValueError('ranked list: scores must be finite')
    return s, g_pids, g_cams


def rank_order(scores) -> np.ndarray:
    """Gallery indices by decreasing score, ties by gallery index (the order
    of :func:`mmreid_gs.evaluation.functional.evaluate_rank` on
    ``-scores``).

    Args:
        scores (array-like): [g] similarity of each gallery item.

    Returns:
        np.ndarray: int64 [g].
    """
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    return np.lexsort((np.arange(s.size), -s)).astype(np.int64)


def query_ranking(scores,
                  query_pid,
                  query_camid,
                  gallery_pids,
                  gallery_camids,
                  topk: int = 10) -> Dict[str, object]:
    """The ranked list of one query, with the protocol's view of it.

    Gallery items of the query's identity and camera are ``'ignored'``
    (shown, but removed from the list the metrics rank); other items of its
    identity are ``'match'``, the rest ``'non-match'``. AP and the first-hit
    rank are computed on the filtered list, as
    :func:`~mmreid_gs.evaluation.functional.evaluate_rank` does.

    Args:
        scores (array-like): [g] scores of the query against the gallery,
            higher = more similar.
        query_pid (int): Identity of the query.
        query_camid (int): Camera of the query.
        gallery_pids (array-like): [g] gallery identities.
        gallery_camids (array-like): [g] gallery cameras.
        topk (int): Length of the shown list (ignored items included).
            Defaults to 10.

    Returns:
        dict: ``indices`` (int64 [k'] gallery indices of the shown list,
        k' = min(topk, g)), ``scores`` (float64 [k']), ``kinds`` (list of
        ``'match'`` / ``'non-match'`` / ``'ignored'``), ``ap`` (float, NaN
        without a valid match), ``first_hit`` (int, 1-based rank of the first
        match in the filtered list; None without a valid match),
        ``num_matches`` (int).
    """
    if int(topk) < 1:
        raise ValueError(f'ranked list: topk must be >= 1, got {topk}')
    s, g_pids, g_cams = _check_row(scores, gallery_pids, gallery_camids)
    order = rank_order(s)
    same_id = g_pids[order] == query_pid
    ignored = same_id & (g_cams[order] == query_camid)
    kinds_all = np.where(ignored, 2, np.where(same_id, 0, 1))
    hits = same_id[~ignored]
    num_matches = int(hits.sum())
    # 1-based rank of the first match in the filtered list
    first_hit: Optional[int] = (int(np.argmax(hits)) + 1
                                if num_matches else None)
    ap = float(
        rank_metrics.average_precisions(-s[None], [query_pid], g_pids,
                                        [query_camid], g_cams)[0])
    shown = order[:int(topk)]
    names = (MATCH, NON_MATCH, IGNORED)
    return dict(
        indices=shown,
        scores=s[shown],
        kinds=[names[k] for k in kinds_all[:int(topk)]],
        ap=ap,
        first_hit=first_hit,
        num_matches=num_matches)


def average_precisions(scores, query_pids: Sequence, gallery_pids: Sequence,
                       query_camids: Sequence,
                       gallery_camids: Sequence) -> np.ndarray:
    """AP of every query under the Market-1501 protocol (NaN for queries
    without a valid match), e.g. to pick the worst queries: the numbers of
    :func:`mmreid_gs.evaluation.functional.average_precisions` on
    ``-scores``.

    Args:
        scores (array-like): [q, g] scores, higher = more similar.
        query_pids (array-like): [q] query identities.
        gallery_pids (array-like): [g] gallery identities.
        query_camids (array-like): [q] query cameras.
        gallery_camids (array-like): [g] gallery cameras.

    Returns:
        np.ndarray: float64 [q].
    """
    s = np.asarray(scores)
    if s.dtype.kind != 'f':
        s = s.astype(np.float64)
    q_pids = np.asarray(query_pids).reshape(-1)
    q_cams = np.asarray(query_camids).reshape(-1)
    if s.ndim != 2 or s.shape[0] != q_pids.size or q_cams.size != q_pids.size:
        raise ValueError(
            f'scores must be [num_query, num_gallery] with num_query = '
            f'{q_pids.size} (query_pids) = {q_cams.size} (query_camids); '
            f'got shape {s.shape}')
    # negating a float is exact: the ranks (ties included) are those of s
    return rank_metrics.average_precisions(
        -s, q_pids, np.asarray(gallery_pids).reshape(-1), q_cams,
        np.asarray(gallery_camids).reshape(-1))

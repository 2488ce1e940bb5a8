"""First stage of two-stage matching: the cheap proxies and the top-N
candidates they propose.

- ``'gap'`` (:func:`proxy_features`, :func:`proxy_similarity`): every map
  average-pooled over its locations and L2-normalised, ``[n, c, h, w] ->
  [n, c]``; the proxy similarity of a pair is the cosine of the pooled
  vectors (one GEMM, ``c`` multiply-adds a pair, float32, autocast off).
- ``'pooled'`` (:func:`pooled_proxy_features`, :func:`pooled_proxy_scores`):
  unweighted QAConv max matching on 2x2-pooled maps (16x fewer location
  pairs than QAConv on the maps).

:func:`top_candidates` turns a block of proxy scores into each row's ``N``
best columns; :func:`proxy_candidates` runs a proxy over row blocks and
keeps only those (memory: one ``[rows, g]`` block).
"""
import math
from typing import Callable, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from mmreid_gs.utils.thread_state import (cpu_workers, run_in_workers,
                                         uses_cpu_paths)

#: ``score(q [q, ...], g [g, ...]) -> [q, g]`` similarities.
Scorer = Callable[[Tensor, Tensor], Tensor]


# ------------------------------------------------------------------- 'gap'
def proxy_features(feats: Tensor) -> Tensor:
    """The global proxy of feature maps: average over the locations, then
    L2 normalisation.

    Args:
        feats (Tensor): [n, c, h, w] maps (any [n, c, *locations]), or
            [n, d] vectors (only normalised).

    Returns:
        Tensor: [n, c] float32 unit vectors on the features' device; the
        proxy similarity of two items is their dot product (a cosine).
    """
    if feats.dim() < 2:
        raise ValueError('proxy_features needs features [n, c, ...], got '
                         f'shape {list(feats.shape)}')
    with torch.autocast(feats.device.type, enabled=False):
        pooled = feats.flatten(2).float().mean(dim=2) if feats.dim() > 2 \
            else feats.float()
        return F.normalize(pooled, dim=1)


def proxy_similarity(query_proxy: Tensor, gallery_proxy: Tensor,
                     out: Optional[Tensor] = None) -> Tensor:
    """Proxy cosines ``[b, g]`` of a block of queries (float32, autocast
    off), written into ``out`` when given."""
    with torch.autocast(query_proxy.device.type, enabled=False):
        return torch.matmul(query_proxy.float(), gallery_proxy.float().t(),
                            out=out)


# ---------------------------------------------------------------- 'pooled'
def pooled_proxy_features(features: Tensor) -> Tensor:
    """2x2 average pooling of the maps and L2 normalisation per location.

    Returns:
        Tensor: [C, c, L] with L = ceil(h/2) * ceil(w/2) locations.
    """
    if features.dim() != 4:
        raise ValueError("candidate_fn='pooled' needs feature maps "
                         f'[C, c, h, w]; got shape {list(features.shape)}.')
    pooled = F.avg_pool2d(features.float(), 2, ceil_mode=True)
    return F.normalize(pooled.flatten(2), dim=1)


#: Pooled-proxy blocks on the CPU: queries, and similarities of one GEMM
#: (4 MiB of float32, cache-sized).
CPU_POOLED_QUERIES, CPU_POOLED_SIMS = 8, 2**20
#: Pooled-proxy blocks on an accelerator: large GEMMs (256 MiB of float32
#: similarities; the reductions add a quarter of that at most).
ACCEL_POOLED_QUERIES, ACCEL_POOLED_SIMS = 64, 2**26


def pooled_blocks(nq: int, loc: int, device: torch.device) -> Tuple[int, int]:
    """``(query, gallery)`` items per GEMM of the pooled proxy.

    Args:
        nq (int): Query rows to score.
        loc (int): Pooled locations per map L (similarities per pair: L^2).
        device (torch.device): Where the scores are computed
            (:func:`~mmreid_gs.utils.thread_state.uses_cpu_paths`).

    Returns:
        tuple[int, int]: at most ``CPU_POOLED_QUERIES`` queries x
        ``CPU_POOLED_SIMS`` similarities on the CPU, ``ACCEL_POOLED_*``
        elsewhere (at least one gallery item).
    """
    if uses_cpu_paths(device):
        queries, sims = CPU_POOLED_QUERIES, CPU_POOLED_SIMS
    else:
        queries, sims = ACCEL_POOLED_QUERIES, ACCEL_POOLED_SIMS
    q_blk = max(1, min(nq, queries))
    return q_blk, max(1, sims // (q_blk * loc * loc))


def _pooled_rows(q: Tensor, g2t: Tensor, out: Tensor) -> None:
    """Pooled scores of queries ``q`` [nq, c, L] against the gallery laid
    out for the GEMM (``g2t`` [c, ng * L]), into ``out`` [nq, ng], in
    blocks of :func:`pooled_blocks` (one GEMM each)."""
    nq, c, loc = q.shape
    ng = g2t.shape[1] // loc
    q2 = q.transpose(1, 2).reshape(nq * loc, c)
    q_blk, g_blk = pooled_blocks(nq, loc, q.device)
    for i in range(0, nq, q_blk):
        qi = min(q_blk, nq - i)
        for j in range(0, ng, g_blk):
            gj = min(g_blk, ng - j)
            sim = torch.mm(q2[i * loc:(i + qi) * loc],
                           g2t[:, j * loc:(j + gj) * loc]).view(
                               qi, loc, gj, loc)
            out[i:i + qi, j:j + gj] = sim.amax(3).mean(1) + sim.amax(1).mean(2)


def pooled_proxy_scores(q: Tensor, g: Tensor) -> Tensor:
    """Unweighted QAConv on pooled maps: mean over query locations of the
    best gallery location plus the converse.

    On the CPU with several intra-op threads, the query rows are split
    over as many worker threads, each running single-threaded GEMMs and
    reductions (as the QAConv kernels do): splitting every small GEMM and
    max reduction over the threads instead cost 2-7x more time with two
    threads on a loaded machine (docs/benchmarks.md).

    Args:
        q (Tensor): [nq, c, L] prepared query maps.
        g (Tensor): [ng, c, L] prepared gallery maps.

    Returns:
        Tensor: [nq, ng] float32 scores.
    """
    nq, c, loc = q.shape
    ng = g.shape[0]
    out = q.new_empty(nq, ng)
    g2t = g.transpose(1, 2).reshape(ng * loc, c).t()
    step = pooled_blocks(nq, loc, q.device)[0]
    workers = max(1, min(cpu_workers(q.device), math.ceil(nq / step)))
    bounds = [step * (math.ceil(nq / step) * k // workers)
              for k in range(workers)] + [nq]

    def run(rows):
        _pooled_rows(q[rows[0]:rows[1]], g2t, out[rows[0]:rows[1]])

    run_in_workers(run, list(zip(bounds, bounds[1:])))
    return out


#: Bytes of the gathered pooled gallery maps of one call of
#: :func:`pooled_pair_scores` (and of its ``[b, L, M * L]`` similarities).
POOLED_GATHER_BYTES = 16 * 2**20


def _pooled_pair_rows(q: Tensor, g: Tensor, lists: Tensor,
                      out: Tensor) -> None:
    """:func:`pooled_pair_scores` of a few query rows, in blocks of
    :data:`POOLED_GATHER_BYTES` (one batched GEMM each)."""
    b, c, loc = q.shape
    m = lists.shape[1]
    per_row = max(1, m * loc * max(c, loc) * 4)
    step = max(1, POOLED_GATHER_BYTES // per_row)
    qt = q.transpose(1, 2)  # [b, L, c]
    for i in range(0, b, step):
        rows = slice(i, min(i + step, b))
        n = rows.stop - rows.start
        gathered = g[lists[rows].reshape(-1)]  # [n * M, c, L]
        gathered = gathered.view(n, m, c, loc).permute(0, 2, 1, 3).reshape(
            n, c, m * loc)
        sim = torch.bmm(qt[rows], gathered).view(n, loc, m, loc)
        out[rows] = sim.amax(3).mean(1) + sim.amax(1).mean(2)


def pooled_pair_scores(q: Tensor, g: Tensor, lists: Tensor) -> Tensor:
    """The ``'pooled'`` proxy (unweighted QAConv max matching of 2x2-pooled
    maps) of each query against its own list of gallery items: the index
    form of :func:`pooled_proxy_scores`, ``out[i, j]`` equal to
    ``pooled_proxy_scores(q, g)[i, lists[i, j]]``.

    About ``c L^2`` multiply-adds a pair (L = pooled locations), 16x fewer
    than QAConv on the maps. On the CPU the query rows are split over the
    intra-op threads, each running single-threaded batched GEMMs.

    Args:
        q (Tensor): [b, c, L] prepared query maps
            (:func:`pooled_proxy_features`).
        g (Tensor): [G, c, L] prepared gallery maps.
        lists (Tensor): LongTensor [b, M] gallery indices of every row.

    Returns:
        Tensor: [b, M] float32 scores.
    """
    if q.dim() != 3 or g.dim() != 3 or q.shape[1:] != g.shape[1:]:
        raise ValueError('pooled_pair_scores needs prepared maps [b, c, L] '
                         'and [G, c, L] of the same c and L, got '
                         f'{list(q.shape)} and {list(g.shape)}')
    if lists.dim() != 2 or lists.shape[0] != q.shape[0]:
        raise ValueError(f'lists must be [b={q.shape[0]}, M], got '
                         f'{list(lists.shape)}')
    b = q.shape[0]
    out = q.new_empty(b, lists.shape[1], dtype=torch.float32)
    if b == 0 or lists.shape[1] == 0:
        return out
    lists = lists.to(g.device)
    workers = max(1, min(cpu_workers(q.device), b))
    bounds = [b * k // workers for k in range(workers)] + [b]

    def run(rows):
        sl = slice(*rows)
        _pooled_pair_rows(q[sl].float(), g, lists[sl], out[sl])

    with torch.autocast(q.device.type, enabled=False):
        run_in_workers(run, [r for r in zip(bounds, bounds[1:])
                             if r[1] > r[0]])
    return out


def refine_candidates(q: Tensor, g: Tensor, lists: Tensor, num: int,
                      return_scores: bool = False):
    """Second proxy pass of a cascade: each row's ``num`` best of its
    ``lists`` by :func:`pooled_pair_scores`.

    Args:
        q (Tensor): [b, c, L] prepared query maps
            (:func:`pooled_proxy_features`).
        g (Tensor): [G, c, L] prepared gallery maps.
        lists (Tensor): LongTensor [b, M] candidates of a cheaper proxy.
        num (int): Candidates kept per row (clipped to M).
        return_scores (bool): Also return the pooled scores of all of
            ``lists``. Defaults to False.

    Returns:
        Tensor | tuple[Tensor, Tensor]: LongTensor [b, min(num, M)] gallery
        indices, each row by decreasing pooled score (ties: the earlier
        entry of ``lists``), on ``lists``' device; with ``return_scores``
        also the [b, M] float32 pooled scores of ``lists``.
    """
    num = min(int(num), lists.shape[1])
    scores = pooled_pair_scores(q, g, lists).to(lists.device)
    order = torch.sort(scores, dim=1, descending=True,
                       stable=True).indices[:, :num]
    kept = lists.gather(1, order)
    return (kept, scores) if return_scores else kept


#: Named first-stage proxies: name -> (prepare(features), score(q, g)).
#: ``'gap'`` (default): cosine of global-average-pooled, L2-normalised maps
#: (C^2 * c work, negligible next to QAConv).
#: ``'pooled'``: unweighted QAConv max matching on 2x2-pooled maps (16x
#: fewer FLOPs per pair than QAConv on 24x8 maps, about 4x less time on CPU):
#: better recall than ``'gap'`` for the same N, but its C^2 pairs dominate
#: the cost for large C.
#: Measured on CPU (tools/analysis_tools/benchmark_graph.py, C=3000,
#: N=300, 15 neighbours, QAConvHead): ``'gap'`` recall 0.983 at 6.4x less
#: CPU time than exact; ``'pooled'`` recall 0.997 at 4.2x.
PROXIES = {
    'gap': (proxy_features, proxy_similarity),
    'pooled': (pooled_proxy_features, pooled_proxy_scores),
}


# ------------------------------------------------------------- candidates
def top_candidates(scores: Tensor,
                   num: int,
                   exclude: Optional[Tensor] = None,
                   by_index: bool = False) -> Tensor:
    """Each row's ``num`` best columns of a block of proxy scores.

    Args:
        scores (Tensor): [b, g] proxy scores, higher = more similar;
            overwritten at the excluded entries.
        num (int): Candidates per row, <= g.
        exclude (Tensor, optional): [b] a column per row never proposed
            (e.g. the row's own item). Defaults to None.
        by_index (bool): Each row's candidates sorted by column index
            (an unsorted top-k, half the time of a sorted one, then a sort)
            instead of by decreasing score. Defaults to False.

    Returns:
        Tensor: LongTensor [b, num] on the scores' device.
    """
    if exclude is not None:
        scores[torch.arange(scores.shape[0], device=scores.device),
               exclude] = -math.inf
    if by_index:
        return scores.topk(num, dim=1, sorted=False).indices.sort(
            dim=1).values
    return scores.topk(num, dim=1).indices


def proxy_candidates(query: Tensor,
                     gallery: Tensor,
                     num: int,
                     score: Scorer = proxy_similarity,
                     block_rows: int = 256,
                     rows: Optional[Tensor] = None,
                     exclude_self: bool = False,
                     by_index: bool = False,
                     check: Optional[Callable] = None) -> Tensor:
    """First stage: every query row's ``num`` best gallery items by a proxy,
    in blocks of ``block_rows`` rows (one ``score`` call and one
    :func:`top_candidates` each).

    Args:
        query (Tensor): [q, ...] prepared query features (a proxy's
            ``prepare``).
        gallery (Tensor): [g, ...] prepared gallery features.
        num (int): Candidates per row, <= g (minus one with
            ``exclude_self``).
        score (callable): ``score(q, g) -> [q, g]``. Defaults to
            :func:`proxy_similarity`.
        block_rows (int): Rows per ``score`` call. Defaults to 256.
        rows (Tensor, optional): [R] the query rows to propose for (e.g. a
            share of the classes); None means all. Defaults to None.
        exclude_self (bool): Never propose gallery item ``rows[i]`` for row
            ``i`` (query and gallery are the same items). Defaults to False.
        by_index (bool): As :func:`top_candidates`. Defaults to False.
        check (callable, optional): ``check(scores, b, g) -> scores`` run on
            every block (shape checks). Defaults to None.

    Returns:
        Tensor: LongTensor [R, num] on the query's device.
    """
    dev = query.device
    num_rows = query.shape[0] if rows is None else rows.numel()
    step = max(1, int(block_rows))
    out = []
    for i in range(0, num_rows, step):
        if rows is None:
            blk, q = None, query[i:i + step]
        else:
            blk = rows[i:i + step].to(dev)
            q = query[blk]
        s = score(q, gallery)
        if check is not None:
            s = check(s, q.shape[0], gallery.shape[0])
        out.append(top_candidates(s, num, blk if exclude_self else None,
                                  by_index))
    if not out:
        return torch.empty(0, num, dtype=torch.long, device=dev)
    return torch.cat(out)

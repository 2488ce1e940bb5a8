"""The two-stage class graph: a cheap proxy proposes candidate classes
(``'gap'``: cosine of pooled maps, ``'pooled'``: QAConv on 2x2-pooled maps,
or a callable), the matcher re-scores only those, and a cost model from the
feature shape decides whether that is cheaper than the exact graph."""
import collections
import math
from typing import Callable, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from mmreid_gs.utils.contract import takes_index
from mmreid_gs.utils.thread_state import (cpu_workers, run_in_workers,
                                         uses_cpu_paths)
from .exact import Matcher, _check_scores, _resolve_rows

# ---------------------------------------------------------------- proxies
def _gap_prepare(features: Tensor) -> Tensor:
    """Global average pooling over locations, then L2 normalisation."""
    pooled = features.flatten(2).mean(dim=2) if features.dim() > 2 \
        else features
    return F.normalize(pooled.float(), dim=1)


def _gap_score(q: Tensor, g: Tensor) -> Tensor:
    return q @ g.t()


def _pooled_prepare(features: Tensor) -> Tensor:
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


def _pooled_blocks(nq: int, loc: int,
                   device: torch.device) -> Tuple[int, int]:
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
    blocks of :func:`_pooled_blocks` (one GEMM each)."""
    nq, c, loc = q.shape
    ng = g2t.shape[1] // loc
    q2 = q.transpose(1, 2).reshape(nq * loc, c)
    q_blk, g_blk = _pooled_blocks(nq, loc, q.device)
    for i in range(0, nq, q_blk):
        qi = min(q_blk, nq - i)
        for j in range(0, ng, g_blk):
            gj = min(g_blk, ng - j)
            sim = torch.mm(q2[i * loc:(i + qi) * loc],
                           g2t[:, j * loc:(j + gj) * loc]).view(
                               qi, loc, gj, loc)
            out[i:i + qi, j:j + gj] = sim.amax(3).mean(1) + sim.amax(1).mean(2)


def _pooled_score(q: Tensor, g: Tensor) -> Tensor:
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
    step = _pooled_blocks(nq, loc, q.device)[0]
    workers = max(1, min(cpu_workers(q.device), math.ceil(nq / step)))
    bounds = [step * (math.ceil(nq / step) * k // workers)
              for k in range(workers)] + [nq]

    def run(rows):
        _pooled_rows(q[rows[0]:rows[1]], g2t, out[rows[0]:rows[1]])

    run_in_workers(run, list(zip(bounds, bounds[1:])))
    return out


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
CANDIDATE_FUNCTIONS = {
    'gap': (_gap_prepare, _gap_score),
    'pooled': (_pooled_prepare, _pooled_score),
}


# ------------------------------------------------------------ cost model
#: Cost of scoring one pair beyond its multiply-adds (writing the score,
#: its share of the running top-k), in multiply-adds; measured on CPU: the
#: ``'gap'`` proxy on 32-64 channels costs about 18 ns a pair, as much as
#: 500-600 multiply-adds of the QAConv kernels.
PAIR_OVERHEAD_MACS = 512
#: Multiply-adds of the ``'pooled'`` proxy cost this many times those of
#: the matcher (less efficient GEMM shapes and reductions; measured 1.6-1.8
#: on 8x4 and 24x8 maps, one thread).
POOLED_MAC_PENALTY = 2.0
#: A re-scored candidate pair of the second stage costs this many exact
#: pairs (gathering, smaller blocks; measured 1.4-1.8 with one thread, 2-3
#: with two threads on a loaded machine).
SECOND_STAGE_PENALTY = 3.0
#: The two-stage graph is used only when predicted at least this many
#: times cheaper than the exact graph.
MIN_TWO_STAGE_SPEEDUP = 1.5


def matcher_pair_macs(item_shape: Sequence[int]) -> float:
    """Predicted cost of one matcher pair, in multiply-adds.

    Feature maps ``[c, h, w]`` (any ``[c, *locations]``) are scored like
    QAConv, every query location against every gallery location
    (``c * (h w)^2``); embeddings ``[d]`` like a cosine (``d``). Plus
    :data:`PAIR_OVERHEAD_MACS`.

    Args:
        item_shape (Sequence[int]): Shape of one class's feature,
            ``features.shape[1:]``.

    Returns:
        float: Multiply-add equivalents per pair.
    """
    item_shape = [int(v) for v in item_shape]
    locs = math.prod(item_shape[1:])
    channels = item_shape[0] if item_shape else 1
    macs = channels * locs * locs if len(item_shape) > 1 else channels
    return float(macs + PAIR_OVERHEAD_MACS)


def proxy_pair_macs(item_shape: Sequence[int],
                    candidate_fn: Union[str, Matcher, None]
                    ) -> Optional[float]:
    """Predicted cost of one first-stage pair, in multiply-adds.

    ``'gap'`` (or None): a cosine of ``c`` channels; ``'pooled'``: QAConv
    on 2x2-pooled maps (``c * (ceil(h/2) ceil(w/2))^2``) times
    :data:`POOLED_MAC_PENALTY`; both plus :data:`PAIR_OVERHEAD_MACS`.

    Args:
        item_shape (Sequence[int]): ``features.shape[1:]``.
        candidate_fn (str | callable | None): The proxy.

    Returns:
        float | None: Multiply-add equivalents per pair; None for a callable
        proxy, whose cost cannot be known.
    """
    if candidate_fn is not None and not isinstance(candidate_fn, str):
        return None
    item_shape = [int(v) for v in item_shape]
    channels = item_shape[0] if item_shape else 1
    if candidate_fn == 'pooled':
        locs = math.prod(math.ceil(v / 2) for v in item_shape[1:])
        macs = POOLED_MAC_PENALTY * channels * locs * locs
    else:
        macs = channels
    return float(macs + PAIR_OVERHEAD_MACS)


def two_stage_cost_ratio(item_shape: Sequence[int], num_classes: int,
                         num_candidates: int,
                         candidate_fn: Union[str, Matcher, None]
                         ) -> Optional[float]:
    """Predicted cost of the two-stage graph over that of the exact one.

    Exact: ``C^2`` matcher pairs. Two-stage: ``C^2`` proxy pairs plus
    ``C * N`` re-scored pairs at :data:`SECOND_STAGE_PENALTY` matcher pairs
    each (per class row, so the same ratio for any ``rows``)::

        ratio = proxy / matcher + SECOND_STAGE_PENALTY * N / C

    Args:
        item_shape (Sequence[int]): ``features.shape[1:]``.
        num_classes (int): C.
        num_candidates (int): N, candidates per class.
        candidate_fn (str | callable | None): The proxy.

    Returns:
        float | None: The ratio (< 1: the two-stage graph is predicted
        cheaper); None for a callable proxy.
    """
    proxy = proxy_pair_macs(item_shape, candidate_fn)
    if proxy is None:
        return None
    return (proxy / matcher_pair_macs(item_shape) +
            SECOND_STAGE_PENALTY * num_candidates / max(1, num_classes))


def _resolve_num_candidates(num_candidates: Union[int, float],
                            num_neighbors: int, num_classes: int) -> int:
    if isinstance(num_candidates, float) and 0 < num_candidates < 1:
        n = max(num_neighbors, math.ceil(num_candidates * num_classes))
    elif int(num_candidates) == num_candidates and num_candidates >= 1:
        n = int(num_candidates)
    else:
        raise ValueError(
            'num_candidates must be None (exact), an integer >= '
            'num_neighbors or a fraction of C in (0, 1); got '
            f'{num_candidates!r}.')
    if n < num_neighbors:
        raise ValueError(f'num_candidates ({n}) must be >= num_neighbors '
                         f'({num_neighbors}).')
    return min(n, num_classes - 1)


#: Bytes of the gathered candidate features of one batched second-stage call.
PAIR_GATHER_BYTES = 32 * 2**20
#: The two-stage graph is never used with more candidates than this
#: fraction of the classes; beyond, re-scoring them cannot pay off against
#: the exact graph, whose matcher runs at its most efficient block shapes
#: (QAConv on 8x4 maps: the batched re-scoring of each class's own
#: candidates, gathering included, runs at a third to a half of the pairs/s
#: of the exact graph; see docs/benchmarks.md). The only rule for a
#: callable proxy, whose cost cannot be known; the named proxies have to
#: pass the cost model of :func:`candidates_decision` too.
MAX_CANDIDATE_FRACTION = 0.25


def candidate_classes(features: Tensor,
                      num_candidates: int,
                      candidate_fn: Union[str, Matcher, None] = 'gap',
                      rows: Optional[Union[Sequence[int], Tensor]] = None,
                      block_size: int = 256) -> Tensor:
    """First stage: ``num_candidates`` cheap-proxy candidates per class.

    Args:
        features (Tensor): [C, c, h, w] one feature map per class.
        num_candidates (int): Candidates per class (self excluded), < C.
        candidate_fn (str | callable | None): A name of
            :data:`CANDIDATE_FUNCTIONS` (``'gap'``, ``'pooled'``), or a
            callable ``fn(q, g) -> [q, g]`` scores on the raw features.
            None means ``'gap'``. Defaults to ``'gap'``.
        rows (Sequence[int] | Tensor, optional): Classes to propose for; None
            means all. Defaults to None.
        block_size (int): Query rows per proxy call. Defaults to 256.

    Returns:
        Tensor: LongTensor [R, num_candidates] on the features' device,
        sorted by class index.
    """
    num_classes = features.shape[0]
    rows = _resolve_rows(rows, num_classes)
    if candidate_fn is None:
        candidate_fn = 'gap'
    if isinstance(candidate_fn, str):
        if candidate_fn not in CANDIDATE_FUNCTIONS:
            raise ValueError(
                f'Unknown candidate_fn {candidate_fn!r}; use one of '
                f'{sorted(CANDIDATE_FUNCTIONS)} or a callable.')
        prepare, score = CANDIDATE_FUNCTIONS[candidate_fn]
        prepared = prepare(features)
    elif callable(candidate_fn):
        prepared, score = features, candidate_fn
    else:
        raise ValueError('candidate_fn must be a name or a callable; got '
                         f'{type(candidate_fn).__name__}.')
    out = []
    for i in range(0, rows.numel(), max(1, int(block_size))):
        blk = rows[i:i + block_size].to(features.device)
        s = _check_scores(score(prepared[blk], prepared), blk.numel(),
                          num_classes, 'candidate_fn')
        s[torch.arange(blk.numel(), device=s.device), blk] = -math.inf
        # unsorted top-k (half the time of a sorted one), then by class index
        out.append(s.topk(num_candidates, dim=1, sorted=False).indices.sort(
            dim=1).values)
    if not out:
        return torch.empty(0, num_candidates, dtype=torch.long)
    return torch.cat(out)


def _check_candidate_fn(features: Tensor,
                        candidate_fn: Union[str, Matcher, None]) -> None:
    """Raise a ValueError for an unknown proxy name, a proxy that is not
    callable, or ``'pooled'`` on features that are not maps."""
    if candidate_fn is None or callable(candidate_fn):
        return
    if not isinstance(candidate_fn, str):
        raise ValueError('candidate_fn must be a name or a callable; got '
                         f'{type(candidate_fn).__name__}.')
    if candidate_fn not in CANDIDATE_FUNCTIONS:
        raise ValueError(
            f'Unknown candidate_fn {candidate_fn!r}; use one of '
            f'{sorted(CANDIDATE_FUNCTIONS)} or a callable.')
    if candidate_fn == 'pooled' and features.dim() != 4:
        raise ValueError("candidate_fn='pooled' needs feature maps "
                         f'[C, c, h, w]; got shape {list(features.shape)}.')


def resolve_pair_matcher(matcher: Matcher,
                         pair_matcher: Optional[Callable] = None
                         ) -> Optional[Callable]:
    """The batched second-stage scorer to use with ``matcher``.

    The protocol: an explicit ``pair_matcher`` wins; else a matcher that
    carries its own ``match_pairs`` attribute (a callable object, e.g. a
    model or a head passed whole); else a bound ``match`` method of an
    object with a callable ``match_pairs`` (``head.match``, ``model.match``:
    the documented call ``build_class_graph(feats, head.match, ...)``).
    ``match_pairs`` must give the scores of ``match`` for each query
    against its own gallery list; ``None`` (a model whose head has none)
    means there is none.

    Args:
        matcher (callable): The all-pairs matcher.
        pair_matcher (callable, optional): An explicit pair scorer.

    Returns:
        callable | None: ``fn(q [n, ...], g [n, m, ...]) -> [n, m]``.
    """
    if pair_matcher is not None:
        return pair_matcher
    own = getattr(matcher, 'match_pairs', None)
    if callable(own):
        return own
    owner = getattr(matcher, '__self__', None)
    func = getattr(matcher, '__func__', None)
    if owner is not None and getattr(func, '__name__', None) == 'match':
        fn = getattr(owner, 'match_pairs', None)
        if callable(fn):
            return fn
    return None


#: Rows per call of a pair scorer that takes ``index`` (its memory is the
#: [rows, N] scores and one cache-sized gathered block per worker).
PAIR_INDEX_ROWS = 4096


#: The union second stage grows a block of classes while at least this
#: share of the pairs it scores are candidate pairs (the rest is scored
#: only because another class of the block needs that column).
MIN_UNION_EFFICIENCY = 0.5


def union_blocks(rows: Tensor, cands: Tensor, num_classes: int,
                 max_rows: int) -> List[Tuple[Tensor, Tensor]]:
    """Blocks of classes for the union second stage (no pair scorer):
    ``matcher(features[block], features[union of their candidates])``.

    Classes are visited along the candidate graph (a class, then its own
    candidates that still wait, best kept together), so that a block holds
    classes whose candidate lists overlap; a class joins the block while the
    candidate pairs stay at least :data:`MIN_UNION_EFFICIENCY` of the
    block's ``rows x union`` pairs (and the block has at most ``max_rows``
    classes).

    Args:
        rows (Tensor): [R] class of every row.
        cands (Tensor): [R, N] candidates of every row.
        num_classes (int): C.
        max_rows (int): Classes per block at most.

    Returns:
        list[tuple[Tensor, Tensor]]: ``(positions in rows [b], union [u])``
        per block, every row in exactly one block.
    """
    num_rows, n = cands.shape
    cand = cands.cpu().numpy()
    pos_of = np.full(num_classes, -1, dtype=np.int64)
    pos_of[rows.cpu().numpy()] = np.arange(num_rows)
    waiting = np.ones(num_rows, dtype=bool)
    in_union = np.zeros(num_classes, dtype=bool)
    # a block stops looking after this many refused classes
    patience = 32
    blocks = []
    for seed in range(num_rows):
        if not waiting[seed]:
            continue
        members, union_size, refused = [seed], n, 0
        waiting[seed] = False
        in_union[:] = False
        in_union[cand[seed]] = True
        frontier = collections.deque([seed])
        while frontier and len(members) < max_rows and refused < patience:
            nxt = pos_of[cand[frontier.popleft()]]
            for r in nxt[nxt >= 0][waiting[nxt[nxt >= 0]]]:
                if len(members) >= max_rows or refused >= patience:
                    break
                if not waiting[r]:
                    continue
                new = int(np.count_nonzero(~in_union[cand[r]]))
                if n < MIN_UNION_EFFICIENCY * (union_size + new):
                    refused += 1
                    continue
                members.append(int(r))
                waiting[r] = False
                in_union[cand[r]] = True
                union_size += new
                frontier.append(int(r))
        blocks.append((torch.tensor(members, dtype=torch.long),
                       torch.from_numpy(np.flatnonzero(in_union))))
    return blocks


def union_pairs(blocks: Sequence[Tuple[Tensor, Tensor]]) -> int:
    """Matcher pairs the union second stage scores for ``blocks``."""
    return sum(int(p.numel()) * int(u.numel()) for p, u in blocks)


#: What one call of the union second stage costs beyond its pairs (call,
#: block set-up, worker threads, gather), in exact-graph pairs. Measured
#: with ``QAConvHead.match`` on 32x6x4 maps, 2 CPU threads
#: (``benchmark_graph.py --rolled``): an exact pair 1.1 us, a union block of
#: 2-3 classes x about 600 candidates 21 ms, i.e. about 17,700 exact pairs
#: beyond its own pairs.
UNION_CALL_PAIRS = 16000


def union_decision(features: Tensor, num_rows: int, num_candidates: int,
                   candidate_fn: Union[str, Matcher, None],
                   blocks: Sequence[Tuple[Tensor, Tensor]]
                   ) -> Tuple[bool, str]:
    """Whether the union second stage (no pair scorer) of these ``blocks``
    is clearly cheaper than the exact graph of the same rows.

    Priced in exact-graph matcher pairs: the first stage's proxy pairs (as
    in :func:`two_stage_cost_ratio`; nothing for a callable proxy), the
    blocks' ``rows x union`` pairs and :data:`UNION_CALL_PAIRS` a call,
    against ``R x C``; the two-stage graph needs a ratio of at most
    ``1 / MIN_TWO_STAGE_SPEEDUP``.

    Returns:
        tuple[bool, str]: True for the two-stage graph; the reason.
    """
    num_classes = features.shape[0]
    exact = float(max(1, num_rows * num_classes))
    proxy = proxy_pair_macs(features.shape[1:], candidate_fn)
    proxy_pairs = 0. if proxy is None else (
        num_rows * num_classes * proxy / matcher_pair_macs(features.shape[1:]))
    pairs = union_pairs(blocks) + UNION_CALL_PAIRS * len(blocks)
    ratio = (proxy_pairs + pairs) / exact
    pred = (f'the union second stage (no pair scorer: {len(blocks)} blocks, '
            f'{union_pairs(blocks) / max(1, num_rows * num_candidates):.2f}x '
            f'the {num_candidates} candidate pairs per class) is predicted to '
            f'cost {ratio:.2f}x the exact graph')
    if ratio * MIN_TWO_STAGE_SPEEDUP > 1:
        return False, (f'{pred}, more than 1/{MIN_TWO_STAGE_SPEEDUP:g} of it')
    return True, pred


def _rescore_candidates(features: Tensor, rows: Tensor, cands: Tensor,
                        matcher: Matcher, pair_matcher: Optional[Callable],
                        block_size: int,
                        blocks: Optional[Sequence[Tuple[Tensor, Tensor]]] = None
                        ) -> Tensor:
    """Second stage: the matcher's scores of each row's own candidates.

    With ``pair_matcher`` (each query against its own gallery list), the
    rows are scored in blocks, one call per block, the gathered candidate
    features of a call taking at most ``PAIR_GATHER_BYTES``. Otherwise
    ``matcher`` scores each of ``blocks`` (:func:`union_blocks`) once,
    the block's classes against the union of their candidates, and the
    candidates' scores are gathered.

    Returns:
        Tensor: float [R, N] scores on the features' device.
    """
    num_classes = features.shape[0]
    num_rows, n = cands.shape
    dev = features.device
    out = torch.empty(num_rows, n, dtype=torch.float32, device=dev)
    if pair_matcher is not None and takes_index(pair_matcher):
        # the scorer gathers each row's candidates itself, block by block
        step = max(1, PAIR_INDEX_ROWS)
        for i in range(0, num_rows, step):
            r = rows[i:i + step].to(dev)
            out[i:i + step] = _check_scores(
                pair_matcher(features[r], features,
                             index=cands[i:i + step].to(dev)), r.numel(), n,
                'pair_matcher')
        return out
    if pair_matcher is not None:
        item = features[0].numel() * features.element_size()
        step = max(1, min(block_size, PAIR_GATHER_BYTES // max(1, n * item)))
        # maps gathered from channels-last copies reach the GEMM unpermuted
        gallery = features.contiguous(memory_format=torch.channels_last) \
            if features.dim() == 4 else features
        for i in range(0, num_rows, step):
            r = rows[i:i + step].to(dev)
            c = cands[i:i + step].to(dev)
            out[i:i + step] = _check_scores(
                pair_matcher(features[r], gallery[c]), r.numel(), n,
                'pair_matcher')
        return out
    if blocks is None:
        blocks = union_blocks(rows, cands, num_classes, block_size)
    col = torch.full((num_classes, ), -1, dtype=torch.long, device=dev)
    for pos, union in blocks:
        # every index on the device of the tensor it indexes (`rows` is on
        # the CPU, `cands` where the proxy ran, `out` on the features')
        block_rows = rows[pos.to(rows.device)].to(dev)
        block_cands = cands[pos.to(cands.device)].to(dev)
        pos, union = pos.to(dev), union.to(dev)
        s = _check_scores(matcher(features[block_rows], features[union]),
                          pos.numel(), union.numel(), 'matcher')
        col[union] = torch.arange(union.numel(), device=dev)
        out[pos] = s.gather(1, col[block_cands])
    return out


def candidates_decision(features: Tensor, num_candidates: Optional[int],
                        candidate_fn: Union[str, Matcher, None]
                        ) -> Tuple[bool, str]:
    """Whether the two-stage graph is predicted clearly cheaper than the
    exact one, and why.

    The exact graph is chosen when ``num_candidates`` is None, above
    :data:`MAX_CANDIDATE_FRACTION` of the classes, or, for a named proxy,
    when the cost model
    (:func:`two_stage_cost_ratio`:
    ``C^2`` proxy pairs plus ``C * N`` re-scored pairs against ``C^2``
    matcher pairs, costs from the feature shape) does not predict the
    two-stage graph at least :data:`MIN_TWO_STAGE_SPEEDUP` times cheaper.
    E.g. the ``'pooled'`` proxy pays off only for ``N`` up to about 18% of C
    on any map size, ``'gap'`` up to about 22% on 8x4 maps but never on
    tiny maps or [C, d] embeddings (its cosine costs as much as the
    matcher's there). A callable proxy's cost cannot be known: the two-stage
    graph is kept (within the fraction), its cost is the user's call.

    Args:
        features (Tensor): [C, ...] features (only the shape is read).
        num_candidates (int, optional): Resolved candidates per class.
        candidate_fn (str | callable, optional): The first-stage proxy.

    Returns:
        tuple[bool, str]: True for the two-stage graph; the reason.
    """
    if num_candidates is None:
        return False, 'no num_candidates'
    num_classes = features.shape[0]
    if num_candidates > MAX_CANDIDATE_FRACTION * num_classes:
        return False, (f'{num_candidates} candidates are more than '
                       f'{MAX_CANDIDATE_FRACTION:g} of the {num_classes} '
                       'classes')
    ratio = two_stage_cost_ratio(features.shape[1:], num_classes,
                                 num_candidates, candidate_fn)
    if ratio is None:
        return True, 'callable proxy (cost unknown)'
    proxy = candidate_fn or 'gap'
    pred = (f'the two-stage graph ({proxy!r} proxy, {num_candidates} '
            f'candidates of {num_classes} classes, features '
            f'{list(features.shape[1:])}) is predicted to cost {ratio:.2f}x '
            'the exact graph')
    if ratio * MIN_TWO_STAGE_SPEEDUP > 1:
        return False, (f'{pred}, more than 1/{MIN_TWO_STAGE_SPEEDUP:g} of it')
    return True, pred

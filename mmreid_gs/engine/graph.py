"""Class graphs for the Graph Sampler: feature maps -> nearest classes.

Pure functions (no Runner): :func:`build_class_graph` scores classes with a
matcher (e.g. ``QAConvHead.match``) and returns, for every class, its most
similar other classes. Two modes:

- exact (``num_candidates=None``): every class against every class, in row
  blocks x column chunks with a running top-k (``C^2`` matcher pairs, memory
  O(C k) beyond one block);
- candidates (``num_candidates=N``): a cheap first stage
  (:mod:`.graph_candidates`) proposes ``N`` candidate classes per class, the
  matcher re-scores only those (``C * N`` matcher pairs, a block of classes
  per call) and the best ``num_neighbors`` are kept, unless the exact
  graph is predicted cheaper (:func:`use_candidates`).
"""
import logging
import math
from typing import Callable, Optional, Sequence, Tuple, Union

import torch
from mmengine.logging import print_log
from torch import Tensor

from .graph_candidates import (CANDIDATE_FUNCTIONS, MIN_TWO_STAGE_SPEEDUP,
                               Matcher, _check_candidate_fn, _check_scores,
                               _resolve_rows, candidate_classes,
                               two_stage_cost_ratio)

__all__ = [
    'build_class_graph', 'class_graph_from_scores', 'compute_class_scores',
    'candidate_classes', 'candidates_decision', 'CANDIDATE_FUNCTIONS'
]


# ---------------------------------------------------------------- helpers
def _check_num_neighbors(num_neighbors: int, num_classes: int) -> int:
    if int(num_neighbors) != num_neighbors or not \
            0 <= num_neighbors < num_classes:
        raise ValueError(
            f'num_neighbors must be an integer in [0, C-1] = [0, '
            f'{num_classes - 1}] (C = {num_classes} classes, self excluded); '
            f'got {num_neighbors}.')
    return int(num_neighbors)


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


def class_graph_from_scores(scores: Tensor,
                            num_neighbors: int,
                            largest: bool = True,
                            rows: Optional[Union[Sequence[int],
                                                 Tensor]] = None) -> Tensor:
    """Nearest classes from a class-by-class score (or distance) matrix.

    The class itself is excluded; NaN counts as the worst value; ties go to
    the smaller class index (stable sort), so the result is deterministic.

    Args:
        scores (Tensor): [R, C] scores of the classes ``rows`` (default: all
            C classes, R = C) against all C classes.
        num_neighbors (int): Neighbours per class, ``0 <= k < C``.
        largest (bool): True when higher means more similar (scores, logits);
            False for distances. Defaults to True.
        rows (Sequence[int] | Tensor, optional): The class of every row of
            ``scores``; None means ``range(C)``. Defaults to None.

    Returns:
        Tensor: LongTensor [R, num_neighbors] on the CPU, best first.
    """
    if not isinstance(scores, Tensor):
        scores = torch.as_tensor(scores)
    if scores.dim() != 2:
        raise ValueError('scores must be a 2-D [R, C] matrix; got shape '
                         f'{list(scores.shape)}.')
    num_classes = scores.shape[1]
    k = _check_num_neighbors(num_neighbors, num_classes)
    if rows is None and scores.shape[0] != num_classes:
        raise ValueError('scores of a subset of classes ([R, C] with R != C)'
                         ' need `rows`; got shape '
                         f'{list(scores.shape)} without rows.')
    rows = _resolve_rows(rows, num_classes) if rows is not None else \
        torch.arange(scores.shape[0])
    if rows.numel() != scores.shape[0]:
        raise ValueError(f'rows has {rows.numel()} entries but scores has '
                         f'{scores.shape[0]} rows.')
    if rows.numel() and int(rows.max()) >= num_classes:
        raise ValueError('scores must have one column per class; row class '
                         f'{int(rows.max())} >= {num_classes} columns.')
    worst = -math.inf if largest else math.inf
    s = torch.nan_to_num(scores.float(), nan=worst).clone()
    s[torch.arange(rows.numel(), device=s.device), rows.to(s.device)] = worst
    order = torch.sort(s, dim=1, descending=largest, stable=True).indices
    # the masked self may tie with other worst values: drop it explicitly
    keep = order != rows.to(order.device)[:, None]
    order = order[keep].view(rows.numel(), num_classes - 1)
    return order[:, :k].cpu()


def compute_class_scores(features: Tensor,
                         matcher: Matcher,
                         rows: Optional[Union[Sequence[int], Tensor]] = None,
                         block_size: int = 256) -> Tensor:
    """Score classes ``rows`` against all classes, in row blocks.

    Args:
        features (Tensor): [C, ...] one feature (map) per class, e.g.
            [C, c, h, w].
        matcher (callable): ``matcher(q [q, ...], g [g, ...]) -> [q, g]``
            similarity logits (higher = more similar).
        rows (Sequence[int] | Tensor, optional): Classes to score; None means
            all. Defaults to None.
        block_size (int): Query rows per matcher call. Defaults to 256.

    Returns:
        Tensor: float [R, C] scores on the features' device.
    """
    num_classes = features.shape[0]
    rows = _resolve_rows(rows, num_classes)
    out = []
    for i in range(0, rows.numel(), max(1, int(block_size))):
        blk = rows[i:i + block_size].to(features.device)
        out.append(
            _check_scores(matcher(features[blk], features), blk.numel(),
                          num_classes, 'matcher'))
    if not out:
        return features.new_empty(0, num_classes, dtype=torch.float)
    return torch.cat(out)


#: Bytes of one [rows, columns] score block of the exact graph: the
#: columns are scored in chunks so that memory stays O(C * k) beyond the
#: features and one block, whatever C (one chunk up to 65,536 classes with
#: the default 256 rows).
SCORE_BLOCK_BYTES = 64 * 2**20
#: Bytes of the gathered candidate features of one batched second-stage call.
PAIR_GATHER_BYTES = 32 * 2**20
#: The two-stage graph is never used with more candidates than this
#: fraction of the classes; beyond, re-scoring them cannot pay off against
#: the exact graph, whose matcher runs at its most efficient block shapes
#: (QAConv on 8x4 maps: the batched re-scoring of each class's own
#: candidates, gathering included, runs at a third to a half of the pairs/s
#: of the exact graph; see docs/benchmarks.md). The only rule for a
#: callable proxy, whose cost cannot be known; the named proxies have to
#: pass the cost model of :func:`use_candidates` too.
MAX_CANDIDATE_FRACTION = 0.25
#: Reasons for computing the exact graph already logged (once each).
_LOGGED_FALLBACKS = set()


def _chunk_topk(s: Tensor, self_col: Tensor, k: int) -> Tuple[Tensor, Tensor]:
    """The ``k`` best columns of every row of a score chunk, the row's own
    class excluded, ties to the smaller column.

    Args:
        s (Tensor): [b, m] float scores (NaN already mapped to -inf), m > k.
        self_col (Tensor): [b] column of each row's own class in the chunk,
            or -1 when it is not in the chunk.
        k (int): Columns to keep.

    Returns:
        tuple[Tensor, Tensor]: values and columns [b, k], best first, equal
        values by increasing column.
    """
    has_self = self_col >= 0
    if bool(has_self.any()):
        r = has_self.nonzero()[:, 0]
        s[r, self_col[r]] = -math.inf
    vals, cols = s.topk(k, dim=1)
    kth = vals[:, -1:]
    # topk is exact unless the k-th value ties with a column outside the
    # selection (which column wins is then unspecified) or is -inf (the
    # own class may have been taken): redo those rows by rule
    bad = ((s >= kth).sum(1) > k) | torch.isneginf(kth[:, 0])
    if bool(bad.any()):
        r = bad.nonzero()[:, 0]
        sb, kb = s[r], kth[r]
        gt = sb > kb
        eq = sb == kb
        own = self_col[r]
        eq[has_self[r].nonzero()[:, 0], own[has_self[r]]] = False
        need = k - gt.sum(1, keepdim=True)
        sel = gt | (eq & (eq.cumsum(1) <= need))
        cb = sel.nonzero()[:, 1].view(r.numel(), k)
        cols[r] = cb
        vals[r] = sb.gather(1, cb)
    # best first, equal values by increasing column
    cols, order = cols.sort(dim=1)
    vals = vals.gather(1, order)
    order = torch.sort(vals, dim=1, descending=True, stable=True).indices
    return vals.gather(1, order), cols.gather(1, order)


def _exact_rows(features: Tensor, matcher: Matcher, rows: Tensor, k: int,
                col_block: int) -> Tensor:
    """Exact neighbours of ``rows``: the matcher on column chunks of at most
    ``col_block`` classes, a running top-k (memory O(len(rows) * k) beyond
    one chunk). Same result as :func:`class_graph_from_scores` on the full
    rows."""
    num_classes = features.shape[0]
    num_rows = rows.numel()
    if k == 0 or num_rows == 0:
        return torch.empty(num_rows, k, dtype=torch.long)
    # chunks of about equal size, each with more than k columns
    n_chunks = max(1, min(math.ceil(num_classes / max(1, col_block)),
                          num_classes // (k + 1)))
    bounds = [num_classes * i // n_chunks for i in range(n_chunks + 1)]
    query = features[rows.to(features.device)]
    best_v = best_i = None
    for lo, hi in zip(bounds, bounds[1:]):
        gallery = features if n_chunks == 1 else features[lo:hi]
        s = _check_scores(matcher(query, gallery), num_rows, hi - lo,
                          'matcher')
        own = rows.to(s.device) - lo
        own = torch.where((own >= 0) & (own < hi - lo), own,
                          torch.full_like(own, -1))
        vals, cols = _chunk_topk(s, own, k)
        cols = cols + lo
        if best_v is None:
            best_v, best_i = vals, cols
        else:
            # earlier chunks hold smaller columns: a stable sort keeps them
            # first among equal values
            vals = torch.cat((best_v, vals), dim=1)
            cols = torch.cat((best_i, cols), dim=1)
            order = torch.sort(vals, dim=1, descending=True,
                               stable=True).indices[:, :k]
            best_v, best_i = vals.gather(1, order), cols.gather(1, order)
        del s
    return best_i.cpu()


def _rescore_candidates(features: Tensor, rows: Tensor, cands: Tensor,
                        matcher: Matcher, pair_matcher: Optional[Callable],
                        block_size: int) -> Tensor:
    """Second stage: the matcher's scores of each row's own candidates.

    With ``pair_matcher`` (each query against its own gallery list), the
    rows are scored in blocks, one call per block, the gathered candidate
    features of a call taking at most ``PAIR_GATHER_BYTES``. Otherwise the
    union of the candidates of a block of rows is scored with ``matcher``
    once and the scores gathered; the block is small enough (``C / (4 N)``
    rows) that the union stays below a quarter of the classes.

    Returns:
        Tensor: float [R, N] scores on the features' device.
    """
    num_classes = features.shape[0]
    num_rows, n = cands.shape
    dev = features.device
    out = torch.empty(num_rows, n, dtype=torch.float32, device=dev)
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
    step = max(1, min(block_size, num_classes // (4 * n)))
    for i in range(0, num_rows, step):
        r = rows[i:i + step].to(dev)
        c = cands[i:i + step].to(dev)
        union, inverse = torch.unique(c, return_inverse=True)
        s = _check_scores(matcher(features[r], features[union]), r.numel(),
                          union.numel(), 'matcher')
        out[i:i + step] = s.gather(1, inverse.view(r.numel(), n))
    return out


def candidates_decision(features: Tensor, num_candidates: Optional[int],
                        candidate_fn: Union[str, Matcher, None]
                        ) -> Tuple[bool, str]:
    """Whether the two-stage graph is predicted clearly cheaper than the
    exact one, and why.

    The exact graph is chosen when ``num_candidates`` is None, above
    :data:`MAX_CANDIDATE_FRACTION` of the classes, or, for a named proxy,
    when the cost model
    (:func:`~mmreid_gs.engine.graph_candidates.two_stage_cost_ratio`:
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


def use_candidates(features: Tensor, num_candidates: Optional[int],
                   candidate_fn: Union[str, Matcher, None]) -> bool:
    """Whether to build the two-stage graph: see
    :func:`candidates_decision`.

    Args:
        features (Tensor): [C, ...] features.
        num_candidates (int, optional): Resolved candidates per class.
        candidate_fn (str | callable, optional): The first-stage proxy.

    Returns:
        bool: True for the two-stage graph.
    """
    return candidates_decision(features, num_candidates, candidate_fn)[0]


def build_class_graph(features: Tensor,
                      matcher: Matcher,
                      num_neighbors: int,
                      num_candidates: Optional[Union[int, float]] = None,
                      block_size: int = 256,
                      candidate_fn: Union[str, Matcher, None] = None,
                      rows: Optional[Union[Sequence[int], Tensor]] = None,
                      return_candidates: bool = False,
                      pair_matcher: Optional[Callable] = None,
                      col_block_size: Optional[int] = None,
                      exact_fallback: bool = True
                      ) -> Union[Tensor, Tuple[Tensor, Tensor]]:
    """Each class's ``num_neighbors`` most similar other classes.

    Exact mode (``num_candidates=None``): ``matcher(features[rows],
    features[columns])`` for blocks of ``block_size`` rows and column
    chunks of ``col_block_size`` classes, the class itself masked, a
    running top-k keeping the ``num_neighbors`` largest similarities (ties
    to the smaller class index). Memory beyond the features: one
    [block_size, col_block_size] score block and O(C * num_neighbors), so a
    cosine matcher on [C, d] embeddings scales to 100,000 classes and more
    on the CPU (``tools/analysis_tools/benchmark_graph.py --cosine``).

    Candidates mode: a cheap proxy (``candidate_fn``) proposes
    ``num_candidates`` classes per class, only those are re-scored and the
    best ``num_neighbors`` are kept: with ``pair_matcher`` (e.g.
    ``QAConvHead.match_pairs``) in batched calls, each class against its own
    candidates; else ``matcher`` on the union of the candidates of a small
    block of classes. The exact graph is computed instead (and the reason
    logged once) unless the two-stage graph is predicted clearly cheaper
    from the feature shape (:func:`candidates_decision`: never with more
    candidates than a quarter of the classes; for the named proxies, the
    predicted cost of ``C^2`` proxy pairs plus ``C * N`` re-scored pairs
    must be at most 1/1.5 of ``C^2`` matcher pairs). The result is then the
    exact graph, bit for bit.

    Args:
        features (Tensor): [C, c, h, w] one feature map per class, or [C, d]
            one embedding per class (any [C, ...] works for the exact mode
            and callable proxies).
        matcher (callable): ``matcher(q [q, ...], g [g, ...]) -> Tensor
            [q, g]`` similarity logits, higher = more similar (e.g.
            ``model.match``). Called under the caller's grad mode; wrap the
            call in ``torch.no_grad()``.
        num_neighbors (int): Neighbours per class, ``0 <= k < C`` (the
            Graph Sampler uses ``P - 1``).
        num_candidates (int | float, optional): None for the exact graph;
            an integer ``N >= num_neighbors`` of candidates per class, or a
            fraction of C in (0, 1). Defaults to None.
        block_size (int): Query rows per matcher/proxy call. Defaults to
            256.
        candidate_fn (str | callable, optional): First-stage proxy:
            ``'gap'`` (default), ``'pooled'`` or a callable ``fn(q, g) ->
            [q, g]``. Only used with ``num_candidates``. Defaults to None.
        rows (Sequence[int] | Tensor, optional): Compute only these classes'
            rows (to share the work between ranks); None means all C.
            Defaults to None.
        return_candidates (bool): Also return the candidates [R, N] (None
            when the exact graph was computed). Defaults to False.
        pair_matcher (callable, optional): ``pair_matcher(q [n, ...],
            g [n, m, ...]) -> [n, m]``, each query against its own gallery
            list, with the scores of ``matcher``. Defaults to None.
        col_block_size (int, optional): Classes per column chunk of the
            exact mode. None: as many as fit ``SCORE_BLOCK_BYTES`` in
            float32 with ``block_size`` rows (all C up to 65,536 classes
            with 256 rows). Defaults to None.
        exact_fallback (bool): Compute the exact graph where the two-stage
            graph is not predicted clearly cheaper. False: always the
            two-stage graph when ``num_candidates`` is given (tests,
            benchmarks). Defaults to True.

    Returns:
        Tensor | tuple: LongTensor [R, num_neighbors] on the CPU (R = C
        unless ``rows``), best first; with ``return_candidates`` a tuple
        (neighbours, candidates or None).
    """
    if not isinstance(features, Tensor) or features.dim() < 2:
        raise ValueError('features must be a Tensor [C, ...] with one '
                         'feature (map) per class; got '
                         f'{getattr(features, "shape", type(features))}.')
    if not callable(matcher):
        raise ValueError('matcher must be callable: matcher(q, g) -> [q, g].')
    if pair_matcher is not None and not callable(pair_matcher):
        raise ValueError('pair_matcher must be None or callable: '
                         'pair_matcher(q [n, ...], g [n, m, ...]) -> [n, m].')
    num_classes = features.shape[0]
    if num_classes < 2:
        raise ValueError('build_class_graph needs at least 2 classes; got '
                         f'{num_classes}.')
    k = _check_num_neighbors(num_neighbors, num_classes)
    rows = _resolve_rows(rows, num_classes)
    block_size = max(1, int(block_size))
    if col_block_size is None:
        col_block_size = SCORE_BLOCK_BYTES // (4 * block_size)
    col_block_size = max(1, int(col_block_size))
    n = None if num_candidates is None else _resolve_num_candidates(
        num_candidates, k, num_classes)
    if n is not None:
        _check_candidate_fn(features, candidate_fn)

    two_stage, why = (n is not None, '') if not exact_fallback else \
        candidates_decision(features, n, candidate_fn)
    if not two_stage:
        if n is not None and why not in _LOGGED_FALLBACKS:
            _LOGGED_FALLBACKS.add(why)
            print_log(
                f'build_class_graph: computing the exact graph although '
                f'num_candidates={num_candidates!r} was given: {why} '
                '(see docs/benchmarks.md, "Class graph").',
                logger='current', level=logging.INFO)
        outs = [
            _exact_rows(features, matcher, rows[i:i + block_size], k,
                        col_block_size)
            for i in range(0, rows.numel(), block_size)
        ]
        nbrs = (torch.cat(outs)
                if outs else torch.empty(0, k, dtype=torch.long))
        return (nbrs, None) if return_candidates else nbrs

    cands = candidate_classes(features, n, candidate_fn, rows, block_size)
    scores = _rescore_candidates(features, rows, cands, matcher,
                                 pair_matcher, block_size)
    # candidates are sorted by class index: ties go to the smaller class
    best = torch.sort(scores, dim=1, descending=True, stable=True).indices
    nbrs = cands.gather(1, best[:, :k].to(cands.device)).cpu()
    return (nbrs, cands.cpu()) if return_candidates else nbrs

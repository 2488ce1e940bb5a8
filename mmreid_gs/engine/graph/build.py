""":func:`build_class_graph`, the one entry point of the class graph: the
exact graph (:mod:`.exact`) or, with ``num_candidates``, the two-stage graph
(:mod:`.candidates`, on :mod:`mmreid_gs.two_stage`) where it is predicted
clearly cheaper."""
import logging
from typing import Callable, Optional, Sequence, Tuple, Union

import torch
from mmengine.logging import print_log
from torch import Tensor

from mmreid_gs.two_stage.second_stage import resolve_pair_matcher
from .candidates import (_check_candidate_fn, _rescore_candidates,
                         _resolve_num_candidates, candidate_classes,
                         candidates_decision, union_blocks, union_decision)
from .exact import (SCORE_BLOCK_BYTES, Matcher, _check_num_neighbors,
                    _exact_rows, _resolve_rows, resolve_groups)

#: Reasons for computing the exact graph already logged (once each).
_LOGGED_FALLBACKS = set()


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
                      exact_fallback: bool = True,
                      groups=None
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

    Groups (``groups``, e.g. the source dataset of every class of a pooled
    multi-source dataset): each class's neighbours are taken from its own
    group only, as if the scores of the other groups' classes were -inf
    before the top-k. Computed group by group: the graph (exact or
    two-stage, with the cost decision made for the group's size) of the
    group's classes alone, mapped back to class indices; so only the
    within-group pairs are scored, and a row's result does not depend on
    which other rows are computed with it (ranks may split the rows).

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
        groups (array-like, optional): int [C] group of every class; each
            group needs at least ``num_neighbors + 1`` classes. None: one
            graph over all classes. Defaults to None.

    Returns:
        Tensor | tuple: LongTensor [R, num_neighbors] on the CPU (R = C
        unless ``rows``), best first; with ``return_candidates`` a tuple
        (neighbours, candidates or None; with ``groups``, None unless every
        group computed the two-stage graph with the same number of
        candidates).
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
    if groups is not None:
        return _grouped_class_graph(
            features, matcher, k, resolve_groups(groups, num_classes, k),
            rows, return_candidates,
            dict(num_candidates=num_candidates, block_size=block_size,
                 candidate_fn=candidate_fn, pair_matcher=pair_matcher,
                 col_block_size=col_block_size,
                 exact_fallback=exact_fallback))
    block_size = max(1, int(block_size))
    if col_block_size is None:
        col_block_size = SCORE_BLOCK_BYTES // (4 * block_size)
    col_block_size = max(1, int(col_block_size))
    n = None if num_candidates is None else _resolve_num_candidates(
        num_candidates, k, num_classes)
    if n is not None:
        _check_candidate_fn(features, candidate_fn)

    pair_matcher = resolve_pair_matcher(matcher, pair_matcher)
    two_stage, why = (n is not None, '') if not exact_fallback else \
        candidates_decision(features, n, candidate_fn)
    cands = blocks = None
    if two_stage:
        cands = candidate_classes(features, n, candidate_fn, rows,
                                  block_size)
        if pair_matcher is None:
            # the union second stage: priced from its real blocks
            blocks = union_blocks(rows, cands, num_classes, block_size)
            if exact_fallback:
                two_stage, why = union_decision(features, rows.numel(), n,
                                                candidate_fn, blocks)
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

    scores = _rescore_candidates(features, rows, cands, matcher,
                                 pair_matcher, block_size, blocks)
    # candidates are sorted by class index: ties go to the smaller class
    best = torch.sort(scores, dim=1, descending=True, stable=True).indices
    nbrs = cands.gather(1, best[:, :k].to(cands.device)).cpu()
    return (nbrs, cands.cpu()) if return_candidates else nbrs


def _grouped_class_graph(features: Tensor, matcher: Matcher, k: int,
                         groups: Tensor, rows: Tensor,
                         return_candidates: bool, options: dict
                         ) -> Union[Tensor, Tuple[Tensor, Optional[Tensor]]]:
    """:func:`build_class_graph` within groups: the graph of each group's
    classes alone (rows of that group only), mapped back to class indices.

    Args:
        features (Tensor): [C, ...] one feature (map) per class.
        matcher (callable): The all-pairs matcher.
        k (int): Neighbours per class.
        groups (Tensor): LongTensor [C], checked by :func:`resolve_groups`.
        rows (Tensor): LongTensor [R] the classes to compute.
        return_candidates (bool): Also return the candidates.
        options (dict): The other arguments of :func:`build_class_graph`.

    Returns:
        Tensor | tuple: as :func:`build_class_graph`.
    """
    nbrs = torch.empty(rows.numel(), k, dtype=torch.long)
    row_groups = groups[rows]
    local = torch.full_like(groups, -1)
    parts = []
    for value in torch.unique(row_groups).tolist():
        members = (groups == value).nonzero()[:, 0]  # increasing: ties
        local[members] = torch.arange(members.numel())  # keep their order
        pos = (row_groups == value).nonzero()[:, 0]
        out, cands = build_class_graph(
            features[members.to(features.device)], matcher, k,
            rows=local[rows[pos]], return_candidates=True, **options)
        nbrs[pos] = members[out]
        parts.append((pos, None if cands is None else members[cands.cpu()]))
    if not return_candidates:
        return nbrs
    widths = {None if c is None else c.shape[1] for _, c in parts}
    if None in widths or len(widths) != 1:
        return nbrs, None
    cands = torch.empty(rows.numel(), widths.pop(), dtype=torch.long)
    for pos, c in parts:
        cands[pos] = c
    return nbrs, cands

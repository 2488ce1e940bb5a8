"""The two-stage class graph: a cheap proxy proposes candidate classes
(``'gap'``: cosine of pooled maps, ``'pooled'``: QAConv on 2x2-pooled maps,
or a callable), the matcher re-scores only those, and a cost model from the
feature shape decides whether that is cheaper than the exact graph.

The two stages themselves (proxies, top-N candidates, exact scores of the
candidates, union grouping, per-pair costs) are those of
:mod:`mmreid_gs.two_stage`, shared with the shortlisted test; this module
holds what is the class graph's own: classes as their own candidates' rows
(self excluded, candidates by class index), its budgets, and the decision
between the two-stage and the exact graph."""
import math
from typing import Callable, List, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor

from mmreid_gs.two_stage.cost import (MIN_TWO_STAGE_SPEEDUP,
                                      matcher_pair_macs, proxy_pair_macs,
                                      two_stage_cost_ratio)
from mmreid_gs.two_stage.proxy import PROXIES, proxy_candidates
from mmreid_gs.two_stage.second_stage import (score_candidates, union_groups,
                                              union_pairs)
from mmreid_gs.utils.contract import takes_index
from .exact import Matcher, _check_scores, _resolve_rows

# names of the shared home that callers still import from here
from mmreid_gs.two_stage.cost import (  # noqa: E402,F401
    PAIR_OVERHEAD_MACS, POOLED_MAC_PENALTY, SECOND_STAGE_PENALTY)
from mmreid_gs.two_stage.proxy import pooled_blocks as _pooled_blocks  # noqa
from mmreid_gs.two_stage.proxy import \
    pooled_proxy_features as _pooled_prepare  # noqa: E402,F401
from mmreid_gs.two_stage.proxy import \
    pooled_proxy_scores as _pooled_score  # noqa: E402,F401
from mmreid_gs.two_stage.second_stage import \
    resolve_pair_matcher  # noqa: E402,F401

#: The class graph's first-stage proxies: :data:`mmreid_gs.two_stage.PROXIES`
#: (name -> (prepare(features), score(q, g))).
CANDIDATE_FUNCTIONS = PROXIES


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
    _check_candidate_fn(features, candidate_fn)
    if callable(candidate_fn):
        prepared, score = features, candidate_fn
    else:
        prepare, score = CANDIDATE_FUNCTIONS[candidate_fn or 'gap']
        prepared = prepare(features)
    return proxy_candidates(
        prepared, prepared, num_candidates, score, block_size, rows,
        exclude_self=True, by_index=True,
        check=lambda s, nq, ng: _check_scores(s, nq, ng, 'candidate_fn'))


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


#: Rows per call of a pair scorer that takes ``index`` (its memory is the
#: [rows, N] scores and one cache-sized gathered block per worker).
PAIR_INDEX_ROWS = 4096


def union_blocks(rows: Tensor, cands: Tensor, num_classes: int,
                 max_rows: int) -> List[Tuple[Tensor, Tensor]]:
    """Blocks of classes for the union second stage (no pair scorer):
    ``matcher(features[block], features[union of their candidates])``.

    :func:`~mmreid_gs.two_stage.union_groups` walking the candidate graph
    (every row is a class, so a block holds classes whose candidate lists
    overlap), at most ``max_rows`` classes a block.

    Args:
        rows (Tensor): [R] class of every row.
        cands (Tensor): [R, N] candidates of every row.
        num_classes (int): C.
        max_rows (int): Classes per block at most.

    Returns:
        list[tuple[Tensor, Tensor]]: ``(positions in rows [b], union [u])``
        per block, every row in exactly one block.
    """
    return union_groups(cands, num_classes, max_rows=max_rows,
                        row_items=rows)


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
    if pair_matcher is not None and not takes_index(pair_matcher) and \
            features.dim() == 4:
        # maps gathered from channels-last copies reach the GEMM unpermuted
        gallery = features.contiguous(memory_format=torch.channels_last)
    else:
        gallery = features
    if blocks is None and pair_matcher is None:
        blocks = union_blocks(rows, cands, features.shape[0], block_size)
    scores = score_candidates(features, gallery, cands, matcher, pair_matcher,
                              query_rows=rows, groups=blocks,
                              gather_bytes=PAIR_GATHER_BYTES,
                              index_rows=PAIR_INDEX_ROWS,
                              max_gather_rows=block_size)
    return torch.nan_to_num(scores, nan=-math.inf)


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

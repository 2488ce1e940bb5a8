"""The cost model of two-stage matching: predicted multiply-adds of a
matcher pair and of a proxy pair from the feature shape, and the cost of
the two stages against scoring every pair exactly."""
import math
from typing import Callable, Optional, Sequence, Union

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
#: The two stages are used only when predicted at least this many times
#: cheaper than scoring every pair exactly.
MIN_TWO_STAGE_SPEEDUP = 1.5


def matcher_pair_macs(item_shape: Sequence[int]) -> float:
    """Predicted cost of one matcher pair, in multiply-adds.

    Feature maps ``[c, h, w]`` (any ``[c, *locations]``) are scored like
    QAConv, every query location against every gallery location
    (``c * (h w)^2``); embeddings ``[d]`` like a cosine (``d``). Plus
    :data:`PAIR_OVERHEAD_MACS`.

    Args:
        item_shape (Sequence[int]): Shape of one item's feature,
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
                    proxy: Union[str, Callable, None]) -> Optional[float]:
    """Predicted cost of one first-stage pair, in multiply-adds.

    ``'gap'`` (or None): a cosine of ``c`` channels; ``'pooled'``: QAConv
    on 2x2-pooled maps (``c * (ceil(h/2) ceil(w/2))^2``) times
    :data:`POOLED_MAC_PENALTY`; both plus :data:`PAIR_OVERHEAD_MACS`.

    Args:
        item_shape (Sequence[int]): ``features.shape[1:]``.
        proxy (str | callable | None): The proxy.

    Returns:
        float | None: Multiply-add equivalents per pair; None for a callable
        proxy, whose cost cannot be known.
    """
    if proxy is not None and not isinstance(proxy, str):
        return None
    item_shape = [int(v) for v in item_shape]
    channels = item_shape[0] if item_shape else 1
    if proxy == 'pooled':
        locs = math.prod(math.ceil(v / 2) for v in item_shape[1:])
        macs = POOLED_MAC_PENALTY * channels * locs * locs
    else:
        macs = channels
    return float(macs + PAIR_OVERHEAD_MACS)


def two_stage_cost_ratio(item_shape: Sequence[int], num_classes: int,
                         num_candidates: int,
                         candidate_fn: Union[str, Callable, None]
                         ) -> Optional[float]:
    """Predicted cost of the two stages over that of scoring every pair.

    Exact: ``R x G`` matcher pairs (the class graph: ``C^2``). Two stages:
    as many proxy pairs plus ``R x N`` re-scored pairs at
    :data:`SECOND_STAGE_PENALTY` matcher pairs each (per row, so the same
    ratio for any number of rows)::

        ratio = proxy / matcher + SECOND_STAGE_PENALTY * N / G

    Args:
        item_shape (Sequence[int]): ``features.shape[1:]``.
        num_classes (int): G, the items each row could be scored against
            (C for the class graph).
        num_candidates (int): N, candidates per row.
        candidate_fn (str | callable | None): The proxy.

    Returns:
        float | None: The ratio (< 1: the two stages are predicted
        cheaper); None for a callable proxy.
    """
    proxy = proxy_pair_macs(item_shape, candidate_fn)
    if proxy is None:
        return None
    return (proxy / matcher_pair_macs(item_shape) +
            SECOND_STAGE_PENALTY * num_candidates / max(1, num_classes))

"""Shortlisted evaluation: a cheap global proxy ranks the gallery of every
query, the exact pairwise matcher scores only the proxy's ``N`` best.

A pairwise matcher (QAConv, TransMatcher: any model whose ``match``
compares feature maps location by location) costs ``c (hw)^2``
multiply-adds a pair; at MSMT17 size (11,659 queries x 82,161 gallery maps
of 64x24x8, 958 M pairs) that is hours on a CPU (about 4.6 h on 2 cores at
the rate of docs/benchmarks.md). Shortlisting keeps it usable:

The two stages are those of :mod:`mmreid_gs.two_stage` (shared with the
two-stage class graph); this module holds the shortlist's own steps:

1. **Proxy** (:func:`proxy_features`): every map is average-pooled over its
   locations and L2-normalised, ``[n, c, h, w] -> [n, c]``; the proxy
   similarity of a pair is the cosine of the pooled vectors (one GEMM,
   ``c`` multiply-adds a pair), computed in blocks of query rows, each
   followed by a ``topk`` (:func:`shortlist_indices`): memory is one
   ``[rows, g]`` block.
   With ``refine=M`` (> N) the proxy proposes ``M`` items per query and a
   second, finer proxy keeps the ``N`` best of them
   (:func:`~mmreid_gs.two_stage.refine_candidates`: unweighted QAConv max
   matching of 2x2-pooled maps, ``c L^2`` multiply-adds a pair with L the
   pooled locations, 16x fewer than QAConv): a cascade that keeps more of
   the exact top-k for the same N (docs/benchmarks.md, "Shortlist proxies").
2. **Exact scores of the shortlist** (:func:`score_shortlist`): with a pair
   scorer (``model.match_pairs``: each query against its own gathered
   gallery list) in batched calls; otherwise ``matcher`` (``model.match``)
   scores groups of queries against the union of their shortlists
   (:func:`union_groups`) and each query's columns are picked. Never a
   ``q x g x hw x hw`` tensor: the gathered maps of one call take at most
   :data:`GATHER_BYTES`.
3. **Combined scores** (:func:`combine_scores`): row ``i`` holds the exact
   scores at its shortlisted columns; every other column gets a pseudo-score
   ``low_i - d_i * (2 - p_ij)`` with ``low_i`` the row's lowest exact score,
   ``d_i = max(1, |low_i|)`` and ``p_ij`` the proxy cosine: strictly below
   every shortlisted score of the row, ordered by the proxy (resolution about
   ``5e-7`` in cosine units, whatever the scores' magnitude). The distance
   ``-scores`` therefore ranks the shortlist first, by the exact matcher,
   then the rest of the gallery by the proxy. With ``refine`` a middle tier
   (:func:`combine_cascade`): the rest of the M cascade candidates by their
   pooled scores, below the shortlist and above the rest.

``N >= g`` scores every pair with ``matcher`` (:func:`shortlisted_scores`);
:class:`~mmreid_gs.engine.runners.ReIDTestLoop` then takes its exact path
itself, so the metrics equal those of the exact evaluation to the last
digit. Features that are global vectors ``[n, d]`` (a global-embedding
model) gain nothing: the proxy would cost as much as the matcher; the loop
logs that and evaluates exactly.

:func:`shortlist_recall` measures the shortlist against the exact scores:
the share of each query's true top-k (by the exact matcher) that survive.

Ties: the proxy's ``topk`` keeps an arbitrary one of several gallery items
tied at the N-th proxy value; everything else is deterministic.
"""
import math
from typing import Callable, Optional, Tuple

import numpy as np
import torch
from torch import Tensor

# proxy_features, proxy_similarity and union_groups are also imported from
# here by callers
from mmreid_gs.two_stage.proxy import (pooled_proxy_features,  # noqa: F401
                                       proxy_candidates, proxy_features,
                                       proxy_similarity, refine_candidates,
                                       top_candidates)
from mmreid_gs.two_stage.second_stage import (  # noqa: F401
    GATHER_BYTES, Matcher, check_block, score_candidates, union_groups)
from mmreid_gs.utils.arrays import stable_topk, to_numpy
from mmreid_gs.utils.errors import ConfigError

#: Bytes of one ``[rows, g]`` float32 block of proxy similarities.
PROXY_BLOCK_BYTES = 64 * 2**20
#: Bytes of gallery features, and of query features, moved to the device
#: at a time when the features stay in host memory
#: (:func:`score_shortlist_blocks`): the gallery is moved once, in blocks,
#: and every block of queries once per gallery block.
DEVICE_GALLERY_BYTES = 4 * 2**30
DEVICE_QUERY_BYTES = 512 * 2**20


def _optional_count(value, name: str, none_means: str,
                    count_means: str) -> Optional[int]:
    """``value`` as None or a positive int; else a ConfigError naming
    ``name``, what None and a count mean, and the value."""
    if value is None:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(
            value, (int, np.integer)) or value < 1:
        raise ConfigError(f'{name} must be None ({none_means}) or a positive '
                          f'integer ({count_means}), got {value!r}')
    return int(value)


def check_shortlist(value, name: str = 'test_cfg.shortlist') -> Optional[int]:
    """The shortlist size of a config, checked.

    Args:
        value: ``None`` (exact evaluation) or a positive int.
        name (str): The config key, for the message.

    Returns:
        int | None: The value.

    Raises:
        ConfigError: naming ``name`` and the value, for anything else.
    """
    return _optional_count(
        value, name, 'exact evaluation',
        'the gallery items per query that the exact matcher scores')


def proxy_block_rows(num_gallery: int) -> int:
    """Query rows of one ``[rows, g]`` block of proxy similarities
    (:data:`PROXY_BLOCK_BYTES`, at most 1024)."""
    return max(1, min(1024, PROXY_BLOCK_BYTES // (4 * max(1, num_gallery))))


def _check_num(num: int, num_gallery: int) -> int:
    num = check_shortlist(num, 'num')
    if num is None:
        raise ValueError('num must be a positive integer, got None')
    return min(num, num_gallery)


def shortlist_indices(query_proxy: Tensor,
                      gallery_proxy: Tensor,
                      num: int,
                      block_rows: Optional[int] = None) -> Tensor:
    """Every query's ``num`` best gallery items by the proxy.

    Args:
        query_proxy (Tensor): [q, d] from :func:`proxy_features`.
        gallery_proxy (Tensor): [g, d] from :func:`proxy_features`.
        num (int): Shortlist size N (clipped to g).
        block_rows (int, optional): Query rows per proxy GEMM. Defaults to
            a :data:`PROXY_BLOCK_BYTES` block.

    Returns:
        Tensor: LongTensor [q, min(N, g)], each row by decreasing proxy
        similarity, on the proxies' device.
    """
    num = _check_num(num, gallery_proxy.shape[0])
    return proxy_candidates(
        query_proxy, gallery_proxy, num,
        block_rows=int(block_rows or
                       proxy_block_rows(gallery_proxy.shape[0])))


def score_shortlist(query: Tensor,
                    gallery: Tensor,
                    shortlist: Tensor,
                    matcher: Matcher,
                    pair_matcher: Optional[Callable] = None,
                    gather_bytes: int = GATHER_BYTES) -> Tensor:
    """Exact scores of every query's shortlisted gallery items:
    :func:`mmreid_gs.two_stage.score_candidates` with the shortlist's
    budget (``model.match_pairs`` in its index form, on gathered lists,
    or ``model.match`` on unions of shortlists).

    Args:
        query (Tensor): [b, ...] query features.
        gallery (Tensor): [g, ...] gallery features (same device).
        shortlist (Tensor): [b, N] gallery indices of each query.
        matcher (callable): ``model.match``.
        pair_matcher (callable, optional): ``model.match_pairs``.
        gather_bytes (int): Bytes of the gallery features gathered for one
            call (at least one query's list).

    Returns:
        Tensor: [b, N] float32 scores, ``out[i, j]`` the score of
        ``(query[i], gallery[shortlist[i, j]])``.
    """
    return score_candidates(query, gallery, shortlist, matcher, pair_matcher,
                            gather_bytes=gather_bytes)


def score_shortlist_blocks(query: Tensor,
                           gallery: Tensor,
                           shortlist: Tensor,
                           matcher: Matcher,
                           pair_matcher: Optional[Callable] = None,
                           device: Optional[torch.device] = None,
                           gather_bytes: int = GATHER_BYTES) -> Tensor:
    """:func:`score_shortlist` for features kept in host memory, scored on
    ``device`` (a GPU) that need not hold them.

    The gallery is moved to the device once, in blocks of
    :data:`DEVICE_GALLERY_BYTES`; for each block, every block of queries
    (:data:`DEVICE_QUERY_BYTES`) is moved and scored, by
    :func:`score_shortlist`, against its shortlisted items inside the
    gallery block (each query's items of the block first, padded to the
    block's widest row with the block's first item, whose scores are
    dropped). The same pairs as :func:`score_shortlist` with everything on
    the device, without moving every query's N gathered items (N times the
    query set) to the device.

    Args:
        query (Tensor): [b, ...] query features (any device).
        gallery (Tensor): [g, ...] gallery features (any device).
        shortlist (Tensor): [b, N] gallery indices of each query.
        matcher (callable): ``model.match``.
        pair_matcher (callable, optional): ``model.match_pairs``.
        device (torch.device, optional): Where to score; defaults to the
            queries' device.
        gather_bytes (int): As :func:`score_shortlist`.

    Returns:
        Tensor: [b, N] float32 scores on ``device``.
    """
    dev = torch.device(device) if device is not None else query.device
    num_rows, n = shortlist.shape
    lists = shortlist.to(dev)
    out = torch.zeros(num_rows, n, dtype=torch.float32, device=dev)
    if num_rows == 0 or n == 0:
        return out
    g_item = max(1, gallery[:1].numel() * gallery.element_size())
    q_item = max(1, query[:1].numel() * query.element_size())
    g_step = max(1, DEVICE_GALLERY_BYTES // g_item)
    q_step = max(1, DEVICE_QUERY_BYTES // q_item)
    for j in range(0, gallery.shape[0], g_step):
        block = gallery[j:j + g_step].to(dev, non_blocking=True)
        inside = (lists >= j) & (lists < j + block.shape[0])
        for i in range(0, num_rows, q_step):
            mask = inside[i:i + q_step]
            width = int(mask.sum(1).max())
            if width == 0:
                continue
            # each row's entries in this block first (stable: in list order)
            order = torch.sort(mask.to(torch.int8), dim=1, descending=True,
                               stable=True).indices[:, :width]
            valid = mask.gather(1, order)
            local = torch.where(valid, lists[i:i + q_step].gather(1, order)
                                - j, torch.zeros_like(order))
            scores = score_shortlist(query[i:i + q_step].to(dev), block,
                                     local, matcher, pair_matcher,
                                     gather_bytes)
            rows = out[i:i + q_step]
            rows.scatter_(1, order, torch.where(valid, scores,
                                                rows.gather(1, order)))
        del block
    return out


def block_proxy_features(feats: Tensor, device: torch.device) -> Tensor:
    """:func:`proxy_features` of features in host memory, computed on
    ``device`` from blocks of :data:`DEVICE_GALLERY_BYTES`.

    Args:
        feats (Tensor): [n, c, ...] features (any device).
        device (torch.device): Where to compute and return the proxy.

    Returns:
        Tensor: [n, c] float32 unit vectors on ``device``.
    """
    return _blockwise(proxy_features, feats, device)


def _blockwise(prepare: Callable[[Tensor], Tensor], feats: Tensor,
               device: torch.device) -> Tensor:
    """``prepare`` of host-memory features on ``device``, from blocks of
    :data:`DEVICE_GALLERY_BYTES`."""
    item = max(1, feats[:1].numel() * feats.element_size())
    step = max(1, DEVICE_GALLERY_BYTES // item)
    if feats.shape[0] <= step:
        return prepare(feats.to(device))
    return torch.cat([
        prepare(feats[j:j + step].to(device))
        for j in range(0, feats.shape[0], step)
    ])


def block_pooled_features(feats: Tensor, device: torch.device) -> Tensor:
    """:func:`~mmreid_gs.two_stage.pooled_proxy_features` of features in
    host memory, computed on ``device`` from blocks (as
    :func:`block_proxy_features`).

    Returns:
        Tensor: [n, c, L] float32 pooled, per-location unit maps on
        ``device``.
    """
    return _blockwise(pooled_proxy_features, feats, device)


def combine_scores(proxy_sim: Tensor, shortlist: Tensor,
                   exact: Tensor) -> Tensor:
    """Shortlisted exact scores, and the proxy's order below them.

    Row ``i`` of the result holds ``exact[i]`` at the columns
    ``shortlist[i]`` and ``low_i - d_i * (2 - p_ij)`` elsewhere, with
    ``low_i = min(exact[i])``, ``d_i = max(1, |low_i|)`` and ``p_ij`` the
    proxy cosine clipped to [-1, 1]: every other column ranks after every
    shortlisted one of its row, in proxy order.

    Args:
        proxy_sim (Tensor): [b, g] proxy cosines; overwritten with the
            result (no second [b, g] block).
        shortlist (Tensor): [b, N] gallery indices.
        exact (Tensor): [b, N] exact scores of those pairs.

    Returns:
        Tensor: ``proxy_sim``, now [b, g] float32 combined scores.
    """
    if shortlist.shape != exact.shape or shortlist.shape[0] != \
            proxy_sim.shape[0]:
        raise ValueError(
            f'combine_scores: shortlist {tuple(shortlist.shape)}, exact '
            f'{tuple(exact.shape)} and proxy {tuple(proxy_sim.shape)} do not '
            'agree')
    if proxy_sim.shape[0] == 0 or shortlist.shape[1] == 0:
        return proxy_sim
    exact = exact.to(device=proxy_sim.device, dtype=proxy_sim.dtype)
    low = exact.min(dim=1, keepdim=True).values
    scale = low.abs().clamp_min(1.)
    proxy_sim.clamp_(-1., 1.).neg_().add_(2.).mul_(scale).neg_().add_(low)
    proxy_sim.scatter_(1, shortlist.to(proxy_sim.device), exact)
    return proxy_sim


def check_refine(value, num: Optional[int] = None,
                 name: str = 'test_cfg.shortlist_refine') -> Optional[int]:
    """The cascade's first-proxy list size M of a config, checked.

    Args:
        value: ``None`` (no second proxy) or an int > ``num``.
        num (int, optional): The shortlist size N it refines.
        name (str): The config key, for the message.

    Returns:
        int | None: The value.

    Raises:
        ConfigError: naming ``name`` and the value, for anything else.
    """
    value = _optional_count(
        value, name, 'the shortlist straight from the pooled cosine',
        'M > the shortlist N: the items per query that the cosine proposes '
        'and 2x2-pooled QAConv narrows to N')
    if value is not None and num is not None and value <= num:
        raise ConfigError(
            f'{name}={value} must be larger than the shortlist N={num}: it '
            'is the number of cosine candidates the pooled matcher narrows '
            'to N (e.g. 4-8 x N)')
    return value


def _lists(q: Tensor, sim: Tensor, num: int, refine: Optional[int],
           gallery_pooled: Optional[Tensor]
           ) -> Tuple[Tensor, Optional[Tuple[Tensor, Tensor]]]:
    """A block's shortlists: the proxy's ``num`` best (and None), or (with
    ``refine`` > ``num``, as :func:`shortlisted_scores` ensures) its
    ``refine`` best narrowed to ``num`` by the pooled proxy (and those
    ``refine`` items with their pooled scores)."""
    if refine is None:
        return top_candidates(sim, num), None
    wide = top_candidates(sim, min(refine, sim.shape[1]))
    idx, pooled = refine_candidates(pooled_proxy_features(q), gallery_pooled,
                                    wide, num, return_scores=True)
    return idx, (wide, pooled)


def combine_cascade(proxy_sim: Tensor, shortlist: Tensor, exact: Tensor,
                    wide: Optional[Tuple[Tensor, Tensor]] = None) -> Tensor:
    """:func:`combine_scores` with a cascade's middle tier: every row ranks
    its shortlist by the exact scores, then the rest of its ``M`` cascade
    candidates by their pooled scores, then the rest of the gallery by the
    proxy cosine.

    Args:
        proxy_sim (Tensor): [b, g] proxy cosines; overwritten.
        shortlist (Tensor): [b, N] gallery indices.
        exact (Tensor): [b, N] exact scores of those pairs.
        wide (tuple[Tensor, Tensor], optional): ``(lists [b, M], pooled
            [b, M])`` of the cascade; None: :func:`combine_scores`.

    Returns:
        Tensor: ``proxy_sim``, now [b, g] float32 combined scores.
    """
    if wide is None:
        return combine_scores(proxy_sim, shortlist, exact)
    lists, pooled = wide
    # pooled scores at the M candidates, the cosines' order below them
    out = combine_scores(proxy_sim, lists, pooled)
    if out.shape[0] == 0 or shortlist.shape[1] == 0:
        return out
    exact = exact.to(device=out.device, dtype=out.dtype)
    low = exact.min(dim=1, keepdim=True).values
    # a per-row shift (order kept) puts every entry below the row's lowest
    # exact score by at least max(1, |low|)
    shift = out.max(dim=1, keepdim=True).values - low + \
        low.abs().clamp_min(1.)
    out.sub_(shift)
    out.scatter_(1, shortlist.to(out.device), exact)
    return out


def shortlisted_scores(query: Tensor,
                       gallery: Tensor,
                       num: int,
                       matcher: Matcher,
                       pair_matcher: Optional[Callable] = None,
                       gallery_proxy: Optional[Tensor] = None,
                       block_rows: Optional[int] = None,
                       out: Optional[Tensor] = None,
                       device: Optional[torch.device] = None,
                       refine: Optional[int] = None,
                       gallery_pooled: Optional[Tensor] = None
                       ) -> Tuple[Tensor, Tensor]:
    """Shortlisted scores of every query x gallery pair (module docstring).

    Queries are processed in blocks of ``block_rows``: the proxy cosines of
    the block ``[b, g]``, its ``topk`` (the shortlist), the exact scores of
    the shortlist (:func:`score_shortlist`), then the combined rows
    (:func:`combine_scores`, in place of the proxy block).

    Args:
        query (Tensor): [q, ...] query features.
        gallery (Tensor): [g, ...] gallery features.
        num (int): Shortlist size N. ``N >= g`` scores every pair with
            ``matcher`` (the shortlist is then every item).
        matcher (callable): ``model.match``.
        pair_matcher (callable, optional): ``model.match_pairs``.
        gallery_proxy (Tensor, optional): [g, d] :func:`proxy_features` of
            the gallery (computed when omitted).
        block_rows (int, optional): Queries per block. Defaults to a
            :data:`PROXY_BLOCK_BYTES` proxy block.
        out (Tensor, optional): [q, g] float32 tensor to write the scores
            into (any device).
        device (torch.device, optional): Where to compute; defaults to the
            queries' device. Features on another device (in host memory,
            the device a GPU) stay there: query blocks are moved for the
            proxy and :func:`score_shortlist_blocks` scores the shortlists
            (the gallery moved once, in blocks); the proxy block of each
            query block is computed twice (before and after the exact
            scores).

    Returns:
        tuple[Tensor, Tensor]: ``(scores, shortlist)``: [q, g] float32
        combined scores (in ``out`` when given, else on the queries'
        device) and the LongTensor [q, min(N, g)] of the shortlisted gallery
        indices, each row by decreasing proxy similarity (by decreasing
        pooled score with ``refine``), on the CPU.
    """
    nq, ng = query.shape[0], gallery.shape[0]
    num = _check_num(num, ng)
    refine = check_refine(refine, None, 'refine')
    if refine is not None and refine <= num:
        refine = None
    dev = torch.device(device) if device is not None else query.device
    if out is None:
        out = torch.empty(nq, ng, dtype=torch.float32, device=dev)
    elif tuple(out.shape) != (nq, ng):
        raise ValueError(f'out has shape {tuple(out.shape)}, expected '
                         f'({nq}, {ng})')
    step = int(block_rows or proxy_block_rows(ng))
    if num >= ng:
        gallery = gallery.to(dev)
        for i in range(0, nq, step):
            q = query[i:i + step].to(dev)
            out[i:i + step] = check_block(matcher(q, gallery), q.shape[0],
                                           ng, 'matcher (match)')
        return out, torch.arange(ng).repeat(nq, 1)
    if gallery_proxy is None:
        gallery_proxy = block_proxy_features(gallery, dev)
    if refine is not None and gallery_pooled is None:
        gallery_pooled = block_pooled_features(gallery, dev)
    if gallery.device != dev or query.device != dev:
        # features in host memory: shortlists, exact scores by gallery
        # blocks, then the combined rows
        lists = torch.empty(nq, num, dtype=torch.long, device=dev)
        tiers = []
        for i in range(0, nq, step):
            qf = query[i:i + step].to(dev)
            lists[i:i + qf.shape[0]], tier = _lists(
                qf, proxy_similarity(proxy_features(qf), gallery_proxy), num,
                refine, gallery_pooled)
            tiers.append(tier)
        exact = score_shortlist_blocks(query, gallery, lists, matcher,
                                       pair_matcher, dev)
        for k, i in enumerate(range(0, nq, step)):
            q = proxy_features(query[i:i + step].to(dev))
            out[i:i + q.shape[0]] = combine_cascade(
                proxy_similarity(q, gallery_proxy), lists[i:i + q.shape[0]],
                exact[i:i + q.shape[0]], tiers[k])
        return out, lists.cpu()
    shortlists = torch.empty(nq, num, dtype=torch.long)
    for i in range(0, nq, step):
        q = query[i:i + step]
        sim = proxy_similarity(proxy_features(q), gallery_proxy)
        idx, tier = _lists(q, sim, num, refine, gallery_pooled)
        exact = score_shortlist(q, gallery, idx, matcher, pair_matcher)
        out[i:i + q.shape[0]] = combine_cascade(sim, idx, exact, tier)
        shortlists[i:i + q.shape[0]] = idx.cpu()
    return out, shortlists


def shortlist_recall(exact_scores,
                     shortlist_idx,
                     k: int,
                     per_query: bool = False):
    """Share of each query's true top-k that the shortlist kept.

    The true top-k of a query are its ``k`` gallery items of highest exact
    score (ties to the smaller gallery index, as :func:`evaluate_rank`
    ranks them); the recall of a query is how many of them are in its
    shortlist, over ``min(k, g)``.

    Args:
        exact_scores (np.ndarray | Tensor): [q, g] exact scores, higher =
            more similar.
        shortlist_idx (np.ndarray | Tensor): [q, N] gallery indices of
            every query's shortlist.
        k (int): The top-k, >= 1.
        per_query (bool): Return every query's recall instead of the mean.
            Defaults to False.

    Returns:
        float | np.ndarray: The mean recall over the queries (``nan``
        without queries), or [q] float64 per-query recalls.
    """
    if isinstance(k, bool) or int(k) != k or k < 1:
        raise ValueError(f'k must be a positive integer, got {k!r}')
    scores = to_numpy(exact_scores, np.float32, 'exact_scores')
    shortlist = to_numpy(shortlist_idx, np.int64, 'shortlist_idx')
    if scores.ndim != 2 or shortlist.ndim != 2 or \
            shortlist.shape[0] != scores.shape[0]:
        raise ValueError(f'exact_scores [q, g] and shortlist_idx [q, N] '
                         f'must have the same rows, got {scores.shape} and '
                         f'{shortlist.shape}')
    nq, ng = scores.shape
    k = min(int(k), ng)
    recall = np.zeros(nq, dtype=np.float64)
    if k == 0 or shortlist.shape[1] == 0:
        return recall if per_query else (0. if nq else math.nan)
    step = max(1, (16 << 20) // max(1, 4 * ng))
    for s in range(0, nq, step):
        e = min(nq, s + step)
        top = stable_topk(-scores[s:e], k)  # [b, k]
        rows = np.arange(e - s, dtype=np.int64)[:, None]
        keys = np.sort((rows * ng + shortlist[s:e]).reshape(-1))
        want = (rows * ng + top).reshape(-1)
        pos = np.minimum(np.searchsorted(keys, want), keys.shape[0] - 1)
        hit = (keys[pos] == want).reshape(e - s, k)
        recall[s:e] = hit.sum(axis=1) / k
    if per_query:
        return recall
    return float(recall.mean()) if nq else math.nan

"""Second stage of two-stage matching: the exact matcher's scores of each
row's own candidates.

With a pair scorer (``model.match_pairs``, each query against its own
gallery list; see :mod:`mmreid_gs.utils.contract`) in batched calls, in its
index form when it has one; otherwise ``matcher`` (``model.match``) scores
groups of rows against the union of their candidate lists
(:func:`union_groups`) and each row's columns are picked. Never a
``q x g x hw x hw`` tensor.
"""
import collections
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor

from mmreid_gs.utils.contract import takes_index

#: ``matcher(q [q, ...], g [g, ...]) -> [q, g]`` similarities.
Matcher = Callable[[Tensor, Tensor], Tensor]

#: A row joins a union group while its candidate pairs stay at least this
#: share of the pairs the group's ``matcher`` call scores (the rest is
#: scored only because another row of the group needs that column).
MIN_UNION_EFFICIENCY = 0.5
#: Rows of a union group at most, by default.
MAX_UNION_ROWS = 64
#: Walking the candidate graph (:func:`union_groups` with ``row_items``),
#: a group stops looking after this many refused rows.
WALK_PATIENCE = 32


def union_groups(lists: Tensor,
                 num_items: int,
                 max_union: Optional[int] = None,
                 max_rows: int = MAX_UNION_ROWS,
                 min_efficiency: float = MIN_UNION_EFFICIENCY,
                 row_items: Optional[Tensor] = None
                 ) -> List[Tuple[Tensor, Tensor]]:
    """Groups of rows to score with one ``matcher`` call each, against the
    union of their candidate lists (the second stage without a pair scorer).

    A group starts at the first row not yet grouped and grows while the
    union stays at most ``N / min_efficiency`` items (at least that share of
    the scored pairs are candidate pairs), at most ``max_union`` items and
    the group at most ``max_rows`` rows. Which rows it tries:

    - without ``row_items`` (queries and gallery are different items: the
      shortlisted test), rows are visited ordered by their first (best)
      candidate, so that rows whose lists overlap come together; the next
      row in that order is tried, and the first refused row starts the
      next group;
    - with ``row_items`` (every row is itself an item: the class graph),
      rows are visited in order, and a group walks the candidate graph (a
      row, then the waiting rows of its own candidates, best kept
      together), skipping refused rows until :data:`WALK_PATIENCE` of them.

    Args:
        lists (Tensor): [R, N] candidate items of each row (distinct within
            a row).
        num_items (int): Items that lists index (g, or C).
        max_union (int, optional): Items of a union at most (at least N).
        max_rows (int): Rows of a group at most.
        min_efficiency (float): See above, in (0, 1].
        row_items (Tensor, optional): [R] the item each row is.

    Returns:
        list[tuple[Tensor, Tensor]]: ``(rows [r], union [u])`` LongTensors
        on the CPU, row positions in ``lists``; every row in exactly one
        group, unions sorted.
    """
    num_rows, n = lists.shape
    if num_rows == 0:
        return []
    cap = int(n / min_efficiency)
    if max_union is not None:
        cap = min(cap, int(max_union))
    cap = max(cap, n)
    cand = lists.cpu().numpy()
    waiting = np.ones(num_rows, dtype=bool)
    if row_items is None:
        order, patience = np.argsort(cand[:, 0], kind='stable'), 1
    else:
        order, patience = np.arange(num_rows), WALK_PATIENCE
        row_of = np.full(num_items, -1, dtype=np.int64)
        row_of[row_items.cpu().numpy()] = np.arange(num_rows)

    def walk(frontier):
        # the waiting rows of each accepted row's candidates, breadth first
        while frontier:
            nxt = row_of[cand[frontier.popleft()]]
            nxt = nxt[nxt >= 0]
            yield from nxt[waiting[nxt]]

    in_union = np.zeros(num_items, dtype=bool)
    groups = []
    for k, seed in enumerate(order):
        if not waiting[seed]:
            continue
        members, size, refused = [int(seed)], n, 0
        waiting[seed] = False
        in_union[cand[seed]] = True
        frontier = collections.deque([int(seed)])
        tried = order[k + 1:] if row_items is None else walk(frontier)
        for r in tried:
            if len(members) >= max_rows or refused >= patience:
                break
            if not waiting[r]:
                continue
            new = int(np.count_nonzero(~in_union[cand[r]]))
            if size + new > cap:
                refused += 1
                continue
            members.append(int(r))
            waiting[r] = False
            in_union[cand[r]] = True
            size += new
            frontier.append(int(r))
        union = np.flatnonzero(in_union)
        in_union[union] = False
        groups.append((torch.tensor(members, dtype=torch.long),
                       torch.from_numpy(union)))
    return groups


def union_pairs(groups: Sequence[Tuple[Tensor, Tensor]]) -> int:
    """Matcher pairs the union second stage scores for ``groups``."""
    return sum(int(p.numel()) * int(u.numel()) for p, u in groups)


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


def check_block(scores: Tensor, rows: int, cols: int, who: str) -> Tensor:
    """``scores`` as float32 when it is a Tensor of shape ``(rows, cols)``;
    else a ValueError naming ``who``."""
    if not isinstance(scores, Tensor) or tuple(scores.shape) != (rows, cols):
        shape = tuple(scores.shape) if isinstance(scores, Tensor) else \
            type(scores).__name__
        raise ValueError(f'{who} returned {shape}, expected scores of shape '
                         f'({rows}, {cols})')
    return scores.float()


#: Bytes of the gallery features gathered for one exact call (a pair
#: scorer's ``[n, N, ...]`` lists, or the union of a group's lists), by
#: default.
GATHER_BYTES = 64 * 2**20


def score_candidates(query: Tensor, gallery: Tensor, lists: Tensor,
                     matcher: Matcher,
                     pair_matcher: Optional[Callable] = None,
                     *,
                     query_rows: Optional[Tensor] = None,
                     groups: Optional[Sequence[Tuple[Tensor, Tensor]]] = None,
                     gather_bytes: int = GATHER_BYTES,
                     index_rows: Optional[int] = None,
                     max_gather_rows: Optional[int] = None) -> Tensor:
    """Exact scores of every row's candidate gallery items.

    Args:
        query (Tensor): [b, ...] query features (with ``query_rows``: the
            features those index).
        gallery (Tensor): [g, ...] gallery features (same device).
        lists (Tensor): [R, N] gallery indices of each row's candidates.
        matcher (callable): ``matcher(q [m, ...], g [k, ...]) -> [m, k]``
            (``model.match``).
        pair_matcher (callable, optional): ``pair_matcher(q [m, ...],
            g [m, N, ...]) -> [m, N]``, each query against its own list
            (``model.match_pairs``); used when given: in its index form
            (:func:`~mmreid_gs.utils.contract.takes_index`) with the
            gallery whole, else on the gathered lists ``gallery[lists]``.
        query_rows (Tensor, optional): [R] row ``i`` is the query
            ``query[query_rows[i]]`` (e.g. classes scored against the other
            classes); None: ``query[i]``.
        groups (Sequence, optional): Groups of :func:`union_groups` for the
            union stage (row positions and unions); None: computed with
            unions of at most ``gather_bytes``.
        gather_bytes (int): Bytes of the gallery features gathered for one
            call (at least one row's list).
        index_rows (int, optional): Rows per call of an index-form pair
            scorer; None: one call.
        max_gather_rows (int, optional): Rows per call of a pair scorer on
            gathered lists at most.

    Returns:
        Tensor: [R, N] float32 scores on the gallery's device, ``out[i, j]``
        the score of (row ``i``'s query, ``gallery[lists[i, j]]``).
    """
    num_rows, n = lists.shape
    dev = gallery.device
    out = torch.empty(num_rows, n, dtype=torch.float32, device=dev)
    if num_rows == 0 or n == 0:
        return out
    lists = lists.to(dev)
    if query_rows is not None:
        query_rows = query_rows.to(dev)

    def queries(sel):
        return query[sel] if query_rows is None else query[query_rows[sel]]

    item = gallery[0].numel() * gallery.element_size()
    if pair_matcher is not None and takes_index(pair_matcher):
        # the scorer gathers the lists itself, block by block
        step = num_rows if index_rows is None else max(1, int(index_rows))
        for i in range(0, num_rows, step):
            q = queries(slice(i, i + step))
            out[i:i + step] = check_block(
                pair_matcher(q, gallery, index=lists[i:i + step]),
                q.shape[0], n, 'pair_matcher (match_pairs)')
        return out
    if pair_matcher is not None:
        step = max(1, int(gather_bytes) // max(1, n * item))
        if max_gather_rows is not None:
            step = max(1, min(int(max_gather_rows), step))
        for i in range(0, num_rows, step):
            idx = lists[i:i + step]
            out[i:i + step] = check_block(
                pair_matcher(queries(slice(i, i + step)), gallery[idx]),
                idx.shape[0], n, 'pair_matcher (match_pairs)')
        return out
    if groups is None:
        groups = union_groups(lists, gallery.shape[0],
                              max(n, int(gather_bytes) // max(1, item)))
    col = torch.full((gallery.shape[0], ), -1, dtype=torch.long, device=dev)
    for rows, union in groups:
        rows, union = rows.to(dev), union.to(dev)
        s = check_block(matcher(queries(rows), gallery[union]), rows.numel(),
                        union.numel(), 'matcher (match)')
        col[union] = torch.arange(union.numel(), device=dev)
        out[rows] = s.gather(1, col[lists[rows]])
    return out

"""The exact class graph: every class scored against every class with the
model's matcher, in row blocks x column chunks with a running top-k (``C^2``
matcher pairs; memory O(C k) beyond one block, the C x C matrix is never
built), and the checks the other graph modules share."""
import math
from typing import Callable, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import Tensor

#: ``matcher(q [q, ...], g [g, ...]) -> [q, g]`` similarities.
Matcher = Callable[[Tensor, Tensor], Tensor]


def _check_scores(scores: Tensor, nq: int, ng: int, who: str) -> Tensor:
    if not isinstance(scores, Tensor) or tuple(scores.shape) != (nq, ng):
        shape = list(scores.shape) if isinstance(scores, Tensor) else type(
            scores).__name__
        raise ValueError(f'{who} must return a Tensor [q, g] = [{nq}, {ng}]; '
                         f'got {shape}.')
    scores = scores.float()
    return torch.nan_to_num(scores, nan=-math.inf)


def _resolve_rows(rows: Optional[Union[Sequence[int], Tensor]],
                  num_classes: int) -> Tensor:
    if rows is None:
        return torch.arange(num_classes)
    rows = torch.as_tensor(rows, dtype=torch.long).reshape(-1).cpu()
    if rows.numel() and (rows.min() < 0 or rows.max() >= num_classes):
        raise ValueError('rows must be class indices in '
                         f'[0, {num_classes - 1}]; got values from '
                         f'{int(rows.min())} to {int(rows.max())}.')
    return rows


def _check_num_neighbors(num_neighbors: int, num_classes: int) -> int:
    if int(num_neighbors) != num_neighbors or not \
            0 <= num_neighbors < num_classes:
        raise ValueError(
            f'num_neighbors must be an integer in [0, C-1] = [0, '
            f'{num_classes - 1}] (C = {num_classes} classes, self excluded); '
            f'got {num_neighbors}.')
    return int(num_neighbors)


def resolve_groups(groups, num_classes: int, num_neighbors: int) -> Tensor:
    """Check a group (e.g. source dataset) id per class.

    Args:
        groups (array-like): int [C] group of every class.
        num_classes (int): C.
        num_neighbors (int): Neighbours per class k; every group needs at
            least ``k + 1`` classes (and 2) so that each class has ``k``
            neighbours within its group.

    Returns:
        Tensor: LongTensor [C] on the CPU.

    Raises:
        ValueError: A shape that is not [C], or a group that is too small
            (named with its size).
    """
    if isinstance(groups, Tensor):
        groups = groups.detach().cpu()
    groups = torch.as_tensor(np.asarray(groups)).reshape(-1)
    if groups.numel() != num_classes or (
            groups.numel() and groups.dtype.is_floating_point):
        raise ValueError(f'groups must be integers, one per class [C] = '
                         f'[{num_classes}]; got {groups.numel()} values of '
                         f'dtype {groups.dtype}.')
    groups = groups.long()
    values, counts = torch.unique(groups, return_counts=True)
    need = max(2, int(num_neighbors) + 1)
    small = (counts < need).nonzero()[:, 0]
    if small.numel():
        g = int(small[0])
        raise ValueError(
            f'groups: group {int(values[g])} has {int(counts[g])} '
            f'class(es); a graph within groups needs at least '
            f'num_neighbors + 1 = {need} classes in every group.')
    return groups


def class_graph_from_scores(scores: Tensor,
                            num_neighbors: int,
                            largest: bool = True,
                            rows: Optional[Union[Sequence[int],
                                                 Tensor]] = None,
                            groups=None) -> Tensor:
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
        groups (array-like, optional): int [C] group of every class (e.g.
            its source dataset): a class's neighbours are then taken from
            its own group only (the other classes are ranked after all of
            its group, whatever their scores); see :func:`resolve_groups`.
            Defaults to None.

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
    if groups is not None:
        grp = resolve_groups(groups, num_classes, k).to(order.device)
        other = grp[order] != grp[rows.to(order.device)][:, None]
        # the row's own group first, in score order (a stable sort)
        first = torch.sort(other.to(torch.int8), dim=1, stable=True).indices
        order = order.gather(1, first)
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

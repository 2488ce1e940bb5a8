"""Distributed helpers shared by the loops, hooks and losses."""
import datetime
from typing import Any, Tuple, Union

import torch
import torch.distributed as torch_dist
from mmengine.dist import all_gather, get_rank, get_world_size

#: Timeout of the CPU (gloo) group in which ranks wait for rank 0's
#: metrics (:func:`broadcast_from_rank0`): a re-ranked or TLift test of a
#: large set takes far longer than NCCL's default 10 minutes.
HOST_GROUP_TIMEOUT = datetime.timedelta(hours=12)
_HOST_GROUPS: dict = {}

#: Bytes of one rank's rows per collective of :func:`all_gather_rows`: a
#: gather goes through the communication device (the GPU under NCCL) in
#: chunks, so that it holds ``world_size`` chunks at a time, never
#: ``world_size`` copies of a whole feature set or score matrix.
GATHER_CHUNK_BYTES = 256 * 2**20


def all_gather_rows(
        rows: torch.Tensor,
        *more: torch.Tensor,
        chunk_bytes: int = GATHER_CHUNK_BYTES
) -> Union[torch.Tensor, Tuple[torch.Tensor, ...]]:
    """The rows of every rank, concatenated in rank order.

    Ranks may hold different numbers of rows (zero too): the counts are
    gathered first (one host synchronisation for all the tensors of a
    call) and every rank's block is padded to the largest for the gather,
    which runs in chunks of at most ``chunk_bytes`` per rank (MMEngine's
    ``all_gather`` moves each chunk to the communication device and the
    result back to the rows' device). A collective: every rank must call it.
    Without a process group (or with one process) the tensors are returned
    as they are, with no synchronisation.

    Args:
        rows (Tensor): This rank's rows, shape [n_r, ...] (same trailing
            shape, dtype and device kind on every rank).
        *more (Tensor): Further tensors with the same number of rows
            [n_r, ...] (e.g. labels of feature rows), gathered alike.
        chunk_bytes (int): Bytes of one rank's rows per collective.
            Defaults to :data:`GATHER_CHUNK_BYTES`.

    Returns:
        Tensor | tuple[Tensor, ...]: [sum of n_r, ...] the rows of rank 0,
        then rank 1, ...; a tuple, one per tensor, when ``more`` is given.
    """
    tensors = (rows, ) + more
    for t in more:
        if t.shape[0] != rows.shape[0]:
            raise ValueError('all_gather_rows: every tensor needs the same '
                             f'number of rows; got {rows.shape[0]} and '
                             f'{t.shape[0]}.')
    if get_world_size() == 1:
        return tensors if more else rows
    count = torch.tensor([rows.shape[0]], dtype=torch.long,
                         device=rows.device)
    counts = [int(c.item()) for c in all_gather(count)]
    out = tuple(_gather_padded(t, counts, chunk_bytes) for t in tensors)
    return out if more else out[0]


def _gather_padded(rows: torch.Tensor, counts, chunk_bytes: int
                   ) -> torch.Tensor:
    """Gather ``rows`` padded to ``max(counts)`` rows, in row chunks."""
    most = max(counts)
    padded = rows.new_zeros((most, ) + tuple(rows.shape[1:]))
    padded[:rows.shape[0]] = rows
    row_bytes = max(1, padded[:1].numel() * padded.element_size())
    step = max(1, int(chunk_bytes) // row_bytes)
    parts = [[] for _ in counts]
    for start in range(0, max(most, 1), step):
        for rank, part in enumerate(all_gather(padded[start:start + step])):
            parts[rank].append(part)
    return torch.cat([
        torch.cat(chunks)[:n] for chunks, n in zip(parts, counts)
    ], dim=0)


def host_group():
    """A gloo process group over all ranks with a long timeout
    (:data:`HOST_GROUP_TIMEOUT`), created once per default group (a
    collective: every rank must call it the first time). None without a
    process group or with one process.

    Returns:
        ProcessGroup | None: The group.
    """
    if get_world_size() == 1:
        return None
    key = id(torch_dist.distributed_c10d._get_default_group())
    if key not in _HOST_GROUPS:
        _HOST_GROUPS.clear()  # groups of an earlier, destroyed default
        _HOST_GROUPS[key] = torch_dist.new_group(
            backend='gloo', timeout=HOST_GROUP_TIMEOUT)
    return _HOST_GROUPS[key]


def broadcast_from_rank0(obj: Any) -> Any:
    """Rank 0's picklable ``obj`` on every rank, sent through host memory.

    The ranks wait in a gloo group with a long timeout
    (:func:`host_group`), never on the GPU under NCCL (whose default
    timeout of 10 minutes a long computation on rank 0 would exceed, and
    whose object broadcast copies the pickled bytes to every GPU). A
    collective: every rank must call it. Without a process group ``obj`` is
    returned as it is.

    Args:
        obj: What rank 0 sends (the other ranks' values are ignored); keep
            it small, e.g. a dict of numbers.

    Returns:
        Rank 0's object.
    """
    if get_world_size() == 1:
        return obj
    box = [obj if get_rank() == 0 else None]
    torch_dist.broadcast_object_list(box, src=0, group=host_group())
    return box[0]

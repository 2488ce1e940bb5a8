"""Distributed helpers shared by the loops, hooks and losses."""
import torch
from mmengine.dist import all_gather, get_world_size


def all_gather_rows(rows: torch.Tensor) -> torch.Tensor:
    """The rows of every rank, concatenated in rank order.

    Ranks may hold different numbers of rows (zero too): the counts are
    gathered first and every rank's block is padded to the largest for the
    gather. A collective: every rank must call it. Without a process group
    (or with one process) ``rows`` is returned as it is.

    Args:
        rows (Tensor): This rank's rows, shape [n_r, ...] (same trailing
            shape, dtype and device kind on every rank).

    Returns:
        Tensor: [sum of n_r, ...] the rows of rank 0, then rank 1, ...
    """
    if get_world_size() == 1:
        return rows
    count = torch.tensor([rows.shape[0]], dtype=torch.long,
                         device=rows.device)
    counts = [int(c.item()) for c in all_gather(count)]
    padded = rows.new_zeros((max(counts), ) + tuple(rows.shape[1:]))
    padded[:rows.shape[0]] = rows
    parts = all_gather(padded)
    return torch.cat([p[:n] for p, n in zip(parts, counts)], dim=0)

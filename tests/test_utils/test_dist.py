"""all_gather_rows: rows of every rank in rank order, any counts."""
import torch
import torch.multiprocessing as mp
from helpers import dist_init_method

from mmreid_gs.utils.dist import all_gather_rows


def test_single_process_returns_the_rows():
    rows = torch.arange(6).reshape(3, 2)
    assert all_gather_rows(rows) is rows


# rows of each rank in two calls: uneven shares, and a rank with none
CALLS = ((1, 3), (2, 0))
WORLD_SIZE = 2


def _rows(counts, rank):
    start = sum(counts[:rank])
    return torch.arange(start, start + counts[rank],
                        dtype=torch.float64)[:, None].repeat(1, 2)


def _worker(rank, init_method, out):
    import torch.distributed as dist

    from mmreid_gs.cli import shutdown_dist
    dist.init_process_group('gloo', init_method=init_method,
                            rank=rank, world_size=WORLD_SIZE)
    try:
        results = [all_gather_rows(_rows(counts, rank)) for counts in CALLS]
        with torch.inference_mode():
            results.append(all_gather_rows(_rows(CALLS[0], rank)))
        out[rank] = [(r.tolist(), str(r.dtype)) for r in results]
    finally:
        shutdown_dist()


def test_ranks_with_different_row_counts(tmp_path):
    with mp.Manager() as manager:
        out = manager.dict()
        mp.spawn(_worker, args=(dist_init_method(tmp_path), out),
                 nprocs=WORLD_SIZE)
        out = dict(out)
    for rank in range(WORLD_SIZE):
        for (rows, dtype), counts in zip(out[rank], CALLS + CALLS[:1]):
            expected = torch.arange(sum(counts), dtype=torch.float64)
            assert rows == expected[:, None].repeat(1, 2).tolist()
            assert dtype == 'torch.float64'

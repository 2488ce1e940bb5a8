"""Helpers shared by the benchmarks in ``tools/analysis_tools/``."""
import time
from typing import Callable

import torch


def timeit(fn: Callable[[], object]) -> float:
    """Wall-clock seconds of one call of ``fn``."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def gemm_gflops(n: int = 1024, repeat: int = 5) -> float:
    """fp32 matrix-multiply throughput of this machine, the reference that
    the benchmarks print their ratios against.

    Args:
        n (int): Side of the square matrices. Defaults to 1024.
        repeat (int): Timed calls; the fastest counts. Defaults to 5.

    Returns:
        float: GFLOP/s of ``torch.mm`` (2 n^3 flops a call).
    """
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)  # warm-up
    best = min(timeit(lambda: torch.mm(a, b)) for _ in range(repeat))
    return 2 * n**3 / best / 1e9

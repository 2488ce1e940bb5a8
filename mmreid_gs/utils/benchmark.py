"""Helpers shared by the benchmarks in ``tools/analysis_tools/``."""
import os
import threading
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


class PeakRSS:
    """Peak resident memory of this process while a ``with`` block runs,
    sampled every 2 ms by a thread (Linux ``/proc/self/statm``).

    Attributes:
        base (int): Bytes resident at entry.
        peak (int): Highest resident bytes above ``base`` seen.
    """

    def __init__(self):
        self.page = os.sysconf('SC_PAGE_SIZE')
        self.base = self.peak = 0

    def _rss(self) -> int:
        with open('/proc/self/statm') as f:
            return int(f.read().split()[1]) * self.page

    def _watch(self):
        while not self._stop.wait(0.002):
            self.peak = max(self.peak, self._rss() - self.base)

    def __enter__(self):
        self.base = self._rss()
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._rss() - self.base)

"""Carry PyTorch's thread-local modes into worker threads.

Grad mode, inference mode and autocast are per-thread state in PyTorch: a
worker thread started by a ``ThreadPoolExecutor`` runs with the defaults
(grad enabled, no inference mode, no autocast), whatever the caller set.
Tensors created by a caller under ``torch.inference_mode()`` are inference
tensors, and updating them in place outside inference mode raises
``RuntimeError: Inplace update to inference tensor outside InferenceMode``.
Code that runs work in its own threads captures the caller's modes with
:func:`capture_thread_state` and enters them in every worker;
:func:`run_in_workers` does both for the CPU kernels that split their blocks
over single-threaded worker threads (:func:`cpu_workers` of them).
"""
import contextlib
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, ContextManager, List, Sequence, Tuple, TypeVar

import torch

_AUTOCAST_DEVICES = ('cpu', 'cuda')


def _autocast_state() -> List[Tuple[str, bool, torch.dtype]]:
    state = []
    for device in _AUTOCAST_DEVICES:
        if device == 'cuda' and not torch.cuda.is_available():
            continue
        enabled = torch.is_autocast_enabled(device)
        state.append((device, enabled, torch.get_autocast_dtype(device)))
    return state


def capture_thread_state() -> Callable[[], ContextManager]:
    """The calling thread's grad mode, inference mode and autocast state.

    Returns:
        callable: A factory of context managers that, entered in another
        thread, reproduce the captured modes there::

            enter_state = capture_thread_state()

            def work():
                with enter_state():
                    ...  # same modes as the caller
    """
    inference = torch.is_inference_mode_enabled()
    grad = torch.is_grad_enabled()
    autocast = _autocast_state()

    @contextlib.contextmanager
    def enter_state():
        with contextlib.ExitStack() as stack:
            if inference:
                stack.enter_context(torch.inference_mode())
            else:
                stack.enter_context(torch.set_grad_enabled(grad))
            for device, enabled, dtype in autocast:
                if enabled:
                    stack.enter_context(
                        torch.autocast(device, dtype=dtype, enabled=True))
            yield

    return enter_state


_OPENMP = None


def cpu_workers(device: torch.device) -> int:
    """Worker threads for blockwise CPU kernels: the intra-op thread count
    when ATen's parallel backend is OpenMP (whose thread count is
    per-thread state, so each worker can run single-threaded), else 1.

    Args:
        device (torch.device): Where the kernel runs (not the CPU: 1).

    Returns:
        int: The number of worker threads.
    """
    global _OPENMP
    if device.type != 'cpu':
        return 1
    threads = torch.get_num_threads()
    if threads <= 1:
        return 1
    if _OPENMP is None:
        info = torch.__config__.parallel_info()
        _OPENMP = 'parallel backend: OpenMP' in info
    return threads if _OPENMP else 1


T = TypeVar('T')


def run_in_workers(run: Callable[[T], None], tasks: Sequence[T]) -> None:
    """Run ``run(task)`` for every task, each in its own worker thread with
    one intra-op thread and the caller's grad / inference / autocast modes
    (a single task runs in the calling thread). Small GEMMs and reductions
    split over busy intra-op threads wait for each other; one
    single-threaded worker per task does not. The caller's thread count is
    restored afterwards.

    Args:
        run (callable): ``run(task) -> None``, e.g. writing into an output
            tensor the caller allocated.
        tasks (Sequence): One item per worker thread.
    """
    tasks = list(tasks)
    enter_state = capture_thread_state()

    def call(task):
        with enter_state():
            run(task)

    if len(tasks) <= 1:
        for task in tasks:
            call(task)
        return
    threads = torch.get_num_threads()
    try:
        with ThreadPoolExecutor(len(tasks), initializer=torch.set_num_threads,
                                initargs=(1, )) as pool:
            for future in [pool.submit(call, task) for task in tasks]:
                future.result()
    finally:
        torch.set_num_threads(threads)

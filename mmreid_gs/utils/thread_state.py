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
from typing import (Callable, ContextManager, List, Sequence, Tuple,
                    TypeVar, Union)

import torch

_AUTOCAST_DEVICES = ('cpu', 'cuda')


def autocast_enabled(device_type: str) -> bool:
    """Whether autocast is on for ``device_type`` in this thread.

    ``torch.is_autocast_enabled(device_type)`` from torch 2.4 on; before,
    ``torch.is_autocast_cpu_enabled()`` for the CPU and
    ``torch.is_autocast_enabled()`` (no argument: CUDA) for CUDA.

    Args:
        device_type (str): ``'cpu'`` or ``'cuda'``.

    Returns:
        bool: The thread's autocast flag for that device type.
    """
    if hasattr(torch, 'get_autocast_dtype'):  # torch >= 2.4
        return bool(torch.is_autocast_enabled(device_type))
    if device_type == 'cpu':
        return bool(torch.is_autocast_cpu_enabled())
    if device_type == 'cuda':
        return bool(torch.is_autocast_enabled())
    raise ValueError(f'autocast_enabled: device type {device_type!r} needs '
                     'torch >= 2.4 (this torch knows cpu and cuda only).')


def autocast_dtype(device_type: str) -> torch.dtype:
    """The autocast dtype of ``device_type`` in this thread.

    ``torch.get_autocast_dtype(device_type)`` from torch 2.4 on; before,
    ``torch.get_autocast_cpu_dtype()`` / ``torch.get_autocast_gpu_dtype()``.

    Args:
        device_type (str): ``'cpu'`` or ``'cuda'``.

    Returns:
        torch.dtype: e.g. ``torch.bfloat16`` (CPU), ``torch.float16``
        (CUDA), whether or not autocast is on.
    """
    if hasattr(torch, 'get_autocast_dtype'):  # torch >= 2.4
        return torch.get_autocast_dtype(device_type)
    if device_type == 'cpu':
        return torch.get_autocast_cpu_dtype()
    if device_type == 'cuda':
        return torch.get_autocast_gpu_dtype()
    raise ValueError(f'autocast_dtype: device type {device_type!r} needs '
                     'torch >= 2.4 (this torch knows cpu and cuda only).')


def _autocast_state() -> List[Tuple[str, bool, torch.dtype]]:
    state = []
    for device in _AUTOCAST_DEVICES:
        if device == 'cuda' and not torch.cuda.is_available():
            continue
        state.append((device, autocast_enabled(device),
                      autocast_dtype(device)))
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


#: Set by :func:`mmreid_gs.testing.accelerator_code_paths` only: CPU
#: tensors then take the block sizes and single-worker paths chosen for an
#: accelerator, so that the CPU test suite runs that code.
_FORCE_ACCELERATOR_PATHS = False


def uses_cpu_paths(device: Union[torch.device, str]) -> bool:
    """Whether the blockwise kernels take their CPU paths on ``device``.

    The CPU paths use cache-sized blocks and single-threaded worker
    threads; every other device (CUDA, ...) large blocks in one thread. The
    choice is the only difference between the paths (the results are the
    same), so the test suite runs the accelerator paths on CPU tensors
    within :func:`mmreid_gs.testing.accelerator_code_paths`.

    Args:
        device (torch.device | str): Where the kernel runs.

    Returns:
        bool: True for the CPU (unless forced), False otherwise.
    """
    return torch.device(device).type == 'cpu' and \
        not _FORCE_ACCELERATOR_PATHS


_OPENMP = None


def cpu_workers(device: torch.device) -> int:
    """Worker threads for blockwise CPU kernels: the intra-op thread count
    when ATen's parallel backend is OpenMP (whose thread count is
    per-thread state, so each worker can run single-threaded), else 1.

    Args:
        device (torch.device): Where the kernel runs (not the CPU, or the
            accelerator paths forced: 1).

    Returns:
        int: The number of worker threads.
    """
    global _OPENMP
    if not uses_cpu_paths(device):
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

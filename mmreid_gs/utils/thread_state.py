"""Carry PyTorch's thread-local modes into worker threads.

Grad mode, inference mode and autocast are per-thread state in PyTorch: a
worker thread started by a ``ThreadPoolExecutor`` runs with the defaults
(grad enabled, no inference mode, no autocast), whatever the caller set.
Tensors created by a caller under ``torch.inference_mode()`` are inference
tensors, and updating them in place outside inference mode raises
``RuntimeError: Inplace update to inference tensor outside InferenceMode``.
Code that runs work in its own threads captures the caller's modes with
:func:`capture_thread_state` and enters them in every worker.
"""
import contextlib
from typing import Callable, ContextManager, List, Tuple

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

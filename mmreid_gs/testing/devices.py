"""Run the package's accelerator code paths on the CPU (for tests).

Where a CUDA branch differs from the CPU one only by its block sizes or by
running in one thread (:func:`mmreid_gs.utils.thread_state.uses_cpu_paths`),
:func:`accelerator_code_paths` makes CPU tensors take it, so that the CPU
suite checks its arithmetic and its results. Tensors on PyTorch's ``meta``
device would not do as a second device (CPU tensors indexed by ``meta``
indices give CPU results): :class:`FakeAccelerator` instead tags CPU tensors
as living on a CUDA device, propagates the tag through every torch call and
raises, as a GPU would, where tagged and untagged tensors meet ("indices
should be either on cpu or on the same device as the indexed tensor", "Expected
all tensors to be on the same device").
"""
import contextlib
from typing import Any, Iterator, Optional

import torch
from torch.overrides import TorchFunctionMode

from mmreid_gs.utils import thread_state


@contextlib.contextmanager
def accelerator_code_paths() -> Iterator[None]:
    """Within the block, CPU tensors take the accelerator paths of the
    blockwise kernels (large blocks, one thread).

    Not thread-safe with respect to other tests running at the same time;
    the flag is process-wide so that worker threads see it too.
    """
    previous = thread_state._FORCE_ACCELERATOR_PATHS
    thread_state._FORCE_ACCELERATOR_PATHS = True
    try:
        yield
    finally:
        thread_state._FORCE_ACCELERATOR_PATHS = previous


_TAG = '_mmreid_fake_accelerator'
#: The device tagged tensors report.
FAKE_DEVICE = torch.device('cuda', 0)
_INDEXING = {'__getitem__', '__setitem__'}
#: Calls that may mix devices on a GPU (copies between devices).
_CROSS_DEVICE = {'copy_', 'to', 'cpu', 'cuda', '__setitem__', 'numpy',
                 'tolist', 'item', '__index__', '__int__', '__float__',
                 '__bool__', '__len__', '__format__', '__repr__',
                 'pin_memory'}


def is_fake(tensor: Any) -> bool:
    """Whether ``tensor`` is tagged as living on the fake accelerator."""
    return isinstance(tensor, torch.Tensor) and getattr(tensor, _TAG, False)


def _tensors(obj) -> Iterator[torch.Tensor]:
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, (list, tuple)):
        for item in obj:
            yield from _tensors(item)
    elif isinstance(obj, dict):
        for item in obj.values():
            yield from _tensors(item)


def _tag(obj, value: bool):
    for t in _tensors(obj):
        setattr(t, _TAG, value)
    return obj


def _device_kind(value) -> Optional[str]:
    """'fake' for a CUDA device, 'cpu' for the CPU, None for no device."""
    if isinstance(value, torch.Tensor):
        return 'fake' if is_fake(value) else 'cpu'
    if isinstance(value, (str, torch.device)):
        try:
            kind = torch.device(value).type
        except (RuntimeError, TypeError):
            return None
        return 'fake' if kind == 'cuda' else 'cpu'
    return None


class FakeAccelerator(TorchFunctionMode):
    """A CUDA device simulated on CPU tensors, to test device placement.

    Within the mode, a tensor moved to ``'cuda'`` (``.to``, ``.cuda()``, a
    factory's ``device=``) stays on the CPU but is tagged; ``.device`` of a
    tagged tensor is ``cuda:0``; results of calls with a tagged input are
    tagged; ``.cpu()`` / ``.to('cpu')`` untag. Calls that a GPU would
    refuse raise a RuntimeError naming the call: a CPU tensor indexed by
    tagged indices, ``.numpy()`` of a tagged tensor, and any other call
    mixing tagged tensors with untagged ones of more than one element
    (0-dim CPU tensors mix with CUDA ones on a GPU too), except the copies
    between devices (``copy_``, ``__setitem__`` values, ``.to``).
    ``torch.cuda.is_available()`` stays False: code must choose by the
    tensors' device, as it should.

    Example::

        with FakeAccelerator():
            feats = feats.to('cuda')      # tagged, still CPU memory
            graph = build_class_graph(feats, matcher, 3, num_candidates=6)
    """

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        name = getattr(func, '__name__', '')
        owner = getattr(func, '__self__', None)
        if name == '__get__' and owner is torch.Tensor.device:
            return FAKE_DEVICE if is_fake(args[0]) else func(*args)
        if name == '__get__' and owner is torch.Tensor.is_cuda:
            return is_fake(args[0])
        if name == '__get__':
            return func(*args, **kwargs)
        target = None  # 'fake' / 'cpu': where the result lives
        if 'device' in kwargs and kwargs['device'] is not None:
            target = _device_kind(kwargs['device'])
            if target == 'fake':
                kwargs['device'] = 'cpu'
        kwargs.pop('pin_memory', None)
        if name == 'to':
            rest = list(args[1:])
            for i, value in enumerate(rest):
                kind = _device_kind(value)
                if kind is not None and not isinstance(value, torch.dtype):
                    target = kind
                    rest[i] = value.dtype if isinstance(
                        value, torch.Tensor) else 'cpu'
            args = (args[0], ) + tuple(rest)
            if target is None:
                target = 'fake' if is_fake(args[0]) else 'cpu'
        elif name == 'cuda':
            return _tag(args[0].clone(), True)
        elif name == 'cpu':
            # a CPU tensor's .cpu() is the tensor itself: copy a tagged one
            return _tag(args[0].clone() if is_fake(args[0]) else args[0],
                        False)
        elif name == 'numpy' and is_fake(args[0]):
            raise RuntimeError(
                "can't convert cuda:0 device type tensor to numpy. Use "
                'Tensor.cpu() to copy the tensor to host memory first. '
                '(FakeAccelerator)')
        tensors = list(_tensors(args)) + list(_tensors(kwargs))
        fake = [t for t in tensors if is_fake(t)]
        if fake and name not in _CROSS_DEVICE | {'to'}:
            self._check_mix(name, args, tensors)
        elif name == '__setitem__':
            index = list(_tensors(args[1:2]))
            if not is_fake(args[0]) and any(is_fake(t) for t in index):
                raise RuntimeError(
                    'indices should be either on cpu or on the same device '
                    f'as the indexed tensor (cpu) (FakeAccelerator: '
                    f'{name})')
        out = func(*args, **kwargs)
        if name in ('to', ) or target is not None:
            if name == 'to' and target == 'fake' and not is_fake(args[0]) \
                    and out is args[0]:
                out = out.clone()  # a move gives a new tensor
            if name == 'to' and target == 'cpu' and is_fake(args[0]) and \
                    out is args[0]:
                out = out.clone()
            return _tag(out, target == 'fake')
        if name in ('numpy', 'tolist', 'item', '__setitem__'):
            return out
        if fake and name != 'copy_':
            _tag(out, True)
        return out

    @staticmethod
    def _check_mix(name: str, args, tensors) -> None:
        if name in _INDEXING:
            base = args[0]
            index = list(_tensors(args[1:]))
            if not is_fake(base) and any(is_fake(t) for t in index):
                raise RuntimeError(
                    'indices should be either on cpu or on the same device '
                    f'as the indexed tensor (cpu) (FakeAccelerator: '
                    f'{name})')
            return  # CPU indices into a CUDA tensor are allowed
        real = [t for t in tensors if not is_fake(t) and t.dim() > 0]
        if real:
            raise RuntimeError(
                'Expected all tensors to be on the same device, but found at '
                f'least two devices, cuda:0 and cpu! (FakeAccelerator: '
                f'{name} with shapes '
                f'{[list(t.shape) for t in tensors]})')

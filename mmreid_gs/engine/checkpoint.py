"""Safe checkpoint loading for MMEngine 0.10 with torch >= 2.6.

Since torch 2.6, ``torch.load`` defaults to ``weights_only=True``, which
refuses every global that is not allow-listed. An MMEngine checkpoint holds,
besides tensors, the message hub's ``HistoryBuffer`` objects (whose
statistics methods are pickled as ``getattr(HistoryBuffer, 'mean')``) and a
few numpy arrays and scalars. This module allow-lists exactly those, keeps
``weights_only=True``, and replaces MMEngine's local-file loader by one whose
errors name the file (missing, truncated or corrupt, or holding a type that is
not allowed).
"""
import os.path as osp
import pickle
import zipfile
from typing import Any

import numpy as np
import torch
from mmengine.logging import HistoryBuffer
from mmengine.runner.checkpoint import CheckpointLoader

_INSTALLED = False


def _history_buffer_getattr(obj: Any, name: str) -> Any:
    """``getattr`` restricted to what an MMEngine checkpoint needs.

    The unpickler resolves ``builtins.getattr`` to this function, so a
    checkpoint can only fetch the statistics methods of ``HistoryBuffer``
    (``mean``, ``min``, ...), never an arbitrary attribute.
    """
    if obj is HistoryBuffer and not name.startswith('_') and callable(
            getattr(HistoryBuffer, name, None)):
        return getattr(HistoryBuffer, name)
    raise pickle.UnpicklingError(
        f'getattr({obj!r}, {name!r}) is not allowed in a checkpoint loaded '
        'with weights_only=True')


def _numpy_globals() -> list:
    core = getattr(np, '_core', None) or np.core
    types = [core.multiarray._reconstruct, core.multiarray.scalar,
             np.ndarray, np.dtype]
    for name in ('float16', 'float32', 'float64', 'int8', 'int16', 'int32',
                 'int64', 'uint8', 'bool_'):
        types.append(type(np.dtype(getattr(np, name))))
    return types


def allow_mmengine_checkpoint_types() -> None:
    """Allow-list the types of an MMEngine checkpoint for weights-only loads.

    Idempotent. ``weights_only`` itself is never turned off.
    """
    global _INSTALLED
    if _INSTALLED:
        return
    add = getattr(torch.serialization, 'add_safe_globals', None)
    if add is not None:  # torch >= 2.4
        add([HistoryBuffer, (_history_buffer_getattr, 'builtins.getattr')] +
            _numpy_globals())
    CheckpointLoader.register_scheme(prefixes='', force=True)(load_from_local)
    _INSTALLED = True


def load_from_local(filename: str, map_location=None) -> Any:
    """Load a local checkpoint with ``weights_only=True`` and clear errors.

    Args:
        filename (str): Path of the checkpoint.
        map_location: As for :func:`torch.load`.

    Returns:
        dict: The checkpoint.

    Raises:
        FileNotFoundError: The file does not exist.
        RuntimeError: The file is truncated, corrupt, not a checkpoint, or
            holds a type outside the allow-list; the message names the file.
    """
    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(
            f'Checkpoint not found: {filename}. Nothing is downloaded at run '
            'time: ImageNet backbone weights (init_cfg) are local files, see '
            'README "Models" (tools/model_converters/ibn_to_mmreid.py).')
    try:
        return torch.load(filename, map_location=map_location,
                          weights_only=True)
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError,
            OSError) as err:
        size = osp.getsize(filename)
        raise RuntimeError(
            f'Cannot read checkpoint {filename} ({size} bytes): the file is '
            f'truncated or corrupt, or not a PyTorch checkpoint ({err}). '
            'Nothing was changed; pass another checkpoint.') from None
    except Exception as err:  # UnpicklingError and friends
        if 'weights_only' in str(err) or 'Unsupported global' in str(err):
            raise RuntimeError(
                f'Checkpoint {filename} holds an object that is not allowed '
                'in a weights-only load (only tensors, containers, numpy '
                f'arrays and MMEngine log buffers are): {err}') from None
        raise RuntimeError(
            f'Cannot read checkpoint {filename}: {err}') from None


def load_weights_file(path: str) -> dict:
    """Read a checkpoint dict for conversion, weights only.

    Used by ``tools/model_converters``: ``torch.load(weights_only=True)``
    with numpy arrays and scalars allowed for this call only (old public
    checkpoints hold a numpy loss value); the process-wide allow-list is
    left as it was.

    Args:
        path (str): The checkpoint file.

    Returns:
        dict: The loaded checkpoint.

    Raises:
        FileNotFoundError: When ``path`` does not exist.
        ValueError: When ``path`` is not a PyTorch checkpoint of a dict or
            holds objects that are not weights; the message names the file.
    """
    if not osp.isfile(path):
        raise FileNotFoundError(f'checkpoint file not found: {path}')
    with open(path, 'rb') as f:
        magic = f.read(1)
    if not zipfile.is_zipfile(path) and magic != b'\x80':
        raise ValueError(f'{path} is not a PyTorch checkpoint (neither the '
                         'zip format of torch.save nor a pickle)')
    # safe_globals() removes its entries on exit: pass only missing ones.
    present = torch.serialization.get_safe_globals()
    extra = [t for t in _numpy_globals() if t not in present]
    try:
        with torch.serialization.safe_globals(extra):
            checkpoint = torch.load(path, map_location='cpu',
                                    weights_only=True)
    except pickle.UnpicklingError as err:
        raise ValueError(
            f'{path} holds objects that are not weights and will not be '
            f'unpickled (torch.load weights_only=True): {err}') from err
    except Exception as err:  # zip/pickle format errors of any kind
        raise ValueError(
            f'{path} is not a PyTorch checkpoint: {type(err).__name__}: '
            f'{err}') from err
    if not isinstance(checkpoint, dict):
        raise ValueError(f'{path} is not a checkpoint dict: it holds a '
                         f'{type(checkpoint).__name__}')
    return checkpoint

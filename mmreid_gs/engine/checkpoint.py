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
import re
import struct
import zipfile
from typing import Any, Optional

import numpy as np
import torch
from mmengine.logging import HistoryBuffer
from mmengine.runner.checkpoint import CheckpointLoader

from mmreid_gs.utils.errors import ReIDUserError, ReIDUserFileError

_INSTALLED = False

#: What ``torch.load`` raises on the bytes of a truncated or corrupt
#: checkpoint (zip or legacy pickle; found by truncating and flipping bytes
#: of real checkpoints): ``RuntimeError`` (PyTorch's zip reader, bad magic
#: number), ``OSError``, ``zipfile.BadZipFile``, ``EOFError``,
#: ``struct.error``, ``ValueError`` (e.g. ``UnicodeDecodeError``) and
#: ``IndexError`` / ``KeyError`` of the unpickler's stack and memo. A
#: ``pickle.UnpicklingError`` is handled apart: it is also what the
#: weights-only unpickler raises for a type outside the allow-list.
_CORRUPT_CHECKPOINT_ERRORS = (RuntimeError, OSError, zipfile.BadZipFile,
                              EOFError, struct.error, ValueError, IndexError,
                              KeyError)


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


def _not_a_checkpoint(filename: str) -> Optional[str]:
    """Why ``filename`` cannot be a ``torch.save`` file, or ``None``.

    ``torch.save`` writes a zip archive (PyTorch >= 1.6) or, in the legacy
    format, a pickle (first byte 0x80); anything else is not a checkpoint.
    """
    try:
        if zipfile.is_zipfile(filename):
            return None
    except zipfile.BadZipFile:
        return None  # a broken zip archive: torch.load says why
    with open(filename, 'rb') as f:
        head = f.read(64)
    if head[:1] == b'\x80' or head[:4] == b'PK\x03\x04':
        return None  # a pickle, or a zip archive (maybe truncated)
    if not head:
        return 'the file is empty'
    if all(32 <= byte < 127 or byte in b'\t\r\n' for byte in head):
        first = head.decode('ascii').strip().splitlines()
        return ('it is a text file (it starts with '
                f'{first[0][:40] if first else ""!r})')
    return f'it starts with the bytes {head[:8]!r}'


def _torch_reason(err: BaseException) -> str:
    """The part of a ``torch.load`` error that says what was found, without
    PyTorch's advice to turn ``weights_only`` off (we never do)."""
    text = str(err)
    found = re.search(r'GLOBAL ([\w.]+)', text)
    if found:
        return f'it holds a pickled Python object of type {found.group(1)}'
    first = text.strip().splitlines()[0] if text.strip() else ''
    first = re.split(r'(?i)re-running torch\.load|weights_only', first)[0]
    return first.strip(' .:') or type(err).__name__


def load_from_local(filename: str, map_location=None) -> Any:
    """Load a local checkpoint with ``weights_only=True`` and clear errors.

    Args:
        filename (str): Path of the checkpoint.
        map_location: As for :func:`torch.load`.

    Returns:
        dict: The checkpoint.

    Raises:
        FileNotFoundError: The file does not exist.
        ReIDUserFileError: The file is not a checkpoint (text, another
            format), is truncated or corrupt, or holds a type outside the
            allow-list; the message names the file and says why. It never
            suggests loading without ``weights_only``.
    """
    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(
            f'Checkpoint not found: {filename}. Nothing is downloaded at run '
            'time: ImageNet backbone weights (init_cfg) are local files, see '
            'README "Models" (tools/model_converters/ibn_to_mmreid.py).')
    size = osp.getsize(filename)
    why = _not_a_checkpoint(filename)
    if why is not None:
        raise ReIDUserFileError(
            f'{filename} ({size} bytes) is not a checkpoint we can read: '
            f'{why}, while a checkpoint is a file written by torch.save '
            '(a zip archive, or a pickle in the legacy format), such as the '
            'epoch_N.pth files of a work dir. Nothing was changed.')
    try:
        return torch.load(filename, map_location=map_location,
                          weights_only=True)
    except _CORRUPT_CHECKPOINT_ERRORS as err:
        raise ReIDUserFileError(
            f'Cannot read checkpoint {filename} ({size} bytes): the file is '
            'truncated or corrupt, or not a PyTorch checkpoint '
            f'({_torch_reason(err)}). Nothing was changed; pass another '
            'checkpoint.') from None
    except pickle.UnpicklingError as err:  # a type outside the allow-list
        raise ReIDUserFileError(
            f'Checkpoint {filename} is not a checkpoint we can read: '
            f'{_torch_reason(err)}, and checkpoints are loaded as weights '
            'only (tensors, containers, numpy arrays and MMEngine log '
            'buffers), never by running arbitrary pickled code. Save the '
            "model's state_dict, or convert the file with "
            'tools/model_converters.') from None


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
        ReIDUserError: (a ``ValueError``) When ``path`` is not a PyTorch
            checkpoint of a dict or holds objects that are not weights; the
            message names the file.
    """
    if not osp.isfile(path):
        raise FileNotFoundError(f'checkpoint file not found: {path}')
    why = _not_a_checkpoint(path)
    if why is not None:
        raise ReIDUserError(f'{path} is not a PyTorch checkpoint (neither '
                            f'the zip format of torch.save nor a pickle): '
                            f'{why}')
    # safe_globals() removes its entries on exit: pass only missing ones.
    present = torch.serialization.get_safe_globals()
    extra = [t for t in _numpy_globals() if t not in present]
    try:
        with torch.serialization.safe_globals(extra):
            checkpoint = torch.load(path, map_location='cpu',
                                    weights_only=True)
    except pickle.UnpicklingError as err:
        raise ReIDUserError(
            f'{path} holds objects that are not weights and will not be '
            f'unpickled: {_torch_reason(err)}') from err
    except _CORRUPT_CHECKPOINT_ERRORS as err:
        raise ReIDUserError(
            f'{path} is not a PyTorch checkpoint: {type(err).__name__}: '
            f'{_torch_reason(err)}') from err
    if not isinstance(checkpoint, dict):
        raise ReIDUserError(f'{path} is not a checkpoint dict: it holds a '
                            f'{type(checkpoint).__name__}')
    return checkpoint

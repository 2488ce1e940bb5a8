"""Safe checkpoint loading for MMEngine 0.10 with torch >= 2.6, atomic
checkpoint writing, and the choice of the checkpoint to resume from.

Since torch 2.6, ``torch.load`` defaults to ``weights_only=True``, which
refuses every global that is not allow-listed. An MMEngine checkpoint holds,
besides tensors, the message hub's ``HistoryBuffer`` objects (whose
statistics methods are pickled as ``getattr(HistoryBuffer, 'mean')``) and a
few numpy arrays and scalars. This module allow-lists exactly those, keeps
``weights_only=True``, and replaces MMEngine's local-file loader by one whose
errors name the file (missing, truncated or corrupt, or holding a type that is
not allowed). MMEngine's own ``Loads checkpoint by local backend`` line goes
through the logger (a plain ``print`` in MMEngine).

Writing (:func:`save_checkpoint_atomic`, :func:`write_text_atomic`): a
checkpoint is written to a temporary file in its folder, flushed and
fsynced, then renamed over the target, so that a crash or a power loss
leaves either the old file or the new one, never a truncated one; our
``CheckpointHook`` (:mod:`mmreid_gs.engine.hooks.checkpoint_hook`) saves
that way and updates ``last_checkpoint`` only afterwards.

Resuming (:func:`find_resumable_checkpoint`): ``tools/train.py --resume``
without a path takes the newest checkpoint of the work dir that can be read.
"""
import glob
import os
import os.path as osp
import pickle
import re
import struct
import zipfile
from typing import Any, Callable, List, NamedTuple, Optional, Tuple

import numpy as np
import torch
from mmengine.dist import is_main_process
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
    _route_loader_message_to_logger()
    _INSTALLED = True


def _route_loader_message_to_logger() -> None:
    """Make ``CheckpointLoader.load_checkpoint`` log through MMEngine's
    current logger when its caller passes no logger.

    ``Runner.load_checkpoint`` and ``Runner.resume`` call it without one,
    and MMEngine then prints ``Loads checkpoint by local backend from
    path: ...`` without a timestamp, on every rank and outside the log
    file. Routed, the line is a log record (the tools' console filter keeps
    it in the log file only: the runner logs ``Load checkpoint from ...``).
    """
    original = CheckpointLoader.__dict__['load_checkpoint'].__func__
    if getattr(original, '_mmreid_gs_routed', False):
        return

    def load_checkpoint(cls, filename, map_location=None, logger=None):
        return original(cls, filename, map_location,
                        'current' if logger is None else logger)

    load_checkpoint._mmreid_gs_routed = True
    load_checkpoint.__doc__ = original.__doc__
    CheckpointLoader.load_checkpoint = classmethod(load_checkpoint)


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


# ---------------------------------------------------------------------------
# Atomic writing


def _fsync_dir(folder: str) -> None:
    """Make a rename in ``folder`` durable (no-op where folders cannot be
    opened, e.g. Windows)."""
    try:
        fd = os.open(folder or '.', os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def temporary_path(path: str) -> str:
    """The temporary file :func:`save_checkpoint_atomic` writes ``path``
    to: hidden, in the same folder (a rename within one file system is
    atomic), ``.<name>.tmp``. A crash leaves it behind; the next save of
    the same name overwrites it."""
    folder, name = osp.split(path)
    return osp.join(folder, f'.{name}.tmp')


def commit_file(tmp_path: str, path: str) -> None:
    """Flush ``tmp_path`` to the disk, rename it over ``path`` and make the
    rename durable.

    Args:
        tmp_path (str): The complete temporary file (same folder as
            ``path``).
        path (str): The target; replaced atomically if it exists.
    """
    fd = os.open(tmp_path, os.O_RDONLY)
    try:
        os.fsync(fd)  # the data of every descriptor of the file
    finally:
        os.close(fd)
    os.replace(tmp_path, path)
    _fsync_dir(osp.dirname(path))


def write_text_atomic(path: str, text: str) -> None:
    """Write ``text`` to ``path`` atomically (temporary file, flush, fsync,
    rename): readers see the old content or the new one, never a part.

    Args:
        path (str): The file (e.g. the work dir's ``last_checkpoint``).
        text (str): Its new content.
    """
    tmp = temporary_path(path)
    try:
        with open(tmp, 'w') as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if osp.exists(tmp):
            os.remove(tmp)
        raise
    _fsync_dir(osp.dirname(path))


def save_checkpoint_atomic(save: Callable, out_dir: str, filename: str,
                           *args, **kwargs) -> str:
    """Write a checkpoint through MMEngine's ``runner.save_checkpoint``,
    atomically.

    ``save(out_dir, <temporary name>, *args, **kwargs)`` writes the
    checkpoint to ``.<filename>.tmp`` next to the target (MMEngine's file
    backend ``put``), which is then fsynced and renamed over
    ``out_dir/filename``. If ``save`` raises (Ctrl-C included), the
    temporary file is removed and the target is left as it was. Only the
    main process renames (MMEngine's ``save_checkpoint`` is ``master_only``:
    another rank must not touch the file rank 0 is writing).

    Args:
        save (callable): ``runner.save_checkpoint`` (the bound method).
        out_dir (str): The folder of the checkpoint (local).
        filename (str): The checkpoint's name in ``out_dir``.
        *args, **kwargs: Further arguments of ``save``.

    Returns:
        str: The checkpoint's path.
    """
    path = osp.join(out_dir, filename)
    tmp = temporary_path(path)
    tmp_name = osp.relpath(tmp, out_dir)
    if not is_main_process():
        save(out_dir, tmp_name, *args, **kwargs)
        return path
    try:
        save(out_dir, tmp_name, *args, **kwargs)
        commit_file(tmp, path)
    except BaseException:
        if osp.isfile(tmp):
            os.remove(tmp)
        raise
    return path


# ---------------------------------------------------------------------------
# Resuming

#: The checkpoint names CheckpointHook writes by default (``filename_tmpl``).
_CHECKPOINT_NAME = re.compile(r'^(epoch|iter)_(\d+)\.pth$')


def checkpoint_problem(path: str) -> Optional[str]:
    """Why ``path`` cannot be resumed from, or ``None`` when it can.

    The file is loaded (weights only, on the CPU) as a resume loads it, so a
    truncated or corrupt file is found however it was damaged.

    Args:
        path (str): A checkpoint file.

    Returns:
        str | None: The reason, short (e.g. ``the file is empty``,
        ``truncated or corrupt (PytorchStreamReader failed ...)``).
    """
    if not osp.isfile(path):
        return 'the file does not exist'
    why = _not_a_checkpoint(path)
    if why is not None:
        return why
    allow_mmengine_checkpoint_types()
    try:
        checkpoint = torch.load(path, map_location='cpu', weights_only=True)
    except _CORRUPT_CHECKPOINT_ERRORS as err:
        return f'truncated or corrupt ({_torch_reason(err)})'
    except pickle.UnpicklingError as err:
        return f'{_torch_reason(err)}, which a weights-only load refuses'
    if not isinstance(checkpoint, dict) or not {'meta', 'state_dict'} <= set(
            checkpoint):
        return 'it holds no training state (no `meta` and `state_dict`)'
    return None


class ResumeChoice(NamedTuple):
    """What :func:`find_resumable_checkpoint` found.

    Attributes:
        checkpoint (str | None): The newest readable checkpoint, or None.
        unreadable (list[tuple[str, str, str | None]]): The newer checkpoints
            that cannot be read: ``(path, why, kept_as)``; ``kept_as`` is
            where the file now is (None: not moved).
        candidates (int): The checkpoint files looked at.
    """
    checkpoint: Optional[str]
    unreadable: List[Tuple[str, str, Optional[str]]]
    candidates: int


def _marked_checkpoint(work_dir: str) -> Optional[str]:
    marker = osp.join(work_dir, 'last_checkpoint')
    if not osp.isfile(marker):
        return None
    with open(marker, errors='replace') as f:
        path = f.read().strip()
    return path if path and osp.isfile(path) else None


def _keep_aside(path: str) -> str:
    """Rename an unreadable checkpoint to ``<name>.unreadable`` (``.1``,
    ``.2``... if taken), so that the resumed run does not write over it."""
    target = f'{path}.unreadable'
    n = 0
    while osp.exists(target):
        n += 1
        target = f'{path}.unreadable.{n}'
    os.replace(path, target)
    return target


def find_resumable_checkpoint(work_dir: str,
                              keep_aside: bool = False) -> ResumeChoice:
    """The newest checkpoint of a work dir that can be read.

    Candidates are the ``epoch_N.pth`` / ``iter_N.pth`` files of
    ``work_dir`` and the file its ``last_checkpoint`` names, newest
    (modification time) first; each is loaded until one reads. Unreadable
    files are never deleted: with ``keep_aside`` the unreadable ones newer
    than the choice are renamed to ``<name>.unreadable`` (the resumed run
    would otherwise write its own checkpoint of that epoch over them) and
    ``last_checkpoint`` is rewritten (atomically) to name the choice.

    Args:
        work_dir (str): The work dir of the run to resume.
        keep_aside (bool): Rename unreadable newer files and update
            ``last_checkpoint`` (one process only, e.g. rank 0).
            Defaults to False.

    Returns:
        ResumeChoice: The checkpoint (None when none reads) and the
        unreadable newer ones, with the reason each cannot be read.
    """
    paths = {
        osp.abspath(p)
        for p in glob.glob(osp.join(glob.escape(work_dir), '*.pth'))
        if _CHECKPOINT_NAME.match(osp.basename(p))
    }
    marked = _marked_checkpoint(work_dir)
    if marked is not None:
        paths.add(osp.abspath(marked))

    def newest_first(path):
        stat = os.stat(path)
        found = _CHECKPOINT_NAME.match(osp.basename(path))
        return stat.st_mtime_ns, int(found.group(2)) if found else -1

    ordered = sorted((p for p in paths if osp.isfile(p)), key=newest_first,
                     reverse=True)
    unreadable = []
    for path in ordered:
        why = checkpoint_problem(path)
        if why is None:
            break
        unreadable.append((path, why))
    else:
        return ResumeChoice(None, [(p, w, None) for p, w in unreadable],
                            len(ordered))
    if not keep_aside:
        return ResumeChoice(path, [(p, w, None) for p, w in unreadable],
                            len(ordered))
    kept = [(p, w, _keep_aside(p)) for p, w in unreadable]
    if kept:
        write_text_atomic(osp.join(work_dir, 'last_checkpoint'), path)
    return ResumeChoice(path, kept, len(ordered))

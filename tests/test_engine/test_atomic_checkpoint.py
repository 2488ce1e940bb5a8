"""Checkpoint files without a runner: atomic writing (temporary file, fsync,
rename; the old file survives a failed write), the choice of the newest
readable checkpoint for ``--resume`` (unreadable newer files kept), the
checkpoint hook's registration, and the progress bar off a terminal."""
import io
import os
import os.path as osp

import pytest
import torch
from mmengine.config import Config

from mmreid_gs.engine import checkpoint as ckpt_io
from mmreid_gs.engine.checkpoint import (checkpoint_problem,
                                         find_resumable_checkpoint,
                                         save_checkpoint_atomic,
                                         write_text_atomic)
from mmreid_gs.cli.runner import resolve_auto_resume
from mmreid_gs.utils import ReIDUserFileError
from mmreid_gs.utils.progress import ProgressBar


def _save(path, epoch, mtime):
    """A small training checkpoint of ``epoch`` with modification time
    ``mtime`` (seconds)."""
    torch.save({'meta': {'epoch': epoch}, 'state_dict':
                {'w': torch.full((4, ), float(epoch))}}, str(path))
    os.utime(str(path), (mtime, mtime))
    return str(path)


def test_write_text_atomic_replaces_and_keeps_the_old_file_on_failure(
        tmp_path, monkeypatch):
    marker = tmp_path / 'last_checkpoint'
    write_text_atomic(str(marker), 'a/epoch_1.pth')
    write_text_atomic(str(marker), 'a/epoch_2.pth')
    assert marker.read_text() == 'a/epoch_2.pth'
    assert os.listdir(tmp_path) == ['last_checkpoint']

    def no_rename(src, dst):
        raise OSError(28, 'No space left on device')

    monkeypatch.setattr(os, 'replace', no_rename)
    with pytest.raises(OSError):
        write_text_atomic(str(marker), 'a/epoch_3.pth')
    assert marker.read_text() == 'a/epoch_2.pth'  # the old content
    assert os.listdir(tmp_path) == ['last_checkpoint']  # no temporary


def test_save_checkpoint_atomic_writes_a_temporary_file_then_renames(
        tmp_path, monkeypatch):
    target = tmp_path / 'epoch_2.pth'
    target.write_bytes(b'old checkpoint')
    calls = []

    def save(out_dir, filename, *args, **kwargs):
        calls.append((out_dir, filename, args, kwargs))
        # what the file backend does while the target still holds the old
        assert target.read_bytes() == b'old checkpoint'
        with open(osp.join(out_dir, filename), 'wb') as f:
            f.write(b'new checkpoint')

    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, 'fsync',
                        lambda fd: synced.append(fd) or real_fsync(fd))
    path = save_checkpoint_atomic(save, str(tmp_path), 'epoch_2.pth', None,
                                  meta={'epoch': 2})
    assert path == str(target)
    assert calls == [(str(tmp_path), '.epoch_2.pth.tmp', (None, ),
                      {'meta': {'epoch': 2}})]
    assert target.read_bytes() == b'new checkpoint'
    assert len(synced) == 2  # the file, then the folder (the rename)
    assert sorted(os.listdir(tmp_path)) == ['epoch_2.pth']


@pytest.mark.parametrize('error', [OSError(28, 'No space left on device'),
                                   KeyboardInterrupt()])
def test_a_save_that_fails_midway_leaves_the_old_checkpoint(tmp_path, error):
    target = tmp_path / 'epoch_2.pth'
    target.write_bytes(b'old checkpoint')

    def save(out_dir, filename, *args, **kwargs):
        with open(osp.join(out_dir, filename), 'wb') as f:
            f.write(b'half a chec')
        raise error

    with pytest.raises(type(error)):
        save_checkpoint_atomic(save, str(tmp_path), 'epoch_2.pth')
    assert target.read_bytes() == b'old checkpoint'
    assert os.listdir(tmp_path) == ['epoch_2.pth']


def test_newest_readable_checkpoint_and_the_unreadable_newer_ones(tmp_path):
    good = _save(tmp_path / 'epoch_1.pth', 1, 1000)
    cut = _save(tmp_path / 'epoch_2.pth', 2, 2000)
    data = open(cut, 'rb').read()
    open(cut, 'wb').write(data[:len(data) // 2])  # truncated by a crash
    os.utime(cut, (2000, 2000))
    empty = tmp_path / 'epoch_3.pth'
    empty.write_bytes(b'')
    os.utime(str(empty), (3000, 3000))
    (tmp_path / 'best_mAP_epoch_3.pth').write_bytes(b'')  # not a candidate
    (tmp_path / 'last_checkpoint').write_text(str(empty))

    choice = find_resumable_checkpoint(str(tmp_path))
    assert choice.checkpoint == good and choice.candidates == 3
    assert [(p, kept) for p, _, kept in choice.unreadable] == [
        (str(empty), None), (cut, None)]  # newest first, not moved
    reasons = [why for _, why, _ in choice.unreadable]
    assert reasons[0] == 'the file is empty'
    assert reasons[1].startswith('truncated or corrupt (')
    assert checkpoint_problem(good) is None

    # keep_aside: renamed (never deleted), byte for byte, and the marker
    # names the checkpoint resumed from.
    choice = find_resumable_checkpoint(str(tmp_path), keep_aside=True)
    assert choice.checkpoint == good
    assert [kept for _, _, kept in choice.unreadable] == [
        f'{empty}.unreadable', f'{cut}.unreadable']
    assert open(f'{cut}.unreadable', 'rb').read() == data[:len(data) // 2]
    assert not osp.exists(cut) and not osp.exists(str(empty))
    assert (tmp_path / 'last_checkpoint').read_text() == good
    assert sorted(os.listdir(tmp_path)) == [
        'best_mAP_epoch_3.pth', 'epoch_1.pth', 'epoch_2.pth.unreadable',
        'epoch_3.pth.unreadable', 'last_checkpoint']


def test_a_checkpoint_without_training_state_is_not_resumable(tmp_path):
    path = tmp_path / 'epoch_4.pth'
    torch.save({'w': torch.ones(2)}, str(path))  # a bare state dict
    assert checkpoint_problem(str(path)) == (
        'it holds no training state (no `meta` and `state_dict`)')
    assert checkpoint_problem(str(tmp_path / 'x.pth')) == (
        'the file does not exist')


def test_resolve_auto_resume(tmp_path):
    cfg = Config(dict(work_dir=str(tmp_path), resume=True, load_from=None))
    # Nothing in the work dir: from scratch, said so.
    lines = resolve_auto_resume(cfg)
    assert cfg.resume is False and cfg.load_from is None
    assert len(lines) == 1 and 'nothing was resumed' in lines[0]

    # Only unreadable checkpoints: a clear error, nothing renamed.
    bad = tmp_path / 'epoch_1.pth'
    bad.write_bytes(b'PK\x03\x04 cut')
    cfg.resume = True
    with pytest.raises(ReIDUserFileError) as info:
        resolve_auto_resume(cfg)
    msg = str(info.value)
    assert str(bad) in msg and 'no checkpoint of' in msg
    assert os.listdir(tmp_path) == ['epoch_1.pth']

    # A readable older one: chosen; the warning names the unreadable one.
    bad.rename(tmp_path / 'epoch_2.pth')
    os.utime(str(tmp_path / 'epoch_2.pth'), (2000, 2000))
    good = _save(tmp_path / 'epoch_1.pth', 1, 1000)
    lines = resolve_auto_resume(cfg, rank=1)  # not rank 0: nothing renamed
    assert cfg.resume is True and cfg.load_from == good
    assert (tmp_path / 'epoch_2.pth').exists()
    assert len(lines) == 1 and lines[0].startswith(
        f'--resume: {tmp_path / "epoch_2.pth"} cannot be read (')
    assert lines[0].endswith(f'kept. Resuming from {good}, the newest '
                             'readable checkpoint.')
    lines = resolve_auto_resume(cfg, rank=0)
    assert f'kept as {tmp_path / "epoch_2.pth"}.unreadable.' in lines[0]


def test_checkpoint_hook_of_the_mmreid_gs_scope_is_the_atomic_one():
    from mmengine.hooks import CheckpointHook as MMEngineCheckpointHook
    from mmengine.registry import HOOKS, DefaultScope

    from mmreid_gs.engine.hooks.checkpoint_hook import CheckpointHook
    with DefaultScope.overwrite_default_scope('mmreid_gs'):
        hook = HOOKS.build(dict(type='CheckpointHook', interval=1))
        theirs = HOOKS.build(dict(type='mmengine.CheckpointHook'))
    assert type(hook) is CheckpointHook
    assert type(theirs) is MMEngineCheckpointHook


class _Terminal(io.StringIO):

    def isatty(self):
        return True


def test_progress_bar_off_a_terminal_writes_ten_plain_lines():
    out = io.StringIO()
    bar = ProgressBar(300, file=out)
    for _ in range(300):
        bar.update()
    out.write('\n')  # the caller ends the line, as with MMEngine's bar
    lines = out.getvalue().splitlines()
    assert '\r' not in out.getvalue()
    assert len(lines) == 11 and lines[0] == '0/300, elapsed: 0s'
    assert [line.split(',')[0] for line in lines[1:]] == [
        f'{30 * k}/300 ({10 * k}%)' for k in range(1, 11)]
    # Unknown totals: a line each time the count doubles (1, 2, 4, 8).
    out = io.StringIO()
    bar = ProgressBar(file=out)
    for _ in range(10):
        bar.update()
    lines = out.getvalue().splitlines()
    assert lines[0] == '0, elapsed: 0s'
    assert [line.split(',')[0] for line in lines[1:]] == [
        f'completed: {n}' for n in (1, 2, 4, 8)]
    # On a terminal: MMEngine's bar, redrawn in place.
    term = _Terminal()
    bar = ProgressBar(300, file=term)
    for _ in range(300):
        bar.update()
    assert term.getvalue().count('\r') == 300
    with pytest.raises(ValueError, match='lines must be >= 1'):
        ProgressBar(3, file=io.StringIO(), lines=0)


def test_mmengine_loader_line_is_a_log_record(tmp_path, capsys):
    """MMEngine prints "Loads checkpoint by local backend" (no timestamp,
    outside the log file) when its caller passes no logger; routed, it is a
    record of the current logger, and the file still loads through our
    weights-only loader."""
    import logging

    from mmengine.logging import MMLogger
    from mmengine.runner.checkpoint import CheckpointLoader
    ckpt_io.allow_mmengine_checkpoint_types()
    ckpt_io.allow_mmengine_checkpoint_types()  # idempotent
    assert CheckpointLoader._get_checkpoint_loader('x.pth') is \
        ckpt_io.load_from_local
    path = _save(tmp_path / 'epoch_1.pth', 1, 1000)
    logger = MMLogger.get_current_instance()
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logger.addHandler(handler)
    try:
        loaded = CheckpointLoader.load_checkpoint(path, 'cpu')
    finally:
        logger.removeHandler(handler)
    assert loaded['meta'] == {'epoch': 1}
    assert [r.getMessage() for r in records] == [
        f'Loads checkpoint by local backend from path: {path}']
    out = capsys.readouterr().out
    assert not any(line.startswith('Loads checkpoint')
                   for line in out.splitlines())

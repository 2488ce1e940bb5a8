"""tools/train.py and tools/test.py around a crash and after training: a
truncated newest checkpoint is skipped by ``--resume`` (and kept), a crash
during a save leaves the previous checkpoint and ``last_checkpoint`` intact,
a test run leaves the training run's files alone and says less, a folder
passed as the checkpoint is named as one."""
import glob
import json
import os
import os.path as osp
import shutil

import pytest
import torch
from helpers import checkpoint_state, load_tool
from mmengine.fileio.backends import LocalBackend


def _config(make_tiny_config, folder):
    """2 epochs, validation after the second, no graph dumps, the best
    checkpoint by mAP kept (written atomically too)."""
    return make_tiny_config(
        folder, train_ids=8, test_sets=dict(synthetic_A='a'),
        graph_hook=dict(save_graph=False), epochs=2,
        extra="default_hooks = dict(checkpoint=dict(save_best="
        "'synthetic_A/mAP', rule='greater'))\n")


def _val_metrics(work_dir, stamp_dir):
    """The epoch-2 validation record of the run logged in ``stamp_dir``."""
    path = osp.join(work_dir, stamp_dir, 'vis_data', 'scalars.json')
    records = [json.loads(line) for line in open(path)]
    found = [r for r in records if 'synthetic_A/mAP' in r]
    assert len(found) == 1, records
    return {k: v for k, v in found[0].items() if k.startswith('synthetic_A')}


def _stamps(work_dir):
    return sorted(d for d in os.listdir(work_dir)
                  if osp.isdir(osp.join(work_dir, d)))


@pytest.fixture(scope='module')
def uninterrupted(make_tiny_config, tmp_path_factory):
    """The reference run: 2 epochs, then its files and metrics."""
    folder = tmp_path_factory.mktemp('crash_safe')
    config = _config(make_tiny_config, folder)
    work_dir = str(folder / 'run')
    train = load_tool('tools/train.py')
    assert train.run_cli(train.main, [config, '--work-dir', work_dir]) == 0
    state = checkpoint_state(osp.join(work_dir, 'epoch_2.pth'))
    metrics = _val_metrics(work_dir, _stamps(work_dir)[0])
    best = checkpoint_state(
        osp.join(work_dir, 'best_synthetic_A_mAP_epoch_2.pth'))
    assert best.keys() == state.keys()
    assert not glob.glob(osp.join(work_dir, '.*'))  # no temporary file
    return config, work_dir, state, metrics


def test_resume_skips_a_truncated_checkpoint_and_keeps_it(
        uninterrupted, tmp_path, capsys):
    config, reference, state, metrics = uninterrupted
    work_dir = str(tmp_path / 'run')
    shutil.copytree(reference, work_dir)
    with open(osp.join(work_dir, 'last_checkpoint'), 'w') as f:
        f.write(osp.join(work_dir, 'epoch_2.pth'))
    cut = osp.join(work_dir, 'epoch_2.pth')
    data = open(cut, 'rb').read()
    with open(cut, 'wb') as f:
        f.write(data[:len(data) // 2])  # a crash in the middle of the write
    os.utime(cut)  # newer than epoch_1.pth, as when it was written
    train = load_tool('tools/train.py')

    # An explicit path to it stays a clear error; nothing changes.
    assert train.run_cli(train.main, [
        config, '--work-dir', work_dir, '--resume', cut]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f'error (ReIDUserFileError): Cannot read '
                          f'checkpoint {cut}')
    assert 'truncated or corrupt' in err
    assert open(cut, 'rb').read() == data[:len(data) // 2]

    # Without a path: from epoch 1, to the uninterrupted run's epoch 2.
    before = set(_stamps(work_dir))
    assert train.run_cli(train.main,
                         [config, '--work-dir', work_dir, '--resume']) == 0
    stamp = (set(_stamps(work_dir)) - before).pop()
    log = open(glob.glob(osp.join(work_dir, stamp, '*.log'))[0]).read()
    assert (f'--resume: {cut} cannot be read (truncated or corrupt') in log
    assert f'kept as {cut}.unreadable. Resuming from ' \
        f'{osp.join(work_dir, "epoch_1.pth")}' in log
    assert 'resumed epoch: 1, iter: 8' in log
    assert 'Saving checkpoint after epoch 2' in log
    kept = open(f'{cut}.unreadable', 'rb').read()
    assert kept == data[:len(data) // 2]  # kept, byte for byte
    again = checkpoint_state(cut)
    assert again.keys() == state.keys()
    for key in state:
        torch.testing.assert_close(again[key], state[key], rtol=0, atol=0,
                                   msg=key)
    assert _val_metrics(work_dir, stamp) == metrics
    assert open(osp.join(work_dir, 'last_checkpoint')).read() == cut
    assert not glob.glob(osp.join(work_dir, '.*.tmp'))


def test_a_crash_during_a_save_leaves_the_previous_checkpoint(
        uninterrupted, tmp_path, monkeypatch):
    """The disk fills up while epoch 2 is written: epoch_1.pth and
    `last_checkpoint` (naming it) are as before, no partial epoch_2.pth,
    no temporary file."""
    config = uninterrupted[0]
    work_dir = str(tmp_path / 'run')
    put = LocalBackend.put

    def put_fails_at_epoch_2(self, obj, filepath):
        if osp.basename(filepath) == '.epoch_2.pth.tmp':
            put(self, obj[:len(obj) // 3], filepath)
            raise OSError(28, 'No space left on device')
        return put(self, obj, filepath)

    monkeypatch.setattr(LocalBackend, 'put', put_fails_at_epoch_2)
    train = load_tool('tools/train.py')
    with pytest.raises(OSError, match='No space left'):
        train.run_cli(train.main,
                      [config, '--work-dir', work_dir, '--no-validate'])
    first = osp.join(work_dir, 'epoch_1.pth')
    assert open(osp.join(work_dir, 'last_checkpoint')).read() == first
    assert sorted(f for f in os.listdir(work_dir) if 'pth' in f) == [
        'epoch_1.pth']
    assert checkpoint_state(first).keys()  # readable


def test_test_run_keeps_the_training_config_and_names_a_folder(
        uninterrupted, tmp_path, capsys):
    config, reference, _, _ = uninterrupted
    work_dir = str(tmp_path / 'run')
    shutil.copytree(reference, work_dir)
    dumped = osp.join(work_dir, 'tiny.py')
    training_config = open(dumped).read()
    test = load_tool('tools/test.py')
    ckpt = osp.join(work_dir, 'epoch_2.pth')
    assert test.run_cli(test.main, [
        config, ckpt, '--work-dir', work_dir, '--cfg-options',
        'test_evaluator.rerank=True', 'test_cfg.progress=True']) == 0
    out = capsys.readouterr().out
    # Progress bars into a pipe: plain lines, no carriage returns.
    assert '\r' not in out
    assert out.count('\n1/1 (100%), ') >= 2  # query and gallery features
    assert open(dumped).read() == training_config  # not overwritten
    stamp = sorted(_stamps(work_dir))[-1]
    test_config = open(osp.join(work_dir, stamp, 'tiny.py')).read()
    assert 'rerank=True' in test_config
    assert 'rerank=True' not in training_config
    header = out.split('Load checkpoint from')[0]
    assert f'full config: {osp.join(work_dir, stamp, "tiny.py")}' in header
    assert 'test sets: synthetic_A' in header
    assert 'optimizer:' not in header and 'train:' not in header
    assert 'Distributed training is not used' not in out
    assert 'Loads checkpoint by' not in out  # in the log file only
    log = open(glob.glob(osp.join(work_dir, stamp, '*.log'))[0]).read()
    assert 'Loads checkpoint by local backend' in log

    # A folder instead of a checkpoint file.
    for i, name in enumerate(('epoch_1.pth', 'best_synthetic_A_mAP_epoch_2'
                              '.pth', 'epoch_2.pth')):
        os.utime(osp.join(work_dir, name), (1000 * (i + 1), ) * 2)
    assert test.run_cli(test.main, [config, work_dir + os.sep]) == 2
    err = capsys.readouterr().err.splitlines()[0]
    assert err == (
        f'error (ConfigError): {work_dir}{os.sep} is a folder, not a '
        'checkpoint file; the checkpoints in it, newest first: epoch_2.pth, '
        'best_synthetic_A_mAP_epoch_2.pth, epoch_1.pth. Pass one, e.g.: '
        f'python tools/test.py {config} '
        f'{osp.join(work_dir + os.sep, "epoch_2.pth")}'), err
    empty = tmp_path / 'empty'
    empty.mkdir()
    assert test.run_cli(test.main, [config, str(empty)]) == 2
    assert 'holds no checkpoint (*.pth)' in capsys.readouterr().err


def test_the_header_of_a_train_and_a_test_run():
    from mmengine.config import Config

    from mmreid_gs.cli import config_summary
    cfg = Config(dict(
        model=dict(type='QAConvReID'), work_dir='w',
        train_dataloader=dict(batch_size=8, num_workers=1,
                              dataset=dict(type='Market1501', data_root='m'),
                              sampler=dict(type='GraphSampler')),
        train_cfg=dict(max_epochs=1),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.1)),
        test_cfg=dict(test_sets=dict(a=dict(), b=dict()))))
    assert config_summary(cfg).splitlines() == [
        'model: QAConvReID',
        '    train: Market1501 m, batch 8 (GraphSampler), 1 epoch, 1 worker',
        '    optimizer: SGD lr 0.1', '    test sets: a, b', '    work dir: w']
    assert config_summary(cfg, 'test').splitlines() == [
        'model: QAConvReID', '    test sets: a, b', '    work dir: w']

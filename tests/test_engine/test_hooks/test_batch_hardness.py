"""BatchLookalikeShareHook: an epoch of a tiny run logs
batch_lookalike_share, for random PK batches as for GS batches, without
changing the numbers of the run."""
import os.path as osp

import numpy as np
import pytest
import torch
from helpers import CONFIGS, checkpoint_state, read_scalars, \
    write_tiny_config
from mmengine.config import Config
from mmpretrain.structures import DataSample

from mmreid_gs.engine.hooks import BatchLookalikeShareHook
from mmreid_gs.engine.hooks.batch_lookalike_share_hook import batch_labels
from mmreid_gs.cli import build_runner

KEY = 'train/batch_lookalike_share'


def _train(config, work_dir, hook=True):
    cfg = Config.fromfile(config)
    cfg.work_dir = str(work_dir)
    if not hook:
        cfg.default_hooks.pop('batch_hardness')
    runner = build_runner(cfg)
    runner.train()
    return runner


def _hook(runner):
    hooks = [h for h in runner.hooks
             if isinstance(h, BatchLookalikeShareHook)]
    return hooks[0] if hooks else None


def test_demo_configs_have_the_hook():
    # a default hook: configs that replace custom_hooks (the PK and class
    # memory demos) keep it, and the GS demo keeps its GraphSamplerHook
    for name in ('qaconv_gs_demo.py', 'qaconv_pk_demo.py',
                 'qaconv_cm_demo.py', 'gs_r18_global_demo.py'):
        cfg = Config.fromfile(osp.join(CONFIGS, name))
        assert cfg.default_hooks.batch_hardness.type == \
            'BatchLookalikeShareHook', name
    gs = Config.fromfile(osp.join(CONFIGS, 'qaconv_gs_demo.py'))
    assert [h.type for h in gs.custom_hooks] == ['GraphSamplerHook']


def test_batch_labels():
    samples = [DataSample().set_gt_label(c) for c in (3, 3, 5)]
    np.testing.assert_array_equal(
        batch_labels(dict(inputs=[], data_samples=samples)), [3, 3, 5])
    assert batch_labels(dict(inputs=[])) is None
    assert batch_labels(dict(data_samples=[DataSample()])) is None


@pytest.fixture(scope='module')
def folder(tmp_path_factory):
    """One generated benchmark for the runs of this module."""
    return tmp_path_factory.mktemp('hardness')


def _config(folder, name, **options):
    # no validation: the runs only train
    return write_tiny_config(folder, name, augment=(), val_interval=100,
                             **options)


def test_pk_epoch_logs_a_share_and_keeps_the_numbers(folder):
    # 12 identities in families of 4, P = 16 / 4 = 4 classes a batch
    tmp_path = folder
    config = _config(folder, 'pk.py', graph_hook=False, epochs=1)
    runner = _train(config, tmp_path / 'pk')
    rows = [r for r in read_scalars(str(tmp_path / 'pk')) if KEY in r]
    assert len(rows) == 1 and rows[0]['step'] == 1
    share = rows[0][KEY]
    assert isinstance(share, float) and 0. <= share <= 1.
    assert _hook(runner).history == {1: pytest.approx(share)}
    assert 0. < rows[0][KEY + '_random'] < 1.
    # the hook only reads the batches: a run without it trains the same
    # weights, bit for bit
    plain = _train(config, tmp_path / 'plain', hook=False)
    assert _hook(plain) is None
    assert not [r for r in read_scalars(str(tmp_path / 'plain')) if KEY in r]
    ref = checkpoint_state(osp.join(tmp_path, 'pk', 'epoch_1.pth'))
    got = checkpoint_state(osp.join(tmp_path, 'plain', 'epoch_1.pth'))
    assert ref.keys() == got.keys()
    for key in ref:
        assert torch.equal(ref[key], got[key]), key


def test_gs_epoch_logs_a_share(folder):
    # GS from the first epoch (the PK epochs are the test above)
    config = _config(folder, 'gs.py', epochs=1, graph_hook=dict(pk_epochs=0))
    runner = _train(config, folder / 'gs')
    rows = [r for r in read_scalars(str(folder / 'gs')) if KEY in r]
    assert [r['step'] for r in rows] == [1]
    assert 0. <= rows[0][KEY] <= 1.
    assert list(_hook(runner).history) == [1]


def test_datasets_without_families_log_nothing():
    class Runner:
        train_dataloader = type('Loader', (), dict(dataset=object()))()
    hook = BatchLookalikeShareHook()
    hook.before_train(Runner())
    hook.after_train_iter(Runner(), 0, dict(data_samples=[
        DataSample().set_gt_label(0)]))
    hook.after_train_epoch(Runner())  # no logger, visualizer needed
    assert hook.history == {}


def test_families_read_again_when_the_pseudo_labels_change():
    """A training set whose labels change between epochs (pseudo-labels,
    ``labels_version``): the share of the epoch after a clustering uses
    that clustering's families, not the ones read before training."""

    class Dataset:
        labels_version = 0
        families = np.array([-1, -1])  # before the first clustering: none

        def get_label_families(self):
            return self.families

    class Runner:
        train_dataloader = type('Loader', (), dict(dataset=Dataset()))()
        epoch = 0
        logger = type('L', (), dict(info=lambda self, m: None))()
        visualizer = type('V', (), dict(
            add_scalars=lambda self, s, step=None: None))()

    runner = Runner()
    hook = BatchLookalikeShareHook(log_random=False)
    hook.before_train(runner)
    batch = dict(data_samples=[DataSample().set_gt_label(c)
                               for c in (0, 0, 1, 1)])
    hook.before_train_epoch(runner)
    hook.after_train_iter(runner, 0, batch)
    hook.after_train_epoch(runner)
    assert hook.history == {}  # no families yet: nothing logged
    # a clustering: classes 0 and 1 now in one family -> every class of the
    # batch has a look-alike in it
    runner.train_dataloader.dataset.families = np.array([7, 7])
    runner.train_dataloader.dataset.labels_version = 1
    runner.epoch = 1
    hook.before_train_epoch(runner)
    hook.after_train_iter(runner, 0, batch)
    hook.after_train_epoch(runner)
    assert hook.history == {2: 1.0}
    # the next clustering splits them: no look-alike in the batch
    runner.train_dataloader.dataset.families = np.array([3, 4])
    runner.train_dataloader.dataset.labels_version = 2
    runner.epoch = 2
    hook.before_train_epoch(runner)
    hook.after_train_iter(runner, 0, batch)
    hook.after_train_epoch(runner)
    assert hook.history[3] == 0.0

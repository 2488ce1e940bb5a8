"""ReIDLoggerHook: MMEngine's logger hook whose test summary JSON is written
by rank 0 only (a real Runner; the hook's test-epoch step called alone)."""
import json
import os.path as osp

import pytest
from helpers import experiment_name
from mmengine.runner import Runner
from torch.utils.data import DataLoader

import mmreid_gs.engine.hooks.reid_logger_hook as reid_logger_hook
from mmreid_gs.utils import register_all_modules

register_all_modules()

METRICS = {'synthetic/Rank-1': 0.75, 'synthetic/mAP': 0.5}


@pytest.fixture
def runner(tmp_path):
    runner = Runner(
        model=dict(
            type='ReIDModel',
            backbone=dict(type='ResNetIBN', depth=18, base_channels=8,
                          num_stages=1, out_indices=(0, )),
            head=dict(type='GlobalEmbeddingHead', in_channels=8)),
        work_dir=str(tmp_path),
        test_dataloader=dict(batch_size=2),
        test_cfg=dict(type='ReIDTestLoop', test_sets=dict(
            s=dict(query=dict(type='X'), gallery=dict(type='X'))),
            pipeline=[]),
        test_evaluator=dict(type='ReIDMetric'),
        default_hooks=dict(logger=dict(type='ReIDLoggerHook'), timer=None,
                           checkpoint=None),
        default_scope='mmreid_gs', experiment_name=experiment_name())
    # the loader the loop processed last (the hook logs its length)
    runner.test_loop.dataloader = DataLoader(list(range(6)), batch_size=2)
    runner.call_hook('before_run')
    return runner


def _hook(runner):
    hooks = [h for h in runner.hooks if type(h).__name__ == 'ReIDLoggerHook']
    assert len(hooks) == 1
    return hooks[0]


def test_rank0_writes_the_test_summary(runner):
    hook = _hook(runner)
    runner.call_hook('after_test_epoch', metrics=METRICS)
    path = osp.join(runner.log_dir, hook.json_log_path)
    with open(path) as f:
        summary = json.loads(f.read().strip().splitlines()[-1])
    assert {k: summary[k] for k in METRICS} == METRICS


def test_other_ranks_only_log(runner, monkeypatch):
    hook = _hook(runner)
    monkeypatch.setattr(reid_logger_hook, 'is_main_process', lambda: False)
    logged = []
    monkeypatch.setattr(runner.logger, 'info', logged.append)
    runner.call_hook('after_test_epoch', metrics=METRICS)
    assert not osp.exists(osp.join(runner.log_dir, hook.json_log_path))
    assert any('synthetic/mAP: 0.5000' in line for line in logged)

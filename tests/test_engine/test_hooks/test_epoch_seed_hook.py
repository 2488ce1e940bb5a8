"""EpochSeedHook: every epoch's randomness is a function of
(seed, epoch, rank), whatever was drawn before (exact resume)."""
import random

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

import mmreid_gs.engine.hooks.epoch_seed_hook as epoch_seed_hook
from mmreid_gs.registry import HOOKS
from mmreid_gs.utils import register_all_modules

register_all_modules()


class FakeRunner:
    """The attributes the hook reads: seed, epoch, train_dataloader."""

    def __init__(self, seed=0, epoch=0):
        self.seed, self.epoch = seed, epoch
        self.train_dataloader = DataLoader(
            list(range(8)), batch_size=3, shuffle=True, num_workers=0)


def _draws(runner):
    """One draw of every global generator and the loader's batches."""
    return (random.random(), np.random.rand(3).tolist(),
            torch.rand(3).tolist(),
            [b.tolist() for b in runner.train_dataloader])


def _epoch_draws(hook, runner, epoch):
    runner.epoch = epoch
    hook.before_train_epoch(runner)
    return _draws(runner)


def test_built_from_the_registry_and_runs_first():
    hook = HOOKS.build(dict(type='mmreid_gs.EpochSeedHook'))
    assert type(hook).__name__ == 'EpochSeedHook'
    assert hook.priority == 'VERY_HIGH'


def test_an_epoch_draws_the_same_whatever_came_before():
    hook = HOOKS.build(dict(type='mmreid_gs.EpochSeedHook'))
    runner = FakeRunner(seed=3)
    uninterrupted = [_epoch_draws(hook, runner, e) for e in range(3)]
    # a resumed run starts at epoch 2 after other draws
    _draws(runner)
    np.random.rand(100)
    resumed = _epoch_draws(HOOKS.build(dict(type='mmreid_gs.EpochSeedHook')),
                           FakeRunner(seed=3), 2)
    assert resumed == uninterrupted[2]
    # epochs differ from each other
    assert uninterrupted[0] != uninterrupted[1] != uninterrupted[2]


def test_the_seed_is_the_documented_function():
    # numpy's global generator after the hook = one seeded from
    # SeedSequence([seed, epoch, rank])
    hook = HOOKS.build(dict(type='mmreid_gs.EpochSeedHook'))
    runner = FakeRunner(seed=2**32 + 7, epoch=4)  # the seed is taken mod 2^32
    hook.before_train_epoch(runner)
    expected = int(
        np.random.SeedSequence([7, 4, 0]).generate_state(1)[0])
    assert np.random.rand() == np.random.RandomState(expected).rand()
    assert torch.rand(1).item() == torch.rand(
        1, generator=torch.Generator().manual_seed(expected)).item()
    random_state = random.random()
    random.seed(expected)
    assert random_state == random.random()


def test_seed_argument_rank_and_seed_change_the_draws(monkeypatch):
    base = _epoch_draws(HOOKS.build(dict(type='mmreid_gs.EpochSeedHook')),
                        FakeRunner(seed=1), 1)
    # seed=... overrides the runner's seed
    seeded = HOOKS.build(dict(type='mmreid_gs.EpochSeedHook', seed=1))
    assert _epoch_draws(seeded, FakeRunner(seed=99), 1) == base
    assert _epoch_draws(HOOKS.build(dict(type='mmreid_gs.EpochSeedHook')),
                        FakeRunner(seed=2), 1) != base
    # another rank draws otherwise (its own augmentations)
    monkeypatch.setattr(epoch_seed_hook, 'get_dist_info', lambda: (1, 2))
    assert _epoch_draws(HOOKS.build(dict(type='mmreid_gs.EpochSeedHook')),
                        FakeRunner(seed=1), 1) != base


@pytest.mark.parametrize('mode', ['no_grad', 'inference_mode'])
def test_reseeds_under_grad_modes(mode):
    hook = HOOKS.build(dict(type='mmreid_gs.EpochSeedHook'))
    runner = FakeRunner(seed=5)
    ref = _epoch_draws(hook, runner, 1)
    with getattr(torch, mode)():
        assert _epoch_draws(hook, runner, 1) == ref

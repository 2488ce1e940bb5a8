"""Reseed the global random generators at the start of every epoch."""
import random

import numpy as np
import torch
from mmengine.dist import get_dist_info
from mmengine.hooks import Hook

from mmreid_gs.registry import HOOKS


@HOOKS.register_module()
class EpochSeedHook(Hook):
    """Make every epoch's randomness a function of ``(seed, epoch, rank)``.

    Data augmentation (mmcv transforms draw from numpy's global generator)
    and the dataloader's base seed (torch's global generator) would otherwise
    depend on everything drawn since the start of the run, so a run resumed
    at epoch k would see other augmentations than an uninterrupted one.
    Reseeding before each epoch makes ``--resume`` reproduce the
    uninterrupted run exactly (with ``num_workers=0``; worker processes are
    seeded by MMEngine's ``worker_init_fn``).

    Args:
        seed (int, optional): Base seed. Defaults to the runner's seed.
    """

    priority = 'VERY_HIGH'

    def __init__(self, seed=None):
        self.seed = seed

    def before_train_epoch(self, runner) -> None:
        base = runner.seed if self.seed is None else self.seed
        rank, _ = get_dist_info()
        seed = int(np.random.SeedSequence(
            [int(base) % (2**32), runner.epoch, rank]).generate_state(1)[0])
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)

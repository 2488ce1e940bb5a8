"""Reseed the random generators at the start of every epoch, in the main
process and in every dataloader worker."""
import functools
import multiprocessing
import random
from typing import Callable, Optional

import numpy as np
import torch
from mmengine.dist import get_dist_info
from mmengine.hooks import Hook
from torch.utils.data import get_worker_info

from mmreid_gs.registry import HOOKS


def _seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def worker_seed(epoch_seed: int, worker_id: int) -> int:
    """The seed of dataloader worker ``worker_id`` in an epoch.

    Args:
        epoch_seed (int): The epoch's seed (from seed, epoch and rank).
        worker_id (int): The worker's index in ``[0, num_workers)``.

    Returns:
        int: A 32-bit seed.
    """
    return int(np.random.SeedSequence(
        [int(epoch_seed), int(worker_id), 1]).generate_state(1)[0])


class _EpochSeededPipeline:
    """A dataset pipeline that reseeds the worker's generators when the
    epoch seed (shared with the main process) changes, i.e. before the
    first sample the worker prepares in each epoch (persistent workers
    live across epochs and would otherwise continue their old streams)."""

    def __init__(self, pipeline: Callable, shared, worker_id: int):
        self.pipeline = pipeline
        self.shared = shared
        self.worker_id = worker_id
        self.current: Optional[int] = None

    def __call__(self, results):
        seed = int(self.shared.value)
        if seed != self.current:
            self.current = seed
            _seed_all(worker_seed(seed, self.worker_id))
        return self.pipeline(results)

    def __getattr__(self, name):
        return getattr(self.pipeline, name)


def seed_worker(worker_id: int, shared, previous: Optional[Callable] = None
                ) -> None:
    """``worker_init_fn`` that makes a worker's randomness a function of
    ``(seed, epoch, rank, worker_id)``.

    Runs ``previous`` (MMEngine's ``worker_init_fn``) first, then seeds the
    worker from the current epoch seed and wraps the worker's copy of the
    dataset pipeline so that it reseeds at each new epoch.

    Args:
        worker_id (int): The worker's index.
        shared: A shared integer holding the current epoch seed.
        previous (callable, optional): The loader's former worker_init_fn.
    """
    if previous is not None:
        previous(worker_id)
    _seed_all(worker_seed(int(shared.value), worker_id))
    info = get_worker_info()
    dataset = getattr(info, 'dataset', None)
    pipeline = getattr(dataset, 'pipeline', None)
    if callable(pipeline) and not isinstance(pipeline,
                                             _EpochSeededPipeline):
        dataset.pipeline = _EpochSeededPipeline(pipeline, shared, worker_id)


@HOOKS.register_module()
class EpochSeedHook(Hook):
    """Make every epoch's randomness a function of ``(seed, epoch, rank)``,
    and each dataloader worker's of ``(seed, epoch, rank, worker id)``.

    Data augmentation (mmcv transforms draw from numpy's global generator)
    and the dataloader's base seed (torch's global generator) would otherwise
    depend on everything drawn since the start of the run, so a run resumed
    at epoch k would see other augmentations than an uninterrupted one.
    Reseeding before each epoch makes ``--resume`` reproduce the
    uninterrupted run exactly.

    With ``num_workers > 0`` the augmentations run in worker processes:
    the hook installs :func:`seed_worker` as the train loader's
    ``worker_init_fn`` (keeping MMEngine's) and publishes each epoch's seed
    through shared memory, so that every worker reseeds before its first
    sample of an epoch, persistent workers included. Batches go to workers
    in a fixed round-robin order, so a resumed run gets the augmentations
    of the uninterrupted one with workers too. (A dataset without a
    ``pipeline`` attribute is seeded when its workers start only.)

    Args:
        seed (int, optional): Base seed. Defaults to the runner's seed.
    """

    priority = 'VERY_HIGH'

    def __init__(self, seed=None):
        self.seed = seed
        self._shared = None

    def epoch_seed(self, runner) -> int:
        """The seed of the runner's current epoch on this rank."""
        base = runner.seed if self.seed is None else self.seed
        rank, _ = get_dist_info()
        return int(np.random.SeedSequence(
            [int(base) % (2**32), runner.epoch, rank]).generate_state(1)[0])

    def _install(self, loader) -> None:
        init_fn = loader.worker_init_fn
        if isinstance(init_fn, functools.partial) and \
                init_fn.func is seed_worker:
            self._shared = init_fn.keywords['shared']
            return
        context = loader.multiprocessing_context
        if context is None or isinstance(context, str):
            context = multiprocessing.get_context(context)
        self._shared = context.Value('q', 0, lock=False)
        loader.worker_init_fn = functools.partial(
            seed_worker, shared=self._shared, previous=init_fn)

    def before_train_epoch(self, runner) -> None:
        seed = self.epoch_seed(runner)
        _seed_all(seed)
        loader = runner.train_dataloader
        if getattr(loader, 'num_workers', 0) > 0 and hasattr(
                loader, 'worker_init_fn'):
            self._install(loader)
            self._shared.value = seed

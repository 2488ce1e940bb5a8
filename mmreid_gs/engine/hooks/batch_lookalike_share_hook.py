"""Hook that logs how hard the training batches of an epoch are: the share
of a batch's classes that meet a look-alike in the batch (any sampler).
The maths is
:func:`~mmreid_gs.evaluation.functional.batch_lookalike_shares`."""
from typing import Optional

import numpy as np
import torch
from mmengine.dist import all_reduce
from mmengine.hooks import Hook

from mmreid_gs.evaluation.functional import (batch_lookalike_shares,
                                             random_batch_lookalike_share)
from mmreid_gs.registry import HOOKS
from .train_data import read_label_families, train_dataloader


def batch_labels(data_batch) -> Optional[np.ndarray]:
    """The identity label of every sample of a collated training batch.

    Args:
        data_batch (dict): What the train dataloader yields: ``inputs`` and
            ``data_samples`` (one :class:`DataSample` a sample, with
            ``gt_label``).

    Returns:
        np.ndarray | None: int64 [B], or None when the batch has no
        data samples or a sample has no ``gt_label``.
    """
    samples = data_batch.get('data_samples') if isinstance(
        data_batch, dict) else None
    if not samples:
        return None
    labels = []
    for sample in samples:
        label = sample.get('gt_label', None) if hasattr(sample, 'get') \
            else None
        if label is None:
            return None
        if isinstance(label, torch.Tensor):
            label = label.detach().cpu().reshape(-1)[0].item()
        labels.append(int(np.asarray(label).reshape(-1)[0]))
    return np.asarray(labels, dtype=np.int64)


@HOOKS.register_module()
class BatchLookalikeShareHook(Hook):
    """Log ``batch_lookalike_share`` after every training epoch.

    For the batches of the epoch, the mean over batches of the share of a
    batch's classes that have a look-alike (another class of the same
    family) among the other classes of the batch: how often a batch holds
    the hard negatives the Graph Sampler is meant to bring together. It is
    measured on the batches the model trained on (the labels of
    ``data_batch`` in ``after_train_iter``), so it is the same number for
    every sampler (random PK batches, the PK warm-up epochs of GS, GS
    batches, any other) and it never touches the sampler or a random
    generator: a seeded run gives the same numbers with and without it.

    It needs the family of every training label from the train dataset's
    ``get_label_families()`` (e.g. :class:`SyntheticReID`); with a dataset
    that does not know families the hook does nothing.

    Logged through ``runner.logger`` and as the visualizer's scalar
    ``train/batch_lookalike_share`` (step = the 1-based epoch), next to the
    value random PK batches would give in expectation
    (``train/batch_lookalike_share_random``). Under distributed training
    every rank counts its own batches and the sums are reduced, so the
    value is over all batches of the epoch.

    Args:
        log_random (bool): Also log the expected share of random PK batches
            (:func:`random_batch_lookalike_share`, ``P`` read from the
            sampler's ``num_classes_per_batch`` or the first batch).
            Defaults to True.
    """

    # after the hooks that set the sampler up; it only reads the batches
    priority = 'LOW'

    def __init__(self, log_random: bool = True) -> None:
        self.log_random = bool(log_random)
        self._families: Optional[np.ndarray] = None
        self._sum = 0.
        self._count = 0
        self._classes_per_batch: Optional[int] = None
        self._labels_version = None
        #: ``epoch (1-based) -> share`` of the epochs logged by this hook
        self.history = {}

    def before_train(self, runner) -> None:
        """Read the family of every training label (None: the hook is
        off)."""
        self._read_families(runner)

    def _read_families(self, runner) -> None:
        self._families = None
        loader = train_dataloader(runner)
        dataset = getattr(loader, 'dataset', None)
        self._labels_version = getattr(dataset, 'labels_version', None)
        fams = read_label_families(dataset, runner,
                                   'BatchLookalikeShareHook')
        if fams is None or not (fams >= 0).any():
            return
        self._families = fams
        sampler = getattr(loader, 'sampler', None)
        p = getattr(sampler, 'num_classes_per_batch', None)
        self._classes_per_batch = None if p is None else int(p)

    def _labels_changed(self, runner) -> bool:
        """Whether the training set's labels changed since the families
        were read (pseudo-labels: ``labels_version`` moves at every
        clustering)."""
        dataset = getattr(train_dataloader(runner), 'dataset', None)
        version = getattr(dataset, 'labels_version', None)
        return version is not None and version != self._labels_version

    def before_train_epoch(self, runner) -> None:
        """Start the epoch's counts."""
        self._sum, self._count = 0., 0

    def after_train_iter(self, runner, batch_idx: int, data_batch=None,
                         outputs=None) -> None:
        """Add the share of the batch just trained on."""
        if self._labels_changed(runner):  # read again for the new labels
            self._read_families(runner)
        if self._families is None or data_batch is None:
            return
        labels = batch_labels(data_batch)
        if labels is None or not labels.size or \
                labels.max() >= self._families.size or labels.min() < 0:
            return
        if self._classes_per_batch is None:
            self._classes_per_batch = int(np.unique(labels).size)
        share = batch_lookalike_shares([labels], self._families)[0]
        if not np.isnan(share):
            self._sum += float(share)
            self._count += 1

    def after_train_epoch(self, runner) -> None:
        """Reduce the counts over ranks and log the epoch's mean share."""
        if self._families is None:
            return
        totals = torch.tensor([self._sum, float(self._count)],
                              dtype=torch.float64)
        all_reduce(totals, op='sum')
        total, count = float(totals[0]), int(round(float(totals[1])))
        if count == 0:
            return
        share = total / count
        epoch = runner.epoch + 1
        self.history[epoch] = share
        scalars = {'train/batch_lookalike_share': share}
        message = (f'BatchLookalikeShareHook: epoch {epoch}: '
                   f'batch_lookalike_share {share:.4f} ({count} batches)')
        if self.log_random and self._classes_per_batch and \
                self._classes_per_batch <= self._families.size:
            rand = random_batch_lookalike_share(self._families,
                                                self._classes_per_batch)
            scalars['train/batch_lookalike_share_random'] = rand
            message += (f', random PK batches of {self._classes_per_batch} '
                        f'classes: {rand:.4f}')
        runner.logger.info(message)
        runner.visualizer.add_scalars(scalars, step=epoch)

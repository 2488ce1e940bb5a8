"""Hook that relabels an unlabelled training set by clustering before each
epoch (unsupervised / domain-adaptive re-ID, as SpCL and Cluster
Contrast do), so that any sampler, GS included, works on pseudo-classes."""
import math
import os.path as osp
import time
from typing import Callable, Optional, Sequence, Union

import numpy as np
import torch
from mmengine.dataset import Compose
from mmengine.dist import broadcast, get_dist_info
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.registry import DefaultScope
from mmengine.runner import autocast

from mmreid_gs.engine.graph import compute_class_scores
from mmreid_gs.evaluation.functional import (cluster_quality,
                                             dbscan_pseudo_labels,
                                             jaccard_neighbors)
from mmreid_gs.registry import HOOKS
from mmreid_gs.utils.contract import check_reid_model
from mmreid_gs.utils.dist import all_gather_rows
from mmreid_gs.utils.errors import ConfigError, ReIDUserError
from .class_images import eval_mode, extract_class_features
from .train_data import train_dataloader


@HOOKS.register_module()
class PseudoLabelHook(Hook):
    """Cluster the unlabelled training images and make the clusters the
    classes of the epoch.

    Before every ``interval``-th training epoch (epochs 0, ``interval``,
    ...), the hook

    1. extracts the feature maps of every training image with
       ``model.extract_feat`` in eval mode (``pipeline``: the test
       pipeline; every rank a share of the images, then gathered);
    2. scores all pairs with ``model.match`` in blocks of ``block_size``
       rows (every rank its rows, gathered) and takes the distance
       ``1 - sigmoid(score)``;
    3. on rank 0, computes the k-reciprocal Jaccard distance within ``eps``
       (:func:`jaccard_neighbors`, ``k1``, ``k2``) and clusters it with
       DBSCAN (:func:`dbscan_pseudo_labels`, ``eps``, ``min_samples``);
       the labels are broadcast, so every rank gets the same;
    4. gives the training set (:class:`UnlabeledReIDDataset`,
       ``set_pseudo_labels``) and the sampler (``set_labels``) the labels
       ``0..C-1``; outliers are left out of the epoch (label -1), or each a
       class of its own with ``keep_outliers=True``;
    5. logs the number of clusters and outliers and, when the images carry
       true identities (``get_true_labels()``), NMI, ARI and purity
       (:func:`cluster_quality`): one ``runner.logger`` line, the message
       hub scalars ``pseudo_label/<name>`` and the visualizer's scalars
       ``pseudo_label/<name>`` (step = the 1-based epoch).

    Its priority (``ABOVE_NORMAL``) runs it before :class:`GraphSamplerHook`
    in the same epoch, which then builds its class graph over the
    pseudo-classes. The epoch length does not change: the sampler needs a
    fixed ``batches_per_epoch``.

    A clustering that gives fewer classes than a batch holds (``P =
    batch_size / num_instances``) or leaves more than ``1 -
    min_clustered`` of the images outliers is not used: one warning line
    gives the counts and the eps to try, and the epoch keeps the previous
    labels; without previous labels (the first clustering) the run stops
    with a :class:`ReIDUserError` saying the same.

    Resume: the labels of the current epoch are saved in checkpoints
    (``checkpoint['pseudo_labels']``). A run resumed in an epoch without a
    clustering gets them back (before :class:`GraphSamplerHook` restores
    its sampler state); one resumed in a clustering epoch clusters, as the
    uninterrupted run did, and drops the checkpoint's ``graph_sampler``
    state, which belongs to the previous labels.

    Memory: the ``N`` feature maps and one ``[block_size, N]`` block of
    scores on the device; the ``[N, N]`` float32 distances (4 N^2 bytes:
    4.3 GB at MSMT17's 32,621 training images) in host memory on every
    rank (:meth:`distances`); the Jaccard step keeps only the pairs within
    ``eps``.

    Args:
        pipeline (list[dict | callable]): Transforms that load one image
            for feature extraction (the test pipeline).
        interval (int): Cluster every ``interval`` epochs. Defaults to 1.
        batch_size (int): Images per forward pass. Defaults to 64.
        eps (float): DBSCAN radius on the Jaccard distance, in (0, 1).
            Defaults to 0.6 (SpCL, Cluster Contrast).
        min_samples (int): DBSCAN core-point size. Defaults to 4.
        k1 (int): Jaccard k1. Defaults to 30.
        k2 (int): Jaccard k2. Defaults to 6.
        keep_outliers (bool): Give each outlier a class of its own instead
            of leaving it out. Defaults to False.
        min_clustered (float): Smallest share of clustered (non-outlier)
            images for a clustering to be used. Defaults to 0.1.
        block_size (int): Query rows per ``model.match`` call.
            Defaults to 256.
        num_workers (int): DataLoader workers for loading the images.
            Defaults to 0.
        fp16 (bool): Extract and score under autocast. Defaults to False.
        progress (bool): Show a progress bar while extracting (rank 0).
            Defaults to False.
        load_from_hint (str, optional): How to make the checkpoint of the
            config's ``load_from`` (e.g. the command that trains the source
            model), told when that file is missing. Defaults to None.
    """

    priority = 'ABOVE_NORMAL'

    def __init__(self,
                 pipeline: Sequence[Union[dict, Callable]],
                 interval: int = 1,
                 batch_size: int = 64,
                 eps: float = 0.6,
                 min_samples: int = 4,
                 k1: int = 30,
                 k2: int = 6,
                 keep_outliers: bool = False,
                 min_clustered: float = 0.1,
                 block_size: int = 256,
                 num_workers: int = 0,
                 fp16: bool = False,
                 progress: bool = False,
                 load_from_hint: Optional[str] = None) -> None:
        if not isinstance(pipeline, (list, tuple)) or not pipeline:
            raise ConfigError(
                'PseudoLabelHook: pipeline must be a non-empty list of '
                f'transforms (the test pipeline); got {pipeline!r}.')
        for name, value, low in [('interval', interval, 1),
                                 ('batch_size', batch_size, 1),
                                 ('min_samples', min_samples, 1),
                                 ('k1', k1, 1), ('k2', k2, 1),
                                 ('block_size', block_size, 1)]:
            if isinstance(value, bool) or not isinstance(value, int) or \
                    value < low:
                raise ConfigError(f'PseudoLabelHook: {name} must be an int '
                                  f'>= {low}; got {value!r}.')
        if not 0.0 < float(eps) < 1.0:
            raise ConfigError('PseudoLabelHook: eps must be in (0, 1) (a '
                              f'Jaccard distance); got {eps!r}.')
        if not 0.0 <= float(min_clustered) <= 1.0:
            raise ConfigError('PseudoLabelHook: min_clustered must be in '
                              f'[0, 1]; got {min_clustered!r}.')
        self.pipeline_cfg = list(pipeline)
        self.interval = interval
        self.batch_size = batch_size
        self.eps = float(eps)
        self.min_samples = min_samples
        self.k1, self.k2 = k1, k2
        self.keep_outliers = bool(keep_outliers)
        self.min_clustered = float(min_clustered)
        self.block_size = block_size
        self.num_workers = int(num_workers)
        self.fp16 = bool(fp16)
        self.progress = bool(progress)
        self.load_from_hint = load_from_hint
        self._pipeline: Optional[Compose] = None
        #: int64 [N] labels of the current epoch (None before the first).
        self.labels: Optional[np.ndarray] = None
        self._pending = None  # (checkpoint epoch, saved labels)
        self._scoring_time = 0.0
        #: What the last used clustering gave (``epoch``, ``seconds``,
        #: counts and, with true identities, :func:`cluster_quality`).
        self.last_info: dict = {}

    # ------------------------------------------------------------ helpers
    def _get_pipeline(self) -> Compose:
        if self._pipeline is None:
            scope = None if DefaultScope.get_current_instance() else \
                'mmreid_gs'
            with DefaultScope.overwrite_default_scope(scope):
                self._pipeline = Compose(self.pipeline_cfg)
        return self._pipeline

    def clusters_at(self, epoch: int) -> bool:
        """Whether the hook clusters before ``epoch`` (0-based)."""
        return epoch % self.interval == 0

    @staticmethod
    def _parts(runner):
        loader = train_dataloader(runner)
        dataset = getattr(loader, 'dataset', None)
        sampler = getattr(loader, 'sampler', None)
        if not callable(getattr(dataset, 'set_pseudo_labels', None)):
            raise ConfigError(
                'PseudoLabelHook needs a train dataset that takes '
                "pseudo-labels (type='UnlabeledReIDDataset'); got "
                f'{type(dataset).__name__}.')
        if not callable(getattr(sampler, 'set_labels', None)):
            raise ConfigError(
                'PseudoLabelHook needs a train sampler with set_labels() '
                "(e.g. type='GraphSampler' with batches_per_epoch); got "
                f'{type(sampler).__name__}.')
        if getattr(sampler, 'batches_per_epoch', 0) is None:
            raise ConfigError(
                'PseudoLabelHook: set train_dataloader.sampler.'
                'batches_per_epoch: the number of pseudo-classes changes '
                'every clustering, the epoch length must not.')
        return dataset, sampler

    def _apply(self, dataset, sampler, labels: np.ndarray) -> None:
        # the sampler first: it checks more (C >= P), so a refusal leaves
        # the dataset and the sampler on the same (previous) labels
        sampler.set_labels(labels)
        dataset.set_pseudo_labels(labels)
        self.labels = labels

    # ---------------------------------------------------------- clustering
    def cluster(self, runner, dataset) -> np.ndarray:
        """Features, distances and DBSCAN labels with the current model.

        Returns:
            np.ndarray: int64 [N]: DBSCAN's labels (-1: outlier), the same
            on every rank.
        """
        model = runner.model.module if is_model_wrapper(
            runner.model) else runner.model
        check_reid_model(model, 'PseudoLabelHook')
        with eval_mode(model):
            return self._cluster(runner, dataset, model)

    def distances(self, model, feats: torch.Tensor,
                  rows: Sequence[int]) -> torch.Tensor:
        """``1 - sigmoid(model.match(feats[rows], feats))``, scored in
        blocks of ``block_size`` rows on the features' device, each block
        moved to the host as soon as it is scored.

        The device holds the features and one block of scores; the
        ``[len(rows), N]`` float32 result is on the CPU (on a GPU the whole
        matrix would be 4 N^2 bytes of device memory twice over: the
        scores and their sigmoid).

        Args:
            model: The re-ID model (``match``).
            feats (Tensor): [N, ...] features of all the images.
            rows (Sequence[int]): Images to score against all.

        Returns:
            Tensor: float32 [len(rows), N] on the CPU.
        """
        n = feats.shape[0]
        out = torch.empty(len(rows), n, dtype=torch.float32)
        with torch.no_grad(), autocast(enabled=self.fp16):
            for i in range(0, len(rows), self.block_size):
                block = rows[i:i + self.block_size]
                scores = compute_class_scores(feats, model.match, block,
                                              self.block_size)
                out[i:i + len(block)] = torch.sigmoid(-scores.float()).cpu()
        return out

    def _cluster(self, runner, dataset, model) -> np.ndarray:
        n = len(dataset)
        rank, world_size = get_dist_info()
        chunk = math.ceil(n / world_size)
        mine = list(range(rank * chunk, min(n, (rank + 1) * chunk)))
        padded = mine + [0] * (chunk - len(mine))
        start = time.perf_counter()
        local = extract_class_features(
            model, dataset, padded, self._get_pipeline(), self.batch_size,
            self.num_workers, self.fp16, show=self.progress and rank == 0)
        feats = all_gather_rows(local[:len(mine)])
        dist = all_gather_rows(self.distances(model, feats, mine))
        t_feat = time.perf_counter() - start
        labels = torch.empty(n, dtype=torch.long, device=feats.device)
        if rank == 0:
            graph = jaccard_neighbors(dist.numpy(), self.k1, self.k2,
                                      max_distance=self.eps)
            labels.copy_(torch.from_numpy(dbscan_pseudo_labels(
                graph, self.eps, self.min_samples)))
        if world_size > 1:
            broadcast(labels, 0)
        self._scoring_time = t_feat
        return labels.cpu().numpy()

    def update_labels(self, runner) -> None:
        """Cluster and, when the clustering is usable, relabel the training
        set and the sampler (see the class docstring)."""
        dataset, sampler = self._parts(runner)
        epoch = runner.epoch
        start = time.perf_counter()
        raw = self.cluster(runner, dataset)
        seconds = time.perf_counter() - start
        n = raw.size
        num_clusters = int(raw.max(initial=-1)) + 1
        num_outliers = int((raw < 0).sum())
        per_batch = sampler.batch_size // sampler.num_instances
        labels = raw.copy()
        if self.keep_outliers:
            out = labels < 0
            labels[out] = num_clusters + np.arange(num_outliers)
        num_classes = int(labels.max(initial=-1)) + 1
        if num_classes < per_batch or (n - num_outliers) < \
                self.min_clustered * n:
            msg = (f'PseudoLabelHook: epoch {epoch + 1}: the clustering '
                   f'(eps={self.eps}, min_samples={self.min_samples}) gave '
                   f'{num_clusters} clusters and {num_outliers} outliers of '
                   f'{n} images: {num_classes} classes for batches of '
                   f'{per_batch} classes, {n - num_outliers} images '
                   f'clustered (at least {self.min_clustered:.0%} needed); '
                   f'try a larger eps (e.g. {min(0.95, self.eps + 0.1):.2f})'
                   ' or a smaller min_samples')
            if self.labels is None:
                raise ReIDUserError(msg + '; no previous labels to keep.')
            runner.logger.warning(msg + '; keeping the previous labels.')
            return
        self._apply(dataset, sampler, labels)
        info = dict(num_clusters=num_clusters, num_outliers=num_outliers)
        get_true = getattr(dataset, 'get_true_labels', None)
        true = get_true() if callable(get_true) else None
        if true is not None:
            info = cluster_quality(raw, true)
        self.last_info = dict(info, epoch=epoch, seconds=seconds)
        quality = '' if true is None else (
            f', NMI {info["nmi"]:.3f}, ARI {info["ari"]:.3f}, purity '
            f'{info["purity"]:.3f} (against {len(np.unique(true))} true '
            'identities)')
        runner.logger.info(
            f'PseudoLabelHook: epoch {epoch + 1}: {num_clusters} clusters, '
            f'{num_outliers} outliers of {n} images '
            f'({"own classes" if self.keep_outliers else "left out"})'
            f'{quality}; {seconds:.2f}s (features and scores '
            f'{self._scoring_time:.2f}s)')
        scalars = {f'pseudo_label/{k}': float(v) for k, v in info.items()}
        for key, value in scalars.items():
            runner.message_hub.update_scalar(key, value)
        visualizer = getattr(runner, 'visualizer', None)
        if visualizer is not None:
            visualizer.add_scalars(scalars, step=epoch + 1)

    # --------------------------------------------------------------- hooks
    def before_run(self, runner) -> None:
        """Stop with a clear error when the checkpoint to adapt from is
        missing (before MMEngine tries to load it)."""
        path = getattr(runner, '_load_from', None)
        if isinstance(path, str) and path and '://' not in path and \
                not osp.isfile(path):
            hint = f'; make it first: {self.load_from_hint}' if \
                self.load_from_hint else ''
            raise ConfigError(
                f'PseudoLabelHook: load_from checkpoint not found: {path} '
                '(the network the adaptation starts from, trained with '
                f'labels on the source domain){hint}.')

    def before_train(self, runner) -> None:
        """Check the dataset and the sampler before training starts."""
        self._parts(runner)

    def before_train_epoch(self, runner) -> None:
        """Restore the labels of a resumed epoch, or cluster."""
        epoch = runner.epoch
        if self._pending is not None:
            ckpt_epoch, saved = self._pending
            self._pending = None
            if ckpt_epoch == epoch and saved is not None:
                dataset, sampler = self._parts(runner)
                if self.clusters_at(epoch):
                    self.labels = saved  # the fallback of a bad clustering
                else:
                    self._apply(dataset, sampler, saved)
                    runner.logger.info(
                        'PseudoLabelHook: restored the pseudo-labels of the '
                        f'checkpoint ({int(saved.max()) + 1} classes).')
                    return
        if self.clusters_at(epoch) or self.labels is None:
            self.update_labels(runner)

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        """Save the current labels as ``checkpoint['pseudo_labels']``."""
        if self.labels is not None:
            checkpoint['pseudo_labels'] = torch.from_numpy(self.labels.copy())

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        """Keep the saved labels for :meth:`before_train_epoch`; a resume in
        a clustering epoch drops the saved ``graph_sampler`` state (it is
        over the previous labels; the new labels reset the sampler)."""
        epoch = checkpoint.get('meta', {}).get('epoch')
        saved = checkpoint.get('pseudo_labels')
        if saved is None:
            return
        self._pending = (epoch,
                         np.asarray(saved, dtype=np.int64).reshape(-1))
        if epoch is not None and self.clusters_at(int(epoch)):
            checkpoint.pop('graph_sampler', None)

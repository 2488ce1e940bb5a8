"""Hook that refreshes the Graph Sampler's class graph before each epoch.
The choice, loading and feature extraction of the class images are in
:mod:`~mmreid_gs.engine.hooks.class_images`."""
import math
import time
from typing import Callable, Dict, Optional, Sequence, Union

import numpy as np
import torch
from mmengine.dataset import Compose
from mmengine.dist import broadcast, get_dist_info
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.registry import DefaultScope
from mmengine.runner import autocast

from mmreid_gs.datasets.samplers import GraphSampler
from mmreid_gs.datasets.samplers.graph_sampler import \
    missing_graph_sampler_members
from mmreid_gs.engine.graph import (build_class_graph, compute_class_scores,
                                    graph_dump_path, reranked_class_graph,
                                    save_graph_dump)
from mmreid_gs.evaluation.functional import (graph_cross_group_share,
                                             graph_family_share)
from mmreid_gs.registry import HOOKS
from mmreid_gs.utils.contract import check_reid_model
from mmreid_gs.utils.dist import all_gather_rows
from mmreid_gs.utils.errors import (ConfigError, ReIDUserError,
                                    ReIDUserTypeError)
from mmreid_gs.visualization import (ReIDVisualizer, class_graph_epoch,
                                     spread_indices)
from .class_images import (choose_class_images, eval_mode,
                           extract_class_features, image_paths)
from .train_data import (read_class_sources, read_label_families,
                         train_dataloader)


@HOOKS.register_module()
class GraphSamplerHook(Hook):
    """Refresh the class graph of :class:`GraphSampler` before every epoch.

    Works with any model that offers ``extract_feat(inputs)`` and
    ``match(query_feats, gallery_feats) -> [q, g]`` similarities (QAConv, a
    global embedding, ...), and with any train sampler that follows
    :data:`~mmreid_gs.datasets.samplers.GRAPH_SAMPLER_PROTOCOL` (``set_graph``,
    ``num_classes``, ``num_neighbors``, ``class_indices``, ``seed``).

    From epoch ``pk_epochs`` on (0-based; earlier epochs keep random PK
    batches), before each training epoch the hook

    1. picks one random image per class (generator seeded from the
       sampler's seed and the epoch: the same on every rank);
    2. loads them through ``pipeline`` (the test pipeline) in batches of
       ``batch_size``, stacks them with ``model.data_preprocessor`` and
       extracts feature maps with ``model.extract_feat`` in eval mode under
       ``torch.no_grad()`` (the previous train/eval flag of every sub-module
       is restored afterwards, so ``norm_eval`` backbones stay as they were);
    3. scores classes with ``model.match`` and takes each class's
       ``sampler.num_neighbors`` nearest classes (``P - 1`` for
       :class:`GraphSampler`, ``P = batch_size / num_instances``; the
       ``num_neighbors`` argument of :class:`DepthFirstGraphSampler`) with
       :func:`build_class_graph` (exact, or two-stage with
       ``num_candidates``, whose second stage uses ``model.match_pairs``
       when the model has one), or, with ``rerank=True``, from the k-reciprocal
       re-ranked distances ``1 - sigmoid(score)``;
    4. calls ``sampler.set_graph(neighbours)``;
    5. logs the time it took (``runner.logger`` and the visualizer's
       scalars ``graph/build_seconds``, ``graph/features_seconds`` and
       ``graph/scoring_seconds``, step = the 1-based epoch);
       when the train dataset knows families of look-alike identities
       (``get_label_families()``, e.g. :class:`SyntheticReID`), logs the
       share of each class's neighbours that belong to its family, next to
       the share random neighbours would give (the visualizer's scalars
       ``graph/family_share`` and ``graph/family_share_random``, step = the
       1-based epoch); other datasets are skipped silently; when the train
       dataset pools several sources (``class_source``, e.g.
       :class:`PooledReIDDataset`), logs the share of the neighbours that
       come from another source than their class, next to the share random
       neighbours would give (``graph/cross_source_share`` and
       ``graph/cross_source_share_random``);
    6. with ``visualize=True``, draws the neighbour grid of a fixed set of
       classes (their images used for the graph, then their neighbours')
       into the visualizer's backends as ``graph_neighbors`` (rank 0).

    Under distributed training every rank extracts the features of a share
    of the classes and scores a share of the rows; the shares are gathered
    so that all ranks set the same graph (with re-ranking, rank 0's graph is
    broadcast).

    Pooled multi-source training (:class:`PooledReIDDataset`): the graph
    spans the classes of all sources by default, so a batch may bring
    together look-alikes of different sources. ``within_source=True`` keeps
    each class's neighbours within its own source (the graph of every
    source's classes alone: ``build_class_graph(..., groups=class_source)``;
    with ``rerank``, the re-ranked distances of the other sources' classes
    are put last); every source then needs at least ``P`` classes.

    Re-ranking: :func:`mmreid_gs.evaluation.functional.re_ranking` takes
    queries then gallery. The C class images are both, so the hook passes
    the 2C x 2C block matrix ``[[D, D], [D, D]]`` with ``num_query=C`` and
    gets the re-ranked C x C matrix (what the public code's
    ``re_ranking(dist, dist, dist)`` does; each image meets its copy, which
    is excluded with the class itself). Memory grows with ``(2C)^2``.

    The sampler's state (graph, per-class image lists and pointers) is saved
    in checkpoints under ``'graph_sampler'`` and restored on resume, so a
    resumed run samples exactly as an uninterrupted one.

    Args:
        pipeline (list[dict | callable]): Transforms that load one image for
            feature extraction (the test pipeline, ending with
            ``PackReIDInputs``). Built with :class:`mmengine.dataset.Compose`
            in the default scope (``mmreid_gs`` if none is set).
        pk_epochs (int): Epochs of random PK sampling before the first graph
            (paper: 1). Defaults to 1.
        batch_size (int): Images per forward pass. Defaults to 64.
        rerank (bool): Use k-reciprocal re-ranked distances. Defaults to
            False.
        k1 (int): Re-ranking k1. Defaults to 20.
        k2 (int): Re-ranking k2. Defaults to 6.
        lambda_value (float): Re-ranking weight of the original distance.
            Defaults to 0.3.
        num_candidates (int | float, optional): None for the exact graph,
            else candidates per class (count, or fraction of C in (0, 1)) of
            the two-stage graph; see :func:`build_class_graph`. Ignored with
            ``rerank`` (which needs all scores). Defaults to None.
        save_graph (bool): Save ``work_dir/graph/epoch_{k}.npz`` (k =
            1-based number of the epoch that uses the graph, as in
            checkpoint names) with ``class_ids``, ``neighbors``,
            ``sample_indices`` and ``img_paths`` (rank 0; plus
            ``label_families`` when the dataset knows them). Defaults to
            False.
        num_workers (int): DataLoader workers for loading the images.
            Defaults to 0.
        progress (bool): Show a progress bar while extracting (rank 0).
            Defaults to False.
        candidate_fn (str | callable, optional): First-stage proxy of the
            two-stage graph. Defaults to None (``'gap'``).
        block_size (int): Query rows per matcher call. Defaults to 256.
        fp16 (bool): Extract and score under autocast (float16 on a GPU, as
            the public QAConv-GS sampler runs its half-precision model and
            matcher; bfloat16 on the CPU, where QAConv matching runs about
            2.5x faster with AMX). The features are kept in float32 between
            the two. Defaults to False.
        visualize (bool): Draw the neighbour grid of ``vis_classes`` at
            every graph build (see :class:`ReIDVisualizer`). Defaults to
            False.
        vis_classes (int | Sequence[int]): Classes drawn: a number spread
            evenly over the labels, or explicit labels. Defaults to 8.
        within_source (bool): Take each class's neighbours from its own
            source only (a train dataset with ``class_source``, e.g.
            :class:`PooledReIDDataset`). Defaults to False.
        check_recall (bool): On the first two-stage build of a run, build
            the exact graph too and log the share of its neighbours the
            two-stage graph holds (``graph/recall``) and its time
            (``graph/exact_seconds``). Defaults to False.

    Example:
        >>> custom_hooks = [
        ...     dict(type='GraphSamplerHook', pipeline=test_pipeline,
        ...          pk_epochs=1, batch_size=64)
        ... ]
        >>> train_dataloader = dict(
        ...     batch_size=64,
        ...     sampler=dict(type='GraphSampler', batch_size=64,
        ...                  num_instances=4),
        ...     ...)
    """

    priority = 'NORMAL'

    def __init__(self,
                 pipeline: Sequence[Union[dict, Callable]],
                 pk_epochs: int = 1,
                 batch_size: int = 64,
                 rerank: bool = False,
                 k1: int = 20,
                 k2: int = 6,
                 lambda_value: float = 0.3,
                 num_candidates: Optional[Union[int, float]] = None,
                 save_graph: bool = False,
                 num_workers: int = 0,
                 progress: bool = False,
                 candidate_fn: Optional[Union[str, Callable]] = None,
                 block_size: int = 256,
                 fp16: bool = False,
                 visualize: bool = False,
                 vis_classes: Union[int, Sequence[int]] = 8,
                 within_source: bool = False,
                 check_recall: bool = False) -> None:
        if not isinstance(pipeline, (list, tuple)) or not pipeline:
            raise ReIDUserError(
                'GraphSamplerHook: pipeline must be a non-empty '
                'list of transforms (the test pipeline); got '
                f'{pipeline!r}.')
        if int(pk_epochs) < 0 or int(batch_size) < 1:
            raise ReIDUserError('GraphSamplerHook: pk_epochs must be >= 0 and '
                                f'batch_size >= 1; got {pk_epochs}, '
                                f'{batch_size}.')
        self.pipeline_cfg = list(pipeline)
        self.pk_epochs = int(pk_epochs)
        self.batch_size = int(batch_size)
        self.rerank = bool(rerank)
        self.k1, self.k2 = int(k1), int(k2)
        self.lambda_value = float(lambda_value)
        self.num_candidates = num_candidates
        self.save_graph = bool(save_graph)
        self.num_workers = int(num_workers)
        self.progress = bool(progress)
        self.candidate_fn = candidate_fn
        self.block_size = int(block_size)
        self.fp16 = bool(fp16)
        self.visualize = bool(visualize)
        self.vis_classes = vis_classes
        self.within_source = bool(within_source)
        self.check_recall = bool(check_recall)
        self._recall_checked = False
        self._families = None  # ((dataset id, labels version), families)
        self._pipeline: Optional[Compose] = None
        self._pending_state = None  # (checkpoint epoch, sampler state)
        self.last_info: Dict = {}

    # ------------------------------------------------------------ helpers
    def _get_sampler(self, runner, strict: bool = True):
        loader = train_dataloader(runner)
        sampler = getattr(loader, 'sampler', None)
        missing = missing_graph_sampler_members(sampler)
        if not missing:
            return sampler
        if strict:
            raise ReIDUserTypeError(
                'GraphSamplerHook needs a train sampler that follows the '
                'graph-sampler protocol (e.g. '
                "train_dataloader.sampler.type='GraphSampler'); "
                f'{type(sampler).__name__} lacks: {", ".join(missing)}.')
        return None

    def _check_batch_size(self, runner, sampler: GraphSampler) -> None:
        loader = train_dataloader(runner)
        size = getattr(loader, 'batch_size', None)
        wanted = getattr(sampler, 'batch_size', None)
        if size is not None and wanted is not None and size != wanted:
            raise ReIDUserError(
                f'train_dataloader.batch_size ({size}) must equal '
                'train_dataloader.sampler.batch_size '
                f'({sampler.batch_size}): the GraphSampler yields whole '
                'batches of P x K indices.')

    def _get_pipeline(self) -> Compose:
        if self._pipeline is None:
            scope = None if DefaultScope.get_current_instance() else \
                'mmreid_gs'
            with DefaultScope.overwrite_default_scope(scope):
                self._pipeline = Compose(self.pipeline_cfg)
        return self._pipeline

    @staticmethod
    def _unwrap(model):
        return model.module if is_model_wrapper(model) else model

    def _source_groups(self, dataset,
                       sampler: GraphSampler) -> Optional[torch.Tensor]:
        """The source of every class when ``within_source`` (else None),
        checked: the dataset has sources, one per class of the sampler, and
        each has more classes than the neighbours a class needs."""
        if not self.within_source:
            return None
        found = read_class_sources(dataset)
        if found is None:
            raise ConfigError(
                'GraphSamplerHook(within_source=True) needs a train dataset '
                'that knows the source of every class (`class_source`, e.g. '
                f"type='PooledReIDDataset'); got {type(dataset).__name__}.")
        sources, names = found
        if sources.size != sampler.num_classes:
            raise ConfigError(
                f'GraphSamplerHook(within_source=True): the train dataset '
                f'gives the source of {sources.size} classes, the sampler has '
                f'{sampler.num_classes}.')
        counts = np.bincount(sources, minlength=len(names))
        need = sampler.num_neighbors + 1
        for i, count in enumerate(counts):
            if 0 < count < need:
                raise ConfigError(
                    f'GraphSamplerHook(within_source=True): source '
                    f'{names[i]!r} has {count} classes, fewer than the '
                    f'{need} of a batch (a class and its '
                    f'{sampler.num_neighbors} neighbours from its source); '
                    'use within_source=False or fewer classes per batch.')
        return torch.from_numpy(sources)

    # -------------------------------------------------------------- graph
    def choose_images(self, sampler: GraphSampler, epoch: int) -> np.ndarray:
        """One random dataset index per class for ``epoch``.

        Args:
            sampler (GraphSampler): The train sampler (labels and seed).
            epoch (int): The epoch (0-based).

        Returns:
            np.ndarray: int64 [C] dataset index of each class's image.
        """
        return choose_class_images(sampler.class_indices, sampler.seed,
                                   epoch)

    def update_graph(self, runner, sampler: GraphSampler) -> torch.Tensor:
        """Compute the class graph with the current model and set it.

        The model is in eval mode during extraction and scoring (so the
        head's BatchNorm layers use, and do not update, their running
        statistics); every sub-module's previous mode is restored after.

        Returns:
            Tensor: LongTensor [C, sampler.num_neighbors] the graph set on
            the sampler.
        """
        model = self._unwrap(runner.model)
        check_reid_model(model, 'GraphSamplerHook')
        with eval_mode(model):
            return self._update_graph(runner, sampler, model)

    def _update_graph(self, runner, sampler: GraphSampler,
                      model) -> torch.Tensor:
        start = time.perf_counter()
        dataset = train_dataloader(runner).dataset
        epoch = runner.epoch
        num_classes, k = sampler.num_classes, sampler.num_neighbors
        rank, world_size = get_dist_info()
        groups = self._source_groups(dataset, sampler)
        chosen = self.choose_images(sampler, epoch)

        # this rank's share of classes, padded to the same size everywhere
        chunk = math.ceil(num_classes / world_size)
        mine = list(range(rank * chunk, min(num_classes, (rank + 1) * chunk)))
        padded = mine + [0] * (chunk - len(mine))
        local = extract_class_features(
            model, dataset, [int(chosen[c]) for c in padded],
            self._get_pipeline(), self.batch_size, self.num_workers,
            self.fp16, show=self.progress and rank == 0, out_device='cpu')
        # gathered in host memory (in chunks through the communication
        # device), then one copy on the model's device for the matcher
        param = next(model.parameters(), None)
        feats = all_gather_rows(local[:len(mine)]).to(
            param.device if param is not None else 'cpu')
        del local
        t_feat = time.perf_counter() - start

        matcher = model.match
        with torch.no_grad(), autocast(enabled=self.fp16):
            if self.rerank:
                part = compute_class_scores(feats, matcher, padded,
                                            self.block_size)
                scores = all_gather_rows(part[:len(mine)])
                nbrs = reranked_class_graph(scores, k, self.k1, self.k2,
                                            self.lambda_value, groups=groups)
                if world_size > 1:
                    nbrs = nbrs.to(feats.device)
                    broadcast(nbrs, 0)
                nbrs = nbrs.cpu()
            else:
                part = build_class_graph(
                    feats, matcher, k, self.num_candidates, self.block_size,
                    self.candidate_fn, rows=padded,
                    pair_matcher=getattr(model, 'match_pairs', None),
                    groups=groups)
                nbrs = all_gather_rows(part[:len(mine)].to(
                    feats.device)).cpu()
        t_score = time.perf_counter() - start - t_feat
        if self.check_recall and not self._recall_checked and \
                self.num_candidates is not None and not self.rerank:
            self._log_recall(runner, feats, matcher, model, k, padded, mine,
                             groups, nbrs, epoch)
        sampler.set_graph(nbrs)
        total = time.perf_counter() - start

        mode = 'k-reciprocal re-ranked' if self.rerank else (
            'exact' if self.num_candidates is None else
            f'candidates={self.num_candidates}')
        if self.fp16:
            mode += ', autocast'
        if groups is not None:
            mode += ', within source'
        runner.logger.info(
            f'GraphSamplerHook: epoch {epoch + 1}: graph of {num_classes} '
            f'classes x {k} neighbours ({mode}); features {t_feat:.2f}s, '
            f'scoring {t_score:.2f}s, total {total:.2f}s')
        self.last_info = dict(
            epoch=epoch, features_time=t_feat, scoring_time=t_score,
            total_time=total, sample_indices=chosen)
        visualizer = getattr(runner, 'visualizer', None)  # a Runner's
        if visualizer is not None:
            visualizer.add_scalars(
                {
                    'graph/build_seconds': total,
                    'graph/features_seconds': t_feat,
                    'graph/scoring_seconds': t_score
                },
                step=epoch + 1)
        families = self._label_families(runner, dataset)
        if families is not None:
            self._log_family_share(runner, nbrs, families, epoch)
        sources = read_class_sources(dataset)
        if sources is not None:
            self._log_source_share(runner, nbrs, sources, epoch)
        if self.save_graph and rank == 0:
            self._save(runner, dataset, chosen, nbrs, epoch, families,
                       None if sources is None else sources[0])
        if self.visualize and rank == 0:
            self._draw(runner, dataset, chosen, nbrs, epoch, families)
        return nbrs

    def _log_recall(self, runner, feats, matcher, model, k, padded, mine,
                    groups, nbrs, epoch) -> None:
        """Once (the first two-stage build): the exact graph too, and the
        share of its neighbours the two-stage graph found
        (``graph/recall``) and the exact graph's time
        (``graph/exact_seconds``)."""
        start = time.perf_counter()
        with torch.no_grad(), autocast(enabled=self.fp16):
            part = build_class_graph(
                feats, matcher, k, None, self.block_size, rows=padded,
                pair_matcher=getattr(model, 'match_pairs', None),
                groups=groups)
            exact = all_gather_rows(part[:len(mine)].to(feats.device)).cpu()
        seconds = time.perf_counter() - start
        found = [len(set(a.tolist()) & set(b.tolist()))
                 for a, b in zip(nbrs, exact)]
        recall = float(np.sum(found)) / max(1, exact.numel())
        self._recall_checked = True
        runner.logger.info(
            f'GraphSamplerHook: epoch {epoch + 1}: the two-stage graph '
            f'(candidates={self.num_candidates}) holds {recall:.4f} of the '
            f'exact graph\'s neighbours; the exact graph took {seconds:.1f}s')
        visualizer = getattr(runner, 'visualizer', None)
        if visualizer is not None:
            visualizer.add_scalars({'graph/recall': recall,
                                    'graph/exact_seconds': seconds},
                                   step=epoch + 1)

    def _label_families(self, runner, dataset) -> Optional[np.ndarray]:
        """The dataset's family of every label, or None (no
        ``get_label_families``, or it failed: warned once)."""
        # pseudo-labels: the families change with every clustering
        key = (id(dataset), getattr(dataset, 'labels_version', None))
        if self._families is None or self._families[0] != key:
            self._families = (key,
                              read_label_families(dataset, runner,
                                                  'GraphSamplerHook'))
        return self._families[1]

    def _publish_share(self, runner, epoch: int, name: str, quality: Dict,
                       message: str) -> None:
        """``name`` and ``name_random`` of ``quality`` into
        :attr:`last_info`, the log (``message``) and the visualizer's
        ``graph/`` scalars."""
        self.last_info.update({name: quality['share'],
                               f'{name}_random': quality['random']})
        runner.logger.info(f'GraphSamplerHook: epoch {epoch + 1}: {message}')
        visualizer = getattr(runner, 'visualizer', None)
        if visualizer is not None:
            visualizer.add_scalars(
                {
                    f'graph/{name}': quality['share'],
                    f'graph/{name}_random': quality['random']
                },
                step=epoch + 1)

    def _log_family_share(self, runner, nbrs, families, epoch) -> None:
        if families.size < nbrs.shape[0]:
            return
        quality = graph_family_share(nbrs.numpy(), families)
        if quality['num_classes'] == 0:
            return
        self._publish_share(
            runner, epoch, 'family_share', quality,
            f'{quality["share"]:.1%} of the neighbours are look-alikes '
            f'(same family; {quality["num_classes"]} classes), random '
            f'neighbours: {quality["random"]:.1%}, at most '
            f'{quality["best"]:.1%}')

    def _log_source_share(self, runner, nbrs, sources, epoch) -> None:
        """Log the share of neighbours from another source (pooled
        multi-source datasets with more than one source)."""
        class_source, names = sources
        if class_source.size != nbrs.shape[0] or len(
                np.unique(class_source)) < 2:
            return
        quality = graph_cross_group_share(nbrs.numpy(), class_source)
        if np.isnan(quality['share']):
            return
        self._publish_share(
            runner, epoch, 'cross_source_share', quality,
            f'{quality["share"]:.1%} of the neighbours come from another '
            f'source than their class ({len(names)} sources), random '
            f'neighbours: {quality["random"]:.1%}')

    def _draw(self, runner, dataset, chosen, nbrs, epoch, families) -> None:
        if isinstance(self.vis_classes, int):
            classes = spread_indices(len(chosen), self.vis_classes)
        else:
            classes = [int(c) for c in self.vis_classes]
        paths = image_paths(dataset, chosen)
        block = class_graph_epoch(epoch + 1, nbrs.numpy(), paths, classes,
                                  families)
        drawer = ReIDVisualizer.drawer_for(runner.visualizer)
        image = drawer.draw_class_graph([block])
        runner.visualizer.add_image('graph_neighbors', image, step=epoch + 1)

    @staticmethod
    def _save(runner, dataset, chosen, nbrs, epoch, families=None,
              sources=None) -> None:
        path = save_graph_dump(
            graph_dump_path(runner.work_dir, epoch + 1), nbrs.numpy(), chosen,
            image_paths(dataset, chosen), families, sources)
        runner.logger.info(f'GraphSamplerHook: graph saved to {path}')

    # --------------------------------------------------------------- hooks
    def before_train(self, runner) -> None:
        """Check the sampler, the batch sizes and (``within_source``) the
        sources before training starts."""
        sampler = self._get_sampler(runner)
        self._check_batch_size(runner, sampler)
        self._source_groups(train_dataloader(runner).dataset, sampler)

    def before_train_epoch(self, runner) -> None:
        """Restore a resumed sampler state; from ``pk_epochs`` on, set a new
        graph."""
        sampler = self._get_sampler(runner)
        self._check_batch_size(runner, sampler)
        if self._pending_state is not None:
            ckpt_epoch, state = self._pending_state
            self._pending_state = None
            if ckpt_epoch == runner.epoch and hasattr(sampler,
                                                      'load_state_dict'):
                sampler.load_state_dict(state)
                sampler.set_epoch(runner.epoch)
                runner.logger.info('GraphSamplerHook: restored the '
                                   'GraphSampler state of the checkpoint.')
        if runner.epoch >= self.pk_epochs:
            self.update_graph(runner, sampler)

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        """Save the sampler state as ``checkpoint['graph_sampler']``."""
        sampler = self._get_sampler(runner, strict=False)
        if sampler is not None and hasattr(sampler, 'state_dict'):
            checkpoint['graph_sampler'] = sampler.state_dict()

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        """Keep the saved sampler state; it is applied before the next
        training epoch if the run resumes at the checkpoint's epoch (not
        when only weights are loaded with ``load_from``)."""
        state = checkpoint.get('graph_sampler')
        if state is not None:
            epoch = checkpoint.get('meta', {}).get('epoch')
            self._pending_state = (epoch, state)

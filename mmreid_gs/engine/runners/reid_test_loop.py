"""Cross-dataset test and validation loops.

A re-ID test is not "one dataloader, one metric": a checkpoint is evaluated on
several named sets, each made of a query and a gallery split, and every query
is matched against every gallery image with QAConv. The loops here

1. build one dataloader per split from the ``test_dataloader`` (or
   ``val_dataloader``) config, used as a template whose ``dataset`` is
   replaced by the split's dataset config;
2. extract the feature maps once per split (sharded across ranks under
   distributed testing, gathered back in dataset order);
3. score the query x gallery pairs with ``model.match`` (query rows split
   across ranks, then gathered), plus the query x query and gallery x gallery
   blocks when a metric asks for them (k-reciprocal re-ranking);
4. hand one dict per set to ``self.evaluator`` (``process``, then
   ``evaluate``, as MMEngine's loops do) whose metrics (``ReIDMetric``)
   name their numbers ``<set>/Rank-1``, ``<set>/mAP``, ...

Config example::

    test_dataloader = dict(batch_size=128, num_workers=4,
                           sampler=dict(type='DefaultSampler', shuffle=False))
    test_evaluator = dict(type='ReIDMetric')
    test_cfg = dict(
        type='ReIDTestLoop',
        test_sets=dict(
            cuhk03=dict(
                query=dict(type='CUHK03NP', data_root=..., split='query',
                           pipeline=test_pipeline),
                gallery=dict(type='CUHK03NP', data_root=..., split='gallery',
                             pipeline=test_pipeline))))
"""
import copy
import time
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from mmengine.dist import broadcast, get_dist_info
from mmengine.evaluator import Evaluator
from mmengine.model import is_model_wrapper
from mmengine.runner import BaseLoop, autocast
from mmengine.utils import ProgressBar
from torch.utils.data import DataLoader

from mmreid_gs.registry import LOOPS
from mmreid_gs.utils.arrays import to_numpy
from mmreid_gs.utils.contract import check_reid_model
from mmreid_gs.utils.dist import all_gather_rows
from mmreid_gs.utils.errors import (ReIDUserError, ReIDUserKeyError,
                                    ReIDUserTypeError)


def _end_bar(bar) -> None:
    """End a finished progress bar's line (MMEngine's bar leaves the cursor
    on it, so the next log line would continue it)."""
    if bar is not None:
        bar.file.write('\n')
        bar.file.flush()


class _ReIDLoopMixin:
    """Feature extraction and QAConv scoring shared by test and val loops."""

    mode = 'test'

    def _init_sets(self, runner, dataloader, evaluator, test_sets,
                   pipeline, fp16: bool, progress: bool,
                   keep_outputs: bool) -> None:
        if not isinstance(dataloader, dict):
            raise ReIDUserTypeError(
                f'{type(self).__name__} builds one dataloader per test set '
                f'from the `{self.mode}_dataloader` config, so that config '
                f'must be a dict, not {type(dataloader).__name__}.')
        if isinstance(test_sets, (list, tuple)):
            sets = {}
            for i, item in enumerate(test_sets):
                if 'name' not in item:
                    raise ReIDUserKeyError(
                        f'{self.mode}_cfg.test_sets[{i}] needs a `name` (or '
                        'pass test_sets as a dict name -> dict(query=..., '
                        'gallery=...)).')
                item = dict(item)
                sets[item.pop('name')] = item
            test_sets = sets
        if not test_sets:
            raise ReIDUserError(f'{self.mode}_cfg.test_sets is empty: name at '
                                'least one set with a query and a gallery.')
        test_sets = copy.deepcopy(dict(test_sets))
        for name, item in test_sets.items():
            for split in ('query', 'gallery'):
                if split not in item:
                    raise ReIDUserKeyError(
                        f'{self.mode}_cfg.test_sets.{name} has no '
                        f'`{split}` dataset config.')
                if item[split].get('pipeline') is None:
                    if pipeline is None:
                        raise ReIDUserKeyError(
                            f'{self.mode}_cfg.test_sets.{name}.{split} has '
                            f'no pipeline and {self.mode}_cfg.pipeline is '
                            'not set.')
                    item[split]['pipeline'] = copy.deepcopy(pipeline)
        self._runner = runner
        self.dataloader_cfg = copy.deepcopy(dict(dataloader))
        self.test_sets = test_sets
        self.fp16 = fp16
        self.progress = progress
        self.keep_outputs = keep_outputs
        # Per-set scores, labels, paths and metric arrays of the last run
        # (keep_outputs).
        self.outputs: Dict[str, dict] = {}
        # The loader being processed; hooks (LoggerHook) read its length.
        self.dataloader: Optional[DataLoader] = None
        if isinstance(evaluator, (dict, list)):
            self.evaluator = runner.build_evaluator(evaluator)
        else:
            self.evaluator = evaluator

    # ------------------------------------------------------------------
    def _model(self):
        model = self.runner.model
        return model.module if is_model_wrapper(model) else model

    def _sync_buffers(self) -> None:
        """Give every rank the buffers (BN running statistics) of rank 0.

        DDP keeps the parameters equal on all ranks, but with
        ``broadcast_buffers=False`` (MMEngine's default) each rank keeps the
        running statistics of its own batches. The ranks extract features of
        different shards, so without this a validation during distributed
        training mixes several models and differs from a test of the
        checkpoint (saved by rank 0). A no-op when the buffers are equal.
        """
        _, world_size = get_dist_info()
        if world_size > 1:
            for buf in self._model().buffers():
                broadcast(buf, 0)

    def _build_loader(self, dataset_cfg) -> DataLoader:
        cfg = copy.deepcopy(self.dataloader_cfg)
        cfg['dataset'] = copy.deepcopy(dataset_cfg)
        cfg.setdefault('sampler', dict(type='DefaultSampler', shuffle=False))
        return self.runner.build_dataloader(cfg, seed=self.runner.seed)

    @torch.no_grad()
    def extract(self, dataset_cfg, desc: str):
        """Extract the feature maps of one split in dataset order.

        Args:
            dataset_cfg (dict): Dataset config of the split.
            desc (str): Name shown in the log.

        Returns:
            tuple: ``(dataset, feats)`` with feats of shape [N, c, h, w] on
            the CPU (float32), row i belonging to ``dataset[i]``.
        """
        loader = self._build_loader(dataset_cfg)
        self.dataloader = loader
        dataset = loader.dataset
        if len(dataset) == 0:
            raise ReIDUserError(f'{desc}: the dataset is empty; check its '
                                'data_root and split.')
        model = self._model()
        rank, world_size = get_dist_info()
        bar = ProgressBar(len(loader)) if (self.progress
                                           and rank == 0) else None
        indices, feats = [], []
        for idx, data_batch in enumerate(loader):
            self.runner.call_hook(
                f'before_{self.mode}_iter', batch_idx=idx,
                data_batch=data_batch)
            data = model.data_preprocessor(data_batch, False)
            with autocast(enabled=self.fp16):
                out = model.extract_feat(data['inputs'])
            feats.append(out.float())
            indices.extend(
                int(s.metainfo['sample_idx']) for s in data['data_samples'])
            self.runner.call_hook(
                f'after_{self.mode}_iter', batch_idx=idx,
                data_batch=data_batch, outputs=None)
            if bar is not None:
                bar.update()
        _end_bar(bar)
        local = torch.cat(feats) if feats else None
        idx_t = torch.tensor(indices, dtype=torch.long, device=local.device)
        if world_size > 1:
            idx_t = all_gather_rows(idx_t)
            local = all_gather_rows(local)
        out = local.new_zeros((len(dataset), ) + tuple(local.shape[1:]))
        # Padded duplicates of DefaultSampler write the same rows again.
        out[idx_t] = local
        return dataset, out

    @torch.no_grad()
    def score(self, query: torch.Tensor, gallery: torch.Tensor,
              desc: str) -> torch.Tensor:
        """``model.match`` scores of every query x gallery pair, rows across
        ranks.

        Args:
            query (Tensor): Query maps [q, c, h, w].
            gallery (Tensor): Gallery maps [g, c, h, w].
            desc (str): Name shown in the log.

        Returns:
            Tensor: Logits [q, g] on the CPU, identical on every rank.
        """
        model = self._model()
        check_reid_model(model, type(self).__name__)
        rank, world_size = get_dist_info()
        device = next(model.parameters()).device
        num_q = query.shape[0]
        per_rank = (num_q + world_size - 1) // world_size
        start, end = min(rank * per_rank, num_q), min((rank + 1) * per_rank,
                                                      num_q)
        # Query rows in chunks so that the progress bar moves.
        chunk = max(1, min(256, end - start))
        steps = range(start, end, chunk)
        bar = ProgressBar(len(steps)) if (self.progress and rank == 0
                                          and len(steps) > 1) else None
        gallery_dev = gallery.to(device)
        rows = []
        for i in steps:
            with autocast(enabled=self.fp16):
                s = model.match(query[i:i + chunk].to(device), gallery_dev)
            rows.append(s.float().cpu())
            if bar is not None:
                bar.update()
        _end_bar(bar)
        local = torch.cat(rows) if rows else torch.zeros(0, gallery.shape[0])
        return all_gather_rows(local)

    def _needs_self_scores(self) -> bool:
        return any(
            getattr(m, 'needs_self_scores', False)
            for m in self.evaluator.metrics)

    def _evaluate(self, sample: dict) -> Tuple[Dict[str, float], dict]:
        """Hand one named set to the evaluator and evaluate it.

        Every rank holds the whole set (the scores are gathered), so rank 0
        alone hands it to ``self.evaluator``: the metrics' ``results`` are
        gathered across ranks by ``evaluate`` (``collect_results``), and a
        copy from every rank would be ``world_size`` copies of the set, of
        which ``size=1`` keeps the first. Rank 0 computes the metrics and
        ``evaluate`` broadcasts them to every rank (the other ranks, handed
        nothing, log MMEngine's note of an empty results list at WARNING
        level, which their loggers do not show: they print errors only).

        Args:
            sample (dict): The set (see :class:`ReIDMetric`).

        Returns:
            tuple: ``(metrics, arrays)``: the numbers, named
            ``<set>/<metric>``, that the loop logs and returns, and the
            numpy arrays the metrics returned for the set (named
            ``<set>/<field>``, e.g. ``distmat_rerank``) as
            ``field -> array``, for :attr:`outputs`.
        """
        rank, _ = get_dist_info()
        self.evaluator.process(
            data_samples=[sample] if rank == 0 else [], data_batch=None)
        results = self.evaluator.evaluate(1)
        metrics, arrays = {}, {}
        for key, value in results.items():
            if isinstance(value, np.ndarray):
                arrays[key.rsplit('/', 1)[-1]] = value
            else:
                metrics[key] = value
        return metrics, arrays

    def evaluate_sets(self) -> Dict[str, float]:
        """Run every named set and return all metrics."""
        logger = self.runner.logger
        self.runner.model.eval()
        self._sync_buffers()
        metrics: Dict[str, float] = {}
        for name, item in self.test_sets.items():
            tic = time.time()
            q_ds, q_feats = self.extract(item['query'], f'{name}/query')
            g_ds, g_feats = self.extract(item['gallery'], f'{name}/gallery')
            tic_score = time.time()
            sample = dict(
                name=name,
                scores=self.score(q_feats, g_feats, f'{name} q x g'),
                query_pids=np.asarray(q_ds.get_gt_labels()),
                gallery_pids=np.asarray(g_ds.get_gt_labels()),
                query_camids=np.asarray(q_ds.get_cam_ids()),
                gallery_camids=np.asarray(g_ds.get_cam_ids()),
                query_paths=[
                    q_ds.get_data_info(i)['img_path'] for i in range(len(q_ds))
                ],
                gallery_paths=[
                    g_ds.get_data_info(i)['img_path'] for i in range(len(g_ds))
                ])
            q_times = q_ds.get_timestamps()
            g_times = g_ds.get_timestamps()
            if q_times is not None and g_times is not None:
                sample['query_times'] = q_times
                sample['gallery_times'] = g_times
            if self._needs_self_scores():
                sample['scores_qq'] = self.score(q_feats, q_feats,
                                                 f'{name} q x q')
                sample['scores_gg'] = self.score(g_feats, g_feats,
                                                 f'{name} g x g')
            del q_feats, g_feats
            tic_eval = time.time()
            set_metrics, arrays = self._evaluate(sample)
            metrics.update(set_metrics)
            if self.keep_outputs:
                # The loop's own scores, ids and paths, the ranked distances
                # (-scores) and the metric's re-ranked / lifted arrays.
                sample['distmat'] = -to_numpy(sample['scores'], np.float32)
                sample.update(arrays)
                self.outputs[name] = sample
            logger.info(
                f'{name}: {len(q_ds)} queries x {len(g_ds)} gallery; '
                f'features {tic_score - tic:.1f}s, matching '
                f'{tic_eval - tic_score:.1f}s, metrics '
                f'{time.time() - tic_eval:.1f}s; ' + ', '.join(
                    f'{k.split("/", 1)[-1]}: {v:.4f}'
                    for k, v in set_metrics.items()
                    if isinstance(v, (float, int))))
        return metrics


@LOOPS.register_module()
class ReIDTestLoop(_ReIDLoopMixin, BaseLoop):
    """Cross-dataset test loop over named query/gallery sets.

    Args:
        runner (Runner): The runner.
        dataloader (dict): Template dataloader config (batch size, workers,
            sampler); its ``dataset`` is replaced by each split's config.
        evaluator (dict | list | Evaluator): Metrics, usually
            ``dict(type='ReIDMetric')``.
        test_sets (dict | list): ``name -> dict(query=..., gallery=...)``, or
            a list of dicts with a ``name`` key.
        pipeline (list[dict], optional): Test pipeline given to every split
            whose dataset config has none.
        fp16 (bool): Extract and match under autocast. Defaults to False.
        progress (bool): Show progress bars. Defaults to True.
        keep_outputs (bool): Keep, in ``self.outputs[<set>]``, the dict
            of every set handed to the evaluator (scores, self-scores, ids,
            cameras, timestamps, paths), its ranked distances ``distmat``
            (``-scores``) and the arrays the metrics returned for it
            (``distmat_rerank``, ``scores_tlift``), for ``tools/test.py
            --out`` and ``ReIDVisualizationHook``. Defaults to False.
    """
    mode = 'test'

    def __init__(self,
                 runner,
                 dataloader: Union[DataLoader, Dict],
                 evaluator: Union[Evaluator, Dict, List],
                 test_sets: Union[Dict, Sequence[Dict]] = None,
                 pipeline: Optional[List[dict]] = None,
                 fp16: bool = False,
                 progress: bool = True,
                 keep_outputs: bool = False) -> None:
        # BaseLoop.__init__ would build `dataloader`; ours is a template.
        self._init_sets(runner, dataloader, evaluator, test_sets, pipeline,
                        fp16, progress, keep_outputs)

    def run(self) -> dict:
        """Evaluate every named set and return the metrics."""
        mode = self.mode
        self.runner.call_hook(f'before_{mode}')
        self.runner.call_hook(f'before_{mode}_epoch')
        metrics = self.evaluate_sets()
        self.runner.call_hook(f'after_{mode}_epoch', metrics=metrics)
        self.runner.call_hook(f'after_{mode}')
        return metrics


@LOOPS.register_module()
class ReIDValLoop(ReIDTestLoop):
    """Validation during training (``val_cfg``/``val_dataloader``/
    ``val_evaluator``) with the same sets and arguments as
    :class:`ReIDTestLoop`, calling the ``val`` hooks; progress bars are off
    by default."""
    mode = 'val'

    def __init__(self, *args, progress: bool = False, **kwargs) -> None:
        super().__init__(*args, progress=progress, **kwargs)

"""Cross-dataset test and validation loops.

A re-ID test is not "one dataloader, one metric": a checkpoint is evaluated on
several named sets, each made of a query and a gallery split, and every query
is matched against every gallery image with QAConv. The loops here

1. build one dataloader per split from the ``test_dataloader`` (or
   ``val_dataloader``) config, used as a template whose ``dataset`` is
   replaced by the split's dataset config;
2. extract the feature maps once per split (sharded across ranks under
   distributed testing, gathered back in dataset order), kept in host
   memory: a GPU holds blocks of them while it matches
   (:func:`matching_device_bytes` states its peak);
3. score the query x gallery pairs with ``model.match`` (query rows split
   across ranks, then gathered), plus the query x query and gallery x gallery
   blocks when a metric asks for them (k-reciprocal re-ranking); with
   ``shortlist=N``, only each query's N best gallery items by a cheap global
   proxy are scored exactly (see "Shortlisted evaluation" below);
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
                             pipeline=test_pipeline))),
        shortlist=None)   # or e.g. 100: shortlisted evaluation

Shortlisted evaluation (``shortlist=N``, ``tools/test.py --shortlist N``),
for pairwise matchers (QAConv, TransMatcher) at MSMT17 size: for every
query the gallery is ranked by the cosine of spatially average-pooled,
L2-normalised feature maps (one GEMM per block of query rows, then a
``topk``), its N best are scored by the exact matcher (``model.match_pairs``
when the model has one, each query against its own gathered list; else
``model.match`` on groups of queries against the union of their shortlists),
and the rest of the gallery is ranked after them by the proxy
(:mod:`mmreid_gs.evaluation.functional.shortlist`). The ``scores`` handed to
the metric (and saved by ``--out``) are these combined scores: the exact
scores at the shortlisted entries, pseudo-scores below them elsewhere; the
``shortlist`` [q, N] indices are kept with the outputs.

- ``N >=`` the set's gallery size: the set (every block, the re-ranking
  ones too) takes the exact path below, pair by pair as without a
  shortlist, so its metrics equal the exact ones to the last digit.
- Re-ranking: the query x query and gallery x gallery blocks follow the
  same rule row by row (each row's N best columns by the proxy scored
  exactly, a block with at most N columns exactly), and k-reciprocal
  re-ranking runs on these shortlisted matrices, the ``[g, q]`` block being
  the transpose of the shortlisted ``[q, g]`` one, as in the exact case.
  Its neighbour sets (``k1 + 1`` items) then lie within the exactly scored
  entries when ``N > k1``.
- TLift reweights ``sigmoid`` of the combined scores: pivots come from the
  shortlists (the pseudo-scores rank last); a non-shortlisted item can be
  lifted above shortlisted ones only through the temporal prior.
- Features that are global vectors ``[n, d]`` (a global-embedding model):
  shortlisting is pointless (the proxy costs as much as the matcher); the
  loop logs that and evaluates exactly.
- Distributed: the query rows of every block are split across ranks, each
  rank computes the gallery proxy and shortlists, scores and combines its
  rows (rows are independent), and the rows are gathered.
- ``shortlist_refine=M`` (> N, ``tools/test.py --shortlist-refine M``): the
  proxy proposes M items per query and QAConv on 2x2-pooled maps keeps the
  N best of them (a cascade: more of the exact top-k for the same N).
- ``shortlist_recall=True`` (or a list of k) also computes the exact scores
  (the full cost) and logs the share of every query's exact top-1 and
  top-10 (or top-k) that survive the shortlist; off by default.
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
from torch.utils.data import DataLoader

from mmreid_gs.evaluation.functional.shortlist import (check_refine,
                                                       check_shortlist,
                                                       shortlist_recall,
                                                       shortlisted_scores)
from mmreid_gs.registry import LOOPS
from mmreid_gs.two_stage.proxy import pooled_proxy_features, proxy_features
from mmreid_gs.utils.arrays import to_numpy
from mmreid_gs.utils.contract import check_reid_model
from mmreid_gs.utils.dist import all_gather_rows, broadcast_from_rank0
from mmreid_gs.utils.thread_state import uses_cpu_paths
from mmreid_gs.utils.errors import (ConfigError, ReIDUserError,
                                    ReIDUserKeyError, ReIDUserTypeError)
from mmreid_gs.utils.progress import ProgressBar

#: The top-k whose recall ``shortlist_recall=True`` logs.
RECALL_TOPK = (1, 10)
#: Query rows per ``model.match`` call of the exact path (and per
#: shortlisted block the loop hands to ``shortlisted_scores``).
QUERY_CHUNK = 256
#: Bytes of gallery features moved to an accelerator at a time by the exact
#: path (the extracted features stay in host memory; on the CPU the gallery
#: is matched whole, as it is already there).
DEVICE_GALLERY_BYTES = 4 * 2**30
#: Host buffers of extracted features up to this size are pinned when the
#: model is on CUDA (faster, asynchronous block copies); larger sets stay in
#: pageable memory rather than locking that much of the host's RAM.
PIN_MAX_BYTES = 16 * 2**30


def _end_bar(bar) -> None:
    """End a finished progress bar's line (MMEngine's bar leaves the cursor
    on it, so the next log line would continue it)."""
    if bar is not None:
        bar.file.write('\n')
        bar.file.flush()


def _split_arrays(results: dict) -> Tuple[Dict[str, float], dict]:
    """Numbers, and numpy arrays by field name (``<set>/<field>`` ->
    ``<field>``), of a metrics dict."""
    metrics, arrays = {}, {}
    for key, value in results.items():
        if isinstance(value, np.ndarray):
            arrays[key.rsplit('/', 1)[-1]] = value
        else:
            metrics[key] = value
    return metrics, arrays


def _model_device(model) -> torch.device:
    """The device of the model's parameters (the CPU without any)."""
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device('cpu')


def host_buffer(shape: Sequence[int], dtype: torch.dtype,
                device: torch.device) -> torch.Tensor:
    """A zeroed host tensor for features that a ``device`` will read in
    blocks: pinned when ``device`` is CUDA and the buffer is at most
    :data:`PIN_MAX_BYTES` (a failed pinning falls back to pageable
    memory).

    Args:
        shape (Sequence[int]): The tensor's shape.
        dtype (torch.dtype): Its dtype.
        device (torch.device): The device that will read it.

    Returns:
        Tensor: zeros of ``shape`` on the CPU.
    """
    nbytes = int(np.prod(shape)) * torch.empty((), dtype=dtype).element_size()
    if torch.device(device).type == 'cuda' and nbytes <= PIN_MAX_BYTES \
            and torch.cuda.is_available():
        try:
            return torch.zeros(tuple(shape), dtype=dtype, pin_memory=True)
        except RuntimeError:
            pass
    return torch.zeros(tuple(shape), dtype=dtype)


def gallery_block_rows(gallery: torch.Tensor,
                       block_bytes: int = DEVICE_GALLERY_BYTES) -> int:
    """Gallery items per block moved to an accelerator at a time.

    Args:
        gallery (Tensor): [g, ...] gallery features.
        block_bytes (int): Bytes per block. Defaults to
            :data:`DEVICE_GALLERY_BYTES`.

    Returns:
        int: At least 1 and at most ``g`` (g >= 1).
    """
    item = max(1, gallery[:1].numel() * gallery.element_size())
    return max(1, min(max(1, gallery.shape[0]), block_bytes // item))


def matching_device_bytes(num_query: int,
                          num_gallery: int,
                          item_shape: Sequence[int],
                          shortlist: Optional[int] = None,
                          matcher_budget_mb: float = 256,
                          world_size: int = 1) -> Dict[str, int]:
    """Peak accelerator memory of a test's matching, from the block sizes
    the loop uses (beyond the model's weights, one batch's forward pass
    during extraction and PyTorch's allocator overhead).

    The extracted features stay in host memory (:meth:`extract`). On the
    device are, at a time (phases):

    - exact (:meth:`score`), ``match``: a gallery block
      (:data:`DEVICE_GALLERY_BYTES`), a chunk of :data:`QUERY_CHUNK`
      queries, its ``[chunk, block]`` float32 scores and the matcher's
      working memory;
    - shortlisted (:meth:`score_shortlisted`, ``shortlisted_scores`` on
      host features), ``proxy``: a gallery block and the gallery proxy
      ``[g, c]`` float32; ``shortlist``: the proxy, a block of ``rows``
      queries (``shortlist.proxy_block_rows(g)``), their ``[rows, g]``
      cosines and top-N, and every query's list ``[q, N]`` int64; ``match``
      (``score_shortlist_blocks``): the lists, their in-block mask, the
      exact ``[q, N]`` float32 scores, a gallery block
      (``shortlist.DEVICE_GALLERY_BYTES``), a query block
      (``shortlist.DEVICE_QUERY_BYTES``) with its re-ordered lists (about
      ``q_block x N x 32`` bytes), one gathered call (at least
      ``shortlist.GATHER_BYTES``, at least one list of N items) and the
      matcher's working memory; ``combine``: the proxy, the lists, the
      exact scores and a ``[rows, g]`` block;
    - under DDP, ``gather``: this rank's chunk and ``world_size`` gathered
      chunks (:data:`~mmreid_gs.utils.dist.GATHER_CHUNK_BYTES` each).

    The matcher's working memory is counted as twice the head's
    ``memory_budget_mb`` (its similarity block, plus as much for its
    projections, maxima and outputs; the heads' docstrings bound the block).

    Args:
        num_query (int): Queries of this rank (``q / world_size``).
        num_gallery (int): Gallery items g.
        item_shape (Sequence[int]): One item's features, e.g. (64, 24, 8).
        shortlist (int, optional): N; None: the exact path.
        matcher_budget_mb (float): The head's ``memory_budget_mb``.
            Defaults to 256 (QAConvHead's and TransMatcherHead's default).
        world_size (int): Ranks. Defaults to 1.

    Returns:
        dict[str, int]: bytes of every part, of every phase
        (``phase_<name>``) and ``peak`` (the largest phase).
    """
    from mmreid_gs.evaluation.functional import shortlist as sl
    from mmreid_gs.utils.dist import GATHER_CHUNK_BYTES
    item_shape = [int(v) for v in item_shape]
    item = 4 * int(np.prod(item_shape))
    q, g = int(num_query), int(num_gallery)
    matcher = int(2 * matcher_budget_mb * 2**20)
    phases = {}
    if shortlist is None or shortlist >= g:
        chunk = max(1, min(QUERY_CHUNK, q))
        g_step = max(1, min(g, DEVICE_GALLERY_BYTES // item))
        out = dict(gallery_block=g_step * item, query_chunk=chunk * item,
                   scores=chunk * g_step * 4, matcher=matcher)
        phases['match'] = sum(out.values())
    else:
        n = int(shortlist)
        rows = min(q, sl.proxy_block_rows(g))
        g_step = max(1, min(g, sl.DEVICE_GALLERY_BYTES // item))
        q_step = max(1, min(q, sl.DEVICE_QUERY_BYTES // item))
        out = dict(proxy=g * item_shape[0] * 4, gallery_block=g_step * item,
                   query_block=q_step * item, proxy_rows=rows * item,
                   proxy_block=rows * g * 4, topk=rows * n * 12,
                   lists=q * n * (8 + 1), exact=q * n * 4,
                   block_lists=q_step * n * 32,
                   gathered=max(n * item, sl.GATHER_BYTES), matcher=matcher)
        phases['proxy'] = out['gallery_block'] + out['proxy']
        phases['shortlist'] = sum(out[k] for k in (
            'proxy', 'proxy_rows', 'proxy_block', 'topk', 'lists'))
        phases['match'] = sum(out[k] for k in (
            'proxy', 'lists', 'exact', 'gallery_block', 'query_block',
            'block_lists', 'gathered', 'matcher'))
        phases['combine'] = sum(out[k] for k in (
            'proxy', 'lists', 'exact', 'proxy_rows', 'proxy_block'))
    if world_size > 1:
        out['gather'] = phases['gather'] = \
            (world_size + 1) * GATHER_CHUNK_BYTES
    out.update({f'phase_{k}': v for k, v in phases.items()})
    out['peak'] = max(phases.values())
    return out


class _ReIDLoopMixin:
    """Feature extraction and QAConv scoring shared by test and val loops."""

    mode = 'test'

    def _init_sets(self, runner, dataloader, evaluator, test_sets,
                   pipeline, fp16: bool, progress: bool,
                   keep_outputs: bool, shortlist: Optional[int] = None,
                   shortlist_recall: Union[bool, Sequence[int]] = False,
                   shortlist_refine: Optional[int] = None) -> None:
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
        self.shortlist = check_shortlist(shortlist,
                                         f'{self.mode}_cfg.shortlist')
        self.shortlist_refine = check_refine(
            shortlist_refine, self.shortlist,
            f'{self.mode}_cfg.shortlist_refine')
        self.recall_topk = self._recall_topk(shortlist_recall)
        # Per-set scores, labels, paths and metric arrays of the last run
        # (keep_outputs).
        self.outputs: Dict[str, dict] = {}
        # The loader being processed; hooks (LoggerHook) read its length.
        self.dataloader: Optional[DataLoader] = None
        if isinstance(evaluator, (dict, list)):
            self.evaluator = runner.build_evaluator(evaluator)
        else:
            self.evaluator = evaluator

    def _recall_topk(self, value) -> Tuple[int, ...]:
        """The ``shortlist_recall`` option as the top-k to log (``()``:
        off)."""
        key = f'{self.mode}_cfg.shortlist_recall'
        if value is None or value is False:
            return ()
        if value is True:
            ks = RECALL_TOPK
        elif isinstance(value, (int, np.integer)):
            ks = (value, )
        elif isinstance(value, (list, tuple)):
            ks = tuple(value)
        else:
            raise ConfigError(f'{key} must be a bool or a list of top-k, got '
                              f'{value!r}')
        if not ks or any(
                isinstance(k, bool) or not isinstance(k, (int, np.integer))
                or k < 1 for k in ks):
            raise ConfigError(f'{key} must be a bool or a list of positive '
                              f'integers (top-k), got {value!r}')
        return tuple(int(k) for k in ks)

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
            the CPU (float32; pinned when the model is on CUDA and the set
            is at most :data:`PIN_MAX_BYTES`), row i belonging to
            ``dataset[i]``. Every batch's features leave the device as soon
            as they are extracted; under DDP the ranks' shards are gathered
            in chunks (:func:`~mmreid_gs.utils.dist.all_gather_rows`).
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
            feats.append(out.float().cpu())
            indices.extend(
                int(s.metainfo['sample_idx']) for s in data['data_samples'])
            self.runner.call_hook(
                f'after_{self.mode}_iter', batch_idx=idx,
                data_batch=data_batch, outputs=None)
            if bar is not None:
                bar.update()
        _end_bar(bar)
        local = torch.cat(feats) if feats else None
        idx_t = torch.tensor(indices, dtype=torch.long)
        if world_size > 1:
            local, idx_t = all_gather_rows(local, idx_t)
        out = host_buffer((len(dataset), ) + tuple(local.shape[1:]),
                          local.dtype, _model_device(model))
        # Padded duplicates of DefaultSampler write the same rows again.
        out[idx_t] = local
        return dataset, out

    def _rank_rows(self, num: int) -> Tuple[int, int]:
        """``(start, end)``: this rank's share of ``num`` query rows."""
        rank, world_size = get_dist_info()
        per_rank = (num + world_size - 1) // world_size
        return min(rank * per_rank, num), min((rank + 1) * per_rank, num)

    def _bar(self, steps: int) -> Optional[ProgressBar]:
        rank, _ = get_dist_info()
        return ProgressBar(steps) if (self.progress and rank == 0
                                      and steps > 1) else None

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
        device = _model_device(model)
        start, end = self._rank_rows(query.shape[0])
        # Query rows in chunks so that the progress bar moves.
        chunk = max(1, min(QUERY_CHUNK, end - start))
        steps = range(start, end, chunk)
        if uses_cpu_paths(device):
            # the gallery is matched whole (it is in host memory already)
            bar = self._bar(len(steps))
            gallery_dev = gallery.to(device)
            rows = []
            for i in steps:
                with autocast(enabled=self.fp16):
                    s = model.match(query[i:i + chunk].to(device),
                                    gallery_dev)
                rows.append(s.float().cpu())
                if bar is not None:
                    bar.update()
            _end_bar(bar)
            local = torch.cat(rows) if rows else torch.zeros(
                0, gallery.shape[0])
            return all_gather_rows(local)
        # accelerator: blocks of the gallery moved in turn, every query
        # chunk matched against each
        num_gallery = gallery.shape[0]
        g_step = gallery_block_rows(gallery)
        blocks = range(0, num_gallery, g_step)
        bar = self._bar(len(steps) * len(blocks))
        local = torch.empty(end - start, num_gallery)
        for j in blocks:
            gallery_dev = gallery[j:j + g_step].to(device, non_blocking=True)
            for i in steps:
                with autocast(enabled=self.fp16):
                    s = model.match(query[i:i + chunk].to(device),
                                    gallery_dev)
                local[i - start:i - start + s.shape[0],
                      j:j + gallery_dev.shape[0]] = s.float()
                if bar is not None:
                    bar.update()
            del gallery_dev
        _end_bar(bar)
        return all_gather_rows(local)

    @torch.no_grad()
    def score_shortlisted(self, query: torch.Tensor, gallery: torch.Tensor,
                          num: int, desc: str
                          ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Shortlisted scores of every query x gallery pair, rows across
        ranks (see the module docstring and
        :func:`~mmreid_gs.evaluation.functional.shortlisted_scores`).

        Every rank pools the gallery proxy; its share of the query rows is
        shortlisted, scored exactly (``model.match_pairs`` when the model
        has one, else ``model.match`` on unions of shortlists) and combined
        in blocks; the rows are gathered. On an accelerator the features
        stay in host memory (the gallery moved once, in blocks:
        :func:`~mmreid_gs.evaluation.functional.shortlist.
        score_shortlist_blocks`).

        Args:
            query (Tensor): Query features [q, ...].
            gallery (Tensor): Gallery features [g, ...].
            num (int): Shortlist size N (clipped to g).
            desc (str): Name shown in the log.

        Returns:
            tuple[Tensor, Tensor]: ``(scores, shortlist)`` on the CPU,
            identical on every rank: [q, g] float32 combined scores and the
            LongTensor [q, min(N, g)] of each query's shortlisted gallery
            indices, by decreasing proxy similarity.
        """
        model = self._model()
        check_reid_model(model, type(self).__name__)
        device = _model_device(model)
        num = min(int(num), gallery.shape[0])
        start, end = self._rank_rows(query.shape[0])
        pair_matcher = getattr(model, 'match_pairs', None)
        pair_matcher = pair_matcher if callable(pair_matcher) else None
        local = torch.empty(end - start, gallery.shape[0])
        local_idx = torch.empty(end - start, num, dtype=torch.long)
        if not uses_cpu_paths(device):
            # the features stay in host memory: the gallery proxy from
            # blocks, every shortlist, then the exact scores with the gallery
            # moved once in blocks (score_shortlist_blocks), then the rows
            with autocast(enabled=self.fp16):
                _, idx = shortlisted_scores(
                    query[start:end], gallery, num, model.match,
                    pair_matcher, out=local, device=device,
                    refine=self.shortlist_refine)
            local_idx[:] = idx
            return all_gather_rows(local, local_idx)
        gallery_dev = gallery.to(device)
        gallery_proxy = proxy_features(gallery_dev)
        refine = self.shortlist_refine
        # refine > shortlist >= num (check_refine)
        gallery_pooled = (pooled_proxy_features(gallery_dev)
                          if refine is not None else None)
        chunk = max(1, min(QUERY_CHUNK, end - start))
        steps = range(start, end, chunk)
        bar = self._bar(len(steps))
        for i in steps:
            rows = slice(i - start, min(i + chunk, end) - start)
            with autocast(enabled=self.fp16):
                # the rows are written in place (no second block)
                _, idx = shortlisted_scores(
                    query[i:min(i + chunk, end)].to(device), gallery_dev, num,
                    model.match, pair_matcher, gallery_proxy=gallery_proxy,
                    out=local[rows], refine=refine,
                    gallery_pooled=gallery_pooled)
            local_idx[rows] = idx
            if bar is not None:
                bar.update()
        _end_bar(bar)
        return all_gather_rows(local, local_idx)

    def set_shortlist(self, name: str, query: torch.Tensor,
                      gallery: torch.Tensor) -> Optional[int]:
        """The shortlist size a named set is evaluated with (``None``:
        exact), logged when it differs from :attr:`shortlist`.

        Args:
            name (str): The set.
            query (Tensor): Its query features [q, ...].
            gallery (Tensor): Its gallery features [g, ...].

        Returns:
            int | None: :attr:`shortlist`, or None for features that are
            global vectors (nothing to gain) and for ``N >= g`` (the exact
            path, the exact metrics to the last digit).
        """
        num = self.shortlist
        if num is None:
            return None
        logger = self.runner.logger
        if query.dim() == 2:
            logger.info(
                f'{name}: the features are global vectors '
                f'{list(query.shape[1:])} ({self.mode}_cfg.shortlist={num}): '
                'their matcher costs '
                'as much as the pooled-map proxy of a shortlist, so the set '
                'is evaluated exactly.')
            return None
        if num >= gallery.shape[0]:
            logger.info(
                f'{name}: {self.mode}_cfg.shortlist={num} >= the gallery '
                f'size {gallery.shape[0]}: every pair is scored exactly (the '
                'exact metrics).')
            return None
        return num

    def score_block(self, query: torch.Tensor, gallery: torch.Tensor,
                    num: Optional[int], desc: str
                    ) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """One score block of a set: :meth:`score` without a shortlist (or
        with ``N >=`` the block's columns), else :meth:`score_shortlisted`.

        Returns:
            tuple: ``(scores [q, g], shortlist [q, N] or None)``.
        """
        if num is None or num >= gallery.shape[0]:
            return self.score(query, gallery, desc), None
        return self.score_shortlisted(query, gallery, num, desc)

    def _needs_self_scores(self) -> bool:
        return any(
            getattr(m, 'needs_self_scores', False)
            for m in self.evaluator.metrics)

    def _evaluate(self, sample: dict) -> Tuple[Dict[str, float], dict]:
        """Hand one named set to the evaluator and evaluate it.

        One process: ``self.evaluator.process`` then ``evaluate``, as
        MMEngine's loops do. Distributed: every rank holds the whole set
        (the scores are gathered), so rank 0 alone hands it to the
        evaluator's metrics and computes them (``compute_metrics``, with
        their prefix); the other ranks wait for the numbers in a gloo group
        with a long timeout (:func:`~mmreid_gs.utils.dist.
        broadcast_from_rank0`), not in an NCCL collective whose 10-minute
        default timeout a large re-ranked or TLift test exceeds. Only the
        numbers are sent: the metrics' [q, g] arrays stay on rank 0 (the
        rank that saves ``--out`` files and draws), never through the GPUs.
        An error on rank 0 is raised on every rank.

        Args:
            sample (dict): The set (see :class:`ReIDMetric`).

        Returns:
            tuple: ``(metrics, arrays)``: the numbers, named
            ``<set>/<metric>``, that the loop logs and returns, and the
            numpy arrays the metrics returned for the set (named
            ``<set>/<field>``, e.g. ``distmat_rerank``) as
            ``field -> array``, for :attr:`outputs` (empty on ranks other
            than 0 under DDP).
        """
        rank, world_size = get_dist_info()
        if world_size == 1:
            self.evaluator.process(data_samples=[sample], data_batch=None)
            return _split_arrays(self.evaluator.evaluate(1))
        results, error = {}, None
        if rank == 0:
            try:
                results = self._rank0_metrics(sample)
            except Exception as err:  # re-raised below, on every rank
                error = err
        metrics, arrays = _split_arrays(results)
        sent = broadcast_from_rank0(
            (metrics, None if error is None else
             f'{type(error).__name__}: {error}'))
        if error is not None:
            raise error
        if sent[1] is not None:
            raise ReIDUserError(f'rank 0 failed to compute the metrics of '
                                f'{sample.get("name")}: {sent[1]}')
        return sent[0], arrays

    def _rank0_metrics(self, sample: dict) -> dict:
        """Every metric of ``self.evaluator`` on one set, computed here
        (rank 0), without MMEngine's collectives."""
        self.evaluator.process(data_samples=[sample], data_batch=None)
        results = {}
        for metric in self.evaluator.metrics:
            try:
                out = metric.compute_metrics(metric.results)
            finally:
                metric.results.clear()
            if metric.prefix:
                out = {'/'.join((metric.prefix, k)): v
                       for k, v in out.items()}
            clash = set(out) & set(results)
            if clash:
                raise ValueError(
                    f'There are multiple evaluation results with the same '
                    f'metric name {sorted(clash)}. Please make sure all '
                    'metrics have different prefixes.')
            results.update(out)
        return results

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
            num = self.set_shortlist(name, q_feats, g_feats)
            scores, shortlist = self.score_block(q_feats, g_feats, num,
                                                 f'{name} q x g')
            sample = dict(
                name=name,
                scores=scores,
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
            if shortlist is not None:
                sample['shortlist'] = shortlist
            if shortlist is not None and self.recall_topk:
                self._log_recall(name, num, shortlist,
                                 self.score(q_feats, g_feats,
                                            f'{name} q x g exact'))
            if self._needs_self_scores():
                sample['scores_qq'] = self.score_block(
                    q_feats, q_feats, num, f'{name} q x q')[0]
                sample['scores_gg'] = self.score_block(
                    g_feats, g_feats, num, f'{name} g x g')[0]
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
            how = '' if num is None else (
                f' (shortlist: {num} per query by the pooled-map proxy, '
                'scored exactly)')
            logger.info(
                f'{name}: {len(q_ds)} queries x {len(g_ds)} gallery; '
                f'features {tic_score - tic:.1f}s, matching{how} '
                f'{tic_eval - tic_score:.1f}s, metrics '
                f'{time.time() - tic_eval:.1f}s; ' + ', '.join(
                    f'{k.split("/", 1)[-1]}: {v:.4f}'
                    for k, v in set_metrics.items()
                    if isinstance(v, (float, int))))
        return metrics

    def _log_recall(self, name: str, num: int, shortlist: torch.Tensor,
                    exact: torch.Tensor) -> None:
        """Log the recall of the exact top-k by the shortlist."""
        recalls = ', '.join(
            f'top-{k} {shortlist_recall(exact, shortlist, k):.4f}'
            for k in self.recall_topk)
        self.runner.logger.info(
            f'{name}: shortlist of {num}: recall of the exact {recalls} '
            '(share of each query\'s exact top-k in its shortlist, mean over '
            'the queries)')


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
            cameras, timestamps, paths; with a shortlist its indices
            ``shortlist`` [q, N]), its ranked distances ``distmat``
            (``-scores``) and the arrays the metrics returned for it
            (``distmat_rerank``, ``scores_tlift``), for ``tools/test.py
            --out`` and ``ReIDVisualizationHook``. Defaults to False.
        shortlist (int, optional): Shortlisted evaluation: score only each
            query's ``shortlist`` best gallery items by the pooled-map
            proxy exactly, rank the rest after them by the proxy (module
            docstring; re-ranking and TLift then run on the shortlisted
            matrices). ``N >=`` a set's gallery size evaluates that set
            exactly (the exact metrics). Defaults to None: exact
            evaluation.
        shortlist_recall (bool | Sequence[int]): With a shortlist, also
            compute the exact scores and log the recall of each query's
            exact top-k by its shortlist (True: top-1 and top-10).
            Defaults to False.
        shortlist_refine (int, optional): M > ``shortlist``: the proxy
            proposes M gallery items per query, QAConv on 2x2-pooled maps
            keeps the ``shortlist`` best of them. Defaults to None (the
            proxy's N best).
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
                 keep_outputs: bool = False,
                 shortlist: Optional[int] = None,
                 shortlist_recall: Union[bool, Sequence[int]] = False,
                 shortlist_refine: Optional[int] = None) -> None:
        # BaseLoop.__init__ would build `dataloader`; ours is a template.
        self._init_sets(runner, dataloader, evaluator, test_sets, pipeline,
                        fp16, progress, keep_outputs, shortlist,
                        shortlist_recall, shortlist_refine)

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

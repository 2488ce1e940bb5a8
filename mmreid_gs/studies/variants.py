"""Variants of one config over seeds (paper Fig. 2-4, Table 1): the shared
machinery of every study.

A study of kind ``'variants'`` (``configs/studies/{efficiency,batch,init,
clip,transmatcher}.py``) trains named variants of one config (class memory
/ PK / GS, batch sizes, PK warm-up epochs, clipping thresholds), each with
several seeds and validated after every epoch. :func:`run_study` trains the
runs one after the other in ``<work_dir>/<variant>/seed<k>/`` (a run with a
``done.json`` or a record in the study's ``runs.jsonl`` is skipped, an
unfinished one resumes from its last checkpoint), appends each finished
run's record (:mod:`mmreid_gs.studies.records`), then
:func:`collect_results` gathers every (variant, seed, epoch, set, metric)
value into ``results.csv`` / ``results.json`` and :func:`plot_results`
draws the mean and the min-max band over seeds.

The helpers here (:func:`apply_variant`, :func:`run_metrics`,
:func:`converged`, the run set-up and the record writing) serve the scale
and multisource studies too.
"""
import copy
import datetime
import csv
import glob
import json
import math
import os
import os.path as osp
import time
from collections import defaultdict
from typing import Dict, List, Optional, Sequence

import matplotlib
import numpy as np
from mmengine.config import Config, ConfigDict
from mmengine.logging import print_log
from mmengine.runner import find_latest_checkpoint
from mmengine.utils import ProgressBar

from mmreid_gs.engine.graph import load_graph_dump
from mmreid_gs.cli import build_runner, load_config
from mmreid_gs.evaluation.functional import graph_family_share
from mmreid_gs.registry import DATASETS
from mmreid_gs.utils import register_all_modules
from .run_logs import converged, run_metrics
from .records import (append_record, build_record, commit_records,
                      git_commit, load_records, record_key)
from .specs import config_path, load_study, study_preset

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

#: samplers built from the class graph (a PK warm-up, then graph batches)
GRAPH_SAMPLERS = ('gs', 'dfgs')

#: keys a variant may set
VARIANT_KEYS = ('sampler', 'loss', 'pk_epochs', 'batch_size',
                'num_instances', 'clip', 'within_source', 'num_neighbors')


def _hooks_without_gs(hooks) -> List:
    return [h for h in (hooks or []) if h.get('type') != 'GraphSamplerHook']


def apply_variant(cfg: Config, variant: Dict, num_classes: int) -> Config:
    """Apply a study variant to a training config (in place).

    Args:
        cfg (Config): The config (e.g. ``configs/qaconv_gs_demo.py``).
        variant (dict): ``sampler`` (``'pk'``, ``'gs'`` or ``'dfgs'``:
            ``DepthFirstGraphSampler`` with ``num_neighbors``), optional
            ``loss`` (``'class_memory'``), ``pk_epochs`` (GS warm-up),
            ``batch_size`` and ``num_instances`` (B and K), ``clip``
            (gradient-norm threshold, None = off), ``within_source`` (GS
            only: ``GraphSamplerHook(within_source=...)``, each class's
            neighbours from its own source of a pooled training set).
        num_classes (int): Training classes (class memory rows).

    Returns:
        Config: ``cfg``.
    """
    unknown = set(variant) - set(VARIANT_KEYS)
    if unknown:
        raise ValueError(f'sampler study: unknown variant keys '
                         f'{sorted(unknown)}; expected {VARIANT_KEYS}')
    sampler = variant.get('sampler', 'pk')
    if sampler not in ('pk', ) + GRAPH_SAMPLERS:
        raise ValueError(f"sampler study: sampler must be 'pk', 'gs' or "
                         f"'dfgs', got {sampler!r}")
    if 'within_source' in variant and sampler not in GRAPH_SAMPLERS:
        raise ValueError('sampler study: within_source is an option of the '
                         "Graph Sampler (sampler='gs' or 'dfgs')")
    if 'num_neighbors' in variant and sampler != 'dfgs':
        raise ValueError('sampler study: num_neighbors is an option of the '
                         "depth-first Graph Sampler (sampler='dfgs')")
    hooks = list(cfg.get('custom_hooks', None) or [])
    gs_hooks = [h for h in hooks if h.get('type') == 'GraphSamplerHook']
    hooks = _hooks_without_gs(hooks)
    if sampler == 'dfgs':
        # DFGS: batches grown by a depth-first walk of the class kNN graph
        loader_sampler = cfg.train_dataloader.sampler
        loader_sampler.type = 'DepthFirstGraphSampler'
        loader_sampler.num_neighbors = int(variant.get('num_neighbors', 15))
    if sampler in GRAPH_SAMPLERS:
        pipeline = (cfg.get('val_cfg', {}) or {}).get('pipeline') or \
            (cfg.get('test_cfg', {}) or {}).get('pipeline')
        hook = copy.deepcopy(gs_hooks[0]) if gs_hooks else ConfigDict(
            type='GraphSamplerHook', pipeline=pipeline, batch_size=128)
        hook['pk_epochs'] = int(variant.get('pk_epochs', 1))
        hook['save_graph'] = True
        if 'within_source' in variant:
            hook['within_source'] = bool(variant['within_source'])
        hooks.append(hook)
    cfg.custom_hooks = hooks
    if variant.get('loss') == 'class_memory':
        head = cfg.model.head
        head.loss = ConfigDict(
            type='ClassMemoryLoss', num_classes=int(num_classes),
            num_features=head.num_features, height=head.height,
            width=head.width)
    elif variant.get('loss') is not None:
        raise ValueError(f"sampler study: loss must be 'class_memory' or "
                         f"absent, got {variant['loss']!r}")
    loader = cfg.train_dataloader
    if 'batch_size' in variant:
        loader.batch_size = int(variant['batch_size'])
        loader.sampler.batch_size = int(variant['batch_size'])
    if 'num_instances' in variant:
        loader.sampler.num_instances = int(variant['num_instances'])
    if 'clip' in variant:
        clip = variant['clip']
        cfg.optim_wrapper.clip_grad = (None if clip is None else
                                       ConfigDict(max_norm=float(clip)))
    return cfg


def _set_schedule(cfg: Config, epochs: int, milestones: Sequence[int]):
    cfg.train_cfg.max_epochs = int(epochs)
    cfg.train_cfg.val_interval = 1
    scheds = cfg.get('param_scheduler', None) or []
    if isinstance(scheds, dict):
        scheds = [scheds]
    kept = [s for s in scheds if s.get('type') != 'MultiStepLR']
    if milestones:
        gamma = next((s.get('gamma', 0.1) for s in scheds
                      if s.get('type') == 'MultiStepLR'), 0.1)
        kept.append(ConfigDict(type='MultiStepLR', by_epoch=True,
                               milestones=list(milestones), gamma=gamma))
    cfg.param_scheduler = kept


def training_classes(cfg: Config):
    """Build the training set of a config.

    Returns:
        tuple: ``(dataset, num_classes)``; for an unlabelled training set
        (pseudo-labels) the number of true identities its images carry
        (used to describe the run, never to train), else its images.
    """
    register_all_modules(init_default_scope=True)
    dataset = DATASETS.build(copy.deepcopy(cfg.train_dataloader.dataset))
    labels = np.asarray(dataset.get_gt_labels(), dtype=np.int64)
    if labels.size == 0:
        raise ValueError('sampler study: the training set is empty')
    get_true = getattr(dataset, 'get_true_labels', None)
    true = get_true() if callable(get_true) else None
    if true is not None:
        return dataset, int(np.unique(true).size)
    return dataset, int(labels.max()) + 1


def family_share(graph_file: str, label_families: np.ndarray) -> Dict:
    """How many class-graph neighbours are look-alikes (same family), from
    a saved graph (:func:`~mmreid_gs.evaluation.functional.
    graph_family_share` on the dump).

    Args:
        graph_file (str): A ``graph/epoch_k.npz`` of
            ``GraphSamplerHook(save_graph=True)`` (``class_ids`` [C],
            ``neighbors`` [C, P-1]).
        label_families (np.ndarray): [C] family of every training label.

    Returns:
        dict: ``share`` (fraction of neighbour slots of the same family),
        ``best`` (the most a graph with P-1 neighbours can reach),
        ``random`` (expected share of random neighbours), ``num_classes``.
    """
    return graph_family_share(load_graph_dump(graph_file)['neighbors'],
                              label_families)


def _chosen(what: str, study: str, known, chosen) -> List[str]:
    """``chosen`` (default: all ``known``), each checked to be known."""
    names = list(known)
    if not chosen:
        return names
    bad = [c for c in chosen if c not in known]
    if bad:
        raise ValueError(f'sampler study: {study} has no {what}(s) {bad}; '
                         f'choose from {names}')
    return list(chosen)


def plan_runs(study: str, quick: bool = False, seeds=None, variants=None,
              preset: Optional[str] = None):
    """(variant name, variant dict, seed) of a study, and its preset.

    Args:
        study (str): A study of kind ``'variants'`` or ``'multisource'``
            (``configs/studies/<study>.py``).
        quick (bool): The ``quick`` preset (else ``full``).
        seeds, variants (Sequence, optional): Override the preset's seeds;
            run only these variants.
        preset (str, optional): A preset by name (wins over ``quick``).

    Returns:
        tuple: ``(runs, preset)``.
    """
    spec = load_study(study)
    if spec['kind'] == 'scale':
        raise ValueError('sampler study: the scale study has identity counts '
                         'and starts too: plan it with plan_scale_runs (run '
                         'it with run_scale_study)')
    chosen = study_preset(spec, preset or ('quick' if quick else 'full'))
    if seeds is not None:
        chosen['seeds'] = tuple(int(s) for s in seeds)
    names = _chosen('variant', study, spec['variants'], variants)
    # seed-major: a study stopped early still has every variant per seed
    runs = [(n, spec['variants'][n], s) for s in chosen['seeds']
            for n in names]
    return runs, chosen


def warmup_epochs(variant: Dict) -> int:
    """PK warm-up epochs of a Graph Sampler variant (0 for the others)."""
    if variant.get('sampler') in GRAPH_SAMPLERS:
        return int(variant.get('pk_epochs', 1))
    return 0


def study_warmup(variants: Dict) -> int:
    """The longest PK warm-up of a study's Graph Sampler variants (PK runs
    average ``batch_lookalike_share`` over the epochs after it, as GS
    runs)."""
    return max([warmup_epochs(v) for v in variants.values()
                if v.get('sampler') in GRAPH_SAMPLERS] or [0])


def is_recorded(records: Optional[str], key: Dict) -> bool:
    """Whether ``records`` (a ``runs.jsonl``) holds the run ``key``."""
    if not records:
        return False
    wanted = record_key(key)
    return any(record_key(r) == wanted for r in load_records(records))


def record_run(records: Optional[str], run_dir: str, key: Dict,
               batches_per_epoch: int, epochs: int, warmup: int,
               share_from_epoch: Optional[int] = None,
               commit: bool = False, **extra) -> Optional[Dict]:
    """Append a finished run's record to ``records`` (nothing when None or
    already there); with ``commit``, commit the file (that path only).

    Returns:
        dict or None: The new record.
    """
    if not records or is_recorded(records, key):
        return None
    record = build_record(
        run_dir, study=key['study'], variant=key['variant'],
        start=key['start'], num_ids=key['num_ids'], seed=key['seed'],
        batches_per_epoch=batches_per_epoch, epochs=epochs,
        warmup_epochs=warmup, share_from_epoch=share_from_epoch,
        meta=finished_run(run_dir), **extra)
    append_record(records, record)
    if commit:
        commit_records(records, f"study {key['study']}: {key['variant']} "
                       f"{key['start']} n={key['num_ids']} "
                       f"seed={key['seed']} finished")
    return record


def _configure_run(cfg: Config, run_dir: str, seed: int,
                   experiment: str) -> None:
    """What every study run sets: its folder (resumed from its last
    checkpoint), seed, one kept checkpoint, a quieter logger, the
    timeline. A config's ``load_from`` (a pretrained or source network)
    starts a new run; a started one resumes from its own checkpoint."""
    load_from = cfg.get('load_from', None)
    cfg.work_dir = run_dir
    cfg.resume = True
    cfg.load_from = None
    if load_from and find_latest_checkpoint(run_dir) is None:
        cfg.resume, cfg.load_from = False, load_from
    cfg.randomness = ConfigDict(seed=int(seed), deterministic=False)
    cfg.experiment_name = f'{experiment}_{time.time_ns()}'
    cfg.default_hooks.checkpoint = ConfigDict(
        type='CheckpointHook', interval=1, max_keep_ckpts=1)
    cfg.default_hooks.logger = ConfigDict(
        cfg.default_hooks.get('logger', {}) or {},
        interval=max(50, cfg.default_hooks.get('logger', {}).get(
            'interval', 50)))
    hooks = list(cfg.get('custom_hooks', None) or [])
    if not any(h.get('type') == 'WallClockHook' for h in hooks):
        hooks.append(ConfigDict(type='WallClockHook'))
    cfg.custom_hooks = hooks


def _train_run(cfg: Config, done: str, meta: Dict) -> None:
    """Train one run, then write its ``done.json`` (``meta`` and the
    seconds it took)."""
    start = time.time()
    commit = git_commit()
    runner = build_runner(cfg)
    runner.train()
    del runner
    date = datetime.datetime.now(datetime.timezone.utc).isoformat(
        timespec='seconds')
    with open(done, 'w') as f:
        json.dump(dict(meta, seconds=time.time() - start, commit=commit,
                       date=date), f)


def _epoch_length(cfg: Config, num_classes: int) -> int:
    """Batches per epoch of a GraphSampler config: its ``batches_per_epoch``
    or, by default, one batch per class."""
    bpe = cfg.train_dataloader.get('sampler', {}).get('batches_per_epoch')
    return int(bpe) if bpe else int(num_classes)


def run_study(config: Optional[str],
              study: str,
              work_dir: str,
              quick: bool = False,
              seeds: Optional[Sequence[int]] = None,
              variants: Optional[Sequence[str]] = None,
              epochs: Optional[int] = None,
              options: Optional[Dict] = None,
              progress: bool = True,
              preset: Optional[str] = None,
              records: Optional[str] = None,
              commit: bool = False) -> Dict:
    """Train every (variant, seed) run of a study and write its results.

    Args:
        config (str, optional): Base training config (default: the study
            config's).
        study (str): A study of kind ``'variants'``.
        work_dir (str): Study folder (one sub-folder per run).
        quick (bool): Use the quick preset. Defaults to False.
        seeds (Sequence[int], optional): Override the preset's seeds.
        variants (Sequence[str], optional): Run only these variants.
        epochs (int, optional): Override the preset's epochs (the lr steps
            beyond it are dropped).
        options (dict, optional): ``--cfg-options`` for every run.
        progress (bool): Show a progress bar over the runs.
        preset (str, optional): A preset by name (wins over ``quick``).
        records (str, optional): The study's ``runs.jsonl``: runs recorded
            there are skipped, finished runs appended. None: neither.
        commit (bool): Commit ``records`` after every appended run.

    Returns:
        dict: The ``results.json`` content.
    """
    spec = load_study(study)
    runs, chosen = plan_runs(study, quick, seeds, variants, preset)
    if epochs is not None:
        chosen['epochs'] = int(epochs)
        chosen['milestones'] = tuple(m for m in chosen['milestones']
                                     if m < int(epochs))
    base = load_config(config or config_path(spec), options)
    dataset, num_classes = training_classes(base)
    bpe = _epoch_length(base, num_classes)
    share_from = study_warmup(spec['variants'])
    start = 'pretrained' if base.get('load_from', None) else 'scratch'
    families = None
    if hasattr(dataset, 'get_label_families'):
        families = dataset.get_label_families()
    os.makedirs(work_dir, exist_ok=True)
    print_log(f'sampler study {study} ({preset or ("quick" if quick else "full")}): '
              f'{len(runs)} runs of {chosen["epochs"]} epochs, '
              f'{num_classes} training classes -> {work_dir}',
              logger='current')
    bar = ProgressBar(len(runs)) if progress else None
    for name, variant, seed in runs:
        run_dir = osp.join(work_dir, name, f'seed{seed}')
        done = osp.join(run_dir, 'done.json')
        warm = warmup_epochs(variant)
        key = dict(study=study, variant=name, start=start,
                   num_ids=num_classes, seed=seed,
                   iterations=int(chosen['epochs']) * bpe,
                   warmup_iterations=warm * bpe)
        if not osp.isfile(done) and not is_recorded(records, key):
            cfg = copy.deepcopy(base)
            apply_variant(cfg, variant, num_classes)
            _set_schedule(cfg, chosen['epochs'], chosen['milestones'])
            _configure_run(cfg, run_dir, seed, f'{study}_{name}_seed{seed}')
            _train_run(cfg, done, dict(variant=name, seed=seed,
                                       epochs=chosen['epochs']))
        if osp.isfile(done):
            record_run(records, run_dir, key, bpe, chosen['epochs'], warm,
                       share_from_epoch=share_from, commit=commit,
                       preset=preset or ('quick' if quick else 'full'))
        if bar is not None:
            bar.update()
    results = collect_results(work_dir, study, runs, families)
    results['preset'] = dict(quick=quick, **{
        k: list(v) if isinstance(v, tuple) else v
        for k, v in chosen.items()})
    if results['runs']:
        write_results(results, work_dir)
        plot_results(results, osp.join(work_dir, f'{study}.png'))
    return results


def finished_run(run_dir: str) -> Optional[Dict]:
    """The ``done.json`` of a finished run, or None when it has not
    finished."""
    done = osp.join(run_dir, 'done.json')
    if not osp.isfile(done):
        return None
    with open(done) as f:
        return json.load(f)


def collect_results(work_dir: str, study: str, runs,
                    families: Optional[np.ndarray] = None) -> Dict:
    """Gather the metrics of finished runs (and GS family shares).

    Returns:
        dict: ``study``, ``rows`` (variant, seed, epoch, set, metric,
        value), ``runs`` (variant, seed, seconds, converged).
    """
    rows, info = [], []
    for name, variant, seed in runs:
        run_dir = osp.join(work_dir, name, f'seed{seed}')
        meta = finished_run(run_dir)
        if meta is None:
            continue
        metrics = run_metrics(run_dir)
        logged = {r['epoch'] for r in metrics if r['set'] == 'graph'}
        if families is not None:
            # graphs whose family share the hook did not log already
            for path in sorted(glob.glob(osp.join(run_dir, 'graph',
                                                  'epoch_*.npz'))):
                epoch = int(osp.basename(path)[6:-4])
                if epoch in logged:
                    continue
                share = family_share(path, families)
                for key in ('share', 'random', 'best'):
                    metrics.append(dict(
                        epoch=epoch, set='graph',
                        metric='family_share' + (
                            '' if key == 'share' else f'_{key}'),
                        value=float(share[key])))
        rows += [dict(variant=name, seed=seed, **r) for r in metrics]
        info.append(dict(variant=name, seed=seed,
                         seconds=meta.get('seconds'),
                         converged=converged(metrics)))
    return dict(study=study, rows=rows, runs=info)


def write_results(results: Dict, work_dir: str, table=None) -> None:
    """Write ``results.json``, ``results.csv`` and ``summary.md`` (the
    markdown of ``table(results)``, default :func:`summary_table`)."""
    with open(osp.join(work_dir, 'results.json'), 'w') as f:
        json.dump(results, f, indent=1)
    with open(osp.join(work_dir, 'results.csv'), 'w', newline='') as f:
        writer = csv.DictWriter(
            f, fieldnames=['variant', 'seed', 'epoch', 'set', 'metric',
                           'value'])
        writer.writeheader()
        writer.writerows(results['rows'])
    with open(osp.join(work_dir, 'summary.md'), 'w') as f:
        f.write((table or summary_table)(results))


def _series(results: Dict):
    """``(set, metric) -> variant -> epoch -> [values over seeds]``."""
    out = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    for r in results['rows']:
        out[(r['set'], r['metric'])][r['variant']][r['epoch']].append(
            r['value'])
    return out


def summary_table(results: Dict) -> str:
    """Markdown table: last-epoch mean +- std over seeds of every
    Rank-1 / mAP, the non-converging run count and minutes per run."""
    series = _series(results)
    keys = sorted(k for k in series if k[1] in ('Rank-1', 'mAP')
                  and k[0] not in ('train', 'graph'))
    variants = []
    for r in results['runs']:
        if r['variant'] not in variants:
            variants.append(r['variant'])
    head = ['variant', 'seeds'] + [f'{s} {m}' for s, m in keys] + [
        'not converged', 'min/run']
    lines = ['| ' + ' | '.join(head) + ' |',
             '|' + '---|' * len(head)]
    for v in variants:
        runs = [r for r in results['runs'] if r['variant'] == v]
        cells = [v, str(len(runs))]
        for key in keys:
            by_epoch = series[key].get(v, {})
            if not by_epoch:
                cells.append('-')
                continue
            vals = np.asarray(by_epoch[max(by_epoch)]) * 100
            cells.append(f'{vals.mean():.1f} ± {vals.std():.1f}')
        cells.append(str(sum(not r['converged'] for r in runs)))
        secs = [r['seconds'] for r in runs if r['seconds']]
        cells.append(f'{np.mean(secs) / 60:.1f}' if secs else '-')
        lines.append('| ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines) + '\n'


def plot_results(results: Dict, path: str) -> None:
    """Mean (line) and min-max over seeds (band) against epochs for every
    validation Rank-1 / mAP, the training loss and, with GS, the graph's
    family share.

    Args:
        results (dict): From :func:`collect_results`.
        path (str): Output PNG.
    """
    series = _series(results)
    keys = sorted(k for k in series if k[1] in ('Rank-1', 'mAP')
                  and k[0] not in ('train', 'graph'))
    keys += [k for k in (('train', 'loss'), ('graph', 'family_share'))
             if k in series]
    if not keys:
        raise ValueError('sampler study: no finished run to plot')
    cols = 2
    rows = math.ceil(len(keys) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5.5 * cols, 3.6 * rows),
                             squeeze=False)
    # one colour per variant in every panel (the graph panel has GS only)
    variants = list(dict.fromkeys(v for k in keys for v in series[k]))
    cycle = plt.rcParams['axes.prop_cycle'].by_key()['color']
    colors = {v: cycle[i % len(cycle)] for i, v in enumerate(variants)}
    for ax, key in zip(axes.flat, keys):
        for variant, by_epoch in series[key].items():
            epochs = sorted(by_epoch)
            vals = [np.asarray(by_epoch[e], dtype=float) for e in epochs]
            mean = np.array([v.mean() for v in vals])
            lo = np.array([v.min() for v in vals])
            hi = np.array([v.max() for v in vals])
            n = max(len(v) for v in vals)
            ax.plot(epochs, mean, marker='o', ms=3, color=colors[variant],
                    label=f'{variant} (n={n})')
            ax.fill_between(epochs, lo, hi, alpha=0.2, color=colors[variant])
        ax.set_title(f'{key[0]} {key[1]}')
        ax.set_xlabel('epoch')
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(keys):]:
        ax.axis('off')
    fig.suptitle(f'{results["study"]}: mean over seeds, band = min-max')
    fig.tight_layout()
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)



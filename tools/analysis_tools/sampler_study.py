"""Multi-seed sampler / loss studies (paper Fig. 2-4) on any config.

    python tools/analysis_tools/sampler_study.py efficiency --quick
    python tools/analysis_tools/sampler_study.py batch \
        --config configs/qaconv_gs_demo.py --seeds 0 1 2
    python tools/analysis_tools/sampler_study.py transmatcher
    python tools/analysis_tools/sampler_study.py scale --quick [--dry-run]
    python tools/analysis_tools/sampler_study.py multisource --quick \
        [--dry-run]

Studies: efficiency (class memory vs PK vs GS), transmatcher (PK vs GS of
the TransMatcher demo), batch (B and K), init (PK warm-up epochs), clip
(gradient clipping), scale (GS vs PK as the number of training identities
grows, equal iterations, from scratch and from a pretrained start),
multisource (synthetic A + B pooled, tested on the unseen C and on A, B:
random PK vs GS over the pooled class graph vs GS within each source).
Writes ``<work-dir>/results.csv``, ``results.json``,
``summary.md`` and ``<study>.png``; finished runs are skipped on a rerun,
unfinished ones resume from their last checkpoint.

Multi-seed studies of the sampler and loss (paper Fig. 2-4, Table 1).

A study is a set of named variants of one config (class memory / PK / GS,
batch sizes, PK warm-up epochs, clipping thresholds), each trained with
several seeds and validated after every epoch. :func:`run_study` trains the
runs one after the other in ``<work_dir>/<variant>/seed<k>/`` (a run with a
``done.json`` is skipped, an unfinished one resumes from its last
checkpoint), then :func:`collect_results` gathers every (variant, seed,
epoch, set, metric) value into ``results.csv`` / ``results.json`` and
:func:`plot_results` draws the mean and the min-max band over seeds.

For Graph Sampler variants on :class:`SyntheticReID` the class graphs are
saved and :func:`family_share` measures how many graph neighbours are
look-alikes of the same generator family (the hard negatives GS is meant
to find).

The scale study (:func:`run_scale_study`) is planned by
:func:`plan_scale_runs`: samplers x identity counts x starts x seeds, every
run with the same ``epochs x batches_per_epoch`` iterations
(``GraphSampler(batches_per_epoch=...)``), trained on a SyntheticReID
training set of that many identities (one generated folder per count,
reused) and tested at its last epoch on the config's test sets (the seen
style A and the unseen style B; the same test identities at every count).
The ``pretrained`` start loads (``load_from``) a network trained once with
PK on other people (``<work_dir>/pretrain/``). Per run it collects the
metrics, ``batch_lookalike_share`` (BatchLookalikeShareHook) and the class
graph's build time (GraphSamplerHook); :func:`plot_scale_results` draws
them against the number of identities. ``--dry-run`` prints the plan and
its estimated time (:func:`estimate_scale_seconds`).

The multisource study (:func:`run_multisource_study`, default config
``configs/qaconv_gs_multisource_demo.py``: domains A and B pooled by
PooledReIDDataset, tested on the unseen C and on A and B) trains the
variants of :data:`MULTISOURCE` over seeds: ``pk`` (random PK batches
throughout, ``custom_hooks = []``), ``gs`` (the config: a PK warm-up epoch,
then GS over one class graph spanning both sources) and ``gs_within`` (GS
with ``GraphSamplerHook(within_source=True)``). The full preset is the
config's length (8 epochs x 200 batches = 1,600 iterations), the quick one
4 x 100 = 400 iterations (lr step at epoch 3); each run is validated at its
last epoch. :func:`multisource_run_values` gathers per run the last epoch's
Rank-1 / mAP of every test set, the mean ``train/batch_lookalike_share``
over the GS epochs (and all epochs), the mean ``graph/cross_source_share``
(and its random baseline) over the epochs that built a graph and the train
time; :func:`multisource_summary_table` and
:func:`plot_multisource_results` write ``summary.md`` and
``multisource.png``. ``--dry-run`` prints the plan and its estimated time
(:func:`estimate_multisource_seconds`, the scale study's unit costs).
"""
import argparse
import copy
import csv
import glob
import json
import math
import os
import os.path as osp
import sys
import time
from collections import defaultdict
from typing import Dict, List, Optional, Sequence

import matplotlib
import numpy as np
from mmengine.config import Config, ConfigDict, DictAction
from mmengine.logging import print_log
from mmengine.runner import find_latest_checkpoint
from mmengine.utils import ProgressBar

from mmreid_gs.engine.graph import load_graph_dump
from mmreid_gs.engine.runners import build_runner, load_config, run_cli
from mmreid_gs.evaluation.functional import graph_family_share
from mmreid_gs.registry import DATASETS
from mmreid_gs.utils import register_all_modules

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

#: The studies: variants (overrides, see :func:`apply_variant`) and the
#: quick / full presets (seeds, epochs, lr step epochs).
STUDIES = {
    'efficiency': dict(
        doc='paper Fig. 2: class memory vs random PK vs GS (1 PK warm-up '
        'epoch), Rank-1 / mAP against epochs',
        variants={
            'class_memory': dict(sampler='pk', loss='class_memory'),
            'pk': dict(sampler='pk'),
            'gs': dict(sampler='gs', pk_epochs=1),
        },
        quick=dict(seeds=(0, 1, 2), epochs=5, milestones=(4, )),
        full=dict(seeds=(0, 1, 2, 3, 4), epochs=8, milestones=(6, ))),
    'transmatcher': dict(
        doc='the TransMatcher demo (configs/transmatcher_gs_demo.py): '
        'random PK vs GS (1 PK warm-up epoch, the class graph scored by '
        'the TransMatcher head), Rank-1 / mAP against epochs',
        config='configs/transmatcher_gs_demo.py',
        variants={
            'pk': dict(sampler='pk'),
            'gs': dict(sampler='gs', pk_epochs=1),
        },
        quick=dict(seeds=(0, 1, 2), epochs=5, milestones=(4, )),
        full=dict(seeds=(0, 1, 2), epochs=8, milestones=(6, ))),
    'batch': dict(
        doc='paper Fig. 3: GS with B in {16, 32, 64} at K = 4 and K in '
        '{2, 4, 8} at B = 32',
        variants={
            'B16_K4': dict(sampler='gs', batch_size=16, num_instances=4),
            'B32_K4': dict(sampler='gs', batch_size=32, num_instances=4),
            'B64_K4': dict(sampler='gs', batch_size=64, num_instances=4),
            'B32_K2': dict(sampler='gs', batch_size=32, num_instances=2),
            'B32_K8': dict(sampler='gs', batch_size=32, num_instances=8),
        },
        quick=dict(seeds=(0, 1), epochs=3, milestones=()),
        full=dict(seeds=(0, 1, 2), epochs=8, milestones=(6, ))),
    'init': dict(
        doc='paper Fig. 4 (left): GS after 0, 1, 2 or 4 PK warm-up epochs',
        variants={
            f'pk{k}': dict(sampler='gs', pk_epochs=k) for k in (0, 1, 2, 4)
        },
        quick=dict(seeds=(0, 1), epochs=4, milestones=()),
        full=dict(seeds=(0, 1, 2), epochs=8, milestones=(6, ))),
    'clip': dict(
        doc='paper Fig. 4 (right): GS with gradient-norm clipping at 8, 32, '
        '128, 512 or off; runs that do not converge are counted',
        variants={
            **{f'clip{c}': dict(sampler='gs', clip=c)
               for c in (8, 32, 128, 512)},
            'clip_off': dict(sampler='gs', clip=None),
        },
        quick=dict(seeds=(0, 1), epochs=3, milestones=()),
        full=dict(seeds=(0, 1, 2), epochs=8, milestones=(6, ))),
}

#: the base config of a study whose spec names none
DEFAULT_CONFIG = 'configs/qaconv_gs_demo.py'

#: keys a variant may set
VARIANT_KEYS = ('sampler', 'loss', 'pk_epochs', 'batch_size',
                'num_instances', 'clip', 'within_source')


def _hooks_without_gs(hooks) -> List:
    return [h for h in (hooks or []) if h.get('type') != 'GraphSamplerHook']


def apply_variant(cfg: Config, variant: Dict, num_classes: int) -> Config:
    """Apply a study variant to a training config (in place).

    Args:
        cfg (Config): The config (e.g. ``configs/qaconv_gs_demo.py``).
        variant (dict): ``sampler`` (``'pk'`` or ``'gs'``), optional
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
    if sampler not in ('pk', 'gs'):
        raise ValueError(f"sampler study: sampler must be 'pk' or 'gs', "
                         f'got {sampler!r}')
    if 'within_source' in variant and sampler != 'gs':
        raise ValueError('sampler study: within_source is an option of the '
                         "Graph Sampler (sampler='gs')")
    hooks = list(cfg.get('custom_hooks', None) or [])
    gs_hooks = [h for h in hooks if h.get('type') == 'GraphSamplerHook']
    hooks = _hooks_without_gs(hooks)
    if sampler == 'gs':
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
        tuple: ``(dataset, num_classes)``.
    """
    register_all_modules(init_default_scope=True)
    dataset = DATASETS.build(copy.deepcopy(cfg.train_dataloader.dataset))
    labels = np.asarray(dataset.get_gt_labels(), dtype=np.int64)
    if labels.size == 0:
        raise ValueError('sampler study: the training set is empty')
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


def _read_scalars(run_dir: str) -> List[Dict]:
    rows = []
    for path in sorted(glob.glob(osp.join(run_dir, '*', 'vis_data',
                                          'scalars.json'))):
        with open(path) as f:
            for line in f:
                line = line.strip()
                if line:
                    rows.append(json.loads(line))
    return rows


def run_metrics(run_dir: str) -> List[Dict]:
    """Every validation metric and the mean training loss of each epoch of
    a run (later logs win, so a resumed run counts once).

    Returns:
        list[dict]: ``epoch``, ``set``, ``metric``, ``value`` rows; the
        training loss is ``set='train'``, ``metric='loss'``.
    """
    vals, losses = {}, defaultdict(list)
    for row in _read_scalars(run_dir):
        metric_keys = [k for k in row if '/' in k]
        if metric_keys:
            epoch = int(row.get('epoch', row.get('step', 0)))
            for key in metric_keys:
                vals[(epoch, ) + tuple(key.split('/', 1))] = float(row[key])
        elif 'loss' in row and 'epoch' in row:
            losses[int(row['epoch'])].append(float(row['loss']))
    out = [dict(epoch=e, set=s, metric=m, value=v)
           for (e, s, m), v in sorted(vals.items())]
    out += [dict(epoch=e, set='train', metric='loss',
                 value=float(np.mean(v))) for e, v in sorted(losses.items())]
    return out


def converged(rows: List[Dict], min_gain: float = 0.1,
              ratio: float = 0.9) -> bool:
    """Whether a run converged, from its per-epoch rows.

    Every epoch's mean training loss must be finite, and the run must have
    learnt: the mean mAP over the validated sets at the last epoch at least
    ``1 + min_gain`` times the first epoch's. The training loss alone does
    not tell: a Graph Sampler epoch's batches are harder than the PK
    warm-up's and get harder as the graph improves, so the loss of a run
    that learns well can rise from one epoch to the next. Without
    validation rows the loss rule is used instead (last epoch's loss below
    ``ratio`` x the first's); one epoch only needs finite losses.

    Args:
        rows (list[dict]): ``epoch``, ``set``, ``metric``, ``value`` rows
            of one run (``set='train'``, ``metric='loss'`` for the loss).
        min_gain (float): Relative mAP gain from the first to the last
            epoch. Defaults to 0.1.
        ratio (float): Loss ratio of the rule without validation.
            Defaults to 0.9.

    Returns:
        bool: True when the run converged.
    """
    loss = sorted((r['epoch'], r['value']) for r in rows
                  if r['set'] == 'train' and r['metric'] == 'loss')
    if not loss or not all(math.isfinite(v) for _, v in loss):
        return False
    maps = defaultdict(list)
    for r in rows:
        if r['metric'] == 'mAP' and r['set'] not in ('train', 'graph'):
            maps[r['epoch']].append(r['value'])
    if len(loss) == 1 or (maps and len(maps) == 1):
        return True
    if maps:
        epochs = sorted(maps)
        first = float(np.mean(maps[epochs[0]]))
        last = float(np.mean(maps[epochs[-1]]))
        return math.isfinite(last) and last >= (1 + min_gain) * first
    return loss[-1][1] < ratio * loss[0][1]


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


def plan_runs(study: str, quick: bool, seeds=None, variants=None):
    """(variant name, variant dict, seed) of a study, and its preset."""
    if study not in STUDIES:
        raise ValueError(f'sampler study: unknown study {study!r}; '
                         f'choose one of {sorted(STUDIES)}')
    if study == 'scale':
        raise ValueError('sampler study: the scale study has identity counts '
                         'and starts too: plan it with plan_scale_runs (run '
                         'it with run_scale_study)')
    spec = STUDIES[study]
    preset = dict(spec['quick' if quick else 'full'])
    if seeds is not None:
        preset['seeds'] = tuple(int(s) for s in seeds)
    names = _chosen('variant', study, spec['variants'], variants)
    # seed-major: a study stopped early still has every variant per seed
    runs = [(n, spec['variants'][n], s) for s in preset['seeds']
            for n in names]
    return runs, preset


def _configure_run(cfg: Config, run_dir: str, seed: int,
                   experiment: str) -> None:
    """What every study run sets: its folder (resumed from its last
    checkpoint), seed, one kept checkpoint, a quieter logger."""
    cfg.work_dir = run_dir
    cfg.resume = True
    cfg.load_from = None
    cfg.randomness = ConfigDict(seed=int(seed), deterministic=False)
    cfg.experiment_name = f'{experiment}_{time.time_ns()}'
    cfg.default_hooks.checkpoint = ConfigDict(
        type='CheckpointHook', interval=1, max_keep_ckpts=1)
    cfg.default_hooks.logger = ConfigDict(
        cfg.default_hooks.get('logger', {}) or {},
        interval=max(50, cfg.default_hooks.get('logger', {}).get(
            'interval', 50)))


def _train_run(cfg: Config, done: str, meta: Dict) -> None:
    """Train one run, then write its ``done.json`` (``meta`` and the
    seconds it took)."""
    start = time.time()
    runner = build_runner(cfg)
    runner.train()
    del runner
    with open(done, 'w') as f:
        json.dump(dict(meta, seconds=time.time() - start), f)


def run_study(config: str,
              study: str,
              work_dir: str,
              quick: bool = False,
              seeds: Optional[Sequence[int]] = None,
              variants: Optional[Sequence[str]] = None,
              epochs: Optional[int] = None,
              options: Optional[Dict] = None,
              progress: bool = True) -> Dict:
    """Train every (variant, seed) run of a study and write its results.

    Args:
        config (str): Base training config.
        study (str): One of :data:`STUDIES`.
        work_dir (str): Study folder (one sub-folder per run).
        quick (bool): Use the quick preset. Defaults to False.
        seeds (Sequence[int], optional): Override the preset's seeds.
        variants (Sequence[str], optional): Run only these variants.
        epochs (int, optional): Override the preset's epochs (the lr steps
            beyond it are dropped).
        options (dict, optional): ``--cfg-options`` for every run.
        progress (bool): Show a progress bar over the runs.

    Returns:
        dict: The ``results.json`` content.
    """
    if study == 'multisource':  # its own epoch length, tests and table
        return run_multisource_study(
            config, work_dir, quick=quick, seeds=seeds, variants=variants,
            epochs=epochs, options=options, progress=progress)
    runs, preset = plan_runs(study, quick, seeds, variants)
    if epochs is not None:
        preset['epochs'] = int(epochs)
        preset['milestones'] = tuple(m for m in preset['milestones']
                                     if m < int(epochs))
    base = load_config(config, options)
    dataset, num_classes = training_classes(base)
    families = None
    if hasattr(dataset, 'get_label_families'):
        families = dataset.get_label_families()
    os.makedirs(work_dir, exist_ok=True)
    print_log(f'sampler study {study} ({"quick" if quick else "full"}): '
              f'{len(runs)} runs of {preset["epochs"]} epochs, '
              f'{num_classes} training classes -> {work_dir}',
              logger='current')
    bar = ProgressBar(len(runs)) if progress else None
    for name, variant, seed in runs:
        run_dir = osp.join(work_dir, name, f'seed{seed}')
        done = osp.join(run_dir, 'done.json')
        if not osp.isfile(done):
            cfg = copy.deepcopy(base)
            apply_variant(cfg, variant, num_classes)
            _set_schedule(cfg, preset['epochs'], preset['milestones'])
            _configure_run(cfg, run_dir, seed, f'{study}_{name}_seed{seed}')
            _train_run(cfg, done, dict(variant=name, seed=seed,
                                       epochs=preset['epochs']))
        if bar is not None:
            bar.update()
    results = collect_results(work_dir, study, runs, families)
    results['preset'] = dict(quick=quick, **{
        k: list(v) if isinstance(v, tuple) else v
        for k, v in preset.items()})
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


# ---------------------------------------------------------------------------
# The scale study: GS against PK as the number of training identities grows


#: The ``scale`` study (issue 18): the samplers, the two starts and the
#: presets. Every run of a preset has the same number of iterations
#: (``epochs x batches_per_epoch``, the GraphSampler's fixed epoch length)
#: whatever its number of training identities; ``gs`` spends its first
#: epoch on random PK batches (the paper). ``pretrain``: the network of the
#: ``pretrained`` start, trained once with PK on other people (another
#: generation seed of the same domain: other identities and other cameras
#: of the same style) and loaded by ``load_from``. ``num_candidates`` /
#: ``candidates_from``: the two-stage class graph from that many classes
#: on (None: exact everywhere).
SCALE = dict(
    variants={
        'pk': dict(sampler='pk'),
        'gs': dict(sampler='gs', pk_epochs=1),
    },
    starts=('scratch', 'pretrained'),
    quick=dict(seeds=(0, 1, 2), counts=(200, 1000, 2000), epochs=4,
               milestones=(3, ), batches_per_epoch=100, num_candidates=None,
               candidates_from=None,
               pretrain=dict(num_ids=1000, seed=1000, epochs=8,
                             milestones=(6, ), batches_per_epoch=100)),
    full=dict(seeds=(0, 1, 2), counts=(200, 1000, 2000, 4000, 8000),
              epochs=8, milestones=(6, ), batches_per_epoch=250,
              num_candidates=0.05, candidates_from=4000,
              pretrain=dict(num_ids=2000, seed=1000, epochs=8,
                            milestones=(6, ), batches_per_epoch=250)),
)

STUDIES['scale'] = dict(
    doc='GS vs PK as the training identities grow (e.g. 200..8,000) at an '
    'equal number of iterations, from scratch and from a PK-pretrained '
    'start; Rank-1 / mAP and batch_lookalike_share against identities',
    variants=SCALE['variants'], quick=SCALE['quick'], full=SCALE['full'])

#: Measured inputs of :func:`estimate_scale_seconds` (2-core CPU, demo
#: network at 128x64, B = 32): seconds per training iteration (0.2-0.3 s),
#: generated images per second (250-380), seconds per image of feature
#: extraction in eval mode (about 0.01), seconds per QAConv pair of 64x8x4
#: maps in the exact class graph (about 2.2e-6), and the fixed cost of a run
#: (runner, dataset indexing, checkpoints, one validation on the demo's two
#: test sets of about 1,700 images).
SCALE_COSTS = dict(sec_per_iter=0.25, images_per_sec=300.,
                   extract_per_image=0.012, pair_seconds=2.2e-6,
                   run_overhead=45., two_stage_speedup=6.)


def plan_scale_runs(quick: bool,
                    seeds: Optional[Sequence[int]] = None,
                    variants: Optional[Sequence[str]] = None,
                    counts: Optional[Sequence[int]] = None,
                    starts: Optional[Sequence[str]] = None):
    """The runs of the scale study: variants x identity counts x starts x
    seeds (seed-major, so a study stopped early has every point for the
    first seeds).

    Args:
        quick (bool): The quick preset.
        seeds, variants, counts, starts (Sequence, optional): Override the
            preset's seeds, the samplers (``'pk'``, ``'gs'``), the numbers
            of training identities and the starts (``'scratch'``,
            ``'pretrained'``).

    Returns:
        tuple: ``(runs, preset)``; a run is a dict with ``name``
        (``<start>/n<count>/<variant>``, its folder below the study's),
        ``variant``, ``spec`` (the variant dict), ``num_ids``, ``start``
        and ``seed``.
    """
    preset = copy.deepcopy(SCALE['quick' if quick else 'full'])
    if seeds is not None:
        preset['seeds'] = tuple(int(s) for s in seeds)
    if counts is not None:
        bad = [c for c in counts if int(c) < 1]
        if bad:
            raise ValueError(f'sampler study scale: identity counts must be '
                             f'>= 1, got {bad}')
        preset['counts'] = tuple(int(c) for c in counts)
    names = _chosen('variant', 'scale', SCALE['variants'], variants)
    chosen = tuple(_chosen('start', 'scale', SCALE['starts'], starts))
    preset['starts'] = chosen
    runs = [
        dict(name=f'{start}/n{count}/{name}', variant=name,
             spec=SCALE['variants'][name], num_ids=count, start=start,
             seed=seed)
        for seed in preset['seeds'] for count in preset['counts']
        for start in chosen for name in names
    ]
    return runs, preset


def _synthetic_train_set(dataset: Dict, num_ids: int,
                         seed: Optional[int] = None,
                         tag: Optional[str] = None) -> ConfigDict:
    """The config's SyntheticReID training set with ``num_ids`` identities
    (and another generation ``seed``): the config's own folder when nothing
    changes, else a sibling folder ``<data_root>_<tag>`` (a generated tree
    is reused, never regenerated)."""
    ds = ConfigDict(copy.deepcopy(dataset))
    if ds.get('type') not in ('SyntheticReID', 'mmreid_gs.SyntheticReID'):
        raise ValueError('sampler study scale: the training set must be a '
                         'SyntheticReID (it generates any number of '
                         f"identities); got type {ds.get('type')!r}")
    same = int(ds.get('num_train_ids', 200)) == int(num_ids) and (
        seed is None or int(seed) == int(ds.get('seed', 0)))
    ds.num_train_ids = int(num_ids)
    if seed is not None:
        ds.seed = int(seed)
    if not same:
        ds.data_root = str(ds.data_root).rstrip('/\\') + '_' + (
            tag or f'n{int(num_ids)}')
    return ds


def _scale_base(cfg: Config, batches_per_epoch: int, epochs: int,
                milestones: Sequence[int], study: str = 'scale') -> None:
    """Fixed epoch length, the schedule, validation at the last epoch."""
    sampler = cfg.train_dataloader.sampler
    if sampler.get('type', 'GraphSampler') not in ('GraphSampler',
                                                   'mmreid_gs.GraphSampler'):
        raise ValueError(f'sampler study {study}: the train sampler must be a '
                         "GraphSampler (batches_per_epoch); got type "
                         f"{sampler.get('type')!r}")
    sampler.batches_per_epoch = int(batches_per_epoch)
    _set_schedule(cfg, epochs, milestones)
    cfg.train_cfg.val_interval = int(epochs)  # tested once, at the end


def pretrain_config(base: Config, preset: Dict) -> Config:
    """The config of the network of the ``pretrained`` start: PK on
    ``preset['pretrain']['num_ids']`` identities of another generation seed
    (other people than every study run's), validated on the config's test
    sets at its last epoch.

    Args:
        base (Config): The study's base config.
        preset (dict): A scale preset (its ``pretrain`` entry).

    Returns:
        Config: A new config (work dir, seed and resume set by the caller).
    """
    pre = preset['pretrain']
    cfg = copy.deepcopy(base)
    loader = cfg.train_dataloader
    if int(pre['seed']) == int(loader.dataset.get('seed', 0)):
        raise ValueError('sampler study scale: the pretraining seed must '
                         'differ from the training set\'s (other people); '
                         f"both are {pre['seed']}")
    loader.dataset = _synthetic_train_set(
        loader.dataset, pre['num_ids'], seed=pre['seed'],
        tag=f"pretrain_seed{pre['seed']}_n{pre['num_ids']}")
    apply_variant(cfg, dict(sampler='pk'), int(pre['num_ids']))
    _scale_base(cfg, pre['batches_per_epoch'], pre['epochs'],
                pre['milestones'])
    return cfg


def scale_run_config(base: Config, run: Dict, preset: Dict,
                     pretrained: Optional[str] = None) -> Config:
    """The config of one scale run: ``num_train_ids`` (and its data
    folder), the fixed ``batches_per_epoch``, the sampler variant (GS with
    the two-stage graph from ``candidates_from`` classes on), the schedule
    and, for the ``pretrained`` start, ``load_from``.

    Args:
        base (Config): The study's base config.
        run (dict): From :func:`plan_scale_runs`.
        preset (dict): The preset.
        pretrained (str, optional): The pretrained checkpoint (required by
            the ``pretrained`` start).

    Returns:
        Config: A new config; ``load_from`` is the pretrained checkpoint for
        the ``pretrained`` start (:func:`run_scale_study` resumes a started
        run from its own checkpoint instead).
    """
    cfg = copy.deepcopy(base)
    loader = cfg.train_dataloader
    loader.dataset = _synthetic_train_set(loader.dataset, run['num_ids'])
    apply_variant(cfg, run['spec'], run['num_ids'])
    _scale_base(cfg, preset['batches_per_epoch'], preset['epochs'],
                preset['milestones'])
    cand, start = preset.get('num_candidates'), preset.get('candidates_from')
    if cand is not None and start is not None and run['num_ids'] >= start:
        for hook in cfg.custom_hooks:
            if hook.get('type') == 'GraphSamplerHook':
                hook['num_candidates'] = cand
    cfg.load_from = None
    if run['start'] == 'pretrained':
        if not pretrained:
            raise ValueError('sampler study scale: the pretrained start '
                             'needs the pretrained checkpoint')
        cfg.load_from = pretrained
    elif run['start'] != 'scratch':
        raise ValueError(f"sampler study scale: unknown start "
                         f"{run['start']!r}")
    return cfg


def _train_scale_run(cfg: Config, run_dir: str, seed: int, experiment: str,
                     meta: Dict) -> None:
    load_from = cfg.get('load_from', None)
    _configure_run(cfg, run_dir, seed, experiment)
    if load_from and find_latest_checkpoint(run_dir) is None:
        # a new run starts from the pretrained weights; a started one
        # resumes from its own checkpoint (resume=True, load_from=None)
        cfg.resume, cfg.load_from = False, load_from
    _train_run(cfg, osp.join(run_dir, 'done.json'), meta)


def _dataset_images_per_id(dataset: Dict) -> float:
    """Expected images per identity of a SyntheticReID config."""
    cams = int(dataset.get('num_cams', 6))
    low = min(int(dataset.get('min_cams', 2)), cams)
    return int(dataset.get('imgs_per_cam', 2)) * (low + cams) / 2


def estimate_scale_seconds(base: Config, runs: List[Dict], preset: Dict,
                           costs: Optional[Dict] = None) -> Dict:
    """Predicted wall time of a scale study from measured unit costs
    (:data:`SCALE_COSTS`): an estimate, not a measurement.

    Training: runs x epochs x batches_per_epoch iterations (plus the
    pretraining) at ``sec_per_iter``; the class graphs of the GS epochs:
    one image per class extracted, C^2 QAConv pairs (over
    ``two_stage_speedup`` with the two-stage graph); data: the trees not
    generated yet are counted as if none were; a fixed cost per run.

    Returns:
        dict: Seconds of ``train``, ``graphs``, ``data``, ``overhead`` and
        ``total``, the number of ``runs`` (pretraining included) and
        ``iterations``.
    """
    c = dict(SCALE_COSTS, **(costs or {}))
    dataset = base.train_dataloader.dataset
    per_id = _dataset_images_per_id(dataset)
    test_ids = int(dataset.get('num_test_ids', 100))
    iters = preset['epochs'] * preset['batches_per_epoch']
    starts = {r['start'] for r in runs}
    pre = preset['pretrain']
    pre_iters = pre['epochs'] * pre['batches_per_epoch'] \
        if 'pretrained' in starts else 0
    graphs = 0.
    for r in runs:
        if r['spec'].get('sampler') != 'gs':
            continue
        n = r['num_ids']
        builds = max(0, preset['epochs'] - int(r['spec'].get('pk_epochs',
                                                             1)))
        score = n * n * c['pair_seconds']
        cand, start = preset.get('num_candidates'), preset.get(
            'candidates_from')
        if cand is not None and start is not None and n >= start:
            score /= c['two_stage_speedup']
        graphs += builds * (n * c['extract_per_image'] + score)
    counts = {r['num_ids'] for r in runs}
    ids = sum(n + test_ids for n in counts) + test_ids  # + unseen domain
    if pre_iters:
        ids += pre['num_ids'] + test_ids
    out = dict(
        train=(len(runs) * iters + pre_iters) * c['sec_per_iter'],
        graphs=graphs,
        data=ids * per_id / c['images_per_sec'],
        overhead=(len(runs) + bool(pre_iters)) * c['run_overhead'])
    out['total'] = sum(out.values())
    out.update(runs=len(runs) + bool(pre_iters), iterations=iters)
    return out


def _describe_plan(runs, preset, estimate) -> str:
    return (
        f"{len(runs)} runs ({len({r['variant'] for r in runs})} samplers x "
        f"{len({r['num_ids'] for r in runs})} identity counts "
        f"{sorted({r['num_ids'] for r in runs})} x "
        f"{len({r['start'] for r in runs})} starts x "
        f"{len({r['seed'] for r in runs})} seeds) of {preset['epochs']} "
        f"epochs x {preset['batches_per_epoch']} batches = "
        f"{estimate['iterations']} iterations"
        + (f", + 1 pretraining run of {preset['pretrain']['epochs']} x "
           f"{preset['pretrain']['batches_per_epoch']} batches on "
           f"{preset['pretrain']['num_ids']} identities"
           if 'pretrained' in {r['start'] for r in runs} else '')
        + f"; estimated {estimate['total'] / 3600:.1f} h (train "
        f"{estimate['train'] / 60:.0f} min, class graphs "
        f"{estimate['graphs'] / 60:.0f} min, data generation "
        f"{estimate['data'] / 60:.0f} min, runs' fixed cost "
        f"{estimate['overhead'] / 60:.0f} min; an estimate from "
        'measured unit costs, see SCALE_COSTS)')


def run_scale_study(config: str,
                    work_dir: str,
                    quick: bool = False,
                    seeds: Optional[Sequence[int]] = None,
                    variants: Optional[Sequence[str]] = None,
                    counts: Optional[Sequence[int]] = None,
                    starts: Optional[Sequence[str]] = None,
                    epochs: Optional[int] = None,
                    batches_per_epoch: Optional[int] = None,
                    options: Optional[Dict] = None,
                    progress: bool = True,
                    dry_run: bool = False,
                    costs: Optional[Dict] = None,
                    preset_overrides: Optional[Dict] = None) -> Dict:
    """Train the scale study (GS against PK as the identities grow) and
    write its results.

    Runs live in ``<work_dir>/<start>/n<count>/<variant>/seed<k>/`` (the
    pretraining in ``<work_dir>/pretrain/``); a run with a ``done.json`` is
    skipped, an unfinished one resumes from its last checkpoint. Then
    ``results.json`` / ``results.csv`` / ``summary.md`` and ``scale.png``.

    Args:
        config (str): Base training config (a SyntheticReID training set,
            a GraphSampler, e.g. ``configs/qaconv_gs_demo.py``).
        work_dir (str): Study folder.
        quick (bool): The quick preset. Defaults to False.
        seeds, variants, counts, starts (Sequence, optional): Override the
            preset (see :func:`plan_scale_runs`).
        epochs (int, optional): Override the preset's epochs (later lr
            steps dropped).
        batches_per_epoch (int, optional): Override the preset's epoch
            length.
        options (dict, optional): ``--cfg-options`` for every run.
        progress (bool): A progress bar over the runs.
        dry_run (bool): Only log the plan and its estimated time.
        costs (dict, optional): Unit costs of the estimate (see
            :data:`SCALE_COSTS`).
        preset_overrides (dict, optional): Other preset values (e.g.
            ``num_candidates``, ``candidates_from``); a ``pretrain`` dict
            updates the preset's.

    Returns:
        dict: The ``results.json`` content (with ``dry_run``: ``plan`` and
        ``estimate`` only).
    """
    runs, preset = plan_scale_runs(quick, seeds, variants, counts, starts)
    if epochs is not None:
        preset['epochs'] = int(epochs)
        preset['milestones'] = tuple(m for m in preset['milestones']
                                     if m < int(epochs))
    if batches_per_epoch is not None:
        preset['batches_per_epoch'] = int(batches_per_epoch)
    for key, value in (preset_overrides or {}).items():
        if key not in preset:
            raise ValueError(f'sampler study scale: unknown preset key '
                             f'{key!r}; expected one of {sorted(preset)}')
        if key == 'pretrain':
            preset['pretrain'] = dict(preset['pretrain'], **value)
        else:
            preset[key] = value
    base = load_config(config, options)
    register_all_modules(init_default_scope=True)
    estimate = estimate_scale_seconds(base, runs, preset, costs)
    print_log(f'sampler study scale ({"quick" if quick else "full"}): '
              + _describe_plan(runs, preset, estimate) + f' -> {work_dir}',
              logger='current')
    if dry_run:
        return dict(study='scale', plan=runs, preset=preset,
                    estimate=estimate)
    os.makedirs(work_dir, exist_ok=True)
    pretrained = None
    if any(r['start'] == 'pretrained' for r in runs):
        pretrained = _pretrain(base, preset, work_dir)
    bar = ProgressBar(len(runs)) if progress else None
    for run in runs:
        run_dir = osp.join(work_dir, run['name'], f"seed{run['seed']}")
        if not osp.isfile(osp.join(run_dir, 'done.json')):
            cfg = scale_run_config(base, run, preset, pretrained)
            _train_scale_run(
                cfg, run_dir, run['seed'],
                f"scale_{run['name'].replace('/', '_')}_seed{run['seed']}",
                dict(variant=run['variant'], start=run['start'],
                     num_ids=run['num_ids'], seed=run['seed'],
                     epochs=preset['epochs'],
                     batches_per_epoch=preset['batches_per_epoch']))
        if bar is not None:
            bar.update()
    results = collect_scale_results(work_dir, runs, preset)
    write_scale_results(results, work_dir)
    plot_scale_results(results, osp.join(work_dir, 'scale.png'))
    return results


def _pretrain(base: Config, preset: Dict, work_dir: str) -> str:
    """Train (or reuse) the network of the pretrained start.

    Returns:
        str: Its checkpoint (the last epoch's).
    """
    pre = preset['pretrain']
    run_dir = osp.join(work_dir, 'pretrain')
    done = osp.join(run_dir, 'done.json')
    if not osp.isfile(done):
        cfg = pretrain_config(base, preset)
        _train_scale_run(cfg, run_dir, pre['seed'], 'scale_pretrain',
                         dict(variant='pretrain', start='pretrain',
                              num_ids=pre['num_ids'], seed=pre['seed'],
                              epochs=pre['epochs'],
                              batches_per_epoch=pre['batches_per_epoch']))
    ckpt = osp.join(run_dir, f"epoch_{pre['epochs']}.pth")
    if not osp.isfile(ckpt):
        raise FileNotFoundError(
            f'sampler study scale: the pretraining in {run_dir} is marked '
            f'done but has no {osp.basename(ckpt)}; remove {done} to train '
            'it again')
    return ckpt


def collect_scale_results(work_dir: str, runs: List[Dict],
                          preset: Dict) -> Dict:
    """Gather the metrics of the finished scale runs (and the pretraining).

    Returns:
        dict: ``study`` ('scale'), ``rows`` (variant, start, num_ids, seed,
        epoch, set, metric, value: the validation metrics of the last
        epoch, the training loss, ``train/batch_lookalike_share`` and the
        ``graph/*`` values of every epoch), ``runs`` (variant, start,
        num_ids, seed, seconds, converged) and ``preset``.
    """
    rows, info = [], []
    pre = preset['pretrain']
    todo = [dict(name='pretrain', variant='pretrain', start='pretrain',
                 num_ids=pre['num_ids'], seed=pre['seed'])] + list(runs)
    for run in todo:
        run_dir = osp.join(work_dir, run['name'])
        if run['variant'] != 'pretrain':
            run_dir = osp.join(run_dir, f"seed{run['seed']}")
        meta = finished_run(run_dir)
        if meta is None:
            continue
        metrics = run_metrics(run_dir)
        key = dict(variant=run['variant'], start=run['start'],
                   num_ids=run['num_ids'], seed=run['seed'])
        rows += [dict(key, **r) for r in metrics]
        info.append(dict(key, seconds=meta.get('seconds'),
                         converged=converged(metrics)))
    return dict(study='scale', rows=rows, runs=info, preset={
        k: list(v) if isinstance(v, tuple) else v for k, v in preset.items()})


def write_scale_results(results: Dict, work_dir: str) -> None:
    """Write ``results.json``, ``results.csv`` and ``summary.md`` of the
    scale study."""
    with open(osp.join(work_dir, 'results.json'), 'w') as f:
        json.dump(results, f, indent=1)
    with open(osp.join(work_dir, 'results.csv'), 'w', newline='') as f:
        writer = csv.DictWriter(
            f, fieldnames=['variant', 'start', 'num_ids', 'seed', 'epoch',
                           'set', 'metric', 'value'])
        writer.writeheader()
        writer.writerows(results['rows'])
    with open(osp.join(work_dir, 'summary.md'), 'w') as f:
        f.write(scale_summary_table(results))


def _test_sets(results: Dict) -> List[str]:
    return sorted({r['set'] for r in results['rows']
                   if r['metric'] in ('Rank-1', 'mAP')
                   and r['set'] not in ('train', 'graph')})


def _scale_points(results: Dict):
    """``(num_ids, start, variant) -> {(set, metric): {seed: value}}``:
    the last epoch's validation metrics, the run's mean
    ``batch_lookalike_share`` over its epochs (and of random PK batches),
    the mean graph build time."""
    last = {}
    for r in results['rows']:
        k = (r['num_ids'], r['start'], r['variant'], r['seed'])
        last[k] = max(last.get(k, 0), int(r['epoch']))
    per_epoch = defaultdict(list)
    out = defaultdict(lambda: defaultdict(dict))
    warmup = _scale_warmup()
    for r in results['rows']:
        k = (r['num_ids'], r['start'], r['variant'], r['seed'])
        point = k[:3]
        if r['metric'] in ('Rank-1', 'mAP') and r['set'] not in (
                'train', 'graph'):
            if int(r['epoch']) == last[k]:
                out[point][(r['set'], r['metric'])][r['seed']] = r['value']
        elif (r['set'], r['metric']) in (
                ('train', 'batch_lookalike_share'),
                ('train', 'batch_lookalike_share_random'),
                ('graph', 'build_seconds'), ('graph', 'family_share')):
            per_epoch[(point, r['set'], r['metric'], r['seed'])].append(
                r['value'])
            if r['metric'] == 'batch_lookalike_share' and \
                    point[1] != 'pretrain' and int(r['epoch']) > warmup:
                # the GS epochs (PK: the same epochs)
                per_epoch[(point, 'train', 'batch_lookalike_share_gs',
                           r['seed'])].append(r['value'])
    for (point, s, m, seed), values in per_epoch.items():
        out[point][(s, m)][seed] = float(np.mean(values))
    return out


def _scale_warmup() -> int:
    """PK warm-up epochs of the scale study's GS variant (its PK runs'
    share is averaged over the same epochs)."""
    return max(int(v.get('pk_epochs', 1)) for v in SCALE['variants'].values()
               if v.get('sampler') == 'gs')


def _mean_spread(values, scale=100., digits=1) -> str:
    vals = np.asarray(list(values), dtype=float) * scale
    if not vals.size:
        return '-'
    return f'{vals.mean():.{digits}f} ± {vals.std():.{digits}f}'


def scale_summary_table(results: Dict) -> str:
    """Markdown table of the scale study: identities | start | sampler |
    batch_lookalike_share | Rank-1 / mAP of every test set (mean ± std
    over seeds, %) | seeds | train time (min per run) | graph build (s)."""
    points = _scale_points(results)
    sets = _test_sets(results)
    head = (['identities', 'start', 'sampler',
             'batch_lookalike_share GS epochs (all epochs)']
            + [f'{s} Rank-1 / mAP' for s in sets]
            + ['seeds', 'train min/run', 'graph s/build'])
    lines = ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
    secs = defaultdict(list)
    for r in results['runs']:
        if r.get('seconds'):
            secs[(r['num_ids'], r['start'], r['variant'])].append(
                r['seconds'])
    order = {'pretrain': 0, 'scratch': 1, 'pretrained': 2}
    samplers = {v: i for i, v in enumerate(SCALE['variants'])}
    for point in sorted(points, key=lambda p: (p[1] != 'pretrain', p[0],
                                               order.get(p[1], 9),
                                               samplers.get(p[2], 9), p[2])):
        vals = points[point]
        share = vals.get(('train', 'batch_lookalike_share'), {})
        share_gs = vals.get(('train', 'batch_lookalike_share_gs'), {})
        rand = vals.get(('train', 'batch_lookalike_share_random'), {})
        if share_gs:
            cell = (_mean_spread(share_gs.values(), 1., 3) +
                    f' ({np.mean(list(share.values())):.3f})')
        else:
            cell = _mean_spread(share.values(), 1., 3)
        if rand:
            cell += f'; random {np.mean(list(rand.values())):.3f}'
        if point[1] == 'pretrain':  # the network of the pretrained start
            seed = results.get('preset', {}).get('pretrain', {}).get('seed')
            cells = [str(point[0]), f'pretraining (seed {seed}: other '
                     'people)', 'pk', cell]
        else:
            cells = [str(point[0]), point[1], point[2], cell]
        for s in sets:
            cells.append(
                _mean_spread(vals.get((s, 'Rank-1'), {}).values()) + ' / '
                + _mean_spread(vals.get((s, 'mAP'), {}).values()))
        seeds = {seed for v in vals.values() for seed in v}
        cells.append(str(len(seeds)))
        t = secs.get(point)
        cells.append(f'{np.mean(t) / 60:.1f}' if t else '-')
        graph = vals.get(('graph', 'build_seconds'), {})
        cells.append(f'{np.mean(list(graph.values())):.1f}' if graph else '-')
        lines.append('| ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines) + '\n'


def plot_scale_results(results: Dict, path: str,
                       caption: Optional[str] = None) -> None:
    """Rank-1 and mAP of every test set against the number of training
    identities (one line per sampler and start: mean over seeds, band =
    min-max), and a panel of ``batch_lookalike_share`` over the GS epochs
    (PK runs: the same epochs; the random PK expectation dotted).

    Args:
        results (dict): From :func:`collect_scale_results`.
        path (str): Output PNG.
        caption (str, optional): A line under the figure (e.g. the cost
            benchmark's figures).
    """
    points = _scale_points(results)
    study = {p: v for p, v in points.items() if p[1] != 'pretrain'}
    if not study:
        raise ValueError('sampler study scale: no finished run to plot')
    sets = _test_sets(results)
    keys = [(s, m) for s in sets for m in ('Rank-1', 'mAP')]
    keys.append(('train', 'batch_lookalike_share_gs'))
    cols = 2
    rows = math.ceil(len(keys) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5.5 * cols, 3.6 * rows),
                             squeeze=False)
    variants = sorted({p[2] for p in study})
    cycle = plt.rcParams['axes.prop_cycle'].by_key()['color']
    colors = {v: cycle[i % len(cycle)] for i, v in enumerate(variants)}
    styles = {'scratch': '-', 'pretrained': '--'}
    markers = {'scratch': 'o', 'pretrained': 's'}
    lines = sorted({(p[1], p[2]) for p in study})
    for ax, key in zip(axes.flat, keys):
        for start, variant in lines:
            xs, mean, lo, hi, n = [], [], [], [], 0
            for p in sorted(q for q in study if q[1:] == (start, variant)):
                vals = list(study[p].get(key, {}).values())
                if not vals:
                    continue
                xs.append(p[0])
                mean.append(np.mean(vals))
                lo.append(np.min(vals))
                hi.append(np.max(vals))
                n = max(n, len(vals))
            if not xs:
                continue
            # the start differs by line and marker (one identity count draws
            # no line: the marker tells the starts apart)
            ax.plot(xs, mean, styles.get(start, ':'),
                    marker=markers.get(start, 'x'), ms=5,
                    mfc='none' if start == 'pretrained' else colors[variant],
                    color=colors[variant], label=f'{variant}, {start} (n={n})')
            ax.fill_between(xs, lo, hi, alpha=0.15, color=colors[variant])
        if key == ('train', 'batch_lookalike_share_gs'):
            rand = defaultdict(list)
            for p, v in study.items():
                rand[p[0]] += list(v.get(('train',
                                          'batch_lookalike_share_random'),
                                         {}).values())
            xs = sorted(x for x in rand if rand[x])
            if xs:
                ax.plot(xs, [np.mean(rand[x]) for x in xs], ':', marker='x',
                        ms=4, color='grey', label='random PK (expected)')
            ax.set_title('batch_lookalike_share (mean over the GS epochs; '
                         'PK: the same epochs)')
        else:
            ax.set_title(f'{key[0]} {key[1]} (last epoch)')
        ax.set_xscale('log')
        counts = sorted({p[0] for p in study})
        ax.set_xticks(counts)
        ax.set_xticklabels([str(c) for c in counts])
        ax.minorticks_off()
        ax.set_xlabel('training identities')
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(keys):]:
        ax.axis('off')
    fig.suptitle('scale: GS vs PK at an equal number of iterations; mean '
                 'over seeds, band = min-max')
    if caption:
        fig.text(0.5, 0.005, caption, ha='center', va='bottom', fontsize=8,
                 wrap=True)
    fig.tight_layout(rect=(0, 0.04 if caption else 0, 1, 1))
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ---------------------------------------------------------------------------
# The multisource study: PK vs GS over the pooled class graph vs GS within
# each source, trained on synthetic A + B, tested on the unseen C (and A, B)


#: The ``multisource`` study: the variants (:func:`apply_variant`
#: overrides) and the presets. ``pk``: random PK batches throughout
#: (``custom_hooks = []``, as ``configs/qaconv_pk_demo.py``); ``gs``: the
#: config as is (1 PK warm-up epoch, then GS over one class graph spanning
#: both sources); ``gs_within``: GS with ``within_source=True`` (each
#: class's neighbours from its own source). The full preset's ``None``
#: values are the config's (its epochs, lr steps and ``batches_per_epoch``:
#: 8 x 200 = 1,600 iterations for ``configs/qaconv_gs_multisource_demo.py``);
#: the quick preset is 4 epochs x 100 batches = 400 iterations, the lr step
#: at epoch 3 (the config's step at 6 of 8, scaled). Every run is validated
#: once, at its last epoch, on the config's test sets.
MULTISOURCE = dict(
    config='configs/qaconv_gs_multisource_demo.py',
    variants={
        'pk': dict(sampler='pk'),
        'gs': dict(sampler='gs', pk_epochs=1),
        'gs_within': dict(sampler='gs', pk_epochs=1, within_source=True),
    },
    quick=dict(seeds=(0, 1, 2), epochs=4, milestones=(3, ),
               batches_per_epoch=100),
    full=dict(seeds=(0, 1, 2), epochs=None, milestones=None,
              batches_per_epoch=None),
)

STUDIES['multisource'] = dict(
    doc='multi-source training on synthetic A + B (PooledReIDDataset), '
    'tested on the unseen C and on A, B: random PK vs GS over the pooled '
    'class graph vs GS within each source (within_source=True); Rank-1 / '
    'mAP, batch_lookalike_share and graph/cross_source_share',
    config=MULTISOURCE['config'], variants=MULTISOURCE['variants'],
    quick=MULTISOURCE['quick'], full=MULTISOURCE['full'])

_POOLED = ('PooledReIDDataset', 'mmreid_gs.PooledReIDDataset')


def _config_sources(dataset: Dict) -> List[Dict]:
    """The source dataset configs of a (pooled) training set config."""
    if dataset.get('type') in _POOLED:
        parts = dataset.get('datasets') or []
        return list(parts.values() if isinstance(parts, dict) else parts)
    return [dataset]


def _config_num_classes(dataset: Dict) -> Optional[int]:
    """Training classes of a SyntheticReID (or pooled SyntheticReID) config
    without building it; None when a source does not say."""
    total = 0
    for part in _config_sources(dataset):
        if not isinstance(part, dict) or 'num_train_ids' not in part:
            return None
        total += int(part['num_train_ids'])
    return total


def multisource_preset(base: Config, preset: Dict,
                       epochs: Optional[int] = None,
                       batches_per_epoch: Optional[int] = None) -> Dict:
    """A multisource preset with the config's values where it has None
    (the full preset) and the overrides applied.

    Args:
        base (Config): The study's config.
        preset (dict): From :func:`plan_runs` (``seeds``, ``epochs``,
            ``milestones``, ``batches_per_epoch``).
        epochs (int, optional): Override the epochs (later lr steps
            dropped).
        batches_per_epoch (int, optional): Override the epoch length.

    Returns:
        dict: A new preset, every value set.
    """
    out = dict(preset)
    if out.get('epochs') is None:
        out['epochs'] = int(base.train_cfg.max_epochs)
    if out.get('milestones') is None:
        scheds = base.get('param_scheduler', None) or []
        if isinstance(scheds, dict):
            scheds = [scheds]
        out['milestones'] = tuple(
            int(m) for s in scheds if s.get('type') == 'MultiStepLR'
            for m in s.get('milestones', ()))
    if out.get('batches_per_epoch') is None:
        bpe = base.train_dataloader.sampler.get('batches_per_epoch', None)
        if bpe is None:  # GraphSampler's default: C batches
            bpe = _config_num_classes(base.train_dataloader.dataset)
        if bpe is None:
            raise ValueError('sampler study multisource: the config sets no '
                             'batches_per_epoch and its training classes '
                             'are unknown; pass --batches-per-epoch')
        out['batches_per_epoch'] = int(bpe)
    if epochs is not None:
        out['epochs'] = int(epochs)
    out['milestones'] = tuple(m for m in out['milestones']
                              if m < out['epochs'])
    if batches_per_epoch is not None:
        out['batches_per_epoch'] = int(batches_per_epoch)
    return out


def multisource_run_config(base: Config, variant: Dict,
                           preset: Dict) -> Config:
    """The config of one multisource run: the variant (the GS hook, or none
    for PK), the fixed ``batches_per_epoch``, the schedule, validation at
    the last epoch.

    Args:
        base (Config): The study's config (a pooled training set, a
            GraphSampler, e.g. ``configs/qaconv_gs_multisource_demo.py``).
        variant (dict): One of ``MULTISOURCE['variants']``.
        preset (dict): From :func:`multisource_preset`.

    Returns:
        Config: A new config (work dir, seed and resume set by the caller).
    """
    cfg = copy.deepcopy(base)
    if variant.get('within_source') and \
            cfg.train_dataloader.dataset.get('type') not in _POOLED:
        raise ValueError('sampler study multisource: within_source needs a '
                         'pooled training set (PooledReIDDataset); got type '
                         f"{cfg.train_dataloader.dataset.get('type')!r}")
    # class memory only reads the number of classes: not a variant here
    apply_variant(cfg, variant, num_classes=None)
    _scale_base(cfg, preset['batches_per_epoch'], preset['epochs'],
                preset['milestones'], study='multisource')
    return cfg


def _gs_hook_summary(cfg: Config) -> str:
    """What a run config trains with: its GraphSamplerHook or none."""
    hooks = list(cfg.get('custom_hooks', None) or [])
    gs = [h for h in hooks if h.get('type') == 'GraphSamplerHook']
    if not gs:
        return 'custom_hooks=[] (random PK batches)' if not hooks else (
            'no GraphSamplerHook (random PK batches), custom_hooks '
            f"{[h.get('type') for h in hooks]}")
    hook = gs[0]
    return (f"GraphSamplerHook(pk_epochs={hook.get('pk_epochs')}, "
            f"within_source={bool(hook.get('within_source', False))})")


def estimate_multisource_seconds(base: Config, runs, preset: Dict,
                                 costs: Optional[Dict] = None) -> Dict:
    """Predicted wall time of a multisource study from the measured unit
    costs of the scale study (:data:`SCALE_COSTS`): an estimate, not a
    measurement.

    Training: runs x epochs x batches_per_epoch iterations at
    ``sec_per_iter``; the class graphs of the GS epochs: one image per class
    extracted and C^2 QAConv pairs (the within-source graph counted as the
    pooled one); a fixed cost per run (``run_overhead`` validates two test
    sets; each further test set adds its images' extraction); data: the
    domains' trees counted as if none were generated yet.

    Args:
        base (Config): The study's config.
        runs (list): ``(name, variant, seed)`` from :func:`plan_runs`.
        preset (dict): From :func:`multisource_preset`.
        costs (dict, optional): Unit costs overriding :data:`SCALE_COSTS`.

    Returns:
        dict: Seconds of ``train``, ``graphs``, ``data``, ``overhead`` and
        ``total``, the number of ``runs``, ``iterations`` per run and the
        training ``classes``.
    """
    c = dict(SCALE_COSTS, **(costs or {}))
    dataset = base.train_dataloader.dataset
    sources = _config_sources(dataset)
    classes = _config_num_classes(dataset) or 0
    per_id = _dataset_images_per_id(sources[0])
    iters = preset['epochs'] * preset['batches_per_epoch']
    graphs = 0.
    for _, spec, _ in runs:
        if spec.get('sampler') == 'gs':
            builds = max(0, preset['epochs'] - int(spec.get('pk_epochs', 1)))
            graphs += builds * (classes * c['extract_per_image']
                                + classes * classes * c['pair_seconds'])
    test_sets = dict((base.get('val_cfg', {}) or {}).get('test_sets', {})
                     or {})
    roots = {}
    for part in sources + [t.get('query', {}) for t in test_sets.values()]:
        roots[str(part.get('data_root'))] = int(
            part.get('num_train_ids', 200)) + int(part.get('num_test_ids',
                                                           100))
    test_images = sum(int(t.get('query', {}).get('num_test_ids', 100))
                      for t in list(test_sets.values())[2:]) * per_id
    out = dict(
        train=len(runs) * iters * c['sec_per_iter'],
        graphs=graphs,
        data=sum(roots.values()) * per_id / c['images_per_sec'],
        overhead=len(runs) * (c['run_overhead']
                              + test_images * c['extract_per_image']))
    out['total'] = sum(out.values())
    out.update(runs=len(runs), iterations=iters, classes=classes)
    return out


def _describe_multisource_plan(runs, preset, estimate, hooks) -> str:
    variants = list(dict.fromkeys(n for n, _, _ in runs))
    seeds = list(dict.fromkeys(s for _, _, s in runs))
    return (
        f'{len(runs)} runs ({len(variants)} variants x {len(seeds)} seeds '
        f"{seeds}) of {preset['epochs']} epochs x "
        f"{preset['batches_per_epoch']} batches = {estimate['iterations']} "
        f"iterations (lr steps at epochs {list(preset['milestones'])}), "
        f"{estimate['classes']} training classes, validated at the last "
        'epoch; ' + '; '.join(f'{n}: {hooks[n]}' for n in variants)
        + f"; estimated {estimate['total'] / 3600:.1f} h (train "
        f"{estimate['train'] / 60:.0f} min, class graphs "
        f"{estimate['graphs'] / 60:.0f} min, data generation "
        f"{estimate['data'] / 60:.0f} min, runs' fixed cost "
        f"{estimate['overhead'] / 60:.0f} min; an estimate from measured "
        'unit costs, see SCALE_COSTS)')


def run_multisource_study(config: Optional[str],
                          work_dir: str,
                          quick: bool = False,
                          seeds: Optional[Sequence[int]] = None,
                          variants: Optional[Sequence[str]] = None,
                          epochs: Optional[int] = None,
                          batches_per_epoch: Optional[int] = None,
                          options: Optional[Dict] = None,
                          progress: bool = True,
                          dry_run: bool = False,
                          costs: Optional[Dict] = None) -> Dict:
    """Train the multisource study (PK vs GS vs GS within source on a
    pooled training set) and write its results.

    Runs live in ``<work_dir>/<variant>/seed<k>/``; a run with a
    ``done.json`` is skipped, an unfinished one resumes from its last
    checkpoint. Then ``results.json`` (with ``per_run``: the values of
    :func:`multisource_run_values`), ``results.csv``, ``summary.md``
    (:func:`multisource_summary_table`) and ``multisource.png``.

    Args:
        config (str, optional): Base config (a PooledReIDDataset training
            set and a GraphSampler); default
            ``configs/qaconv_gs_multisource_demo.py``.
        work_dir (str): Study folder.
        quick (bool): The quick preset. Defaults to False.
        seeds, variants (Sequence, optional): Override the preset's seeds,
            run only these variants (``pk``, ``gs``, ``gs_within``).
        epochs, batches_per_epoch (int, optional): Override the preset's.
        options (dict, optional): ``--cfg-options`` for every run.
        progress (bool): A progress bar over the runs.
        dry_run (bool): Only log the plan and its estimated time (no data
            is read or generated).
        costs (dict, optional): Unit costs of the estimate.

    Returns:
        dict: The ``results.json`` content (with ``dry_run``: ``plan``,
        ``preset`` and ``estimate`` only).
    """
    runs, preset = plan_runs('multisource', quick, seeds, variants)
    base = load_config(config or MULTISOURCE['config'], options)
    preset = multisource_preset(base, preset, epochs, batches_per_epoch)
    register_all_modules(init_default_scope=True)
    configs = {name: multisource_run_config(base, spec, preset)
               for name, spec, _ in runs}
    hooks = {name: _gs_hook_summary(cfg) for name, cfg in configs.items()}
    estimate = estimate_multisource_seconds(base, runs, preset, costs)
    print_log(f'sampler study multisource ({"quick" if quick else "full"}): '
              + _describe_multisource_plan(runs, preset, estimate, hooks)
              + f' -> {work_dir}', logger='current')
    if dry_run:
        return dict(study='multisource', preset=preset, estimate=estimate,
                    plan=[dict(variant=n, seed=s, spec=v, hooks=hooks[n])
                          for n, v, s in runs])
    os.makedirs(work_dir, exist_ok=True)
    bar = ProgressBar(len(runs)) if progress else None
    for name, _, seed in runs:
        run_dir = osp.join(work_dir, name, f'seed{seed}')
        done = osp.join(run_dir, 'done.json')
        if not osp.isfile(done):
            cfg = copy.deepcopy(configs[name])
            _configure_run(cfg, run_dir, seed,
                           f'multisource_{name}_seed{seed}')
            _train_run(cfg, done, dict(
                variant=name, seed=seed, epochs=preset['epochs'],
                batches_per_epoch=preset['batches_per_epoch']))
        if bar is not None:
            bar.update()
    results = collect_results(work_dir, 'multisource', runs)
    results['preset'] = dict(quick=quick, **{
        k: list(v) if isinstance(v, tuple) else v for k, v in preset.items()})
    results['per_run'] = [
        dict(variant=v, seed=s, **vals)
        for (v, s), vals in multisource_run_values(results).items()]
    write_results(results, work_dir, multisource_summary_table)
    plot_multisource_results(results, osp.join(work_dir, 'multisource.png'))
    return results


def _multisource_warmup(variant: str) -> int:
    """PK warm-up epochs of a variant; for ``pk``, the GS variants' (its
    epochs are compared over the same range)."""
    specs = MULTISOURCE['variants']
    spec = specs.get(variant, {})
    if spec.get('sampler') == 'gs':
        return int(spec.get('pk_epochs', 1))
    return max([int(s.get('pk_epochs', 1)) for s in specs.values()
                if s.get('sampler') == 'gs'] or [1])


def _is_test_metric(row: Dict) -> bool:
    return row['metric'] in ('Rank-1', 'mAP') and row['set'] not in (
        'train', 'graph')


def multisource_run_values(results: Dict) -> Dict:
    """The values of every finished multisource run.

    Returns:
        dict: ``(variant, seed) -> values``: ``<set>/Rank-1`` and
        ``<set>/mAP`` of the last validated epoch; ``lookalike_gs`` (mean
        ``train/batch_lookalike_share`` over the epochs after the PK
        warm-up; for ``pk`` the same epochs), ``lookalike_all`` (over every
        epoch), ``lookalike_random`` (random PK batches, expected);
        ``cross_source`` and ``cross_source_random`` (mean
        ``graph/cross_source_share`` and its random baseline over the
        epochs that built a graph; GS only); ``seconds`` (train time).
    """
    last = {}
    for r in results['rows']:
        if _is_test_metric(r):
            k = (r['variant'], r['seed'])
            last[k] = max(last.get(k, 0), int(r['epoch']))
    per = defaultdict(lambda: defaultdict(list))
    out = defaultdict(dict)
    for r in results['rows']:
        k = (r['variant'], r['seed'])
        key = (r['set'], r['metric'])
        if _is_test_metric(r):
            if int(r['epoch']) == last[k]:
                out[k][f"{r['set']}/{r['metric']}"] = float(r['value'])
        elif key == ('train', 'batch_lookalike_share'):
            per[k]['lookalike_all'].append(r['value'])
            if int(r['epoch']) > _multisource_warmup(r['variant']):
                per[k]['lookalike_gs'].append(r['value'])
        elif key == ('train', 'batch_lookalike_share_random'):
            per[k]['lookalike_random'].append(r['value'])
        elif key == ('graph', 'cross_source_share'):
            per[k]['cross_source'].append(r['value'])
        elif key == ('graph', 'cross_source_share_random'):
            per[k]['cross_source_random'].append(r['value'])
    for k, named in per.items():
        for name, values in named.items():
            out[k][name] = float(np.mean(values))
    for r in results.get('runs', []):
        out[(r['variant'], r['seed'])]['seconds'] = r.get('seconds')
    return dict(out)


def _multisource_order(results: Dict, values: Dict):
    """Variants (the study's order, then others) and test sets (unseen
    first)."""
    found = list(dict.fromkeys(
        [r['variant'] for r in results.get('runs', [])]
        + [v for v, _ in values]))
    known = [v for v in MULTISOURCE['variants'] if v in found]
    variants = known + [v for v in found if v not in known]
    sets = sorted(_test_sets(results), key=lambda s: ('unseen' not in s, s))
    return variants, sets


def multisource_summary_table(results: Dict) -> str:
    """Markdown table of the multisource study: variant |
    batch_lookalike_share | cross_source_share (random) | Rank-1 / mAP of
    every test set (the unseen one first; mean ± std over seeds, %) |
    seeds | train time (min per run), and a note on the columns."""
    values = multisource_run_values(results)
    variants, sets = _multisource_order(results, values)
    head = (['variant', 'batch_lookalike_share',
             'cross_source_share (random)']
            + [f'{s} Rank-1 / mAP' for s in sets]
            + ['seeds', 'train min/run'])
    lines = ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
    randoms = []
    for variant in variants:
        runs = [vals for (v, _), vals in sorted(values.items(),
                                                key=lambda kv: kv[0][1])
                if v == variant]

        def column(name, runs=runs):
            return [r[name] for r in runs if r.get(name) is not None]

        look = _mean_spread(column('lookalike_gs'), 1., 3)
        if column('lookalike_all'):
            look += f" (all epochs {np.mean(column('lookalike_all')):.3f})"
        randoms += column('lookalike_random')
        cross = _mean_spread(column('cross_source'), 1., 3)
        if column('cross_source_random'):
            cross += (' (random '
                      f"{np.mean(column('cross_source_random')):.3f})")
        cells = [variant, look, cross]
        for s in sets:
            cells.append(_mean_spread(column(f'{s}/Rank-1')) + ' / '
                         + _mean_spread(column(f'{s}/mAP')))
        cells.append(str(len(runs)))
        secs = column('seconds')
        cells.append(f'{np.mean(secs) / 60:.1f}' if secs else '-')
        lines.append('| ' + ' | '.join(cells) + ' |')
    warmup = _multisource_warmup('pk')
    note = (f'\nbatch_lookalike_share: mean over the epochs after the '
            f'{warmup} PK warm-up epoch(s) (pk: the same epochs; all epochs '
            'in brackets)')
    if randoms:
        note += f'; random PK batches would give {np.mean(randoms):.3f}'
    note += ('. cross_source_share: the share of class-graph neighbours '
             'from another source than their class, mean over the epochs '
             'that built a graph (random neighbours in brackets). Rank-1 / '
             'mAP: the last epoch, mean ± std over seeds, %.\n')
    return '\n'.join(lines) + '\n' + note


def plot_multisource_results(results: Dict, path: str) -> None:
    """Two panels per variant, bars = mean over seeds, whiskers = min-max,
    dots = the seeds: Rank-1 and mAP on the unseen test set; the graph's
    cross_source_share and the batch_lookalike_share of the epochs after
    the warm-up (their random baselines as dashed ticks).

    Args:
        results (dict): From :func:`run_multisource_study`.
        path (str): Output PNG.
    """
    values = multisource_run_values(results)
    variants, sets = _multisource_order(results, values)
    if not values or not sets:
        raise ValueError('sampler study multisource: no finished run to '
                         'plot')
    unseen = sets[0]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    cycle = plt.rcParams['axes.prop_cycle'].by_key()['color']
    panels = [
        (axes[0], [(f'{unseen}/Rank-1', 'Rank-1', None),
                   (f'{unseen}/mAP', 'mAP', None)], 100.,
         f'{unseen} (last epoch), %'),
        (axes[1], [('cross_source', 'cross_source_share',
                    'cross_source_random'),
                   ('lookalike_gs', 'batch_lookalike_share',
                    'lookalike_random')], 1.,
         'cross_source_share (graph epochs), batch_lookalike_share '
         '(after the warm-up)'),
    ]
    width = 0.38
    for ax, keys, scale, title in panels:
        for j, (key, label, rand_key) in enumerate(keys):
            labelled = False
            for i, variant in enumerate(variants):
                runs = [vals for (v, _), vals in values.items()
                        if v == variant]
                vals = np.array([r[key] for r in runs
                                 if r.get(key) is not None]) * scale
                if not vals.size:
                    continue
                pos = i + (j - 0.5) * width
                mean = vals.mean()
                ax.bar(pos, mean, width, color=cycle[j % len(cycle)],
                       alpha=0.75, label=None if labelled else label)
                labelled = True
                # (clipped: equal values can leave -1e-17 by rounding)
                ax.errorbar(pos, mean,
                            yerr=[[max(0., mean - vals.min())],
                                  [max(0., vals.max() - mean)]],
                            color='k', capsize=3, lw=1)
                ax.scatter([pos] * vals.size, vals, s=9, color='k',
                           zorder=3)
                rand = [r[rand_key] for r in runs
                        if rand_key and r.get(rand_key) is not None]
                if rand:
                    ax.hlines(np.mean(rand) * scale, pos - width / 2,
                              pos + width / 2, colors='grey',
                              linestyles='--', lw=1.2)
        counts = [sum(v == variant for v, _ in values)
                  for variant in variants]
        ax.set_xticks(range(len(variants)))
        ax.set_xticklabels([f'{v}\n(n={n})'
                            for v, n in zip(variants, counts)])
        ax.set_title(title, fontsize=9)
        ax.grid(alpha=0.3, axis='y')
        ax.legend(fontsize=7)
    axes[1].set_ylim(0, 1)
    fig.suptitle('multisource: A + B -> C; bars = mean over seeds, '
                 'whiskers = min-max, dots = seeds, dashed = random')
    fig.tight_layout()
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Train the variants of a sampler study over seeds',
        epilog='studies: ' + '; '.join(
            f'{k}: {v["doc"]}' for k, v in STUDIES.items()))
    parser.add_argument('study', choices=sorted(STUDIES))
    parser.add_argument('--config', default=None,
                        help='base training config (default: '
                        + ', '.join(f"{v['config']} for {k}"
                                    for k, v in STUDIES.items()
                                    if 'config' in v)
                        + f', {DEFAULT_CONFIG} for the others)')
    parser.add_argument('--quick', action='store_true',
                        help='the quick preset (fewer seeds / epochs)')
    parser.add_argument('--seeds', type=int, nargs='+', default=None)
    parser.add_argument('--variants', nargs='+', default=None,
                        help='run only these variants')
    parser.add_argument('--epochs', type=int, default=None)
    parser.add_argument('--work-dir', default=None,
                        help='default: work_dirs/study_<study>[_quick]')
    parser.add_argument('--no-progress', action='store_true')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='overrides for every run')
    scale = parser.add_argument_group('scale study')
    scale.add_argument('--counts', type=int, nargs='+', default=None,
                       help='numbers of training identities (default: the '
                       'preset\'s)')
    scale.add_argument('--starts', nargs='+', default=None,
                       choices=list(SCALE['starts']))
    fixed = parser.add_argument_group('scale and multisource studies')
    fixed.add_argument('--batches-per-epoch', type=int, default=None,
                       help='fixed epoch length of every run')
    fixed.add_argument('--dry-run', action='store_true',
                       help='print the plan and its estimated time only '
                       '(reads and generates no data)')
    return parser.parse_args(argv)


def study_config(study: str, config: Optional[str] = None) -> str:
    """The base config of a study: ``config`` when given, else the one its
    spec in :data:`STUDIES` names, else :data:`DEFAULT_CONFIG`."""
    if config:
        return config
    return STUDIES.get(study, {}).get('config', DEFAULT_CONFIG)


def main(argv=None):
    args = parse_args(argv)
    work_dir = args.work_dir or osp.join(
        'work_dirs', f'study_{args.study}' + ('_quick' if args.quick
                                              else ''))
    if args.study == 'multisource':
        if args.counts or args.starts:
            raise ValueError('sampler study: --counts and --starts are '
                             'options of the scale study')
        results = run_multisource_study(
            args.config, work_dir, quick=args.quick, seeds=args.seeds,
            variants=args.variants, epochs=args.epochs,
            batches_per_epoch=args.batches_per_epoch,
            options=args.cfg_options, progress=not args.no_progress,
            dry_run=args.dry_run)
        if args.dry_run:
            print(f"\nmultisource: {len(results['plan'])} runs planned, "
                  f"{results['estimate']['iterations']} iterations each, "
                  f"about {results['estimate']['total'] / 3600:.1f} h "
                  '(estimated)')
        else:
            print(f'\nmultisource: {len(results["runs"])} runs -> '
                  f'{work_dir}')
            print(multisource_summary_table(results))
        return
    config = study_config(args.study, args.config)
    if args.study == 'scale':
        results = run_scale_study(
            config, work_dir, quick=args.quick, seeds=args.seeds,
            variants=args.variants, counts=args.counts, starts=args.starts,
            epochs=args.epochs, batches_per_epoch=args.batches_per_epoch,
            options=args.cfg_options, progress=not args.no_progress,
            dry_run=args.dry_run)
        if args.dry_run:
            print(f"\nscale: {len(results['plan'])} runs planned, about "
                  f"{results['estimate']['total'] / 3600:.1f} h "
                  '(estimated)')
        else:
            print(f'\nscale: {len(results["runs"])} runs -> {work_dir}')
            print(scale_summary_table(results))
        return
    if args.counts or args.starts or args.batches_per_epoch or args.dry_run:
        raise ValueError('sampler study: --counts, --starts, '
                         '--batches-per-epoch and --dry-run are options of '
                         'the scale (and multisource) study')
    results = run_study(
        config, args.study, work_dir, quick=args.quick,
        seeds=args.seeds, variants=args.variants, epochs=args.epochs,
        options=args.cfg_options, progress=not args.no_progress)
    print(f'\n{args.study}: {len(results["runs"])} runs -> {work_dir}')
    print(summary_table(results))


if __name__ == '__main__':
    sys.exit(run_cli(main))

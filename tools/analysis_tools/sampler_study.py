"""Multi-seed sampler / loss studies (paper Fig. 2-4) on any config.

    python tools/analysis_tools/sampler_study.py efficiency --quick
    python tools/analysis_tools/sampler_study.py batch \
        --config configs/qaconv_gs_demo.py --seeds 0 1 2

Studies: efficiency (class memory vs PK vs GS), batch (B and K), init (PK
warm-up epochs), clip (gradient clipping). Writes
``<work-dir>/results.csv``, ``results.json``, ``summary.md`` and
``<study>.png``; finished runs are skipped on a rerun, unfinished ones
resume from their last checkpoint.

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

#: keys a variant may set
VARIANT_KEYS = ('sampler', 'loss', 'pk_epochs', 'batch_size',
                'num_instances', 'clip')


def _hooks_without_gs(hooks) -> List:
    return [h for h in (hooks or []) if h.get('type') != 'GraphSamplerHook']


def apply_variant(cfg: Config, variant: Dict, num_classes: int) -> Config:
    """Apply a study variant to a training config (in place).

    Args:
        cfg (Config): The config (e.g. ``configs/qaconv_gs_demo.py``).
        variant (dict): ``sampler`` (``'pk'`` or ``'gs'``), optional
            ``loss`` (``'class_memory'``), ``pk_epochs`` (GS warm-up),
            ``batch_size`` and ``num_instances`` (B and K), ``clip``
            (gradient-norm threshold, None = off).
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


def plan_runs(study: str, quick: bool, seeds=None, variants=None):
    """(variant name, variant dict, seed) of a study, and its preset."""
    if study not in STUDIES:
        raise ValueError(f'sampler study: unknown study {study!r}; '
                         f'choose one of {sorted(STUDIES)}')
    spec = STUDIES[study]
    preset = dict(spec['quick' if quick else 'full'])
    if seeds is not None:
        preset['seeds'] = tuple(int(s) for s in seeds)
    names = list(spec['variants'])
    if variants:
        bad = [v for v in variants if v not in spec['variants']]
        if bad:
            raise ValueError(f'sampler study: {study} has no variant(s) '
                             f'{bad}; choose from {names}')
        names = list(variants)
    # seed-major: a study stopped early still has every variant per seed
    runs = [(n, spec['variants'][n], s) for s in preset['seeds']
            for n in names]
    return runs, preset


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
            cfg.work_dir = run_dir
            cfg.resume = True
            cfg.load_from = None
            cfg.randomness = ConfigDict(seed=int(seed), deterministic=False)
            cfg.experiment_name = f'{study}_{name}_seed{seed}_{time.time_ns()}'
            cfg.default_hooks.checkpoint = ConfigDict(
                type='CheckpointHook', interval=1, max_keep_ckpts=1)
            cfg.default_hooks.logger = ConfigDict(
                cfg.default_hooks.get('logger', {}) or {},
                interval=max(50, cfg.default_hooks.get(
                    'logger', {}).get('interval', 50)))
            start = time.time()
            runner = build_runner(cfg)
            runner.train()
            del runner
            with open(done, 'w') as f:
                json.dump(dict(variant=name, seed=seed,
                               seconds=time.time() - start,
                               epochs=preset['epochs']), f)
        if bar is not None:
            bar.update()
    results = collect_results(work_dir, study, runs, families)
    results['preset'] = dict(quick=quick, **{
        k: list(v) if isinstance(v, tuple) else v
        for k, v in preset.items()})
    write_results(results, work_dir)
    plot_results(results, osp.join(work_dir, f'{study}.png'))
    return results


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
        done = osp.join(run_dir, 'done.json')
        if not osp.isfile(done):
            continue
        with open(done) as f:
            meta = json.load(f)
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


def write_results(results: Dict, work_dir: str) -> None:
    """Write ``results.json``, ``results.csv`` and ``summary.md``."""
    with open(osp.join(work_dir, 'results.json'), 'w') as f:
        json.dump(results, f, indent=1)
    with open(osp.join(work_dir, 'results.csv'), 'w', newline='') as f:
        writer = csv.DictWriter(
            f, fieldnames=['variant', 'seed', 'epoch', 'set', 'metric',
                           'value'])
        writer.writeheader()
        writer.writerows(results['rows'])
    with open(osp.join(work_dir, 'summary.md'), 'w') as f:
        f.write(summary_table(results))


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


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Train the variants of a sampler study over seeds',
        epilog='studies: ' + '; '.join(
            f'{k}: {v["doc"]}' for k, v in STUDIES.items()))
    parser.add_argument('study', choices=sorted(STUDIES))
    parser.add_argument('--config', default='configs/qaconv_gs_demo.py',
                        help='base training config')
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
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    work_dir = args.work_dir or osp.join(
        'work_dirs', f'study_{args.study}' + ('_quick' if args.quick
                                              else ''))
    results = run_study(
        args.config, args.study, work_dir, quick=args.quick,
        seeds=args.seeds, variants=args.variants, epochs=args.epochs,
        options=args.cfg_options, progress=not args.no_progress)
    print(f'\n{args.study}: {len(results["runs"])} runs -> {work_dir}')
    print(summary_table(results))


if __name__ == '__main__':
    sys.exit(run_cli(main))

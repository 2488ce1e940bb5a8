"""The multisource study: PK vs GS over the pooled class graph vs GS within
each source, trained on synthetic A + B, tested on the unseen C (and A, B).

Its config is ``configs/studies/multisource.py`` (base config
``configs/qaconv_gs_multisource_demo.py``). :func:`run_multisource_study`
trains the variants over seeds in ``<work_dir>/<variant>/seed<k>/``,
appends each finished run to ``docs/studies/multisource/runs.jsonl`` and
writes the work dir's table and plot; :func:`multisource_run_values`
gathers per run the last epoch's Rank-1 / mAP of every test set, the mean
``train/batch_lookalike_share`` over the GS epochs (and all epochs), the
mean ``graph/cross_source_share`` (and its random baseline) over the epochs
that built a graph and the train time.
"""
import copy
import os
import os.path as osp
from collections import defaultdict
from typing import Dict, List, Optional, Sequence

import matplotlib
import numpy as np
from mmengine.config import Config
from mmengine.logging import print_log
from mmengine.utils import ProgressBar

from mmreid_gs.cli import load_config
from mmreid_gs.utils import register_all_modules

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402

from .scale import (SCALE_COSTS, _dataset_images_per_id, _mean_spread,
                    _scale_base, _test_sets, describe_estimate)
from .specs import config_path, load_study
from .variants import (_configure_run, _train_run, apply_variant,
                       collect_results, is_recorded, plan_runs, record_run,
                       study_warmup, warmup_epochs, write_results)


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
        variant (dict): A variant of ``configs/studies/multisource.py``.
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
        + '; ' + describe_estimate(estimate))


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
                          costs: Optional[Dict] = None,
                          preset: Optional[str] = None,
                          records: Optional[str] = None,
                          commit: bool = False) -> Dict:
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
        preset (str, optional): A preset by name (wins over ``quick``).
        records (str, optional): The study's ``runs.jsonl``: runs there are
            skipped, finished runs appended (None: no records).
        commit (bool): Commit ``records`` after every appended run.

    Returns:
        dict: The ``results.json`` content (with ``dry_run``: ``plan``,
        ``preset`` and ``estimate`` only).
    """
    spec = load_study('multisource')
    name = preset or ('quick' if quick else 'full')
    runs, preset = plan_runs('multisource', quick, seeds, variants, name)
    base = load_config(config or config_path(spec), options)
    preset = multisource_preset(base, preset, epochs, batches_per_epoch)
    classes = _config_num_classes(base.train_dataloader.dataset) or 0
    bpe = int(preset['batches_per_epoch'])
    share_from = study_warmup(spec['variants'])
    register_all_modules(init_default_scope=True)
    configs = {name: multisource_run_config(base, spec, preset)
               for name, spec, _ in runs}
    hooks = {name: _gs_hook_summary(cfg) for name, cfg in configs.items()}
    estimate = estimate_multisource_seconds(base, runs, preset, costs)
    print_log(f'sampler study multisource ({name}): '
              + _describe_multisource_plan(runs, preset, estimate, hooks)
              + f' -> {work_dir}', logger='current')
    if dry_run:
        return dict(study='multisource', preset=preset, estimate=estimate,
                    plan=[dict(variant=n, seed=s, spec=v, hooks=hooks[n])
                          for n, v, s in runs])
    os.makedirs(work_dir, exist_ok=True)
    bar = ProgressBar(len(runs)) if progress else None
    for variant, vspec, seed in runs:
        run_dir = osp.join(work_dir, variant, f'seed{seed}')
        done = osp.join(run_dir, 'done.json')
        key = dict(study='multisource', variant=variant, start='scratch',
                   num_ids=classes, seed=seed,
                   iterations=int(preset['epochs']) * bpe,
                   warmup_iterations=warmup_epochs(vspec) * bpe)
        if not osp.isfile(done) and not is_recorded(records, key):
            cfg = copy.deepcopy(configs[variant])
            _configure_run(cfg, run_dir, seed,
                           f'multisource_{variant}_seed{seed}')
            _train_run(cfg, done, dict(
                variant=variant, seed=seed, epochs=preset['epochs'],
                batches_per_epoch=preset['batches_per_epoch']))
        if osp.isfile(done):
            record_run(records, run_dir, key, bpe, preset['epochs'],
                       warmup_epochs(vspec), share_from_epoch=share_from,
                       commit=commit, preset=name)
        if bar is not None:
            bar.update()
    results = collect_results(work_dir, 'multisource', runs)
    results['preset'] = dict(quick=quick, **{
        k: list(v) if isinstance(v, tuple) else v for k, v in preset.items()})
    results['per_run'] = [
        dict(variant=v, seed=s, **vals)
        for (v, s), vals in multisource_run_values(results).items()]
    if results['runs']:
        write_results(results, work_dir, multisource_summary_table)
        plot_multisource_results(results,
                                 osp.join(work_dir, 'multisource.png'))
    return results


def _multisource_warmup(variant: str) -> int:
    """PK warm-up epochs of a variant; for ``pk``, the GS variants' (its
    epochs are compared over the same range)."""
    specs = load_study('multisource')['variants']
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
    known = [v for v in load_study('multisource')['variants'] if v in found]
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



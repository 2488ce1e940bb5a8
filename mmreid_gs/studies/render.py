"""Tables and plots of a study from its ``runs.jsonl`` alone.

Every number :func:`render_study` writes is recomputed from the committed
records (:mod:`mmreid_gs.studies.records`): ``summary.md`` (the table of
means and standard deviations over seeds, and for the scale study the
time-to-accuracy table) and the plots, next to the records in
``docs/studies/<study>/``.
"""
import os
import os.path as osp
from collections import defaultdict
from typing import Dict, List, Optional, Sequence, Tuple

import matplotlib
import numpy as np

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402

#: the validation metrics the tables show, per test set
TABLE_METRICS = ('Rank-1', 'mAP')


def _mean_sd(values: Sequence[float], digits: int = 1) -> str:
    vals = np.asarray([v for v in values if v is not None], dtype=float)
    if not vals.size:
        return '-'
    if vals.size == 1:  # one run has no spread: no '± 0.0'
        return f'{vals[0]:.{digits}f}'
    return f'{vals.mean():.{digits}f} ± {vals.std(ddof=1):.{digits}f}'


def test_sets(records: Sequence[Dict]) -> List[str]:
    """The test sets the records name (``A``, ``B`` ...), the seen style
    first."""
    sets = {k.split('/', 1)[0] for r in records for k in r['metrics']}
    return sorted(sets)


def _variant_order(records: Sequence[Dict],
                   order: Optional[Sequence[str]] = None) -> Dict[str, int]:
    names = list(order or [])
    for r in records:
        if r['variant'] not in names:
            names.append(r['variant'])
    return {n: i for i, n in enumerate(names)}


def group_records(records: Sequence[Dict],
                  fields: Sequence[str] = ('num_ids', 'start', 'variant',
                                           'iterations',
                                           'warmup_iterations')
                  ) -> Dict[Tuple, List[Dict]]:
    """Records grouped by ``fields`` (the seeds of one setting)."""
    groups = defaultdict(list)
    for r in records:
        groups[tuple(r[f] for f in fields)].append(r)
    return groups


def summary_table(records: Sequence[Dict],
                  variant_order: Optional[Sequence[str]] = None) -> str:
    """Markdown table: identities | start | warm-up | sampler |
    batch_lookalike_share | Rank-1 / mAP of every test set (mean ± sd over
    seeds, %) | seeds | iterations | train min per run.

    Args:
        records (Sequence[dict]): Records of one study.
        variant_order (Sequence[str], optional): The order of the samplers
            (the study config's).

    Returns:
        str: The table.
    """
    sets = test_sets(records)
    order = _variant_order(records, variant_order)
    head = (['identities', 'start', 'warm-up (iterations)', 'sampler',
             'batch_lookalike_share (random)']
            + [f'{s} Rank-1 / mAP' for s in sets]
            + ['seeds', 'iterations', 'train min/run'])
    lines = ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
    groups = group_records(records)
    for key in sorted(groups, key=lambda k: (k[3], k[1], k[0],
                                             order.get(k[2], 99), k[4])):
        runs = groups[key]
        num_ids, start, variant, iterations, warmup = key
        share = _mean_sd([r.get('batch_lookalike_share') for r in runs], 3)
        rand = [r.get('batch_lookalike_share_random') for r in runs
                if r.get('batch_lookalike_share_random') is not None]
        if rand:
            share += f' ({np.mean(rand):.3f})'
        cells = [f'{num_ids:,}', start, f'{warmup:,}' if warmup else '-',
                 variant, share]
        for s in sets:
            cells.append(
                _mean_sd([r['metrics'].get(f'{s}/Rank-1') for r in runs])
                + ' / '
                + _mean_sd([r['metrics'].get(f'{s}/mAP') for r in runs]))
        secs = [r['train_seconds'] for r in runs if r.get('train_seconds')]
        cells += [str(len(runs)), f'{iterations:,}',
                  f'{np.mean(secs) / 60:.1f}' if secs else '-']
        lines.append('| ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines) + '\n'


def paired_difference_table(records: Sequence[Dict],
                            baseline: str = 'pk',
                            variant_order: Optional[Sequence[str]] = None
                            ) -> str:
    """Markdown: every sampler against ``baseline`` seed by seed, in the
    same setting (identities, start, iterations): the mean ± sd over the
    shared seeds of (sampler - baseline) for Rank-1 and mAP of every test
    set, and on how many of those seeds the sampler is ahead.

    Runs with the same seed share the benchmark and the pretrained start,
    so the paired difference removes what the seed does to both; its sd
    is the seed-to-seed spread of the gap itself.

    Returns:
        str: The table; ``''`` when no sampler shares a seed with the
        baseline in any setting.
    """
    sets = test_sets(records)
    order = _variant_order(records, variant_order)
    groups = group_records(records, ('num_ids', 'start', 'iterations',
                                     'variant'))
    head = (['identities', 'start', 'iterations', 'sampler', 'seeds']
            + [f'{s} {m}: minus {baseline} (seeds ahead)'
               for s in sets for m in TABLE_METRICS])
    lines = []
    for key in sorted((k for k in groups if k[3] != baseline),
                      key=lambda k: (k[2], k[1], k[0], order.get(k[3], 99))):
        num_ids, start, iterations, variant = key
        base = {r['seed']: r for r in groups.get(key[:3] + (baseline,), [])}
        mine = {r['seed']: r for r in groups[key]}
        seeds = sorted(set(mine) & set(base))
        if not seeds:
            continue
        cells = [f'{num_ids:,}', start, f'{iterations:,}', variant,
                 str(len(seeds))]
        for s in sets:
            for m in TABLE_METRICS:
                diffs = []
                for seed in seeds:
                    a = mine[seed]['metrics'].get(f'{s}/{m}')
                    b = base[seed]['metrics'].get(f'{s}/{m}')
                    if a is not None and b is not None:
                        diffs.append(a - b)
                if not diffs:
                    cells.append('-')
                    continue
                ahead = sum(d > 0 for d in diffs)
                mean = _mean_sd(diffs)
                cells.append(('+' if np.mean(diffs) >= 0 else '') + mean
                             + f' ({ahead} of {len(diffs)})')
        lines.append('| ' + ' | '.join(cells) + ' |')
    if not lines:
        return ''
    return '\n'.join(['| ' + ' | '.join(head) + ' |',
                      '|' + '---|' * len(head)] + lines) + '\n'


def pseudo_label_table(records: Sequence[Dict],
                       variant_order: Optional[Sequence[str]] = None) -> str:
    """Markdown: sampler | epoch | clusters | outliers | NMI | ARI | purity
    (mean ± sd over seeds) of the runs that trained on pseudo-labels."""
    rows = defaultdict(list)
    for r in records:
        for c in r.get('pseudo_labels') or []:
            rows[(r['variant'], c['epoch'])].append(c)
    if not rows:
        return ''
    order = _variant_order(records, variant_order)
    head = ['sampler', 'epoch', 'clusters', 'outliers', 'NMI', 'ARI',
            'purity']
    lines = ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
    for v, e in sorted(rows, key=lambda k: (order.get(k[0], 99), k[1])):
        cs = rows[(v, e)]
        lines.append('| ' + ' | '.join(
            [v, str(e)]
            + [_mean_sd([c[k] for c in cs], 0 if k.startswith('num') else 3)
               for k in ('num_clusters', 'num_outliers', 'nmi', 'ari',
                         'purity')]) + ' |')
    return '\n'.join(lines) + '\n'


def _curve_points(run: Dict, metric: str, x: str = 'iteration'):
    pts = [(c[x], c['metrics'][metric]) for c in run.get('curve', [])
           if c.get(x) is not None and metric in c.get('metrics', {})]
    return sorted(pts)


def plot_curves(records: Sequence[Dict], path: str,
                metric: str = 'Rank-1',
                variant_order: Optional[Sequence[str]] = None,
                title: Optional[str] = None) -> None:
    """Validation curves against iterations: one panel per (identities,
    start, iterations) and test set, one line per sampler (the mean over
    seeds; band = min-max over seeds).

    Args:
        records (Sequence[dict]): Records with ``curve``.
        path (str): Output PNG.
        metric (str): ``'Rank-1'`` or ``'mAP'``.
        variant_order (Sequence[str], optional): The samplers' order.
        title (str, optional): The figure's title.

    Raises:
        ValueError: No record has a curve of two points or more.
    """
    records = [r for r in records if len(r.get('curve', [])) >= 2]
    if not records:
        raise ValueError('study render: no run has a validation curve of '
                         'two points or more')
    sets = test_sets(records)
    settings = sorted({(r['num_ids'], r['start'], r['iterations'])
                       for r in records}, key=lambda k: (k[2], k[1], k[0]))
    order = _variant_order(records, variant_order)
    variants = sorted({r['variant'] for r in records},
                      key=lambda v: order.get(v, 99))
    cycle = plt.rcParams['axes.prop_cycle'].by_key()['color']
    colors = {v: cycle[i % len(cycle)] for i, v in enumerate(variants)}
    rows, cols = len(settings), len(sets)
    fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, 3.3 * rows),
                             squeeze=False)
    for i, (num_ids, start, iterations) in enumerate(settings):
        for j, s in enumerate(sets):
            ax = axes[i][j]
            for v in variants:
                runs = [r for r in records
                        if (r['num_ids'], r['start'], r['iterations'],
                            r['variant']) == (num_ids, start, iterations, v)]
                by_x = defaultdict(list)
                for r in runs:
                    for x, y in _curve_points(r, f'{s}/{metric}'):
                        by_x[x].append(y)
                if not by_x:
                    continue
                xs = sorted(by_x)
                mean = [np.mean(by_x[x]) for x in xs]
                ax.plot(xs, mean, marker='o', ms=3, color=colors[v],
                        label=f'{v} (n={len(runs)})')
                if len(runs) > 1:
                    ax.fill_between(xs, [min(by_x[x]) for x in xs],
                                    [max(by_x[x]) for x in xs], alpha=0.2,
                                    color=colors[v])
                warm = {r['warmup_iterations'] for r in runs
                        if r['warmup_iterations']}
                for w in warm:
                    ax.axvline(w, color=colors[v], ls=':', lw=1)
            ax.set_title(f'{s} {metric}: {num_ids:,} ids, {start}, '
                         f'{iterations:,} iterations', fontsize=9)
            ax.set_xlabel('iteration')
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
    fig.suptitle(title or f'{metric} during training: mean over seeds, band '
                 '= min-max, dotted = end of the PK warm-up')
    fig.tight_layout()
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def time_to_accuracy(records: Sequence[Dict],
                     fractions: Sequence[float] = (0.9, 0.95),
                     metric: str = 'Rank-1') -> Dict:
    """The training seconds each sampler / loss needs to reach a fraction
    of the best score that any of them reaches (paper Fig. 2 / Table 1).

    For every test set, ``best`` is the highest curve point of any run;
    a run's time to ``f x best`` is the training seconds (validation
    excluded) of its first validation at or above it (None: never).

    Args:
        records (Sequence[dict]): Records whose curves carry ``seconds``.
        fractions (Sequence[float]): Fractions of the best.
        metric (str): The curve metric. Defaults to ``'Rank-1'``.

    Returns:
        dict: ``best`` (set -> value), ``rows`` (list of dicts: variant,
        seed, set, fraction, seconds or None, final (the run's last value),
        train_seconds).
    """
    runs = [r for r in records
            if any(c.get('seconds') is not None for c in r.get('curve', []))]
    sets = test_sets(runs)
    best = {}
    for s in sets:
        vals = [y for r in runs
                for _, y in _curve_points(r, f'{s}/{metric}', 'seconds')]
        if vals:
            best[s] = max(vals)
    rows = []
    for r in runs:
        for s in best:
            pts = _curve_points(r, f'{s}/{metric}', 'seconds')
            for f in fractions:
                goal = f * best[s]
                hit = next((x for x, y in pts if y >= goal - 1e-9), None)
                rows.append(dict(variant=r['variant'], seed=r['seed'],
                                 set=s, fraction=f, seconds=hit,
                                 final=pts[-1][1] if pts else None,
                                 train_seconds=r.get('train_seconds')))
    return dict(best=best, rows=rows, metric=metric)


def cut_at_budget(record: Dict, max_train_seconds: float) -> Dict:
    """A copy of an uncapped run's record as the same run stopped at a
    training wall-clock budget would have recorded it.

    :class:`~mmreid_gs.engine.hooks.WallClockHook` stops training after the
    first epoch that ends at or past the budget, and that epoch is still
    validated: the curve is kept up to and including its first point at or
    past ``max_train_seconds``. Nothing before the stop depends on the
    budget (the schedule is the same), so up to there the curves are the
    capped run's.

    Args:
        record (dict): A record whose curve carries ``seconds``.
        max_train_seconds (float): The budget (> 0).

    Returns:
        dict: The record with the cut ``curve``, its last point's
        ``metrics`` and ``seconds`` as ``metrics`` / ``train_seconds``, and
        ``cut_at`` = the budget.
    """
    points = sorted((c for c in record.get('curve', [])
                     if c.get('seconds') is not None),
                    key=lambda c: c['seconds'])
    kept = []
    for c in points:
        kept.append(c)
        if c['seconds'] >= max_train_seconds:
            break
    if not kept:
        return dict(record)
    return dict(record, curve=kept, metrics=dict(kept[-1]['metrics']),
                train_seconds=kept[-1]['seconds'],
                cut_at=float(max_train_seconds))


def time_cohort(records: Sequence[Dict]) -> List[Dict]:
    """The runs of the time-to-accuracy comparison.

    The ``time`` preset's runs (stopped at a training wall-clock budget,
    ``max_train_seconds``), and for every variant and seed they lack, the
    uncapped run of the same setting (identities, start, planned
    iterations) cut where the capped run would have stopped
    (:func:`cut_at_budget`): a run trained to the end for the main table
    is also the time study's run, not a second run of the same thing.

    Args:
        records (Sequence[dict]): A study's records.

    Returns:
        list[dict]: Empty when no record is of the ``time`` preset.
    """
    capped = [r for r in records if r.get('preset') == 'time']
    budget = max((float(r.get('max_train_seconds') or 0) for r in capped),
                 default=0.)
    if budget <= 0:
        return capped
    settings = {(r['num_ids'], r['start'], r['iterations']) for r in capped}
    have = {(r['variant'], r['seed']) for r in capped}
    return capped + [
        cut_at_budget(r, budget) for r in records
        if r.get('preset') != 'time' and not r.get('max_train_seconds')
        and (r['num_ids'], r['start'], r['iterations']) in settings
        and (r['variant'], r['seed']) not in have]


def time_to_accuracy_table(result: Dict,
                           variant_order: Optional[Sequence[str]] = None
                           ) -> str:
    """Markdown: sampler | per test set: minutes to 90% / 95% of the best
    (mean over seeds; 'never' when a run did not reach it) | final score |
    training minutes."""
    rows = result['rows']
    if not rows:
        return '(no run with a timed curve)\n'
    sets = list(result['best'])
    fractions = sorted({r['fraction'] for r in rows})
    order = _variant_order(rows, variant_order)
    variants = sorted({r['variant'] for r in rows},
                      key=lambda v: order.get(v, 99))
    head = ['sampler / loss']
    for s in sets:
        head += [f'{s}: min to {int(round(f * 100))}% of '
                 f"{result['best'][s]:.1f}" for f in fractions]
        head.append(f"{s} final {result['metric']}")
    head += ['seeds', 'train min']
    lines = ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
    for v in variants:
        mine = [r for r in rows if r['variant'] == v]
        cells = [v]
        for s in sets:
            for f in fractions:
                secs = [r['seconds'] for r in mine
                        if r['set'] == s and r['fraction'] == f]
                reached = [x for x in secs if x is not None]
                cell = (f'{np.mean(reached) / 60:.1f}' if reached else
                        'never')
                if reached and len(reached) < len(secs):
                    cell += f' ({len(secs) - len(reached)} never)'
                cells.append(cell)
            finals = {(r['seed']): r['final'] for r in mine if r['set'] == s}
            cells.append(_mean_sd(list(finals.values())))
        seeds = {r['seed'] for r in mine}
        train = {r['seed']: r['train_seconds'] for r in mine
                 if r.get('train_seconds')}
        cells += [str(len(seeds)),
                  f'{np.mean(list(train.values())) / 60:.1f}'
                  if train else '-']
        lines.append('| ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines) + '\n'


def plot_time_to_accuracy(records: Sequence[Dict], path: str,
                          metric: str = 'Rank-1',
                          variant_order: Optional[Sequence[str]] = None
                          ) -> None:
    """``metric`` of every test set against training seconds, one line per
    run, the 90% and 95% of the best dashed."""
    result = time_to_accuracy(records, metric=metric)
    if not result['best']:
        raise ValueError('study render: no run has a timed validation curve')
    sets = list(result['best'])
    order = _variant_order(records, variant_order)
    variants = sorted({r['variant'] for r in records},
                      key=lambda v: order.get(v, 99))
    cycle = plt.rcParams['axes.prop_cycle'].by_key()['color']
    colors = {v: cycle[i % len(cycle)] for i, v in enumerate(variants)}
    fig, axes = plt.subplots(1, len(sets), figsize=(5.5 * len(sets), 3.8),
                             squeeze=False)
    for ax, s in zip(axes[0], sets):
        labelled = set()
        for r in records:
            pts = _curve_points(r, f'{s}/{metric}', 'seconds')
            if not pts:
                continue
            v = r['variant']
            ax.plot([x / 60 for x, _ in pts], [y for _, y in pts],
                    marker='o', ms=3, color=colors[v],
                    label=None if v in labelled else v)
            labelled.add(v)
        for f in (0.9, 0.95):
            ax.axhline(f * result['best'][s], color='grey', ls='--', lw=0.8)
        ax.set_title(f'{s} {metric} against training time', fontsize=9)
        ax.set_xlabel('training minutes (validation excluded)')
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle('time to accuracy (dashed: 90% and 95% of the best)')
    fig.tight_layout()
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def render_study(spec: Dict, records: Sequence[Dict],
                 out_dir: str) -> List[str]:
    """Write a study's ``summary.md`` and plots from its records.

    The scale study's records of the ``time`` preset (``preset`` field)
    make the time-to-accuracy table and plot; the others the main table
    and the curves.

    Args:
        spec (dict): The study config (:func:`~.specs.load_study`).
        records (Sequence[dict]): Its records.
        out_dir (str): Where to write (``docs/studies/<study>/``).

    Returns:
        list[str]: The files written.

    Raises:
        ValueError: No records.
    """
    if not records:
        raise ValueError(f"study render: {spec['name']} has no finished run "
                         'in its runs.jsonl')
    os.makedirs(out_dir, exist_ok=True)
    order = list(spec['variants'])
    timed = time_cohort(records)
    main = [r for r in records if r.get('preset') != 'time']
    written = []
    parts = [f"# Study `{spec['name']}`\n\n{spec['doc']}.\n\n"
             'Rendered by `python tools/analysis_tools/sampler_study.py '
             f"{spec['name']} --render` from `runs.jsonl` alone (mean ± "
             'sample standard deviation over seeds, %).\n']
    if main:
        parts.append('\n## Results\n\n' + summary_table(main, order))
        paired = (paired_difference_table(main, 'pk', order)
                  if 'pk' in order else '')
        if paired:
            parts.append('\n## Against PK, seed by seed\n\n'
                         'Each sampler minus PK with the same '
                         'seed (same benchmark and start): mean ± sd over '
                         'the shared seeds, and on how many it is ahead.\n\n'
                         + paired)
        clusters = pseudo_label_table(main, order)
        if clusters:
            parts.append('\n## The pseudo-labels at every clustering\n\n'
                         + clusters)
        curved = [r for r in main if len(r.get('curve', [])) >= 2]
        if curved:
            for metric in ('Rank-1', 'mAP'):
                path = osp.join(out_dir, f'curves_{metric.lower()}.png'
                                .replace('-', ''))
                plot_curves(curved, path, metric, order)
                written.append(path)
                parts.append(f'\n![{metric} curves]({osp.basename(path)})\n')
    if timed:
        result = time_to_accuracy(timed)
        parts.append('\n## Time to accuracy\n\n'
                     + time_to_accuracy_table(result, order))
        cut = sorted({r['variant'] for r in timed if r.get('cut_at')},
                     key=lambda v: order.index(v) if v in order else 99)
        if cut:
            budget = max(r['cut_at'] for r in timed if r.get('cut_at'))
            parts.append(
                f"\n{', '.join(cut)}: the runs of the main table at the "
                'same setting, their curves cut where a run capped at '
                f'{budget / 60:.0f} training minutes stops (after the first '
                'epoch that ends past it).\n')
        if result['best']:
            path = osp.join(out_dir, 'time_to_accuracy.png')
            plot_time_to_accuracy(timed, path, variant_order=order)
            written.append(path)
            parts.append(f'\n![time to accuracy]({osp.basename(path)})\n')
    summary = osp.join(out_dir, 'summary.md')
    with open(summary, 'w') as f:
        f.write(''.join(parts))
    written.insert(0, summary)
    return written


def plateau_change(record: Dict, metric: str = 'A/Rank-1',
                   fraction: float = 0.25) -> Optional[float]:
    """How much ``metric`` moved over the last ``fraction`` of a run: the
    spread (max - min) of its curve points from ``(1 - fraction) x
    iterations`` on (the budget rule: below 1 point = a plateau).

    Returns:
        float or None: Points of ``metric``; None without two such points.
    """
    start = (1 - fraction) * record['iterations']
    vals = [c['metrics'][metric] for c in record.get('curve', [])
            if c['iteration'] >= start - 1e-9 and metric in c['metrics']]
    if len(vals) < 2:
        return None
    return float(max(vals) - min(vals))


__all__ = [
    'summary_table', 'plot_curves', 'time_to_accuracy', 'time_cohort',
    'cut_at_budget',
    'time_to_accuracy_table', 'plot_time_to_accuracy', 'render_study',
    'plateau_change', 'group_records', 'test_sets', 'pseudo_label_table',
    'paired_difference_table'
]

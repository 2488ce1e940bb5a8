"""Study results that last: one JSON line per finished run.

Every finished run of every study is one JSON object on its own line of
``docs/studies/<study>/runs.jsonl``, a file committed with the code, so a
study started on one machine continues on another (the runs already in the
file are skipped) and every table and plot is rendered from the file alone.

A record holds:

- ``study``, ``variant`` (``pk``, ``gs``, ``dfgs``, ``cm`` ...), ``start``
  (``scratch`` / ``pretrained``), ``num_ids`` (training identities),
  ``seed``, ``iterations`` (the run's training iterations),
  ``warmup_iterations`` (random PK iterations before the Graph Sampler takes
  over; 0 for the other samplers): together the run's key;
- ``metrics``: the last validation, ``{"A/Rank-1": .., "A/mAP": ..,
  "B/Rank-1": .., "B/mAP": ..}`` in %, test sets named short (``A`` for
  ``synthetic_A``, ``B`` for ``synthetic_B_unseen``);
- ``curve``: every validation, ``{"epoch", "iteration", "seconds"
  (training seconds so far, validation excluded, None when the run kept no
  timeline), "metrics"}``;
- ``batch_lookalike_share`` (mean over the epochs after the warm-up: the GS
  epochs; PK runs over the same epochs), ``batch_lookalike_share_all``,
  ``batch_lookalike_share_random``;
- ``train_seconds``, ``graph_seconds`` (class graphs, summed; part of the
  training seconds), ``val_seconds`` (validation, not part of them),
  ``iter_seconds`` / ``data_seconds`` (median logged seconds per training
  iteration and of its data loading: where an epoch spends its time),
  ``pseudo_labels`` (per clustering: clusters, outliers, NMI, ARI,
  purity, when the run trains on pseudo-labels),
  ``commit``, ``date``, and what else the study adds (``batches_per_epoch``,
  ``epochs``, ``preset``, ``converged``, ``graph_recall`` ...).
"""
import datetime
import json
import math
import os
import os.path as osp
import subprocess
from collections import defaultdict
from typing import Dict, Iterable, List, Optional, Sequence

import numpy as np

from mmreid_gs.engine.hooks.wall_clock_hook import read_clock

from .run_logs import converged, read_scalars, run_metrics

#: the fields that identify a run (a run is skipped when its key is there)
KEY_FIELDS = ('study', 'variant', 'start', 'num_ids', 'seed', 'iterations',
              'warmup_iterations')

#: the fields every record has
REQUIRED_FIELDS = KEY_FIELDS + (
    'metrics', 'curve', 'batch_lookalike_share', 'train_seconds',
    'graph_seconds', 'commit', 'date')


def record_key(record: Dict) -> tuple:
    """The identity of a run: :data:`KEY_FIELDS` of its record (or of a
    planned run's dict), and its wall-clock cap ``max_train_seconds`` (0:
    none; a run stopped at a training-time budget is another run than the
    same settings trained to the end)."""
    missing = [k for k in KEY_FIELDS if k not in record]
    if missing:
        raise KeyError(f'study record: missing key fields {missing} in '
                       f'{ {k: record[k] for k in record if k in KEY_FIELDS} }')
    ints = ('num_ids', 'seed', 'iterations', 'warmup_iterations')
    cap = int(record.get('max_train_seconds') or 0)
    return tuple(int(record[k]) if k in ints else str(record[k])
                 for k in KEY_FIELDS) + (cap, )


def records_path(study: str, root: Optional[str] = None) -> str:
    """``<root>/docs/studies/<study>/runs.jsonl`` (root: the repository)."""
    from .specs import repo_root
    return osp.join(root or repo_root(), 'docs', 'studies', study,
                    'runs.jsonl')


def load_records(path: str) -> List[Dict]:
    """The records of a ``runs.jsonl`` (empty when there is no file).

    A run recorded twice (the same key) counts once: the later line wins.

    Raises:
        ValueError: A line that is not a JSON object with the
            :data:`REQUIRED_FIELDS`, naming the file and the line.
    """
    if not osp.isfile(path):
        return []
    out = {}
    with open(path) as f:
        for number, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f'{path}, line {number}: not JSON ({exc})')
            if not isinstance(record, dict):
                raise ValueError(f'{path}, line {number}: a record must be a '
                                 f'JSON object, got {type(record).__name__}')
            missing = [k for k in REQUIRED_FIELDS if k not in record]
            if missing:
                raise ValueError(f'{path}, line {number}: the record lacks '
                                 f'{missing}')
            out[record_key(record)] = record
    return list(out.values())


def append_record(path: str, record: Dict) -> None:
    """Append one record as a line of ``path`` (flushed and fsynced, so a
    kill leaves whole lines).

    Raises:
        ValueError: The record lacks a required field.
    """
    missing = [k for k in REQUIRED_FIELDS if k not in record]
    if missing:
        raise ValueError(f'study record: lacks {missing}')
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    line = json.dumps(record, sort_keys=False, allow_nan=False,
                      separators=(', ', ': '))
    with open(path, 'a') as f:
        f.write(line + '\n')
        f.flush()
        os.fsync(f.fileno())


def short_set_name(name: str) -> str:
    """``synthetic_A`` -> ``A``, ``synthetic_B_unseen`` -> ``B``; other
    test-set names unchanged."""
    if name.startswith('synthetic_'):
        name = name[len('synthetic_'):]
    if name.endswith('_unseen'):
        name = name[:-len('_unseen')]
    return name


def git_commit(root: Optional[str] = None) -> Optional[str]:
    """The checked-out commit (``-dirty`` when tracked files differ), or
    None outside a git checkout."""
    from .specs import repo_root
    cwd = root or repo_root()
    try:
        sha = subprocess.run(['git', 'rev-parse', '--short=12', 'HEAD'],
                             cwd=cwd, capture_output=True, text=True,
                             timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(
            ['git', 'diff', '--quiet', 'HEAD', '--', 'mmreid_gs', 'configs'],
            cwd=cwd, capture_output=True, timeout=10).returncode != 0
    except (OSError, subprocess.SubprocessError):
        return None
    return sha + ('-dirty' if dirty else '')


def _finite(value) -> Optional[float]:
    value = float(value)
    return value if math.isfinite(value) else None


def build_record(run_dir: str,
                 study: str,
                 variant: str,
                 start: str,
                 num_ids: int,
                 seed: int,
                 batches_per_epoch: int,
                 epochs: int,
                 warmup_epochs: int = 0,
                 share_from_epoch: Optional[int] = None,
                 meta: Optional[Dict] = None,
                 **extra) -> Dict:
    """The record of a finished run, from its work dir (MMEngine's
    ``vis_data/scalars.json``, :class:`WallClockHook`'s ``clock.jsonl`` and
    ``done.json``).

    Args:
        run_dir (str): The run's work dir.
        study, variant, start (str): Its study, variant and start.
        num_ids, seed (int): Training identities and seed.
        batches_per_epoch, epochs (int): Its schedule (iterations =
            their product).
        warmup_epochs (int): PK warm-up epochs of a Graph Sampler run (0
            for the other samplers).
        share_from_epoch (int, optional): ``batch_lookalike_share`` is the
            mean over the epochs after this one (default ``warmup_epochs``:
            the GS epochs; give PK runs the GS runs' warm-up to compare the
            same epochs).
        meta (dict, optional): The run's ``done.json`` (``seconds``,
            ``commit``, ``date`` ...).
        **extra: Fields added to the record as they are.

    Returns:
        dict: The record (see the module docstring).
    """
    meta = dict(meta or {})
    rows = run_metrics(run_dir)
    curve_by_epoch = defaultdict(dict)
    for r in rows:
        if r['metric'] in ('Rank-1', 'mAP', 'mINP') and r['set'] not in (
                'train', 'graph'):
            key = f"{short_set_name(r['set'])}/{r['metric']}"
            curve_by_epoch[int(r['epoch'])][key] = round(
                100. * float(r['value']), 4)
    clock = {(c['event'], int(c['epoch'])): c for c in read_clock(run_dir)}
    curve = []
    for epoch in sorted(curve_by_epoch):
        tick = clock.get(('val', epoch)) or clock.get(('train_epoch', epoch))
        curve.append(dict(
            epoch=epoch, iteration=epoch * int(batches_per_epoch),
            seconds=(round(float(tick['train_seconds']), 2)
                     if tick else None),
            metrics=curve_by_epoch[epoch]))
    metrics = curve[-1]['metrics'] if curve else {}
    shares, randoms, graph_secs, recall = {}, [], [], {}
    iter_times, data_times = [], []
    clusters = {}  # PseudoLabelHook: the clustering of every epoch
    for row in read_scalars(run_dir):
        if 'train/batch_lookalike_share' in row:
            shares[int(row.get('step', row.get('epoch', 0)))] = float(
                row['train/batch_lookalike_share'])
        if 'train/batch_lookalike_share_random' in row:
            randoms.append(float(row['train/batch_lookalike_share_random']))
        if 'graph/build_seconds' in row:
            graph_secs.append(float(row['graph/build_seconds']))
        if 'data_time' in row and 'time' in row and 'loss' in row:
            # the logger's mean over its interval of training iterations
            iter_times.append(float(row['time']))
            data_times.append(float(row['data_time']))
        if 'pseudo_label/num_clusters' in row:
            clusters[int(row.get('step', 0))] = {
                k.split('/', 1)[1]: round(float(v), 4)
                for k, v in row.items() if k.startswith('pseudo_label/')}
        if 'graph/recall' in row:  # GraphSamplerHook(check_recall=True)
            recall = dict(recall=float(row['graph/recall']),
                          exact_seconds=float(
                              row.get('graph/exact_seconds', 'nan')),
                          epoch=int(row.get('step', 0)))
    cut = warmup_epochs if share_from_epoch is None else share_from_epoch
    after = [v for e, v in sorted(shares.items()) if e > cut]
    ticks = [c for c in clock.values() if c['event'] == 'train_epoch']
    val_seconds = None
    if ticks:
        train_seconds = max(float(c['train_seconds']) for c in ticks)
        last = max(clock.values(), key=lambda c: c['wall_seconds'])
        val_seconds = round(float(last['wall_seconds'])
                            - float(last['train_seconds']), 2)
    else:
        train_seconds = meta.get('seconds')
    losses = [r for r in rows if r['set'] == 'train' and r['metric'] == 'loss']
    record = dict(
        study=study, variant=variant, start=start, num_ids=int(num_ids),
        seed=int(seed), iterations=int(epochs) * int(batches_per_epoch),
        warmup_iterations=int(warmup_epochs) * int(batches_per_epoch),
        metrics=metrics, curve=curve,
        batch_lookalike_share=(_finite(np.mean(after)) if after else None),
        batch_lookalike_share_all=(_finite(np.mean(list(shares.values())))
                                   if shares else None),
        batch_lookalike_share_random=(_finite(np.mean(randoms))
                                      if randoms else None),
        train_seconds=(round(float(train_seconds), 2)
                       if train_seconds is not None else None),
        graph_seconds=round(float(sum(graph_secs)), 2),
        val_seconds=val_seconds,
        iter_seconds=(round(float(np.median(iter_times)), 4)
                      if iter_times else None),
        data_seconds=(round(float(np.median(data_times)), 4)
                      if data_times else None),
        graph_builds=len(graph_secs),
        graph_recall=recall or None,
        pseudo_labels=([dict(epoch=e, **v) for e, v in sorted(
            clusters.items())] if clusters else None),
        batches_per_epoch=int(batches_per_epoch), epochs=int(epochs),
        final_loss=(round(float(losses[-1]['value']), 4) if losses
                    else None),
        converged=bool(converged(rows)) if rows else False,
        commit=meta.get('commit') or git_commit(),
        date=meta.get('date') or datetime.datetime.now(
            datetime.timezone.utc).isoformat(timespec='seconds'))
    record.update(extra)
    return record


def missing_runs(planned: Iterable[Dict], records: Sequence[Dict]
                 ) -> List[Dict]:
    """The planned runs (dicts with :data:`KEY_FIELDS`) without a record."""
    done = {record_key(r) for r in records}
    return [p for p in planned if record_key(p) not in done]


def status_lines(study: str, planned: Sequence[Dict],
                 records: Sequence[Dict]) -> List[str]:
    """``--status``: the finished and the missing runs of a plan, and the
    records outside it."""
    keys = {record_key(p) for p in planned}
    done = [r for r in records if record_key(r) in keys]
    todo = missing_runs(planned, records)
    other = [r for r in records if record_key(r) not in keys]

    def describe(r):
        return (f"{r['variant']:<14} {r['start']:<10} n={r['num_ids']:<6} "
                f"seed={r['seed']:<3} iterations={r['iterations']} "
                f"(warm-up {r['warmup_iterations']})")

    lines = [f'{study}: {len(done)} of {len(planned)} planned runs finished'
             f', {len(todo)} missing; {len(other)} other records in the '
             'file']
    for r in done:
        m = r.get('metrics', {})
        figures = ', '.join(f'{k} {v:.1f}' for k, v in m.items()
                            if k.endswith(('Rank-1', 'mAP')))
        secs = r.get('train_seconds')
        lines.append(f'  done     {describe(r)}  {figures}'
                     + (f'  {secs / 60:.1f} min' if secs else '')
                     + f"  [{r.get('commit')}, {r.get('date')}]")
    for r in todo:
        lines.append(f'  missing  {describe(r)}')
    for r in other:
        lines.append(f'  other    {describe(r)}')
    return lines


def commit_records(path: str, message: str) -> bool:
    """Commit one records file (that path only, nothing else staged is
    committed), so a finished run is saved in git as soon as it ends.

    Returns:
        bool: Whether a commit was made (False outside a git checkout or
        when git refuses; the file itself is kept either way).
    """
    cwd = osp.dirname(osp.abspath(path))
    try:
        subprocess.run(['git', 'add', '--', osp.basename(path)], cwd=cwd,
                       check=True, capture_output=True, timeout=60)
        done = subprocess.run(
            ['git', 'commit', '-q', '-m', message, '--',
             osp.basename(path)], cwd=cwd, capture_output=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0

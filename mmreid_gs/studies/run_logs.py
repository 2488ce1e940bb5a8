"""What a finished study run left in its work dir: MMEngine's scalars,
read back as rows, and whether the run converged."""
import glob
import json
import math
import os.path as osp
from collections import defaultdict
from typing import Dict, List

import numpy as np


def read_scalars(run_dir: str) -> List[Dict]:
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
    for row in read_scalars(run_dir):
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

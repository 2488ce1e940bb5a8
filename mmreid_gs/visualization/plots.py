"""Curves and histograms (matplotlib, no global pyplot state): training
curves from MMEngine's ``scalars.json``, CMC, pair-score distributions with
ROC, and the look-alike share of class graphs over epochs."""
import json
import os
import os.path as osp
from typing import Dict, List, Optional, Sequence

import numpy as np

from mmreid_gs.evaluation.functional import (format_fpr,
                                             verification_rates)
from mmreid_gs.utils.errors import ReIDUserError


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, out: str) -> str:
    folder = osp.dirname(osp.abspath(out))
    os.makedirs(folder, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out)
    return out


def load_scalars(path: str) -> List[Dict]:
    """Records of an MMEngine ``scalars.json`` (one JSON object a line, as
    ``LocalVisBackend`` writes; the ``<timestamp>.json`` log works too).

    Args:
        path (str): The file.

    Returns:
        list[dict]: The records in file order.
    """
    if not osp.isfile(path):
        raise FileNotFoundError(f'scalars file not found: {path}')
    records = []
    with open(path) as f:
        for num, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                records.append(json.loads(line))
            except ValueError as err:
                raise ReIDUserError(f'{path}, line {num}: not JSON ({err})')
    return records


def plot_scalar_curves(records: Sequence[Dict],
                       keys: Sequence[str],
                       out: str,
                       title: Optional[str] = None) -> str:
    """One panel per key: its values against the records' ``step``
    (iterations for training logs; epochs for validation and graph
    scalars, which MMEngine logs with the epoch as step).

    Args:
        records (Sequence[dict]): From :func:`load_scalars`.
        keys (Sequence[str]): Scalars to plot (e.g. ``loss``, ``pair_acc``,
            ``synthetic_B_unseen/Rank-1``, ``graph/family_share``).
        out (str): Output picture.
        title (str, optional): Figure title.

    Returns:
        str: ``out``.
    """
    if not keys:
        raise ReIDUserError('plot_curve: give at least one key (--keys)')
    series = {}
    for key in keys:
        pts = [(r.get('step', i), r[key]) for i, r in enumerate(records)
               if key in r]
        if not pts:
            known = sorted({k for r in records for k in r} -
                           {'step', 'epoch', 'iter'})
            raise ReIDUserError(f'no record has the key {key!r}; keys in the '
                                f'file: {", ".join(known)}')
        by_iter = any('iter' in r for r in records if key in r)
        series[key] = (np.array(pts, dtype=np.float64), by_iter)
    fig = _figure(5.5, 2.2 * len(keys) + (0.3 if title else 0))
    for i, key in enumerate(keys):
        pts, by_iter = series[key]
        ax = fig.add_subplot(len(keys), 1, i + 1)
        ax.plot(pts[:, 0], pts[:, 1], marker='.' if len(pts) < 40 else None)
        ax.set_ylabel(key)
        ax.set_xlabel('iteration' if by_iter else 'epoch')
        ax.grid(alpha=.3)
    if title:
        fig.suptitle(title)
    return _save(fig, out)


def plot_cmc(curves: Dict[str, np.ndarray], out: str,
             max_rank: int = 20) -> str:
    """CMC curves, one per test set.

    Args:
        curves (dict): ``set name -> cmc`` (fractions, ``cmc[k]`` = rank
            k + 1).
        out (str): Output picture.
        max_rank (int): Last rank shown. Defaults to 20.

    Returns:
        str: ``out``.
    """
    fig = _figure(5, 3.5)
    ax = fig.add_subplot(1, 1, 1)
    for name, cmc in curves.items():
        cmc = np.asarray(cmc)[:max_rank]
        ranks = np.arange(1, cmc.size + 1)
        ax.plot(ranks, 100 * cmc, marker='.',
                label=f'{name} (Rank-1 {100 * cmc[0]:.1f})')
    from matplotlib.ticker import MaxNLocator
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel('rank')
    ax.set_ylabel('matching rate (%)')
    ax.set_ylim(0, 100)
    ax.set_title('CMC')
    ax.grid(alpha=.3)
    ax.legend(loc='lower right', fontsize=8)
    return _save(fig, out)


def roc_points(scores, labels, num: int = 200) -> Dict[str, np.ndarray]:
    """ROC of a pair verifier at log-spaced false-positive rates.

    A pair is accepted when its score is strictly greater than the
    threshold (as :func:`verification_rates`); the thresholds are order
    statistics of the negative scores.

    Args:
        scores (array-like): [n] pair scores.
        labels (array-like): [n] True for same-identity pairs.
        num (int): Points. Defaults to 200.

    Returns:
        dict: ``fpr``, ``tpr``, ``threshold`` arrays (increasing FPR).
    """
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    y = np.asarray(labels, dtype=bool).reshape(-1)
    pos, neg = np.sort(s[y]), np.sort(s[~y])[::-1]
    if pos.size == 0 or neg.size == 0:
        raise ReIDUserError('ROC needs positive and negative pairs, got '
                            f'{pos.size} and {neg.size}')
    lo = 1. / neg.size
    fpr = np.unique(np.concatenate(
        [np.geomspace(lo, 1., num), [lo, 1.]]))
    k = np.minimum(np.floor(fpr * neg.size + 1e-9).astype(np.int64),
                   neg.size)
    thr = np.where(k < neg.size, neg[np.minimum(k, neg.size - 1)], -np.inf)
    tpr = (pos.size - np.searchsorted(pos, thr, side='right')) / pos.size
    return dict(fpr=k / neg.size, tpr=tpr, threshold=thr)


def plot_pair_scores(scores,
                     labels,
                     out: str,
                     fprs: Sequence[float] = (1e-2, 1e-3, 1e-4),
                     title: Optional[str] = None,
                     bins: int = 80) -> Dict[str, float]:
    """Score histograms of positive and negative pairs (with the
    verification thresholds) and the ROC curve with its operating points.

    Args:
        scores (array-like): [n] pair scores (higher = more similar).
        labels (array-like): [n] True for same-identity pairs.
        out (str): Output picture.
        fprs (Sequence[float]): Verification false-positive rates.
        title (str, optional): Figure title.
        bins (int): Histogram bins. Defaults to 80.

    Returns:
        dict: :func:`verification_rates` for the rates that the number of
        negatives can resolve.
    """
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    y = np.asarray(labels, dtype=bool).reshape(-1)
    num_neg = int((~y).sum())
    usable = [f for f in fprs if f * num_neg >= 1]
    rates = verification_rates(s, y, usable) if usable else {}
    fig = _figure(9, 3.8)
    ax = fig.add_subplot(1, 2, 1)
    edges = np.linspace(s.min(), s.max(), bins + 1)
    ax.hist(s[~y], bins=edges, density=True, alpha=.6, color='tab:red',
            label=f'different identity ({num_neg:,})')
    ax.hist(s[y], bins=edges, density=True, alpha=.6, color='tab:green',
            label=f'same identity ({int(y.sum()):,})')
    ax.set_yscale('log')
    for i, f in enumerate(usable):
        thr = rates[f'threshold@FPR={format_fpr(f)}']
        ax.axvline(thr, color='k', lw=.8, ls='--',
                   label='score thresholds at FPR ' +
                   ', '.join(format_fpr(v) for v in usable) if i == 0 else
                   None)
        ax.text(thr, 1.01, format_fpr(f), transform=ax.get_xaxis_transform(),
                ha='center', va='bottom', fontsize=7)
    ax.set_xlabel('QAConv score')
    ax.set_ylabel('density')
    ax.legend(fontsize=7, loc='upper center', bbox_to_anchor=(.5, -.2),
              ncol=2, frameon=False)
    roc = roc_points(s, y)
    ax = fig.add_subplot(1, 2, 2)
    ax.plot(roc['fpr'], 100 * roc['tpr'])
    for f in usable:
        name = format_fpr(f)
        tpr = rates[f'TPR@FPR={name}']
        ax.plot([f], [100 * tpr], 'o', color='k', ms=4)
        ax.annotate(
            f'TPR {100 * tpr:.1f}% (score > '
            f'{rates[f"threshold@FPR={name}"]:.2f})', (f, 100 * tpr),
            textcoords='offset points', xytext=(-6, 4), ha='right',
            fontsize=7)
    ax.set_xscale('log')
    ax.set_xlabel('false-positive rate')
    ax.set_ylabel('true-positive rate (%)')
    ax.set_ylim(0, 100)
    ax.set_title('ROC')
    ax.grid(alpha=.3)
    if title:
        fig.suptitle(title)
    _save(fig, out)
    return rates


def plot_family_share(epochs: Sequence[int],
                      share: Sequence[float],
                      random: Sequence[float],
                      out: str,
                      title: Optional[str] = None,
                      best: Optional[float] = None) -> str:
    """Share of graph neighbours in the centre class's family of look-alikes
    per epoch, against random neighbours.

    Args:
        epochs (Sequence[int]): Epochs (1-based, as the graph dumps).
        share (Sequence[float]): Mean share of each epoch's graph.
        random (Sequence[float]): Share expected from random neighbours.
        out (str): Output picture.
        title (str, optional): Figure title.
        best (float, optional): The most a graph can reach (families
            smaller than the neighbour count), drawn as a dotted line.

    Returns:
        str: ``out``.
    """
    fig = _figure(5, 3.6)
    ax = fig.add_subplot(1, 1, 1)
    ax.plot(epochs, 100 * np.asarray(share), marker='o',
            label='Graph Sampler neighbours')
    ax.plot(epochs, 100 * np.asarray(random), ls='--', color='grey',
            label='random neighbours')
    top = max(max(share), max(random))
    if best is not None:
        ax.axhline(100 * best, ls=':', color='k',
                   label='most possible (family size)')
        top = max(top, best)
    ax.set_xlabel('epoch')
    ax.set_ylabel('neighbours in the same family (%)')
    ax.set_ylim(0, 100 * top * 1.15 + 1)
    ax.set_xticks(list(epochs))
    ax.grid(alpha=.3)
    ax.legend(fontsize=8, loc='upper center', bbox_to_anchor=(.5, -.2),
              ncol=2, frameon=False)
    ax.set_title(title or 'look-alike share of class-graph neighbours')
    return _save(fig, out)

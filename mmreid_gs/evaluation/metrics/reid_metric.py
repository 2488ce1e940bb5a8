"""Re-identification metric of named query/gallery test sets."""
from typing import Dict, Optional, Sequence, Union

import numpy as np
from mmengine.evaluator import BaseMetric
from mmengine.logging import print_log

from mmreid_gs.registry import METRICS
from mmreid_gs.utils.arrays import to_numpy
from mmreid_gs.utils.errors import ReIDUserError, ReIDUserTypeError
from ..functional import (evaluate_rank, pair_scores_and_labels, re_ranking,
                          tlift, verification_rates)
from ..functional.distance import sigmoid_distance

_RERANK_DEFAULTS = dict(k1=20, k2=6, lambda_value=0.3)
_TLIFT_DEFAULTS = dict(tau=100, sigma=200, K=10, alpha=0.2)


def _options(value: Union[bool, dict, None], defaults: dict,
             name: str) -> Optional[dict]:
    """``False``/``None`` -> disabled; ``True`` -> defaults; dict -> merged."""
    if value is None or value is False:
        return None
    if value is True:
        return dict(defaults)
    if isinstance(value, dict):
        unknown = set(value) - set(defaults)
        if unknown:
            raise ReIDUserError(f'unknown {name} option(s) {sorted(unknown)}; '
                                f'expected some of {sorted(defaults)}')
        return {**defaults, **value}
    raise ReIDUserTypeError(f'{name} must be a bool or a dict of options, got '
                            f'{type(value).__name__}')


@METRICS.register_module()
class ReIDMetric(BaseMetric):
    """CMC / mAP / mINP of one or more named query-gallery test sets.

    Each data sample handed to :meth:`process` is one whole test set::

        dict(name='market1501',
             scores=...,          # [q, g] QAConv logits, higher = similar
             query_pids=..., gallery_pids=...,       # [q], [g]
             query_camids=..., gallery_camids=...,   # [q], [g]
             query_times=..., gallery_times=...,     # optional, frames
             scores_qq=..., scores_gg=...)           # [q, q], [g, g]; given
                                                     # when needs_self_scores

    The distance is ``-scores`` and the ranking is evaluated with the
    Market-1501 protocol (:func:`evaluate_rank`). Metric names, fractions in
    [0, 1]: ``<name>/Rank-<k>`` for ``k`` in ``topk``, ``<name>/mAP``,
    ``<name>/mINP``; with re-ranking the same names suffixed ``_rerank``;
    with TLift (when the set has timestamps) suffixed ``_tlift``; with
    verification ``<name>/TPR@FPR=<f>``.

    Re-ranking (Zhong et al., CVPR 2017, :func:`re_ranking`) needs a
    non-negative distance over all ``q + g`` items: the scores are mapped to
    ``1 - sigmoid(score)`` (:func:`sigmoid_distance`), which is monotone
    (same initial ranking as ``-score``), bounded in (0, 1) and non-negative.
    The ``[g, q]`` block is the transpose of ``scores``.

    TLift (Liao & Shao, ECCV 2020, :func:`tlift`) reweights
    ``sigmoid(scores)`` with the temporal co-occurrence prior; the lifted
    similarities are ranked by their negative. It is independent of
    re-ranking.

    Shortlisted scores (``test_cfg.shortlist=N``, see
    :mod:`mmreid_gs.evaluation.functional.shortlist`): the loop hands in
    combined matrices, each row the exact scores of its N shortlisted items
    and, elsewhere, pseudo-scores below them in the order of a pooled-map
    proxy; the metric ranks them as any scores. So re-ranking runs on the
    shortlisted ``scores``, ``scores_qq`` and ``scores_gg`` (each block
    shortlisted row by row, a block of at most N columns exact; its
    neighbour sets stay within the exact entries when ``N > k1``), TLift
    lifts ``sigmoid`` of the combined scores (pivots come from the
    shortlists), and verification rates count the pseudo-scores of the
    non-shortlisted pairs, which are comparable within a row only:
    approximate with a shortlist. ``N >=`` the gallery size hands in the
    exact scores (the exact metrics).

    The loops (:class:`ReIDTestLoop`) reach it through their
    ``Evaluator``: ``process`` with one set, then ``evaluate(1)``. Besides
    the numbers, :meth:`compute_metrics` returns the arrays it ranked beyond
    ``-scores``: ``<name>/distmat_rerank`` [q, g] (re-ranking) and
    ``<name>/scores_tlift`` [q, g] (TLift), as numpy arrays; the loops move
    them into their per-set outputs (``tools/test.py --out``) and log and
    return the numbers only.

    Args:
        rerank (bool | dict): Enable k-reciprocal re-ranking; a dict enables
            it with options among ``k1``, ``k2``, ``lambda_value`` (the flat
            arguments below otherwise). Defaults to False.
        k1 (int): Re-ranking k1. Defaults to 20.
        k2 (int): Re-ranking k2. Defaults to 6.
        lambda_value (float): Re-ranking lambda. Defaults to 0.3.
        tlift (bool | dict): Enable TLift for sets with timestamps; a dict
            enables it with options among ``tau``, ``sigma``, ``K``,
            ``alpha``. Defaults to False.
        tau (float): TLift co-occurrence window, frames. Defaults to 100.
        sigma (float): TLift temporal sensitivity, frames. Defaults to 200.
        K (int): TLift pivot set size. Defaults to 10.
        alpha (float): TLift fusion regulariser. Defaults to 0.2.
        topk (Sequence[int]): Ranks reported from the CMC curve.
            Defaults to (1, 5, 10).
        max_rank (int): Length of the CMC curve. Defaults to 50.
        verification (bool): Also report TPR at the false-positive rates
            ``fprs`` over all query-gallery pairs. Defaults to False.
        fprs (Sequence[float]): Rates of the verification.
            Defaults to (1e-2, 1e-3, 1e-4).
        collect_device (str): See :class:`mmengine.evaluator.BaseMetric`.
        prefix (str, optional): See :class:`mmengine.evaluator.BaseMetric`;
            by default none is added and the names stay ``<name>/...``.
        collect_dir (str, optional): Folder shared by the ranks where
            ``collect_device='cpu'`` gathers the results under distributed
            testing (MMEngine's default: a temporary folder under
            ``./.dist_test``). Defaults to None.
    """
    # The names carry the set name already: an empty prefix (set, and
    # adding nothing), not a missing one.
    default_prefix: Optional[str] = ''

    def __init__(self,
                 rerank: Union[bool, dict] = False,
                 k1: int = 20,
                 k2: int = 6,
                 lambda_value: float = 0.3,
                 tlift: Union[bool, dict] = False,
                 tau: float = 100,
                 sigma: float = 200,
                 K: int = 10,
                 alpha: float = 0.2,
                 topk: Sequence[int] = (1, 5, 10),
                 max_rank: int = 50,
                 verification: bool = False,
                 fprs: Sequence[float] = (1e-2, 1e-3, 1e-4),
                 collect_device: str = 'cpu',
                 prefix: Optional[str] = None,
                 collect_dir: Optional[str] = None) -> None:
        super().__init__(
            collect_device=collect_device,
            prefix=prefix,
            collect_dir=collect_dir)
        if isinstance(topk, int):
            topk = (topk, )
        topk = tuple(int(k) for k in topk)
        if not topk or min(topk) < 1 or max(topk) > max_rank:
            raise ReIDUserError(
                f'topk must be ranks in [1, max_rank={max_rank}]'
                f', got {topk}')
        self.topk = topk
        self.max_rank = int(max_rank)
        self.rerank_cfg = _options(
            rerank, dict(k1=k1, k2=k2, lambda_value=lambda_value), 'rerank')
        self.tlift_cfg = _options(
            tlift, dict(tau=tau, sigma=sigma, K=K, alpha=alpha), 'tlift')
        self.verification = bool(verification)
        self.fprs = tuple(float(f) for f in fprs)

    @property
    def needs_self_scores(self) -> bool:
        """Whether the loop must add ``scores_qq`` and ``scores_gg``."""
        return self.rerank_cfg is not None

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        """Store the score matrix and the ids of each named test set.

        Args:
            data_batch: Unused (the loop passes None).
            data_samples (Sequence[dict]): One dict per test set, see the
                class docstring.
        """
        for sample in data_samples:
            missing = [
                k for k in ('scores', 'query_pids', 'gallery_pids',
                            'query_camids', 'gallery_camids')
                if sample.get(k) is None
            ]
            if missing:
                raise KeyError(f'ReIDMetric.process: the test set dict lacks '
                               f'{missing}')
            result = dict(name=str(sample.get('name', 'test')))
            for key in ('scores', 'query_pids', 'gallery_pids',
                        'query_camids', 'gallery_camids', 'query_times',
                        'gallery_times', 'scores_qq', 'scores_gg'):
                value = sample.get(key)
                dtype = np.float32 if key.startswith('scores') else None
                result[key] = None if value is None else to_numpy(
                    value, dtype, key)
            self.results.append(result)

    def compute_metrics(self, results: list
                        ) -> Dict[str, Union[float, np.ndarray]]:
        """Compute the metrics of every stored test set.

        Args:
            results (list): The dicts stored by :meth:`process`.

        Returns:
            dict: Metric name -> value (floats, fractions in [0, 1]), plus
            the arrays ``<name>/distmat_rerank`` and ``<name>/scores_tlift``
            [q, g] when re-ranking / TLift ran (see the class docstring).
        """
        metrics = {}
        for res in results:
            metrics.update(self._evaluate_set(res))
        return metrics

    def _rank_metrics(self, name: str, dist: np.ndarray, res: dict,
                      suffix: str) -> Dict[str, float]:
        out = evaluate_rank(
            dist,
            res['query_pids'],
            res['gallery_pids'],
            res['query_camids'],
            res['gallery_camids'],
            max_rank=self.max_rank)
        metrics = {
            f'{name}/Rank-{k}{suffix}': float(out['cmc'][k - 1])
            for k in self.topk
        }
        metrics[f'{name}/mAP{suffix}'] = out['mAP']
        metrics[f'{name}/mINP{suffix}'] = out['mINP']
        return metrics

    def _evaluate_set(self, res: dict) -> Dict[str, Union[float, np.ndarray]]:
        name = res['name']
        scores = res['scores']
        if scores.ndim != 2:
            raise ValueError(f'{name}: scores must be [q, g], got shape '
                             f'{scores.shape}')
        dist = -scores
        # arrays ranked beyond -scores, returned after the numbers
        arrays = {}
        metrics = self._rank_metrics(name, dist, res, '')

        if self.rerank_cfg is not None:
            if res.get('scores_qq') is None or res.get('scores_gg') is None:
                raise KeyError(
                    f'{name}: re-ranking needs scores_qq [q, q] and scores_gg '
                    '[g, g] in the test set dict (see needs_self_scores)')
            full = np.block([[res['scores_qq'], scores],
                             [scores.T, res['scores_gg']]])
            rr = re_ranking(
                sigmoid_distance(full), scores.shape[0], **self.rerank_cfg)
            arrays[f'{name}/distmat_rerank'] = np.asarray(rr)
            metrics.update(self._rank_metrics(name, rr, res, '_rerank'))

        if self.tlift_cfg is not None:
            if res.get('query_times') is None or res.get(
                    'gallery_times') is None:
                print_log(
                    f'{name}: no timestamps, TLift skipped', logger='current')
            else:
                lifted = tlift(1.0 - sigmoid_distance(scores),
                               res['query_camids'], res['gallery_camids'],
                               res['query_times'], res['gallery_times'],
                               **self.tlift_cfg)
                arrays[f'{name}/scores_tlift'] = np.asarray(lifted)
                metrics.update(
                    self._rank_metrics(name, -lifted, res, '_tlift'))

        if self.verification:
            s, y = pair_scores_and_labels(scores, res['query_pids'],
                                          res['gallery_pids'])
            rates = verification_rates(s, y, self.fprs)
            metrics.update({
                f'{name}/{k}': v
                for k, v in rates.items() if k.startswith('TPR')
            })
        metrics.update(arrays)
        return metrics

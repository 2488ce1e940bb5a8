import numpy as np
import pytest
import torch

from mmreid_gs.evaluation.functional import (evaluate_rank, re_ranking,
                                             sigmoid_distance, tlift)
from mmreid_gs.registry import METRICS
from mmreid_gs.utils import register_all_modules

register_all_modules()


def make_set(name, seed, times=True):
    rng = np.random.default_rng(seed)
    q, g = 12, 40
    q_pids, g_pids = rng.integers(0, 5, q), rng.integers(0, 5, g)
    q_cams, g_cams = rng.integers(0, 3, q), rng.integers(0, 3, g)
    emb = rng.standard_normal((5, 16))

    def feats(pids):
        return emb[pids] + 0.8 * rng.standard_normal((pids.size, 16))

    fq, fg = feats(q_pids), feats(g_pids)
    sample = dict(
        name=name,
        scores=torch.from_numpy(fq @ fg.T).float(),
        query_pids=torch.from_numpy(q_pids),
        gallery_pids=g_pids,
        query_camids=q_cams,
        gallery_camids=g_cams,
        scores_qq=fq @ fq.T,
        scores_gg=fg @ fg.T)
    if times:
        sample['query_times'] = rng.integers(0, 2000, q)
        sample['gallery_times'] = rng.integers(0, 2000, g)
    return sample


def test_keys_and_values_end_to_end():
    metric = METRICS.build(
        dict(type='ReIDMetric', rerank=dict(k1=6, k2=3), tlift=True,
             verification=True, topk=(1, 5)))
    assert metric.needs_self_scores
    market, duke = make_set('market', 0), make_set('duke', 1, times=False)
    metric.process(None, [market])
    metric.process(None, [duke])
    out = metric.compute_metrics(metric.results)
    # the arrays ranked beyond -scores (numpy arrays) besides the numbers
    arrays = {k: v for k, v in out.items() if isinstance(v, np.ndarray)}
    out = {k: v for k, v in out.items() if k not in arrays}

    expected = set()
    for name in ('market', 'duke'):
        for suffix in ('', '_rerank'):
            expected |= {f'{name}/Rank-1{suffix}', f'{name}/Rank-5{suffix}',
                         f'{name}/mAP{suffix}', f'{name}/mINP{suffix}'}
        expected |= {f'{name}/TPR@FPR=1e-2', f'{name}/TPR@FPR=1e-3',
                     f'{name}/TPR@FPR=1e-4'}
    # TLift only where timestamps exist
    expected |= {'market/Rank-1_tlift', 'market/Rank-5_tlift',
                 'market/mAP_tlift', 'market/mINP_tlift'}
    assert set(out) == expected
    assert all(0.0 <= v <= 1.0 for v in out.values())

    # values equal the functional pipeline
    s = market['scores'].numpy()
    ids = (market['query_pids'].numpy(), market['gallery_pids'],
           market['query_camids'], market['gallery_camids'])
    plain = evaluate_rank(-s, *ids)
    assert out['market/Rank-1'] == pytest.approx(plain['cmc'][0])
    assert out['market/mAP'] == pytest.approx(plain['mAP'])
    assert out['market/mINP'] == pytest.approx(plain['mINP'])
    full = np.block([[market['scores_qq'], s], [s.T, market['scores_gg']]])
    rr = re_ranking(1 - 1 / (1 + np.exp(-full)), 12, k1=6, k2=3)
    assert out['market/mAP_rerank'] == pytest.approx(
        evaluate_rank(rr, *ids)['mAP'], abs=1e-6)
    lifted = tlift(1 / (1 + np.exp(-s)), market['query_camids'],
                   market['gallery_camids'], market['query_times'],
                   market['gallery_times'])
    assert out['market/mAP_tlift'] == pytest.approx(
        evaluate_rank(-lifted, *ids)['mAP'], abs=1e-6)

    # re-ranked distances of both sets, lifted scores where timestamps are
    assert set(arrays) == {'market/distmat_rerank', 'market/scores_tlift',
                           'duke/distmat_rerank'}
    np.testing.assert_allclose(arrays['market/distmat_rerank'], rr,
                               atol=1e-6)
    np.testing.assert_allclose(arrays['market/scores_tlift'], lifted,
                               atol=1e-6)
    assert arrays['duke/distmat_rerank'].shape == (12, 40)


def test_defaults_and_errors():
    metric = METRICS.build(dict(type='ReIDMetric'))
    # an empty prefix (no '<prefix>/' added), not a missing one
    assert not metric.needs_self_scores and metric.prefix == ''
    sample = make_set('a', 2)
    metric.process(None, [sample])
    out = metric.compute_metrics(metric.results)
    assert set(out) == {'a/Rank-1', 'a/Rank-5', 'a/Rank-10', 'a/mAP',
                        'a/mINP'}
    rerank = METRICS.build(dict(type='ReIDMetric', rerank=True))
    sample.pop('scores_qq')
    rerank.process(None, [sample])
    with pytest.raises(KeyError, match='scores_qq'):
        rerank.compute_metrics(rerank.results)
    with pytest.raises(KeyError, match='query_pids'):
        metric.process(None, [dict(name='x', scores=np.zeros((2, 2)))])
    with pytest.raises(ValueError, match='topk'):
        METRICS.build(dict(type='ReIDMetric', topk=(1, 100)))
    with pytest.raises(ValueError, match='unknown rerank'):
        METRICS.build(dict(type='ReIDMetric', rerank=dict(k3=1)))


def test_sigmoid_distance_is_stable_and_monotone():
    x = np.array([-1000.0, -5.0, 0.0, 5.0, 1000.0])
    d = sigmoid_distance(x)
    assert np.all(np.diff(d) < 0)
    assert d[0] == pytest.approx(1.0) and d[2] == pytest.approx(0.5)
    assert d[-1] >= 0 and np.isfinite(d).all()
    assert d[3] == pytest.approx(1 / (1 + np.exp(5)))

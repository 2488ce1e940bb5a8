import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import mmreid_gs.evaluation.functional.rank as rank_module
from mmreid_gs.evaluation.functional import average_precisions, evaluate_rank


def loop_reference(dist, q_pids, g_pids, q_cams, g_cams, max_rank=50):
    """Plain per-query loop (stable argsort: ties broken by gallery index)."""
    all_cmc, all_ap, all_inp = [], [], []
    for i in range(dist.shape[0]):
        order = np.argsort(dist[i], kind='stable')
        keep = ~((g_pids[order] == q_pids[i]) & (g_cams[order] == q_cams[i]))
        hit = (g_pids[order] == q_pids[i])[keep]
        if not hit.any():
            continue
        ranks = np.flatnonzero(hit) + 1  # 1-based ranks of the matches
        k = np.arange(1, ranks.shape[0] + 1)
        all_ap.append(np.mean(k / ranks))
        all_inp.append(ranks.shape[0] / ranks[-1])
        all_cmc.append((np.arange(1, max_rank + 1) >= ranks[0]).astype(float))
    return dict(
        cmc=np.mean(all_cmc, axis=0),
        mAP=float(np.mean(all_ap)),
        mINP=float(np.mean(all_inp)),
        num_valid_queries=len(all_ap))


def sklearn_style_ap(relevant, score):
    """AP as sklearn defines it: sum_n (R_n - R_{n-1}) P_n over thresholds."""
    order = np.argsort(-score, kind='stable')
    rel = relevant[order].astype(float)
    tp = np.cumsum(rel)
    precision = tp / np.arange(1, rel.shape[0] + 1)
    recall = tp / rel.sum()
    prev = np.concatenate([[0.0], recall[:-1]])
    return float(np.sum((recall - prev) * precision))


def random_case(rng, num_q, num_g, num_ids, num_cams, dtype=np.float64):
    q_pids = rng.integers(0, num_ids, num_q)
    g_pids = rng.integers(0, num_ids, num_g)
    q_cams = rng.integers(0, num_cams, num_q)
    g_cams = rng.integers(0, num_cams, num_g)
    dist = rng.random((num_q, num_g)).astype(dtype)
    return dist, q_pids, g_pids, q_cams, g_cams


def assert_same(out, ref):
    np.testing.assert_allclose(out['cmc'], ref['cmc'], rtol=0, atol=1e-12)
    assert out['mAP'] == pytest.approx(ref['mAP'], abs=1e-12)
    assert out['mINP'] == pytest.approx(ref['mINP'], abs=1e-12)
    assert out['num_valid_queries'] == ref['num_valid_queries']


def hand_case():
    # gallery:   g0     g1     g2     g3     g4     g5
    g_pids = np.array([1, 2, 1, 3, 1, 2])
    g_cams = np.array([0, 1, 1, 0, 2, 2])
    q_pids = np.array([1, 2, 3])
    q_cams = np.array([0, 1, 0])
    dist = np.array([
        [0.1, 0.2, 0.3, 0.4, 0.5, 0.6],
        [0.9, 0.05, 0.3, 0.2, 0.8, 0.1],
        [0.5, 0.4, 0.3, 0.2, 0.1, 0.0],
    ])
    return dist, q_pids, g_pids, q_cams, g_cams


def test_hand_computed():
    # q0 (id 1, cam 0): g0 is junk (same id and camera) and is removed; the
    #   filtered list is g1(-) g2(+) g3(-) g4(+) g5(-): matches at ranks 2
    #   and 4 -> AP = (1/2 + 2/4) / 2 = 0.5, INP = 2 / 4 = 0.5.
    # q1 (id 2, cam 1): g1 is junk; g5 (0.1) is first -> AP = INP = 1.
    # q2 (id 3, cam 0): its only same-id item g3 is junk -> skipped.
    # CMC: rank 1 -> 1/2, rank >= 2 -> 1.
    out = evaluate_rank(*hand_case(), max_rank=10)
    assert out['num_valid_queries'] == 2
    assert out['mAP'] == pytest.approx(0.75)
    assert out['mINP'] == pytest.approx(0.75)
    # max_rank (10) > gallery size (6): padded with the last value
    np.testing.assert_allclose(out['cmc'], [0.5] + [1.0] * 9)
    assert out['cmc'].shape == (10, )
    assert_same(out, loop_reference(*hand_case(), max_rank=10))


def test_same_camera_match_is_not_a_hit():
    dist, q_pids, g_pids, q_cams, g_cams = hand_case()
    # if g0 (junk for q0) counted, q0 would have Rank-1; it must not
    out = evaluate_rank(dist[:1], q_pids[:1], g_pids, q_cams[:1], g_cams,
                        max_rank=3)
    np.testing.assert_allclose(out['cmc'], [0.0, 1.0, 1.0])
    assert out['mAP'] == pytest.approx(0.5)


def test_torch_inputs_and_int_distances():
    dist, q_pids, g_pids, q_cams, g_cams = hand_case()
    out = evaluate_rank(
        torch.from_numpy(dist), torch.from_numpy(q_pids),
        torch.from_numpy(g_pids), torch.from_numpy(q_cams),
        torch.from_numpy(g_cams), max_rank=10)
    assert out['mAP'] == pytest.approx(0.75)
    ranks = np.argsort(np.argsort(dist, axis=1), axis=1)  # integer distances
    out = evaluate_rank(ranks, q_pids, g_pids, q_cams, g_cams, max_rank=10)
    assert out['mAP'] == pytest.approx(0.75)


def test_errors():
    dist, q_pids, g_pids, q_cams, g_cams = hand_case()
    with pytest.raises(ValueError, match='No query has a valid match'):
        evaluate_rank(dist[2:], q_pids[2:], g_pids, q_cams[2:], g_cams)
    with pytest.raises(ValueError, match='gallery_pids'):
        evaluate_rank(dist, q_pids, g_pids[:-1], q_cams, g_cams)
    with pytest.raises(ValueError, match='2-D'):
        evaluate_rank(dist[0], q_pids, g_pids, q_cams, g_cams)
    with pytest.raises(ValueError, match='max_rank'):
        evaluate_rank(dist, q_pids, g_pids, q_cams, g_cams, max_rank=0)
    bad = dist.copy()
    bad[0, 3] = np.nan
    with pytest.raises(ValueError, match='finite'):
        evaluate_rank(bad, q_pids, g_pids, q_cams, g_cams)


@pytest.mark.parametrize('strategy', ['auto', 'sparse', 'dense'])
@pytest.mark.parametrize('dtype', [np.float32, np.float64])
def test_equals_loop_reference(monkeypatch, strategy, dtype):
    if strategy == 'sparse':
        monkeypatch.setattr(rank_module, '_SPARSE_COST', 0.0)
    elif strategy == 'dense':
        monkeypatch.setattr(rank_module, '_SPARSE_COST', 1e30)
    rng = np.random.default_rng(0)
    for trial in range(12):
        case = random_case(rng, 40, 300, 15, 4, dtype)
        if trial % 3 == 2:  # heavy ties: both sides break them by index
            case = (np.round(case[0] * 4).astype(dtype), ) + case[1:]
        out = evaluate_rank(*case, max_rank=20,
                            max_memory_mb=0.05 if trial % 2 else 256)
        assert_same(out, loop_reference(*case, max_rank=20))


def test_ap_matches_sklearn_definition():
    rng = np.random.default_rng(1)
    dist, q_pids, g_pids, q_cams, g_cams = random_case(rng, 30, 200, 8, 3)
    aps = []
    for i in range(30):
        keep = ~((g_pids == q_pids[i]) & (g_cams == q_cams[i]))
        relevant = (g_pids == q_pids[i])[keep]
        if relevant.any():
            aps.append(sklearn_style_ap(relevant, -dist[i][keep]))
    out = evaluate_rank(dist, q_pids, g_pids, q_cams, g_cams)
    assert out['num_valid_queries'] == len(aps)
    assert out['mAP'] == pytest.approx(np.mean(aps), abs=1e-12)



def loop_average_precisions(dist, q_pids, g_pids, q_cams, g_cams):
    """Per-query AP of :func:`loop_reference` (NaN without a match)."""
    aps = np.full(dist.shape[0], np.nan)
    for i in range(dist.shape[0]):
        order = np.argsort(dist[i], kind='stable')
        keep = ~((g_pids[order] == q_pids[i]) & (g_cams[order] == q_cams[i]))
        ranks = np.flatnonzero((g_pids[order] == q_pids[i])[keep]) + 1
        if ranks.size:
            aps[i] = np.mean(np.arange(1, ranks.size + 1) / ranks)
    return aps


@pytest.mark.parametrize('dtype', [np.float32, np.float64])
@pytest.mark.parametrize('ties', [False, True])
def test_average_precisions_per_query(dtype, ties):
    rng = np.random.default_rng(3)
    for trial in range(6):
        case = random_case(rng, 25, 120, 6, 3, dtype)
        if ties:
            case = (np.round(case[0] * 3).astype(dtype), ) + case[1:]
        budget = 0.02 if trial % 2 else 256
        aps = average_precisions(*case, max_memory_mb=budget)
        assert aps.dtype == np.float64 and aps.shape == (25, )
        np.testing.assert_allclose(aps, loop_average_precisions(*case),
                                   rtol=0, atol=1e-12)  # NaN where NaN
        # evaluate_rank's mAP is their mean over the valid queries, exactly
        out = evaluate_rank(*case, max_memory_mb=budget)
        valid = ~np.isnan(aps)
        assert valid.sum() == out['num_valid_queries']
        assert float(aps[valid].mean()) == out['mAP']


def test_average_precisions_by_hand_and_without_valid_queries():
    dist, q_pids, g_pids, q_cams, g_cams = hand_case()
    np.testing.assert_allclose(average_precisions(*hand_case()),
                               [0.5, 1.0, np.nan])  # see test_hand_computed
    # query 2 (id 3): its only gallery item of id 3 is from its camera
    aps = average_precisions(dist[2:], q_pids[2:], g_pids, q_cams[2:], g_cams)
    assert aps.shape == (1, ) and np.isnan(aps[0])
    with pytest.raises(ValueError, match='gallery_pids'):
        average_precisions(dist, q_pids, g_pids[:-1], q_cams, g_cams)


def test_perfect_ranking():
    rng = np.random.default_rng(2)
    _, q_pids, g_pids, q_cams, g_cams = random_case(rng, 20, 100, 5, 3)
    # every other-camera match closer than everything else
    match = q_pids[:, None] == g_pids[None, :]
    dist = np.where(match, 0.0, 1.0) + 0.01 * rng.random((20, 100))
    out = evaluate_rank(dist, q_pids, g_pids, q_cams, g_cams)
    np.testing.assert_allclose(out['cmc'], 1.0)
    assert out['mAP'] == pytest.approx(1.0)
    assert out['mINP'] == pytest.approx(1.0)


@st.composite
def untied_cases(draw):
    num_q = draw(st.integers(1, 6))
    num_g = draw(st.integers(2, 25))
    num_ids = draw(st.integers(1, 4))
    num_cams = draw(st.integers(1, 3))
    seed = draw(st.integers(0, 2**31))
    rng = np.random.default_rng(seed)
    case = random_case(rng, num_q, num_g, num_ids, num_cams)
    # untied: a random permutation of distinct values per row
    dist = np.argsort(rng.random((num_q, num_g)), axis=1).astype(float)
    return (dist, ) + case[1:] + (rng, )


@settings(max_examples=60, deadline=None)
@given(untied_cases())
def test_properties(case):
    dist, q_pids, g_pids, q_cams, g_cams, rng = case
    try:
        out = evaluate_rank(dist, q_pids, g_pids, q_cams, g_cams, max_rank=8)
    except ValueError:
        # only allowed when no query has a valid match
        valid = ((q_pids[:, None] == g_pids[None]) &
                 (q_cams[:, None] != g_cams[None])).any()
        assert not valid
        return
    cmc = out['cmc']
    assert cmc.shape == (8, )
    assert np.all(np.diff(cmc) >= 0) and 0 <= cmc[0] and cmc[-1] <= 1
    assert 0 < out['mAP'] <= 1 and 0 < out['mINP'] <= 1
    # invariant to the order of the gallery (distances are untied)
    perm = rng.permutation(dist.shape[1])
    permuted = evaluate_rank(dist[:, perm], q_pids, g_pids[perm], q_cams,
                             g_cams[perm], max_rank=8)
    assert_same(permuted, out)
    assert_same(out, loop_reference(dist, q_pids, g_pids, q_cams, g_cams, 8))

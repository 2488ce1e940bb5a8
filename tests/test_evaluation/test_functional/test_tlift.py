import math

import numpy as np
import pytest

from mmreid_gs.evaluation.functional import tlift


def loop_reference(S, qc, gc, qt, gt, tau=100, sigma=200, K=10, alpha=0.2):
    """Per-query loop over co-occurring queries and gallery cameras."""
    weight = np.zeros(S.shape)
    for i in range(S.shape[0]):
        co = np.flatnonzero((qc == qc[i]) & (np.abs(qt - qt[i]) < tau))
        for c in np.unique(gc):
            gi = np.flatnonzero(gc == c)
            sub = S[np.ix_(co, gi)]
            flat = np.sort(sub, axis=None)
            thr = flat[-K] if flat.size > K else flat[0]
            pivot_time = gt[gi][np.nonzero(sub >= thr)[1]]
            dt = gt[gi][:, None] - pivot_time[None, :]
            weight[i, gi] = np.exp(-dt**2 / sigma**2).mean(axis=1)
    return (weight + alpha) * S


def toy():
    # queries all in camera 0: q0 (t=0) and q1 (t=50) co-occur (tau=100),
    # q2 (t=1000) is alone; gallery in camera 1 at t = 100, 300, 5000
    scores = np.array([[0.9, 0.1, 0.2], [0.3, 0.8, 0.1], [0.1, 0.2, 0.7]])
    return (scores, np.zeros(3, int), np.ones(3, int), np.array([0, 50, 1000]),
            np.array([100, 300, 5000]))


def test_hand_computed_k1():
    # K=1: the pivot of q0 and q1 is their best entry, 0.9 at g0 (t=100):
    # weights exp(-(dt/200)^2) = [1, e^-1, ~0]; q2's pivot is g2 (t=5000):
    # weights [~0, ~0, 1]. lifted = (weight + 0.2) * score.
    out = tlift(*toy(), tau=100, sigma=200, K=1, alpha=0.2)
    e = math.exp(-1)
    expected = np.array([[1.2 * 0.9, (e + 0.2) * 0.1, 0.2 * 0.2],
                         [1.2 * 0.3, (e + 0.2) * 0.8, 0.2 * 0.1],
                         [0.2 * 0.1, 0.2 * 0.2, 1.2 * 0.7]])
    np.testing.assert_allclose(out, expected, rtol=1e-6, atol=1e-9)


def test_hand_computed_k2():
    # K=2: pivots of q0/q1 are 0.9 (g0, t=100) and 0.8 (g1, t=300): weight of
    # g0 and g1 = (1 + e^-1) / 2; q2 alone has 3 entries > K=2: its top two
    # are g2 (t=5000) and g1 (t=300).
    out = tlift(*toy(), K=2, alpha=0.0)
    w = (1 + math.exp(-1)) / 2
    np.testing.assert_allclose(out[0], [w * 0.9, w * 0.1, 0.0], atol=1e-7)
    np.testing.assert_allclose(out[1], [w * 0.3, w * 0.8, 0.0], atol=1e-7)
    w2 = np.array([math.exp(-(200 / 200)**2), 1.0, 0.0]) / 2 + np.array(
        [0.0, 0.0, 0.5])  # g0: near g1's pivot only; g2: its own pivot
    np.testing.assert_allclose(out[2], w2 * toy()[0][2], atol=1e-7)


def test_equals_loop_reference():
    rng = np.random.default_rng(0)
    for trial in range(40):
        nq, ng = rng.integers(1, 25), rng.integers(1, 40)
        cams = rng.integers(1, 4)
        args = (rng.integers(0, cams, nq), rng.integers(0, cams, ng),
                rng.integers(0, 600, nq).astype(float),
                rng.integers(0, 600, ng).astype(float))
        if trial % 2:
            scores = rng.random((nq, ng))
        else:  # ties around the K-th value
            scores = rng.integers(0, 3, (nq, ng)).astype(float)
        K = int(rng.integers(1, 12))
        tau = float(rng.choice([1, 80, 1000]))
        out = tlift(scores, *args, tau=tau, sigma=150, K=K, alpha=0.1)
        ref = loop_reference(scores, *args, tau=tau, sigma=150, K=K,
                             alpha=0.1)
        np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-6)


def test_float32_and_errors():
    scores, qc, gc, qt, gt = toy()
    out = tlift(scores.astype(np.float32), qc, gc, qt, gt)
    assert out.dtype == np.float32 and out.shape == (3, 3)
    with pytest.raises(ValueError, match='gallery_times'):
        tlift(scores, qc, gc, qt, gt[:2])
    with pytest.raises(ValueError, match='tau'):
        tlift(scores, qc, gc, qt, gt, tau=0)
    with pytest.raises(ValueError, match='K'):
        tlift(scores, qc, gc, qt, gt, K=0)

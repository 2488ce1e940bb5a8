import numpy as np
import pytest
import torch

from mmreid_gs.evaluation.functional import (EmbeddingDistance,
                                             cluster_quality,
                                             dbscan_pseudo_labels,
                                             jaccard_distance,
                                             jaccard_neighbors)


def transcription(dist, k1, k2):
    """The issue's description, line by line (dense, loops)."""
    dist = np.asarray(dist, dtype=np.float64)
    n = len(dist)
    rank = np.argsort(dist, axis=1, kind='stable')[:, :k1]

    def recip(i, k):
        fwd = rank[i, :k + 1]
        return np.array([j for j in fwd if i in rank[j, :k + 1]],
                        dtype=np.int64)

    h = int(np.round(k1 / 2))
    V = np.zeros((n, n))
    for i in range(n):
        r = recip(i, k1)
        expanded = r
        for c in r:
            rc = recip(c, h)
            if len(np.intersect1d(rc, r)) > 2 / 3 * len(rc):
                expanded = np.append(expanded, rc)
        expanded = np.unique(expanded)
        w = np.exp(-dist[i, expanded])
        V[i, expanded] = w / w.sum()
    if k2 != 1:
        V = np.stack([V[rank[i, :k2]].mean(axis=0) for i in range(n)])
    m = np.minimum(V[:, None], V[None]).sum(axis=2)
    jac = 1 - m / (2 - m)
    jac[jac < 0] = 0
    return jac


def features(rng, n, d=6, groups=None):
    centres = 2 * rng.standard_normal((groups or max(2, n // 6), d))
    x = centres[rng.integers(0, len(centres), n)] + rng.standard_normal(
        (n, d))
    return x


@pytest.mark.parametrize('kind', ['cos', 'ties', 'asym'])
def test_equals_transcription(kind):
    rng = np.random.default_rng(1)
    for n, k1, k2 in [(50, 30, 6), (40, 7, 3), (33, 12, 1), (20, 30, 8)]:
        if kind == 'cos':
            x = features(rng, n)
            x /= np.linalg.norm(x, axis=1, keepdims=True)
            dist = np.maximum(2 - 2 * x @ x.T, 0)
        elif kind == 'ties':  # few distinct values: many ties
            dist = rng.integers(0, 4, (n, n)).astype(np.float64)
            dist = dist + dist.T
        else:
            dist = rng.random((n, n))
        out = jaccard_distance(dist, k1=k1, k2=k2)
        ref = transcription(dist.astype(np.float32), k1, k2)
        assert out.shape == (n, n) and out.dtype == np.float32
        np.testing.assert_allclose(out, ref, atol=2e-6)


def test_hand_checked_pair():
    # two tight pairs far apart; k1=2, k2=1: R(i) = {i, its twin};
    # V[0] = softmax(-[0, 0.1]) over {0, 1}; V[1] likewise reversed.
    d = np.array([[0, .1, 5, 5], [.1, 0, 5, 5], [5, 5, 0, .2],
                  [5, 5, .2, 0]])
    out = jaccard_distance(d, k1=2, k2=1)
    a = 1 / (1 + np.exp(-0.1))  # weight of self
    m = 2 * (1 - a)  # sum of minima of [a, 1-a] and [1-a, a]
    assert out[0, 1] == pytest.approx(1 - m / (2 - m), abs=1e-6)
    assert out[0, 0] == 0 and out[0, 2] == 1 and out[2, 0] == 1


def test_some_reciprocal_sets_smaller_than_k1():
    # a hub row: k1 = 10 on 12 points with one outlier far away
    rng = np.random.default_rng(3)
    x = np.concatenate([rng.standard_normal((11, 3)), [[40., 40., 40.]]])
    dist = np.linalg.norm(x[:, None] - x[None], axis=-1)
    out = jaccard_distance(torch.from_numpy(dist), k1=10, k2=2)
    np.testing.assert_allclose(out, transcription(dist.astype(np.float32),
                                                  10, 2), atol=2e-6)


def test_sparse_neighbours_and_embeddings_match_dense():
    rng = np.random.default_rng(4)
    x = features(rng, 120, groups=10)
    emb = EmbeddingDistance(x)
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    dense = jaccard_distance(np.maximum(2 - 2 * xn @ xn.T, 0), k1=20, k2=6)
    graph = jaccard_neighbors(emb, k1=20, k2=6, max_distance=0.6)
    expect = dense <= 0.6
    coo = graph.tocoo()
    stored = np.zeros_like(expect)
    stored[coo.row, coo.col] = True
    np.testing.assert_array_equal(stored, expect)  # diagonal zeros too
    np.testing.assert_allclose(coo.data, dense[coo.row, coo.col], atol=1e-5)
    # DBSCAN: the same clusters from the sparse graph and the dense matrix
    lab_d = dbscan_pseudo_labels(dense, eps=0.6, min_samples=4)
    lab_s = dbscan_pseudo_labels(graph, eps=0.6, min_samples=4)
    np.testing.assert_array_equal(lab_d, lab_s)
    assert lab_d.max() >= 1


def test_inference_mode_and_errors():
    d = np.random.default_rng(0).random((6, 6))
    with torch.inference_mode():
        out = jaccard_distance(torch.from_numpy(d), k1=3, k2=2)
    np.testing.assert_allclose(out, jaccard_distance(d, k1=3, k2=2))
    with pytest.raises(ValueError, match='square'):
        jaccard_distance(np.ones((3, 4)))
    with pytest.raises(ValueError, match='non-negative'):
        jaccard_distance(-d)
    with pytest.raises(ValueError, match='k1'):
        jaccard_distance(d, k1=0)
    with pytest.raises(ValueError, match='max_distance'):
        jaccard_neighbors(d, max_distance=1.0)
    with pytest.raises(ValueError, match='all zeros'):
        EmbeddingDistance(np.zeros((2, 3)))


def test_dbscan_labels_and_quality():
    # three points at 0 distance to each other, one far: min_samples=3
    d = np.ones((5, 5))
    d[:3, :3] = 0.1
    np.fill_diagonal(d, 0)
    d[3, 4] = d[4, 3] = 0.2
    labels = dbscan_pseudo_labels(d, eps=0.5, min_samples=3)
    assert labels.tolist() == [0, 0, 0, -1, -1]
    kept = dbscan_pseudo_labels(d, eps=0.5, min_samples=3,
                                keep_outliers=True)
    assert kept.tolist() == [0, 0, 0, 1, 2]
    q = cluster_quality(labels, [7, 7, 8, 9, 9])
    assert q['num_clusters'] == 1 and q['num_outliers'] == 2
    assert q['purity'] == pytest.approx(2 / 3)
    perfect = cluster_quality([0, 0, 1, 1], [5, 5, 3, 3])
    assert perfect['nmi'] == pytest.approx(1) and perfect['ari'] == 1
    assert perfect['purity'] == 1
    with pytest.raises(ValueError, match='min_samples'):
        dbscan_pseudo_labels(d, min_samples=0)

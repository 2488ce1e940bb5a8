import numpy as np
import pytest
import torch

from mmreid_gs.evaluation.functional import re_ranking


def dense_reference(dist, num_query, k1=20, k2=6, lambda_value=0.3):
    """Compact dense k-reciprocal re-ranking (loops, dense V)."""
    dist = np.asarray(dist, dtype=np.float32)
    col_max = dist.max(axis=0)
    col_max[col_max == 0] = 1
    orig = np.transpose(dist / col_max)
    n = orig.shape[0]
    rank = np.argsort(orig, axis=1, kind='stable')
    half = int(np.around(k1 / 2.)) + 1

    def reciprocal(i, k):
        fwd = rank[i, :k]
        return fwd[(rank[fwd, :k] == i).any(axis=1)]

    V = np.zeros_like(orig)
    for i in range(n):
        r = reciprocal(i, k1 + 1)
        expansion = r
        for c in r:
            rc = reciprocal(c, half)
            if len(np.intersect1d(rc, r)) > 2. / 3 * len(rc):
                expansion = np.append(expansion, rc)
        expansion = np.unique(expansion)
        w = np.exp(-orig[i, expansion])
        V[i, expansion] = w / w.sum()
    if k2 != 1:
        V = np.stack([V[rank[i, :k2]].mean(axis=0) for i in range(n)])
    q = num_query
    mins = np.minimum(V[:q, None, :], V[None, q:, :]).sum(axis=2)
    jaccard = 1 - mins / (2 - mins)
    return jaccard * (1 - lambda_value) + orig[:q, q:] * lambda_value


def make_dist(rng, n, kind='euclid'):
    if kind == 'euclid':
        centers = 3 * rng.standard_normal((max(2, n // 5), 8))
        x = centers[rng.integers(0, centers.shape[0], n)]
        x = x + rng.standard_normal((n, 8))
        return np.linalg.norm(x[:, None] - x[None], axis=-1)
    if kind == 'asym':
        return rng.random((n, n))
    return rng.integers(0, 4, (n, n)).astype(float)  # many ties


@pytest.mark.parametrize('kind', ['euclid', 'asym', 'ties'])
def test_equals_dense_reference(kind):
    rng = np.random.default_rng(0)
    for n, q, k1, k2, lam in [(60, 15, 20, 6, 0.3), (45, 20, 7, 1, 0.0),
                              (30, 5, 5, 3, 0.5), (80, 30, 10, 4, 0.3)]:
        dist = make_dist(rng, n, kind)
        out = re_ranking(dist, q, k1=k1, k2=k2, lambda_value=lam)
        ref = dense_reference(dist, q, k1=k1, k2=k2, lambda_value=lam)
        assert out.shape == (q, n - q) and out.dtype == np.float32
        np.testing.assert_allclose(out, ref, rtol=0, atol=1e-5)


def test_lambda_one_is_normalised_original():
    rng = np.random.default_rng(1)
    dist = make_dist(rng, 40)
    out = re_ranking(torch.from_numpy(dist), 10, lambda_value=1.0)
    d32 = dist.astype(np.float32)
    expected = (d32 / d32.max(axis=0)).T[:10, 10:]
    np.testing.assert_allclose(out, expected, rtol=0, atol=1e-7)


def test_k1_larger_than_data():
    rng = np.random.default_rng(2)
    dist = make_dist(rng, 12)
    out = re_ranking(dist, 4, k1=50, k2=20)
    ref = dense_reference(dist, 4, k1=50, k2=20)
    assert out.shape == (4, 8)
    np.testing.assert_allclose(out, ref, atol=1e-5)
    assert np.isfinite(out).all()


def test_output_range():
    # Jaccard distance and normalised distance are both in [0, 1]
    rng = np.random.default_rng(3)
    dist = make_dist(rng, 50)
    out = re_ranking(dist, 10)
    assert ((out >= 0) & (out <= 1 + 1e-6)).all()


def test_errors():
    good = np.ones((4, 4))
    with pytest.raises(ValueError, match='square'):
        re_ranking(np.ones((4, 5)), 2)
    with pytest.raises(ValueError, match='non-negative'):
        re_ranking(-good, 2)
    bad = good.copy()
    bad[1, 2] = np.inf
    with pytest.raises(ValueError, match='finite'):
        re_ranking(bad, 2)
    with pytest.raises(ValueError, match='num_query'):
        re_ranking(good, 4)
    with pytest.raises(ValueError, match='num_query'):
        re_ranking(good, 0)
    with pytest.raises(ValueError, match='lambda_value'):
        re_ranking(good, 2, lambda_value=1.5)
    with pytest.raises(ValueError, match='k1'):
        re_ranking(good, 2, k1=0)


def test_gallery_permutation_permutes_the_columns():
    """Re-ranking does not depend on the order of the gallery: permuting the
    gallery items (rows and columns of the input) permutes the output
    columns the same way."""
    rng = np.random.default_rng(3)
    nq, ng = 6, 30
    dist = make_dist(rng, nq + ng)
    out = re_ranking(dist, nq, k1=5, k2=3, lambda_value=0.3)
    perm = rng.permutation(ng)
    order = np.concatenate([np.arange(nq), nq + perm])
    out_perm = re_ranking(dist[np.ix_(order, order)], nq, k1=5, k2=3,
                          lambda_value=0.3)
    np.testing.assert_allclose(out_perm, out[:, perm], rtol=0, atol=1e-5)


def test_symmetric_roles_of_two_identical_queries():
    """Two queries with identical distance rows get identical re-ranked
    rows (symmetry of the inputs carries to the output)."""
    rng = np.random.default_rng(4)
    n = 25
    dist = make_dist(rng, n)
    # make item 1 an exact copy of item 0 (both queries)
    dist[1, :] = dist[0, :]
    dist[:, 1] = dist[:, 0]
    dist[0, 1] = dist[1, 0] = dist[0, 0] = dist[1, 1] = 0.0
    out = re_ranking(dist, 2, k1=4, k2=1, lambda_value=0.3)
    np.testing.assert_allclose(out[0], out[1], rtol=0, atol=1e-6)


def test_hand_checkable_two_clusters():
    """Two well separated clusters of 4 points, k1 = 2: a k-reciprocal set
    (k1 + 1 = 3 nearest, self included) never leaves its cluster, so with
    lambda = 0 the distance to every item of the other cluster is exactly 1
    (no shared neighbour), while each query shares neighbours with its own
    cluster (distance < 1)."""
    pts = np.array([0.0, 0.1, 0.2, 10.0, 10.1, 10.2, 0.05, 10.05])
    dist = np.abs(pts[:, None] - pts[None])
    out = re_ranking(dist, 2, k1=2, k2=1, lambda_value=0.0)
    # queries: 0.0 (cluster a) and 0.1 (cluster a); gallery: 0.2, 10.0,
    # 10.1, 10.2, 0.05, 10.05 -> cluster a columns 0 and 4
    own, other = out[:, [0, 4]], out[:, [1, 2, 3, 5]]
    assert (own.min(axis=1) < 1).all()
    assert ((out >= 0) & (out <= 1)).all()
    np.testing.assert_allclose(other, 1.0, atol=1e-6)

"""Look-alike share of class-graph neighbours and its random baseline."""
import itertools

import numpy as np
import pytest

from mmreid_gs.evaluation.functional import (graph_family_share,
                                             neighbor_family_share,
                                             random_family_share)


def test_share_by_hand():
    # families: 0 0 0 1 1 -1
    fams = [0, 0, 0, 1, 1, -1]
    nbrs = [[1, 3], [2, 0], [5, 4], [4, 0], [0, 1], [0, 1]]
    share = neighbor_family_share(nbrs, fams)
    np.testing.assert_allclose(share[:5], [.5, 1., 0., .5, 0.])
    assert np.isnan(share[5])
    rand = random_family_share(fams)
    np.testing.assert_allclose(rand[:5], [2 / 5, 2 / 5, 2 / 5, 1 / 5, 1 / 5])
    assert np.isnan(rand[5])
    out = graph_family_share(nbrs, fams)
    assert out['num_classes'] == 5
    assert out['share'] == pytest.approx(2 / 5)
    assert out['random'] == pytest.approx((3 * 2 / 5 + 2 * 1 / 5) / 5)
    # at most 2 (family 0) or 1 (family 1) of the 2 neighbours
    assert out['best'] == pytest.approx((3 * 1. + 2 * .5) / 5)


def test_random_share_is_the_exact_expectation():
    # enumerate every choice of k distinct neighbours among the others
    fams = np.array([0, 0, 0, 1, 1, 2, 3])
    C, k = len(fams), 3
    for c in range(C):
        others = [o for o in range(C) if o != c]
        shares = [np.mean(fams[list(s)] == fams[c])
                  for s in itertools.combinations(others, k)]
        assert random_family_share(fams)[c] == pytest.approx(np.mean(shares))


def test_perfect_graph_and_errors():
    fams = np.repeat(np.arange(5), 4)  # families of 4, 3 neighbours each
    nbrs = np.array([[j for j in range(20) if j // 4 == i // 4 and j != i]
                     for i in range(20)])
    out = graph_family_share(nbrs, fams)
    assert out['share'] == 1.0 == out['best']
    assert out['random'] == pytest.approx(3 / 19)
    with pytest.raises(ValueError, match='neighbour ids'):
        neighbor_family_share([[0, 25]], fams)
    with pytest.raises(ValueError, match='entries'):
        neighbor_family_share(nbrs, fams[:10])
    unknown = graph_family_share(nbrs, np.full(20, -1))
    assert unknown['num_classes'] == 0 and np.isnan(unknown['share'])

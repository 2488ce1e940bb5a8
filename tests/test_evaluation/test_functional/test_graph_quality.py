"""Look-alike share of class-graph neighbours and its random baseline."""
import itertools

import numpy as np
import pytest

from mmreid_gs.evaluation.functional import (graph_cross_group_share,
                                             graph_family_share,
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


def test_cross_group_share_by_hand_and_random_expectation():
    # groups (sources) 0 0 0 1 1: class 0 -> 1 (same), 3 (other): 1/2 ...
    groups = [0, 0, 0, 1, 1]
    nbrs = [[1, 3], [2, 0], [3, 4], [4, 0], [0, 1]]
    out = graph_cross_group_share(nbrs, groups)
    assert out['num_classes'] == 5
    assert out['share'] == pytest.approx((.5 + 0 + 1 + .5 + 1) / 5)
    # random neighbours: (C - n_g) / (C - 1) = 2/4 for group 0, 3/4 for 1
    assert out['random'] == pytest.approx((3 * 2 / 4 + 2 * 3 / 4) / 5)
    # ... the exact expectation over every choice of k distinct neighbours
    grp = np.array(groups)
    expected = np.mean([
        np.mean([np.mean(grp[list(s)] != grp[c])
                 for s in itertools.combinations(
                     [o for o in range(5) if o != c], 2)])
        for c in range(5)
    ])
    assert out['random'] == pytest.approx(expected)
    # one group: never another source; no neighbours: NaN
    assert graph_cross_group_share(nbrs, [0] * 5)['share'] == 0
    assert np.isnan(graph_cross_group_share(np.zeros((5, 0), int),
                                            groups)['share'])
    with pytest.raises(ValueError, match='entries'):
        graph_cross_group_share(nbrs, groups[:3])

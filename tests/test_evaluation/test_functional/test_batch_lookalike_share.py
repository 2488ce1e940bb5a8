"""batch_lookalike_share: the share of a batch's classes that meet a
look-alike (same family) in the batch, on hand-made batches."""
import numpy as np
import pytest

from mmreid_gs.evaluation.functional import (batch_lookalike_share,
                                             batch_lookalike_shares,
                                             random_batch_lookalike_share)

# families of labels 0..7: {0, 1, 2} {3, 4} {5} {6, 7}
FAMILIES = np.array([0, 0, 0, 1, 1, 2, 3, 3])


def test_hand_made_batches():
    batches = [
        # classes 0 1 3 5 (K = 2): 0 and 1 are look-alikes, 3 and 5 meet
        # none of theirs -> 2 / 4
        [0, 0, 1, 1, 3, 3, 5, 5],
        # 0 2 3 4: every class meets one -> 1
        [0, 2, 3, 4],
        # 5 6 0 3: none -> 0
        [5, 6, 0, 3],
        # 6 7 with a repeated 6 (repeats count once) -> 1
        [6, 6, 6, 7],
    ]
    shares = batch_lookalike_shares(batches, FAMILIES)
    np.testing.assert_allclose(shares, [0.5, 1., 0., 1.])
    assert batch_lookalike_share(batches, FAMILIES) == pytest.approx(2.5 / 4)
    # a [num_batches, B] array works as well
    assert batch_lookalike_share(np.array([[0, 1, 5, 6], [3, 4, 6, 7]]),
                                 FAMILIES) == pytest.approx((.5 + 1) / 2)


def test_unknown_families_are_left_out():
    fams = np.array([0, 0, -1, -1, 1])
    # class 2 and 3 (unknown) neither count nor make a look-alike: 0 1 of
    # known family 0 meet each other, 4 meets none -> 2 / 3
    assert batch_lookalike_shares([[0, 1, 2, 3, 4]], fams)[0] == \
        pytest.approx(2 / 3)
    # a batch of unknown classes only is NaN and left out of the mean
    shares = batch_lookalike_shares([[2, 3], [0, 1]], fams)
    assert np.isnan(shares[0]) and shares[1] == 1.
    assert batch_lookalike_share([[2, 3], [0, 1]], fams) == 1.
    assert np.isnan(batch_lookalike_share([[2, 3]], fams))


def test_bad_labels_name_the_range():
    with pytest.raises(ValueError, match=r'\[0, 8\)'):
        batch_lookalike_shares([[0, 8]], FAMILIES)
    with pytest.raises(ValueError, match='integers'):
        batch_lookalike_shares([[0]], [0.5])


def test_random_pk_expectation_matches_counting():
    # C = 8 classes, P = 3: a class of family {0, 1, 2} misses both of its
    # look-alikes with probability C(5, 2) / C(7, 2) = 10 / 21; family of 2:
    # C(6, 2) / C(7, 2) = 15 / 21; the lone class 5 never meets one.
    expected = (3 * (1 - 10 / 21) + 4 * (1 - 15 / 21) + 0) / 8
    assert random_batch_lookalike_share(FAMILIES, 3) == pytest.approx(
        expected)
    # and it is what uniformly random batches of 3 distinct classes give
    from itertools import combinations
    combos = [list(c) for c in combinations(range(8), 3)]
    assert batch_lookalike_share(combos, FAMILIES) == pytest.approx(expected)
    # 200 classes in families of 4, P = 8: about 10% (the demo's scale)
    fams = np.arange(200) // 4
    assert 0.09 < random_batch_lookalike_share(fams, 8) < 0.11
    with pytest.raises(ValueError, match='classes_per_batch'):
        random_batch_lookalike_share(FAMILIES, 9)

import math

import numpy as np
import pytest

from mmreid_gs.evaluation.functional import (format_fpr,
                                             pair_scores_and_labels,
                                             verification_rates)


def test_small_case():
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.0])
    labels = np.array([1, 0, 1, 1, 0, 0, 1, 0, 0, 0], dtype=bool)
    # 6 negatives (0.8 0.5 0.4 0.2 0.1 0.0), 4 positives (0.9 0.7 0.6 0.3).
    # FPR 0.2: floor(1.2) = 1 false positive allowed -> threshold = 2nd
    # largest negative 0.5, accept > 0.5 -> TPR 3/4.
    # FPR 0.5: 3 allowed -> threshold 0.2 -> TPR 4/4.
    # FPR 0.1: none allowed -> threshold 0.8 -> TPR 1/4.
    out = verification_rates(scores, labels, fprs=(0.2, 0.5, 0.1))
    assert out['TPR@FPR=0.2'] == pytest.approx(0.75)
    assert out['threshold@FPR=0.2'] == pytest.approx(0.5)
    assert out['TPR@FPR=0.5'] == pytest.approx(1.0)
    assert out['threshold@FPR=0.5'] == pytest.approx(0.2)
    assert out['TPR@FPR=1e-1'] == pytest.approx(0.25)
    assert out['threshold@FPR=1e-1'] == pytest.approx(0.8)
    everything = verification_rates(scores, labels, fprs=(1.0, ))
    assert everything['TPR@FPR=1e0'] == 1.0
    assert everything['threshold@FPR=1e0'] == -math.inf


def test_matches_brute_force():
    rng = np.random.default_rng(0)
    scores = rng.standard_normal(5000)
    labels = rng.random(5000) < 0.1
    scores[labels] += 2
    out = verification_rates(scores, labels)
    neg, pos = scores[~labels], scores[labels]
    for f in (1e-2, 1e-3, 1e-4):
        thr = out[f'threshold@FPR={format_fpr(f)}']
        assert np.mean(neg > thr) <= f
        assert out[f'TPR@FPR={format_fpr(f)}'] == np.mean(pos > thr)


def test_pairs_and_errors():
    s, y = pair_scores_and_labels(
        np.arange(6.).reshape(2, 3), [1, 2], np.array([2, 1, 1]))
    np.testing.assert_array_equal(s, np.arange(6.))
    np.testing.assert_array_equal(y, [0, 1, 1, 1, 0, 0])
    with pytest.raises(ValueError, match='shape'):
        pair_scores_and_labels(np.zeros((3, 3)), [1, 2], [1, 2, 3])
    with pytest.raises(ValueError, match='negative pairs'):
        verification_rates([0.1, 0.2], [True, True])
    with pytest.raises(ValueError, match=r'\(0, 1\]'):
        verification_rates([0.1, 0.2], [True, False], fprs=(0, ))

"""Pair losses against hand-computed values."""
import math

import pytest
import torch

from mmreid_gs.models.losses import HardTripletLoss, PairwiseMatchingLoss


def _bce(s, y):
    return -(y * math.log(1 / (1 + math.exp(-s))) +
             (1 - y) * math.log(1 - 1 / (1 + math.exp(-s))))


SCORES = torch.tensor([[9., 2., -1., 0.5],
                       [2., 9., 1.5, -2.],
                       [-1., 1.5, 9., 3.],
                       [0.5, -2., 3., 9.]])
LABELS = torch.tensor([0, 0, 1, 1])


def test_pairwise_matching_loss_hand_computed():
    loss, acc = PairwiseMatchingLoss()(SCORES, LABELS)
    rows = [
        _bce(2., 1) + _bce(-1., 0) + _bce(0.5, 0),
        _bce(2., 1) + _bce(1.5, 0) + _bce(-2., 0),
        _bce(-1., 0) + _bce(1.5, 0) + _bce(3., 1),
        _bce(0.5, 0) + _bce(-2., 0) + _bce(3., 1),
    ]  # diagonal excluded, summed per row
    assert loss.item() == pytest.approx(sum(rows) / 4, rel=1e-6)
    # min positive > max negative: rows 0 (2 > 0.5), 1 (2 > 1.5),
    # 2 (3 > 1.5), 3 (3 > 0.5)
    assert acc.item() == 1.0
    loss_w, _ = PairwiseMatchingLoss(loss_weight=0.5)(SCORES, LABELS)
    assert loss_w.item() == pytest.approx(loss.item() / 2)


def test_pairwise_accuracy_and_rows_without_positives():
    scores = SCORES.clone()
    scores[1, 2] = 2.5  # row 1: max neg 2.5 > min pos 2
    labels = torch.tensor([0, 0, 1, 2])  # rows 2, 3 have no positive
    loss, acc = PairwiseMatchingLoss()(scores, labels)
    assert acc.item() == pytest.approx(0.5)  # rows 0 (ok) and 1 (wrong)
    row3 = _bce(0.5, 0) + _bce(-2., 0) + _bce(3., 0)
    assert torch.isfinite(loss)
    assert loss.item() > row3 / 4
    _, acc = PairwiseMatchingLoss()(scores, torch.arange(4))
    assert acc.item() == 0.0


def test_hard_triplet_loss_hand_computed():
    loss, acc = HardTripletLoss(margin=2.)(SCORES, LABELS)
    # (min_pos, max_neg) per row: (2, .5), (2, 1.5), (3, 1.5), (3, .5)
    hinge = [max(0, 2 - (2 - .5)), max(0, 2 - (2 - 1.5)),
             max(0, 2 - (3 - 1.5)), max(0, 2 - (3 - .5))]
    assert loss.item() == pytest.approx(sum(hinge) / 4)
    assert acc.item() == 1.0
    scores = SCORES.clone().requires_grad_()
    loss, _ = HardTripletLoss(margin=16.)(scores, LABELS)
    assert loss.item() == pytest.approx(
        sum(16 - d for d in (1.5, .5, 1.5, 2.5)) / 4)
    loss.backward()
    assert scores.grad[0, 1] == pytest.approx(-0.25)  # hardest positive
    assert scores.grad[0, 3] == pytest.approx(0.25)  # hardest negative
    assert scores.grad[0, 2] == 0 and scores.grad[0, 0] == 0


def test_hard_triplet_no_valid_rows():
    scores = SCORES.clone().requires_grad_()
    loss, acc = HardTripletLoss()(scores, torch.arange(4))
    assert loss.item() == 0.0 and acc.item() == 0.0
    loss.backward()


def test_losses_reject_bad_shapes():
    with pytest.raises(ValueError, match='square'):
        PairwiseMatchingLoss()(torch.zeros(2, 3), torch.zeros(2))
    with pytest.raises(ValueError, match='3 labels'):
        HardTripletLoss()(torch.zeros(2, 2), torch.zeros(3))

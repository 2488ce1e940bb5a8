"""Pairwise matching loss (binary cross-entropy on all pairs of a batch)."""
from typing import Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from mmreid_gs.registry import MODELS
from ._utils import hardest_pairs, pair_masks, row_accuracy


@MODELS.register_module()
class PairwiseMatchingLoss(nn.Module):
    """Pairwise matching loss of QAConv-GS (paper Eq. 1).

    Binary cross-entropy with logits on the B x B score matrix of a
    mini-batch, target 1 for pairs of the same identity and 0 otherwise. The
    diagonal (self pairs) is excluded. Normalisation: the losses of the B-1
    pairs of each row are summed and the row sums are averaged over the B
    rows, i.e. ``loss = loss_weight / B * sum_i sum_{j != i} BCE(s_ij,
    y_ij)`` (the public QAConv code sums each row and averages over the
    batch; it keeps the diagonal, the paper does not).

    The pair accuracy of a row is 1 when its lowest positive score is above
    its highest negative score. Rows without a positive (an identity with a
    single image in the batch) or without a negative contribute to the loss
    but not to the accuracy; the accuracy is 0 when no row qualifies.

    Args:
        loss_weight (float): Weight of the loss. Defaults to 1.0.
    """

    def __init__(self, loss_weight: float = 1.0):
        super().__init__()
        self.loss_weight = loss_weight

    def forward(self, scores: torch.Tensor,
                labels: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Compute the loss and the pair accuracy.

        Args:
            scores (Tensor): [B, B] matching logits of all pairs of the batch
                (higher = more similar).
            labels (Tensor): [B] identity labels.

        Returns:
            tuple[Tensor, Tensor]: ``loss`` (scalar, weighted) and ``acc``
            (scalar in [0, 1], no gradient).
        """
        pos, neg = pair_masks(scores, labels)
        scores = scores.float()
        bce = F.binary_cross_entropy_with_logits(
            scores, pos.float(), reduction='none')
        off_diag = pos | neg
        loss = (bce * off_diag).sum(dim=1).mean() * self.loss_weight
        with torch.no_grad():
            min_pos, max_neg, valid = hardest_pairs(scores, pos, neg)
            acc = row_accuracy(min_pos > max_neg, valid)
        return loss, acc

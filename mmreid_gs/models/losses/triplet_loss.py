"""Batch-hard triplet loss on pair matching logits."""
from typing import Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from mmreid_gs.registry import MODELS
from ._utils import hardest_pairs, pair_masks, row_accuracy


@MODELS.register_module()
class HardTripletLoss(nn.Module):
    """Batch-hard triplet loss on the B x B matching logits.

    For each row (anchor) the hardest positive is the positive pair with the
    lowest score (diagonal excluded) and the hardest negative the negative
    pair with the highest score; the loss is the margin ranking hinge
    ``max(0, margin - (min_pos - max_neg))`` averaged over the rows that have
    both a positive and a negative (as the public QAConv 2.1 code, margin 16
    on logits). The accuracy of a row is ``min_pos >= max_neg``.

    Any similarity matrix works: QAConv logits, the cosine similarities of
    :class:`GlobalEmbeddingHead` (margin about 0.3) or negative Euclidean
    distances (then ``min_pos - max_neg = d_an - d_ap``, the usual
    ``max(0, margin + d_ap - d_an)``). With ``soft_margin=True`` the hinge is
    replaced by ``softplus(-(min_pos - max_neg))`` (Hermans et al. 2017),
    which has no margin.

    Args:
        margin (float): Margin between the hardest positive and negative
            scores. Defaults to 16.
        loss_weight (float): Weight of the loss. Defaults to 1.0.
        soft_margin (bool): Use the soft-margin form instead of the hinge
            (``margin`` is then ignored). Defaults to False.
    """

    def __init__(self,
                 margin: float = 16.,
                 loss_weight: float = 1.0,
                 soft_margin: bool = False):
        super().__init__()
        self.margin = margin
        self.loss_weight = loss_weight
        self.soft_margin = bool(soft_margin)

    def forward(self, scores: torch.Tensor,
                labels: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Compute the loss and the accuracy.

        Args:
            scores (Tensor): [B, B] matching logits (higher = more similar).
            labels (Tensor): [B] identity labels.

        Returns:
            tuple[Tensor, Tensor]: ``loss`` (scalar, weighted; 0 with a
            gradient path when no row has both a positive and a negative) and
            ``acc`` (scalar in [0, 1], no gradient).
        """
        pos, neg = pair_masks(scores, labels)
        scores = scores.float()
        min_pos, max_neg, valid = hardest_pairs(scores, pos, neg)
        if bool(valid.any()):
            gap = (min_pos - max_neg)[valid]
            if self.soft_margin:
                loss = F.softplus(-gap).mean()
            else:
                loss = F.relu(self.margin - gap).mean()
        else:
            loss = scores.sum() * 0.
        with torch.no_grad():
            acc = row_accuracy(min_pos >= max_neg, valid)
        return loss * self.loss_weight, acc

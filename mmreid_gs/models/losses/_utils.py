"""Helpers shared by the pair losses (not registered)."""
from typing import Tuple

import torch


def pair_masks(scores: torch.Tensor,
               labels: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Positive and negative pair masks of a square score matrix.

    Args:
        scores (Tensor): [B, B] logits of all pairs of a batch.
        labels (Tensor): [B] identity labels.

    Returns:
        tuple[Tensor, Tensor]: ``pos`` (same identity, diagonal excluded) and
        ``neg`` (different identity), both bool [B, B].

    Raises:
        ValueError: When the shapes do not match.
    """
    if scores.dim() != 2 or scores.size(0) != scores.size(1):
        raise ValueError('expected a square [B, B] score matrix, got shape '
                         f'{tuple(scores.shape)}')
    labels = labels.reshape(-1).to(scores.device)
    if labels.numel() != scores.size(0):
        raise ValueError(f'{labels.numel()} labels for a '
                         f'{tuple(scores.shape)} score matrix')
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(scores.size(0), dtype=torch.bool, device=scores.device)
    return same & ~eye, ~same


def hardest_pairs(
        scores: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Hardest positive / negative score of every row.

    Args:
        scores (Tensor): [B, B] logits (higher = more similar).
        pos (Tensor): [B, B] bool mask of positive pairs.
        neg (Tensor): [B, B] bool mask of negative pairs.

    Returns:
        tuple[Tensor, Tensor, Tensor]: ``min_pos`` [B] (lowest positive
        score), ``max_neg`` [B] (highest negative score) and ``valid`` [B]
        (bool: the row has at least one positive and one negative; the two
        scores of other rows are meaningless).
    """
    inf = torch.finfo(scores.dtype).max
    min_pos = scores.masked_fill(~pos, inf).amin(dim=1)
    max_neg = scores.masked_fill(~neg, -inf).amax(dim=1)
    valid = pos.any(dim=1) & neg.any(dim=1)
    return min_pos, max_neg, valid


def row_accuracy(correct: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Mean of ``correct`` over the ``valid`` rows (0 when none is valid)."""
    if not bool(valid.any()):
        return correct.new_zeros((), dtype=torch.float32)
    return correct[valid].float().mean()

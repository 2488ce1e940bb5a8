"""What the pairwise matching heads (:class:`QAConvHead`,
:class:`TransMatcherHead`) share: the dtype of their similarity GEMMs and
the dispatch of their training loss."""
from typing import Dict

import torch

from mmreid_gs.utils.thread_state import autocast_dtype, autocast_enabled


def pair_compute_dtype(feats: torch.Tensor,
                       cpu_autocast: bool = False) -> torch.dtype:
    """dtype of a pairwise head's similarity GEMM (and projections).

    Args:
        feats (Tensor): The features to match.
        cpu_autocast (bool): Whether CPU autocast applies too (matching:
            yes; the training loss: no, no mixed precision on the CPU).

    Returns:
        torch.dtype: the autocast dtype on CUDA (and on the CPU with
        ``cpu_autocast``), else the features' 16/64-bit dtype, else
        float32.
    """
    device = feats.device.type
    if (device == 'cuda' or (device == 'cpu' and cpu_autocast)) and \
            autocast_enabled(device):
        return autocast_dtype(device)
    if feats.dtype in (torch.float16, torch.bfloat16, torch.float64):
        return feats.dtype
    return torch.float32


class PairLossMixin:
    """The training loss of a pairwise matching head.

    The head provides ``loss_module``, ``match``, ``_check_shape(feats,
    name)`` and ``_batch_pair_scores(feats) -> [B, B]`` (all pairs of the
    batch with the public layer stack: BatchNorm over the B x B pairs in
    training mode, diagonal included, as the public code).
    """

    def loss(self, feats: torch.Tensor,
             labels: torch.Tensor) -> Dict[str, torch.Tensor]:
        """Pair loss on the B x B logits of a mini-batch.

        The loss module decides which pairs count and returns ``(loss,
        acc)``, the rule of every loss module (docs/architecture.md,
        "Plugging in a new head"). A loss module with ``needs_matcher =
        True`` (e.g. :class:`ClassMemoryLoss`) is called instead as
        ``loss(feats, labels, self.match)``; its accuracy (of the class
        memory, not of pairs) is logged as ``acc``.

        Args:
            feats (Tensor): [B, c, h, w] feature maps.
            labels (Tensor): [B] identity labels.

        Returns:
            dict[str, Tensor]: ``loss`` (summed by MMEngine) and
            ``pair_acc`` (``acc`` for a loss that needs the matcher),
            logged.
        """
        self._check_shape(feats, 'training')
        if getattr(self.loss_module, 'needs_matcher', False):
            loss, acc = self.loss_module(feats, labels, self.match)
            return {'loss': loss, 'acc': acc}
        loss, acc = self.loss_module(self._batch_pair_scores(feats), labels)
        return {'loss': loss, 'pair_acc': acc}

"""Class memory loss of QAConv 1.x (the paper's Table 1 baseline)."""
from typing import Callable, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from mmreid_gs.registry import MODELS
from mmreid_gs.utils.dist import all_gather_rows
from mmreid_gs.utils.thread_state import uses_cpu_paths


@MODELS.register_module()
class ClassMemoryLoss(nn.Module):
    """Matching against a memory of one feature map per training class.

    The "QAConv baseline" of Liao & Shao (CVPR 2022, Table 1), i.e. the
    class memory of QAConv 1.x (ECCV 2020). The memory holds the latest
    feature map of every class (``class_memory``, [C, c, h, w]) and which
    classes have been seen (``valid_class``, [C], 0/1 floats). Each sample
    of a batch is scored by ``matcher`` against the whole memory, in blocks
    of ``mem_batch_size`` classes (one matcher call per block, so a
    training-mode matcher normalises over the pairs of each call, as the
    public code). With ``s`` the [B, C] logits, ``y`` the one-hot class
    targets, ``p = sigmoid(s)`` and ``v`` the valid mask before the batch::

        w_bc    = (1 - p_bc)^2 if y_bc else p_bc^2      (not detached)
        loss    = loss_weight / B * sum_b sum_c v_c * w_bc * BCE(s_bc, y_bc)
        acc     = mean_b [argmax_c s_bc == label_b]

    After scoring, the memory rows of the batch's classes are replaced by
    their features (no gradient; for a class present several times, its
    last sample) and marked valid. Under DDP the features and labels of all
    ranks are gathered first (rank order), so every rank keeps the same
    memory. Both tensors are buffers: they are saved in checkpoints and
    restored by ``--resume``.

    Args:
        num_classes (int): Number of training classes C (labels 0..C-1).
        num_features (int): Channels c of the feature maps.
        height (int): Height h of the feature maps.
        width (int): Width w of the feature maps.
        mem_batch_size (int): Memory classes per matcher call.
            Defaults to 16.
        loss_weight (float): Weight of the loss. Defaults to 1.0.
    """

    #: the head passes its differentiable pair scorer to :meth:`forward`
    needs_matcher = True

    def __init__(self,
                 num_classes: int,
                 num_features: int,
                 height: int,
                 width: int,
                 mem_batch_size: int = 16,
                 loss_weight: float = 1.0):
        super().__init__()
        for name, value in (('num_classes', num_classes),
                            ('num_features', num_features),
                            ('height', height), ('width', width),
                            ('mem_batch_size', mem_batch_size)):
            if not isinstance(value, int) or isinstance(value, bool) \
                    or value <= 0:
                raise ValueError(f'ClassMemoryLoss: {name} must be a '
                                 f'positive int, got {value!r}')
        self.num_classes = num_classes
        self.num_features = num_features
        self.height = height
        self.width = width
        self.mem_batch_size = mem_batch_size
        self.loss_weight = loss_weight
        self.register_buffer(
            'class_memory',
            torch.zeros(num_classes, num_features, height, width))
        self.register_buffer('valid_class', torch.zeros(num_classes))

    def extra_repr(self) -> str:
        return (f'num_classes={self.num_classes}, '
                f'feature_map=({self.num_features}, {self.height}, '
                f'{self.width}), mem_batch_size={self.mem_batch_size}')

    def _check(self, feats: torch.Tensor, labels: torch.Tensor) -> None:
        expected = (self.num_features, self.height, self.width)
        if feats.dim() != 4 or tuple(feats.shape[1:]) != expected:
            raise ValueError(
                'ClassMemoryLoss: feature maps must have shape '
                f'[B, {expected[0]}, {expected[1]}, {expected[2]}] '
                f'(num_features, height, width), got {tuple(feats.shape)}')
        if labels.dim() != 1 or labels.numel() != feats.size(0):
            raise ValueError(
                f'ClassMemoryLoss: expected {feats.size(0)} labels, got a '
                f'tensor of shape {tuple(labels.shape)}')
        if not labels.numel():
            return
        if not uses_cpu_paths(labels.device):
            # no host synchronisation on an accelerator: the check runs on
            # the device and fails when the stream reaches it
            ok = ((labels >= 0) & (labels < self.num_classes)).all()
            torch._assert_async(
                ok, f'ClassMemoryLoss: a label is outside 0..'
                f'{self.num_classes - 1}: the memory has num_classes='
                f'{self.num_classes} rows; set num_classes to the number of '
                'training identities of the dataset')
            return
        if int(labels.min()) < 0 or int(labels.max()) >= self.num_classes:
            raise ValueError(
                f'ClassMemoryLoss: label {int(labels.max())} (min '
                f'{int(labels.min())}) is outside 0..{self.num_classes - 1}:'
                f' the memory has num_classes={self.num_classes} rows; set '
                'num_classes to the number of training identities of the '
                'dataset')

    def scores(self, feats: torch.Tensor,
               matcher: Callable[[torch.Tensor, torch.Tensor],
                                 torch.Tensor]) -> torch.Tensor:
        """Logits of every sample against every memory class.

        Args:
            feats (Tensor): [B, c, h, w] feature maps.
            matcher (callable): ``matcher(q, g) -> [q, g]`` logits.

        Returns:
            Tensor: [B, C] float32 logits (gradient to ``feats`` and the
            matcher's parameters, none to the memory).
        """
        blocks = []
        for i in range(0, self.num_classes, self.mem_batch_size):
            # a copy: the memory is updated in place before backward
            mem = self.class_memory[i:i + self.mem_batch_size].detach()
            blocks.append(matcher(feats, mem.clone()).float())
        return torch.cat(blocks, dim=1)

    @torch.no_grad()
    def update(self, feats: torch.Tensor, labels: torch.Tensor) -> None:
        """Replace the memory rows of ``labels`` by ``feats`` (all ranks).

        Args:
            feats (Tensor): [B, c, h, w] feature maps.
            labels (Tensor): [B] class labels.
        """
        feats = feats.detach().to(self.class_memory.dtype)
        labels = labels.detach().long()
        # one count exchange for both (none without a process group)
        feats, labels = all_gather_rows(feats, labels)
        if labels.numel() == 0:
            return
        # the last sample of each class wins (deterministic with repeats):
        # every sample writes its class's last sample, so repeated rows get
        # equal values whatever the write order; no host synchronisation
        order = torch.arange(labels.numel(), device=labels.device)
        last = torch.full((self.num_classes, ), -1, dtype=torch.long,
                          device=labels.device)
        last.scatter_reduce_(0, labels, order, reduce='amax')
        rows = last[labels]
        classes = labels.to(self.class_memory.device)
        self.class_memory[classes] = feats[rows].to(self.class_memory.device)
        self.valid_class[labels.to(self.valid_class.device)] = 1.

    def forward(
        self, feats: torch.Tensor, labels: torch.Tensor,
        matcher: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Loss and accuracy of a batch, then the memory update.

        Args:
            feats (Tensor): [B, c, h, w] feature maps.
            labels (Tensor): [B] class labels in 0..C-1.
            matcher (callable): The head's differentiable pair scorer,
                ``matcher(q [q, c, h, w], g [g, c, h, w]) -> [q, g]``.

        Returns:
            tuple[Tensor, Tensor]: ``loss`` (scalar, weighted) and ``acc``
            (scalar in [0, 1], no gradient).
        """
        labels = torch.as_tensor(labels, device=feats.device).reshape(-1)
        self._check(feats, labels)
        labels = labels.long()
        score = self.scores(feats, matcher)
        onehot = F.one_hot(labels, self.num_classes).to(score.dtype)
        bce = F.binary_cross_entropy_with_logits(
            score, onehot, reduction='none')
        prob = score.sigmoid()
        weight = torch.where(onehot > 0, 1. - prob, prob).pow(2)
        valid = self.valid_class.detach().clone().to(score.dtype)
        loss = (bce * weight * valid.unsqueeze(0)).sum(dim=1)
        loss = loss.mean() * self.loss_weight if loss.numel() \
            else score.sum() * 0.
        with torch.no_grad():
            acc = (score.argmax(dim=1) == labels).float().mean() \
                if labels.numel() else score.new_zeros(())
        self.update(feats, labels)
        return loss, acc

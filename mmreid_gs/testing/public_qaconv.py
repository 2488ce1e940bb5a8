"""The public QAConv matcher written plainly from its formula.

The reference that tests and benchmarks hold :class:`QAConvHead` against:
all pairs at once with one einsum (no blocks, threads or integer tricks),
the sub-modules named as in the public code (``bn``, ``fc``, ``logit_bn``)
so that its ``state_dict`` is the public checkpoint's and loads into
:class:`QAConvHead` by key.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F


class PublicQAConv(nn.Module):
    """QAConv scoring of every probe/gallery pair.

    For probe map ``P`` and gallery map ``G`` (``c x hw`` each): ``S = P^T G``,
    the maxima over gallery locations and over probe locations (``2 hw``
    values), ``bn`` on them, the shared ``fc`` (``hw -> 1``) on each half, the
    two halves summed, ``logit_bn``: one logit per pair.

    Args:
        num_features (int): Channels ``c`` of the feature maps.
        height (int): Map height ``h``.
        width (int): Map width ``w``.
    """

    def __init__(self, num_features: int, height: int, width: int) -> None:
        super().__init__()
        self.num_features, self.height, self.width = (num_features, height,
                                                      width)
        self.bn = nn.BatchNorm1d(1)
        self.fc = nn.Linear(height * width, 1)
        self.logit_bn = nn.BatchNorm1d(1)

    def forward(self, prob: torch.Tensor, gal: torch.Tensor) -> torch.Tensor:
        """Logits of all pairs.

        Args:
            prob (Tensor): [p, c, h, w] probe maps.
            gal (Tensor): [g, c, h, w] gallery maps.

        Returns:
            Tensor: [p, g] logits (higher = more similar).
        """
        hw = self.height * self.width
        p, g = prob.size(0), gal.size(0)
        prob = prob.reshape(p, self.num_features, hw)
        gal = gal.reshape(g, self.num_features, hw)
        score = torch.einsum('pcs,gcr->pgrs', prob, gal)
        score = torch.cat((score.max(dim=2)[0], score.max(dim=3)[0]), dim=-1)
        score = self.bn(score.reshape(-1, 1, hw)).reshape(-1, hw)
        score = self.fc(score).reshape(-1, 2).sum(dim=1, keepdim=True)
        return self.logit_bn(score).reshape(p, g)

    def match(self, prob: torch.Tensor, gal: torch.Tensor,
              prob_batch_size: int, gal_batch_size: int) -> torch.Tensor:
        """Logits in the blocks of the public evaluation
        (``pairwise_distance``): the same numbers as :meth:`forward` in eval
        mode, with memory bounded by the block sizes.

        Args:
            prob (Tensor): [p, c, h, w] probe maps.
            gal (Tensor): [g, c, h, w] gallery maps.
            prob_batch_size (int): Probes per block.
            gal_batch_size (int): Gallery maps per block.

        Returns:
            Tensor: [p, g] logits.
        """
        out = torch.empty(prob.size(0), gal.size(0), device=prob.device)
        for i in range(0, prob.size(0), prob_batch_size):
            for k in range(0, gal.size(0), gal_batch_size):
                out[i:i + prob_batch_size, k:k + gal_batch_size] = self(
                    prob[i:i + prob_batch_size], gal[k:k + gal_batch_size])
        return out

    @torch.no_grad()
    def randomise_(self, generator: torch.Generator) -> 'PublicQAConv':
        """Trained-looking, non-trivial parameters: ``fc`` weights uniform
        in ``[0.5 / hw, 1.5 / hw]`` (drawn from ``generator``), fixed
        BatchNorm statistics. In place.

        Args:
            generator (torch.Generator): A CPU generator.

        Returns:
            PublicQAConv: self.
        """
        hw = self.height * self.width
        self.fc.weight.uniform_(0.5 / hw, 1.5 / hw, generator=generator)
        self.bn.running_mean.fill_(0.6)
        self.bn.running_var.fill_(0.01)
        self.logit_bn.running_mean.fill_(1.2)
        self.logit_bn.running_var.fill_(0.02)
        return self


def random_maps(num: int, channels: int, height: int, width: int,
                generator: torch.Generator) -> torch.Tensor:
    """Feature maps as the QAConv neck gives them: random, L2-normalised
    over the channels.

    Args:
        num (int): Number of maps.
        channels (int): Channels c.
        height (int): Height h.
        width (int): Width w.
        generator (torch.Generator): A CPU generator.

    Returns:
        Tensor: [num, c, h, w] float32 on the CPU.
    """
    return F.normalize(
        torch.randn(num, channels, height, width, generator=generator),
        dim=1)

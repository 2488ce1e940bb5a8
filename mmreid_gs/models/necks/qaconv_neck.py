"""QAConv neck: 3x3 convolution, BatchNorm and channel-wise L2 norm."""
from typing import Sequence, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import BaseModule

from mmreid_gs.registry import MODELS
from mmreid_gs.utils.errors import ReIDUserError


@MODELS.register_module()
class QAConvNeck(BaseModule):
    """Reduce the backbone feature map for QAConv matching.

    As the public QAConv code (``neck_conv``, ``neck_bn``, ``F.normalize``):
    a 3x3 convolution (padding 1, no bias) named ``conv``, a ``BatchNorm2d``
    named ``bn``, then L2 normalisation over the channels of every location.

    Args:
        in_channels (int): Channels of the backbone feature map.
        out_channels (int): Channels of the output map (paper: 64, public
            code: 128). ``0`` or a negative number skips ``conv`` and ``bn``
            (only the normalisation is applied). Defaults to 64.
        norm (bool): Whether to L2-normalise every location's feature
            vector. Defaults to True.
        init_cfg (dict | list[dict], optional): Initialisation config.
            Defaults to None (PyTorch's default initialisation, as the
            public code).
    """

    def __init__(self,
                 in_channels: int,
                 out_channels: int = 64,
                 norm: bool = True,
                 init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        self.in_channels = in_channels
        self.norm = norm
        if out_channels > 0:
            self.conv = nn.Conv2d(
                in_channels, out_channels, 3, padding=1, bias=False)
            self.bn = nn.BatchNorm2d(out_channels)
            self.out_channels = out_channels
        else:
            self.conv = None
            self.bn = None
            self.out_channels = in_channels

    def forward(
        self, inputs: Union[torch.Tensor, Sequence[torch.Tensor]]
    ) -> torch.Tensor:
        """Compute the matching feature map.

        Args:
            inputs (Tensor | Sequence[Tensor]): The backbone output
                [B, in_channels, h, w], or a tuple of such maps (as
                mmpretrain backbones return), of which the last is used.

        Returns:
            Tensor: [B, out_channels, h, w], unit L2 norm over the channels
            of every location when ``norm=True``.
        """
        x = inputs[-1] if isinstance(inputs, (tuple, list)) else inputs
        if x.dim() != 4 or x.size(1) != self.in_channels:
            raise ReIDUserError(
                f'QAConvNeck expects a [B, {self.in_channels}, h, w] feature '
                f'map, got shape {tuple(x.shape)}')
        if self.conv is not None:
            x = self.bn(self.conv(x))
        if self.norm:
            x = F.normalize(x, p=2, dim=1)
        return x

"""TransMatcher neck: 3x3 convolution (optionally BatchNorm) and a
Transformer encoder whose every layer's output is kept."""
from typing import Sequence, Union

import torch
import torch.nn as nn
from mmengine.model import BaseModule

from mmreid_gs.registry import MODELS
from mmreid_gs.utils.errors import ReIDUserError


@MODELS.register_module()
class TransMatcherNeck(BaseModule):
    """Feature maps for TransMatcher matching (Liao & Shao, NeurIPS 2021).

    A 3x3 convolution (padding 1, with a bias) named ``conv`` to ``d_model``
    channels (no BatchNorm, no L2 normalisation, as the public code), then
    a stack of
    ``num_layers - 1`` standard Transformer encoder layers
    (``encoder.layers.{i}``: ``nn.TransformerEncoderLayer`` with ``nhead``
    heads, ``dim_feedforward``, dropout 0, post-norm, ReLU, no positional
    encoding) over the ``h * w`` locations taken row-major. The output is
    the concatenation over the channels of the ``conv`` output and of every
    encoder layer's output: ``num_layers`` chunks of ``d_model`` channels,
    the l-th chunk for the l-th matching layer of
    :class:`TransMatcherHead`.

    The defaults are the public code's layout (``restranmap.py``:
    ``neck_conv`` with a bias, no BatchNorm; what
    ``tools/model_converters/transmatcher_to_mmreid.py`` reports for its
    checkpoints); ``conv_bias=False, with_bn=True`` gives a
    ``BatchNorm2d`` named ``bn`` after ``conv``, as QAConv's neck. The
    encoder layers have the public module names
    (``self_attn``, ``linear1``, ``linear2``, ``norm1``, ``norm2``).

    Args:
        in_channels (int): Channels of the backbone feature map.
        d_model (int): Channels per chunk (paper: 512). Defaults to 512.
        num_layers (int): Chunks of the output, i.e. the matching layers of
            the head (``num_layers - 1`` encoder layers). Defaults to 3.
        dim_feedforward (int): Hidden size of the encoder layers. Defaults
            to 2048.
        nhead (int): Attention heads of the encoder layers. Defaults to 1.
        conv_bias (bool): Whether ``conv`` has a bias. Defaults to True.
        with_bn (bool): Whether ``bn`` follows ``conv``. Defaults to False.
        init_cfg (dict | list[dict], optional): Initialisation config.
            Defaults to None (PyTorch's default initialisation).
    """

    def __init__(self,
                 in_channels: int,
                 d_model: int = 512,
                 num_layers: int = 3,
                 dim_feedforward: int = 2048,
                 nhead: int = 1,
                 conv_bias: bool = True,
                 with_bn: bool = False,
                 init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        for name, value in (('in_channels', in_channels),
                            ('d_model', d_model), ('num_layers', num_layers),
                            ('dim_feedforward', dim_feedforward),
                            ('nhead', nhead)):
            if int(value) != value or int(value) <= 0:
                raise ReIDUserError(f'TransMatcherNeck: {name} must be a '
                                    f'positive integer, got {value}')
        if d_model % nhead:
            raise ReIDUserError(f'TransMatcherNeck: d_model ({d_model}) must '
                                f'be divisible by nhead ({nhead})')
        self.in_channels = int(in_channels)
        self.d_model = int(d_model)
        self.num_layers = int(num_layers)
        #: Channels of the output: ``num_layers * d_model``.
        self.out_channels = self.num_layers * self.d_model
        self.conv = nn.Conv2d(
            self.in_channels, self.d_model, 3, padding=1, bias=conv_bias)
        self.bn = nn.BatchNorm2d(self.d_model) if with_bn else None
        layer = nn.TransformerEncoderLayer(
            self.d_model,
            int(nhead),
            int(dim_feedforward),
            dropout=0.,
            batch_first=True)
        self.encoder = nn.TransformerEncoder(
            layer, self.num_layers - 1, enable_nested_tensor=False)

    def forward(
        self, inputs: Union[torch.Tensor, Sequence[torch.Tensor]]
    ) -> torch.Tensor:
        """Compute the matching feature map.

        Args:
            inputs (Tensor | Sequence[Tensor]): The backbone output
                [B, in_channels, h, w], or a tuple of such maps (as
                mmpretrain backbones return), of which the last is used.

        Returns:
            Tensor: [B, num_layers * d_model, h, w] (channels first): the
            ``conv`` (/``bn``) map, then each encoder layer's output.
        """
        x = inputs[-1] if isinstance(inputs, (tuple, list)) else inputs
        if x.dim() != 4 or x.size(1) != self.in_channels:
            raise ReIDUserError(
                f'TransMatcherNeck expects a [B, {self.in_channels}, h, w] '
                f'feature map, got shape {tuple(x.shape)}')
        x = self.conv(x)
        if self.bn is not None:
            x = self.bn(x)
        b, d, h, w = x.shape
        outputs = [x]
        y = x.flatten(2).transpose(1, 2)  # [B, hw, d], row-major locations
        for layer in self.encoder.layers:
            y = layer(y)
            outputs.append(y.transpose(1, 2).reshape(b, d, h, w))
        return torch.cat(outputs, dim=1)

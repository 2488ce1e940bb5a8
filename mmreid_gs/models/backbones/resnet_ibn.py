"""ResNet with IBN-b instance normalisation (IBN-Net, Pan et al. ECCV 2018)."""
from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.utils.checkpoint as cp
from mmpretrain.models.backbones.resnet import BasicBlock, Bottleneck, ResNet

from mmreid_gs.registry import MODELS
from mmreid_gs.utils.errors import ReIDUserError


class _GroupNormInstanceNorm2d(nn.InstanceNorm2d):
    """``InstanceNorm2d(affine=True)`` computed as ``group_norm`` with one
    group per channel: the same maths, parameters and state-dict keys, but
    PyTorch's fused GroupNorm kernels (on the CPU, forward + backward of the
    three IBN-b layers of a ResNet-18 at 128x64, B = 32: 22 ms -> 7 ms, and
    the backbone step 0.36 s -> 0.32 s, faster than plain BN; measured by
    ``tools/analysis_tools/benchmark_train_iter.py``)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalise every (sample, channel) plane of ``x`` [N, C, H, W]."""
        if x.dim() != 4 or self.track_running_stats or not self.affine:
            return super().forward(x)
        return F.group_norm(x, self.num_features, self.weight, self.bias,
                            self.eps)


class _IBNResidual:
    """What both IBN-b blocks add to mmpretrain's block: an optional
    InstanceNorm ``IN`` (None unless :class:`ResNetIBN` sets it) applied
    after the residual sum (the block's ``_residual``: branch + shortcut),
    before the final ReLU."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.IN = None

    def forward(self, x):
        if self.with_cp and x.requires_grad:
            out = cp.checkpoint(self._residual, x, use_reentrant=False)
        else:
            out = self._residual(x)
        if self.IN is not None:
            out = self.IN(out)
        return self.relu(out)


class IBNBasicBlock(_IBNResidual, BasicBlock):
    """mmpretrain's BasicBlock with an optional InstanceNorm ``IN`` applied
    after the residual sum, before the final ReLU (IBN-b).

    ``IN`` is None unless :class:`ResNetIBN` sets it, in which case the block
    computes exactly as mmpretrain's ``BasicBlock``.
    """

    def _residual(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.norm1(self.conv1(x)))
        out = self.norm2(self.conv2(out))
        return self.drop_path(out) + identity


class IBNBottleneck(_IBNResidual, Bottleneck):
    """mmpretrain's Bottleneck with an optional InstanceNorm ``IN`` applied
    after the residual sum, before the final ReLU (IBN-b)."""

    def _residual(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.norm1(self.conv1(x)))
        out = self.relu(self.norm2(self.conv2(out)))
        out = self.norm3(self.conv3(out))
        return self.drop_path(out) + identity


_IBN_BLOCKS = {BasicBlock: IBNBasicBlock, Bottleneck: IBNBottleneck}


@MODELS.register_module()
class ResNetIBN(ResNet):
    """ResNet backbone with IBN-b instance normalisation.

    IBN-b as in IBN-Net's ``resnet_ibn_b``: the stem's ``bn1`` is an
    ``InstanceNorm2d(stem_channels, affine=True)`` (the attribute keeps the
    name ``bn1`` so IBN-Net weights load by key) and an
    ``InstanceNorm2d(affine=True)`` named ``IN`` is applied after the residual
    sum (before the final ReLU) of the last block of the stages selected by
    ``ibn_stages`` (stages 1 and 2 by default). With ``ibn=False`` the network
    is a plain mmpretrain ResNet.

    Parameter names follow torchvision / IBN-Net (``conv1``, ``bn1``,
    ``layer1.0.conv1``, ``layer1.2.IN.weight``, ...), so ImageNet or IBN-Net
    weights load with ``init_cfg=dict(type='Pretrained', checkpoint=PATH)``.
    The loading is non-strict: keys of layers that are not built (``layer4``
    when ``num_stages=3``, the classifier ``fc``) and missing keys (e.g. the
    ``IN`` layers when loading plain ResNet weights) are logged as a warning
    listing them.

    Args:
        depth (int): Network depth, one of 18, 34, 50, 101, 152.
            Defaults to 50.
        ibn (bool): Whether to add the IBN-b instance normalisation layers.
            Defaults to True.
        ibn_stages (Sequence[bool]): For each stage, whether its last block
            gets an ``IN`` layer. Defaults to ``(True, True, False, False)``.
        num_stages (int): Number of residual stages built. Defaults to 3
            (layer4 is not needed for the layer3 feature map).
        strides (Sequence[int], optional): Stride of the first block of each
            stage. Defaults to ``(1, 2, 2, 2)[:num_stages]``.
        dilations (Sequence[int], optional): Dilation of each stage.
            Defaults to ``(1, 1, 1, 1)[:num_stages]``.
        out_indices (Sequence[int]): Output from which stages (0-based).
            Defaults to ``(2, )``: layer3, stride 16.
        norm_eval (bool): Whether to keep the BatchNorm layers in eval mode
            (frozen running statistics) while training. Defaults to True.
        frozen_stages (int): Stages to freeze (no gradient, eval mode);
            0 freezes the stem only, -1 nothing. Defaults to -1.
        init_cfg (dict | list[dict], optional): Initialisation config.
            Defaults to Kaiming for convolutions and constant 1 for norm
            layers (mmpretrain's default).
        **kwargs: Other arguments of :class:`mmpretrain.models.ResNet`.

    Example:
        >>> import torch
        >>> from mmreid_gs.models.backbones import ResNetIBN
        >>> model = ResNetIBN(depth=18).eval()
        >>> [tuple(o.shape) for o in model(torch.rand(1, 3, 64, 32))]
        [(1, 256, 4, 2)]
    """

    def __init__(self,
                 depth: int = 50,
                 ibn: bool = True,
                 ibn_stages: Sequence[bool] = (True, True, False, False),
                 num_stages: int = 3,
                 strides: Sequence[int] = None,
                 dilations: Sequence[int] = None,
                 out_indices: Sequence[int] = (2, ),
                 norm_eval: bool = True,
                 frozen_stages: int = -1,
                 init_cfg=[
                     dict(type='Kaiming', layer=['Conv2d']),
                     dict(
                         type='Constant',
                         val=1,
                         layer=['_BatchNorm', 'GroupNorm'])
                 ],
                 **kwargs):
        if not 1 <= num_stages <= 4:
            raise ReIDUserError(
                f'num_stages must be in 1..4, got {num_stages}')
        if strides is None:
            strides = (1, 2, 2, 2)[:num_stages]
        if dilations is None:
            dilations = (1, 1, 1, 1)[:num_stages]
        ibn_stages = tuple(bool(s) for s in ibn_stages)
        if ibn and len(ibn_stages) < num_stages:
            raise ReIDUserError(
                f'ibn_stages has {len(ibn_stages)} entries but the network '
                f'has num_stages={num_stages}')
        if ibn and kwargs.get('deep_stem', False):
            raise ReIDUserError('ResNetIBN does not support deep_stem=True: '
                                'IBN-b replaces the single stem norm layer')
        if any(i >= num_stages for i in out_indices):
            raise ReIDUserError(
                f'out_indices={tuple(out_indices)} asks for a stage that is '
                f'not built (num_stages={num_stages})')
        super().__init__(
            depth=depth,
            num_stages=num_stages,
            strides=strides,
            dilations=dilations,
            out_indices=out_indices,
            norm_eval=norm_eval,
            frozen_stages=frozen_stages,
            init_cfg=init_cfg,
            **kwargs)
        self.ibn = ibn
        self.ibn_stages = ibn_stages

        if ibn:
            # stem: InstanceNorm under the name ``bn1`` (IBN-Net's key)
            if self.norm1_name != 'bn1':
                delattr(self, self.norm1_name)
            self.norm1_name = 'bn1'
            self.bn1 = _GroupNormInstanceNorm2d(self.stem_channels,
                                                affine=True)
            for i, layer_name in enumerate(self.res_layers):
                if ibn_stages[i]:
                    last = getattr(self, layer_name)[-1]
                    last.IN = _GroupNormInstanceNorm2d(
                        last.out_channels, affine=True)
            # the new layers of frozen stages must be frozen too
            self._freeze_stages()

    def make_res_layer(self, **kwargs):
        """Build a stage with blocks that can hold an ``IN`` layer."""
        kwargs['block'] = _IBN_BLOCKS.get(kwargs['block'], kwargs['block'])
        return super().make_res_layer(**kwargs)

    def train(self, mode: bool = True):
        """Set the training mode (BatchNorm kept in eval mode when
        ``norm_eval``, frozen stages in eval mode) and return ``self``
        (mmpretrain's ResNet returns None, which breaks ``.eval()``
        chaining)."""
        super().train(mode)
        return self

    def init_weights(self):
        """Initialise the weights.

        Unlike mmpretrain's ResNet, the zero initialisation of the last norm
        layer of each block is also skipped when ``init_cfg`` is a list that
        contains a ``Pretrained`` entry (so it cannot overwrite loaded
        weights).
        """
        cfgs = self.init_cfg if isinstance(self.init_cfg,
                                           (list, tuple)) else [self.init_cfg]
        pretrained = any(
            isinstance(c, dict) and c.get('type') == 'Pretrained'
            for c in cfgs)
        zero_init = self.zero_init_residual
        if pretrained:
            self.zero_init_residual = False
        try:
            super().init_weights()
        finally:
            self.zero_init_residual = zero_init

"""QAConv person re-identification model."""
from typing import List, Optional, Union

import torch
import torch.nn as nn

from mmreid_gs.registry import MODELS
from .reid_model import ReIDModel


@MODELS.register_module()
class QAConvReID(ReIDModel):
    """Person re-identification by QAConv matching of feature maps.

    ``backbone`` (e.g. :class:`ResNetIBN`, or ``type='mmpretrain.ResNet'``)
    -> ``neck`` (:class:`QAConvNeck`: 3x3 conv, BN, L2 norm) -> feature maps
    [B, c, h, w]; ``head`` (:class:`QAConvHead`) scores pairs of maps and
    computes the pair loss of a batch. A :class:`ReIDModel` whose neck is
    required and whose feature maps are checked against the head's
    ``num_features`` / ``height`` / ``width``; :meth:`predict` sets
    ``feature_map``. ``extract_feat`` (the feature maps of
    :meth:`backbone_features`; the head has no ``embed``) and ``match``
    (:meth:`QAConvHead.match`: eval mode with running BatchNorm
    statistics, training mode with BatchNorm over the pairs of the call,
    differentiable) are those of :class:`ReIDModel`.

    Args:
        backbone (dict | nn.Module): Backbone config or module.
        neck (dict | nn.Module): Neck config or module.
        head (dict | nn.Module): Head config or module; its ``height`` and
            ``width`` must equal the feature map size of the training input.
        data_preprocessor (dict | nn.Module, optional): Defaults to
            ``dict(type='ReIDDataPreprocessor')``.
        init_cfg (dict | list[dict], optional): Initialisation config.
    """

    feature_field = 'feature_map'

    def __init__(self,
                 backbone: Union[dict, nn.Module],
                 neck: Union[dict, nn.Module],
                 head: Union[dict, nn.Module],
                 data_preprocessor: Optional[Union[dict, nn.Module]] = None,
                 init_cfg: Optional[Union[dict, List[dict]]] = None):
        if neck is None:
            raise TypeError('QAConvReID: neck must be a config dict or an '
                            'nn.Module, got NoneType')
        super().__init__(backbone=backbone, head=head, neck=neck,
                         data_preprocessor=data_preprocessor,
                         init_cfg=init_cfg)

    def _check_feature_size(self, feats: torch.Tensor,
                            inputs: torch.Tensor) -> None:
        head = self.head
        expected = (getattr(head, 'num_features', feats.size(1)),
                    getattr(head, 'height', feats.size(2)),
                    getattr(head, 'width', feats.size(3)))
        if tuple(feats.shape[1:]) == tuple(expected):
            return
        c, h, w = feats.shape[1:]
        in_h, in_w = inputs.shape[-2:]
        hint = ''
        if h and w:
            hint = (f'; an input of {in_h * expected[1] // h}x'
                    f'{in_w * expected[2] // w} would give it')
        raise ValueError(
            f'{type(self).__name__}: the input size {in_h}x{in_w} gives a '
            f'feature map of {c} channels and size {h}x{w}, but the head '
            f'expects {expected[0]} channels and size '
            f'{expected[1]}x{expected[2]} (head num_features/height/width)'
            f'{hint}')

    def backbone_features(self, inputs: torch.Tensor) -> torch.Tensor:
        """Feature maps for matching and for the loss.

        Args:
            inputs (Tensor): [B, 3, H, W] normalised images.

        Returns:
            Tensor: [B, c, h, w] feature maps (L2-normalised over channels
            by the neck).

        Raises:
            ValueError: When the feature map size differs from the head's
                ``num_features`` / ``height`` / ``width``.
        """
        feats = super().backbone_features(inputs)
        self._check_feature_size(feats, inputs)
        return feats

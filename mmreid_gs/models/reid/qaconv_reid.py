"""QAConv person re-identification model."""
from typing import Dict, List, Optional, Union

import torch
import torch.nn as nn
from mmengine.model import BaseModel
from mmpretrain.structures import DataSample

from mmreid_gs.registry import MODELS


def _build(cfg, name: str) -> nn.Module:
    if isinstance(cfg, nn.Module):
        return cfg
    if not isinstance(cfg, dict):
        raise TypeError(f'QAConvReID: {name} must be a config dict or an '
                        f'nn.Module, got {type(cfg).__name__}')
    return MODELS.build(cfg)


@MODELS.register_module()
class QAConvReID(BaseModel):
    """Person re-identification by QAConv matching of feature maps.

    ``backbone`` (e.g. :class:`ResNetIBN`, or ``type='mmpretrain.ResNet'``)
    -> ``neck`` (:class:`QAConvNeck`: 3x3 conv, BN, L2 norm) -> feature maps
    [B, c, h, w]; ``head`` (:class:`QAConvHead`) scores pairs of maps and
    computes the pair loss of a batch.

    Args:
        backbone (dict | nn.Module): Backbone config or module.
        neck (dict | nn.Module): Neck config or module.
        head (dict | nn.Module): Head config or module; its ``height`` and
            ``width`` must equal the feature map size of the training input.
        data_preprocessor (dict | nn.Module, optional): Defaults to
            ``dict(type='ReIDDataPreprocessor')``.
        init_cfg (dict | list[dict], optional): Initialisation config.
    """

    def __init__(self,
                 backbone: Union[dict, nn.Module],
                 neck: Union[dict, nn.Module],
                 head: Union[dict, nn.Module],
                 data_preprocessor: Optional[Union[dict, nn.Module]] = None,
                 init_cfg: Optional[Union[dict, List[dict]]] = None):
        if data_preprocessor is None:
            data_preprocessor = dict(type='ReIDDataPreprocessor')
        super().__init__(
            data_preprocessor=_build(data_preprocessor, 'data_preprocessor'),
            init_cfg=init_cfg)
        self.backbone = _build(backbone, 'backbone')
        self.neck = _build(neck, 'neck')
        self.head = _build(head, 'head')

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
            f'QAConvReID: the input size {in_h}x{in_w} gives a feature map '
            f'of {c} channels and size {h}x{w}, but the head expects '
            f'{expected[0]} channels and size {expected[1]}x{expected[2]} '
            f'(head num_features/height/width){hint}')

    def extract_feat(self, inputs: torch.Tensor) -> torch.Tensor:
        """Feature maps for matching.

        Args:
            inputs (Tensor): [B, 3, H, W] normalised images.

        Returns:
            Tensor: [B, c, h, w] feature maps (L2-normalised over channels
            by the neck).

        Raises:
            ValueError: When the feature map size differs from the head's
                ``num_features`` / ``height`` / ``width``.
        """
        feats = self.neck(self.backbone(inputs))
        self._check_feature_size(feats, inputs)
        return feats

    def match(self, query_feats: torch.Tensor,
              gallery_feats: torch.Tensor) -> torch.Tensor:
        """Similarity of every query/gallery pair of feature maps.

        The matcher contract of every re-ID model in mmreid_gs (what
        :class:`GraphSamplerHook`, the test loops and :mod:`mmreid_gs.apis`
        call): blockwise with bounded memory, higher = more similar. Here
        the QAConv logits of :meth:`QAConvHead.match` (eval mode: running
        BatchNorm statistics; training mode: BatchNorm over the pairs of
        the call, differentiable).

        Args:
            query_feats (Tensor): [q, c, h, w] from :meth:`extract_feat`.
            gallery_feats (Tensor): [g, c, h, w] from :meth:`extract_feat`.

        Returns:
            Tensor: [q, g] float32 similarities.
        """
        return self.head.match(query_feats, gallery_feats)

    def forward(self,
                inputs: torch.Tensor,
                data_samples: Optional[List[DataSample]] = None,
                mode: str = 'tensor'):
        """The unified entry of training, inference and feature extraction.

        Args:
            inputs (Tensor): [B, 3, H, W] images from the data preprocessor.
            data_samples (list[DataSample], optional): The samples of the
                batch; ``gt_label`` (identity) is required by ``'loss'``.
            mode (str): ``'tensor'``: return the feature maps
                [B, c, h, w]; ``'loss'``: return a dict of losses
                (``loss``) and ``pair_acc`` from the head; ``'predict'``:
                return the data samples (new ones when ``data_samples`` is
                None) with ``feature_map`` ([c, h, w]) set. Defaults to
                ``'tensor'``.

        Returns:
            Tensor | dict | list[DataSample]: Depends on ``mode``.
        """
        if mode == 'tensor':
            return self.extract_feat(inputs)
        if mode == 'loss':
            return self.loss(inputs, data_samples)
        if mode == 'predict':
            return self.predict(inputs, data_samples)
        raise ValueError(f'QAConvReID: invalid mode "{mode}", expected '
                         "'tensor', 'loss' or 'predict'")

    def loss(self, inputs: torch.Tensor,
             data_samples: List[DataSample]) -> Dict[str, torch.Tensor]:
        """Pair loss of a batch (see :meth:`forward`)."""
        if not data_samples or len(data_samples) != inputs.size(0):
            raise ValueError(
                'QAConvReID: mode="loss" needs one data sample with a '
                f'gt_label per input ({inputs.size(0)} inputs, '
                f'{0 if not data_samples else len(data_samples)} samples)')
        labels = []
        for i, sample in enumerate(data_samples):
            label = sample.get('gt_label', None)
            if label is None:
                raise ValueError(
                    f'QAConvReID: data sample {i} has no gt_label')
            label = torch.as_tensor(label).reshape(-1)
            if label.numel() != 1:
                raise ValueError(f'QAConvReID: data sample {i} has '
                                 f'{label.numel()} labels, expected one')
            labels.append(label)
        labels = torch.cat(labels).to(inputs.device)
        feats = self.extract_feat(inputs)
        return self.head.loss(feats, labels)

    def predict(
            self,
            inputs: torch.Tensor,
            data_samples: Optional[List[DataSample]] = None
    ) -> List[DataSample]:
        """Data samples with their ``feature_map`` (see :meth:`forward`)."""
        feats = self.extract_feat(inputs)
        if data_samples is None:
            data_samples = [DataSample() for _ in range(feats.size(0))]
        elif len(data_samples) != feats.size(0):
            raise ValueError(
                f'QAConvReID: {len(data_samples)} data samples for '
                f'{feats.size(0)} inputs')
        for sample, feat in zip(data_samples, feats):
            sample.set_field(feat, 'feature_map')
        return data_samples

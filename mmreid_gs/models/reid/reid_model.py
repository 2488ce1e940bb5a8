"""Generic re-identification model: backbone -> optional neck -> head."""
from typing import Dict, List, Optional, Union

import torch
import torch.nn as nn
from mmengine.model import BaseModel
from mmpretrain.structures import DataSample

from mmreid_gs.registry import MODELS
from mmreid_gs.utils.errors import ReIDUserError, ReIDUserTypeError


def build_part(cfg, name: str, owner: str) -> nn.Module:
    """Build ``cfg`` from the registry unless it is already a module."""
    if isinstance(cfg, nn.Module):
        return cfg
    if not isinstance(cfg, dict):
        raise ReIDUserTypeError(f'{owner}: {name} must be a config dict or an '
                                f'nn.Module, got {type(cfg).__name__}')
    return MODELS.build(cfg)


def last_output(x):
    """The last element of a backbone's / neck's tuple of outputs (the
    deepest stage, mmpretrain's convention), else ``x``."""
    while isinstance(x, (tuple, list)):
        if not x:
            raise ReIDUserError('ReIDModel: the backbone/neck returned an '
                                'empty tuple; check its out_indices')
        x = x[-1]
    return x


@MODELS.register_module()
class ReIDModel(BaseModel):
    """Re-identification model: backbone -> optional neck -> head.

    The backbone is any registered backbone: ours (``ResNetIBN``) or
    mmpretrain's by scope (``type='mmpretrain.ResNet'``,
    ``type='mmpretrain.VisionTransformer'`` with ``out_type='cls_token'``,
    ``'avg_featmap'`` or ``'featmap'``). A tuple of outputs (several stages,
    mmpretrain's convention) goes to the neck as it is; after the neck (or
    the backbone without one) the last element is used. The head decides
    the rest:

    - ``head.embed(x)``, if the head has it (e.g.
      :class:`GlobalEmbeddingHead`: pooling, BNNeck, L2 norm), turns the
      features into what :meth:`match` compares; otherwise the features
      are used as they are (e.g. QAConv's feature maps);
    - ``head.match(query_feats, gallery_feats) -> [q, g]``;
    - ``head.loss(x, labels) -> dict`` on the features before ``embed``;
    - ``head.match_pairs`` (optional): each query against its own gallery
      list (the batched second stage of the two-stage class graph).

    This is the matcher contract of every re-ID model in mmreid_gs
    (:mod:`mmreid_gs.utils.contract`, docs/architecture.md):
    :class:`GraphSamplerHook`, the test loops and :mod:`mmreid_gs.apis` call
    :meth:`extract_feat` and :meth:`match` and nothing else of the model.

    Args:
        backbone (dict | nn.Module): Backbone config or module.
        head (dict | nn.Module): Head config or module.
        neck (dict | nn.Module, optional): Neck config or module. Defaults
            to None (no neck).
        data_preprocessor (dict | nn.Module, optional): Defaults to
            ``dict(type='ReIDDataPreprocessor')``.
        init_cfg (dict | list[dict], optional): Initialisation config.
    """

    #: Field of the data samples that :meth:`predict` sets.
    feature_field = 'feature'

    def __init__(self,
                 backbone: Union[dict, nn.Module],
                 head: Union[dict, nn.Module],
                 neck: Optional[Union[dict, nn.Module]] = None,
                 data_preprocessor: Optional[Union[dict, nn.Module]] = None,
                 init_cfg: Optional[Union[dict, List[dict]]] = None):
        name = type(self).__name__
        if data_preprocessor is None:
            data_preprocessor = dict(type='ReIDDataPreprocessor')
        super().__init__(data_preprocessor=build_part(data_preprocessor,
                                                      'data_preprocessor',
                                                      name),
                         init_cfg=init_cfg)
        self.backbone = build_part(backbone, 'backbone', name)
        self.neck = None if neck is None else build_part(neck, 'neck', name)
        self.head = build_part(head, 'head', name)
        for method in ('match', 'loss'):
            if not callable(getattr(self.head, method, None)):
                raise ReIDUserTypeError(
                    f'{name}: the head {type(self.head).__name__} has no '
                    f'{method}() (a re-ID head offers match(q, g) and '
                    'loss(feats, labels); see docs/architecture.md)')

    # ------------------------------------------------------------ features
    def backbone_features(self, inputs: torch.Tensor):
        """Backbone (and neck) output: what the head's :meth:`loss` takes.

        Args:
            inputs (Tensor): [B, 3, H, W] normalised images.

        Returns:
            Tensor: e.g. [B, c, h, w] maps or [B, c] tokens.
        """
        x = self.backbone(inputs)
        if self.neck is not None:
            x = self.neck(x)
        return last_output(x)

    def extract_feat(self, inputs: torch.Tensor) -> torch.Tensor:
        """Features for matching (the contract's ``extract_feat``).

        Args:
            inputs (Tensor): [B, 3, H, W] normalised images.

        Returns:
            Tensor: ``head.embed`` of :meth:`backbone_features` when the
            head has ``embed`` (e.g. [B, d] embeddings), else the features
            themselves (e.g. [B, c, h, w] maps).
        """
        x = self.backbone_features(inputs)
        embed = getattr(self.head, 'embed', None)
        return embed(x) if callable(embed) else x

    def match(self, query_feats: torch.Tensor,
              gallery_feats: torch.Tensor) -> torch.Tensor:
        """Similarity of every query/gallery pair (the contract's
        ``match``): the head's ``match``, blockwise with bounded memory,
        higher = more similar.

        Args:
            query_feats (Tensor): [q, ...] from :meth:`extract_feat`.
            gallery_feats (Tensor): [g, ...] from :meth:`extract_feat`.

        Returns:
            Tensor: [q, g] float32 similarities.
        """
        return self.head.match(query_feats, gallery_feats)

    @property
    def match_pairs(self):
        """The head's ``match_pairs(query [n, ...], gallery [n, m, ...]) ->
        [n, m]`` (each query against its own gallery list), or None when
        the head has none. Used by the two-stage class graph."""
        fn = getattr(self.head, 'match_pairs', None)
        return fn if callable(fn) else None

    # ------------------------------------------------------------ forward
    def forward(self,
                inputs: torch.Tensor,
                data_samples: Optional[List[DataSample]] = None,
                mode: str = 'tensor'):
        """The unified entry of training, inference and feature extraction.

        Args:
            inputs (Tensor): [B, 3, H, W] images from the data preprocessor.
            data_samples (list[DataSample], optional): The samples of the
                batch; ``gt_label`` (identity) is required by ``'loss'``.
            mode (str): ``'tensor'``: return :meth:`extract_feat`;
                ``'loss'``: return the head's dict of losses (keys holding
                ``loss`` are summed by MMEngine) and accuracies;
                ``'predict'``: return the data samples (new ones when
                ``data_samples`` is None) with the features set under
                :attr:`feature_field`. Defaults to ``'tensor'``.

        Returns:
            Tensor | dict | list[DataSample]: Depends on ``mode``.
        """
        if mode == 'tensor':
            return self.extract_feat(inputs)
        if mode == 'loss':
            return self.loss(inputs, data_samples)
        if mode == 'predict':
            return self.predict(inputs, data_samples)
        raise ReIDUserError(f'{type(self).__name__}: invalid mode "{mode}", '
                            "expected 'tensor', 'loss' or 'predict'")

    def _labels(self, inputs: torch.Tensor,
                data_samples: List[DataSample]) -> torch.Tensor:
        name = type(self).__name__
        if not data_samples or len(data_samples) != inputs.size(0):
            raise ReIDUserError(
                f'{name}: mode="loss" needs one data sample with a '
                f'gt_label per input ({inputs.size(0)} inputs, '
                f'{0 if not data_samples else len(data_samples)} samples)')
        labels = []
        for i, sample in enumerate(data_samples):
            label = sample.get('gt_label', None)
            if label is None:
                raise ReIDUserError(f'{name}: data sample {i} has no gt_label')
            label = torch.as_tensor(label).reshape(-1)
            if label.numel() != 1:
                raise ReIDUserError(f'{name}: data sample {i} has '
                                    f'{label.numel()} labels, expected one')
            labels.append(label)
        return torch.cat(labels).to(inputs.device)

    def loss(self, inputs: torch.Tensor,
             data_samples: List[DataSample]) -> Dict[str, torch.Tensor]:
        """The head's losses of a batch (see :meth:`forward`)."""
        labels = self._labels(inputs, data_samples)
        return self.head.loss(self.backbone_features(inputs), labels)

    def predict(
            self,
            inputs: torch.Tensor,
            data_samples: Optional[List[DataSample]] = None
    ) -> List[DataSample]:
        """Data samples with their features (see :meth:`forward`)."""
        feats = self.extract_feat(inputs)
        if data_samples is None:
            data_samples = [DataSample() for _ in range(feats.size(0))]
        elif len(data_samples) != feats.size(0):
            raise ReIDUserError(
                f'{type(self).__name__}: {len(data_samples)} data samples '
                f'for {feats.size(0)} inputs')
        for sample, feat in zip(data_samples, feats):
            sample.set_field(feat, self.feature_field)
        return data_samples

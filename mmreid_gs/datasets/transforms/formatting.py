"""Packing of re-identification samples for the model."""
from typing import Sequence

import numpy as np
import torch
from mmcv.transforms import BaseTransform
from mmpretrain.structures import DataSample

from mmreid_gs.registry import TRANSFORMS
from mmreid_gs.utils.errors import ReIDUserKeyError


@TRANSFORMS.register_module()
class PackReIDInputs(BaseTransform):
    """Pack an image and its labels into ``inputs`` and ``data_samples``.

    **Required Keys:**

    - img (np.ndarray): [H, W, C] (or [H, W]) image, BGR uint8 as loaded by
      ``LoadImageFromFile``.

    **Optional Keys:**

    - gt_label (int): set with ``DataSample.set_gt_label`` when present.
    - the ``meta_keys``.

    **Output:**

    - inputs (torch.Tensor): [C, H, W] tensor of the image dtype (uint8),
      channel order unchanged (BGR); the data preprocessor normalises it.
    - data_samples (:obj:`mmpretrain.structures.DataSample`): ``gt_label``
      and the meta information of ``meta_keys`` found in the results;
      ``img_shape`` is the (H, W) of the packed image.

    Args:
        meta_keys (Sequence[str]): Keys copied into the metainfo of the data
            sample when present. Defaults to ``('img_path', 'cam_id',
            'timestamp', 'sample_idx', 'ori_shape', 'img_shape')``.
    """

    DEFAULT_META_KEYS = ('img_path', 'cam_id', 'timestamp', 'sample_idx',
                         'ori_shape', 'img_shape')

    def __init__(self, meta_keys: Sequence[str] = DEFAULT_META_KEYS):
        self.meta_keys = tuple(meta_keys)

    @staticmethod
    def format_input(img: np.ndarray) -> torch.Tensor:
        """[H, W, C] or [H, W] array -> contiguous [C, H, W] tensor."""
        if img.ndim == 2:
            img = img[..., None]
        img = np.ascontiguousarray(img.transpose(2, 0, 1))
        return torch.from_numpy(img)

    def transform(self, results: dict) -> dict:
        """Pack ``results`` into ``inputs`` and ``data_samples``.

        Args:
            results (dict): Output of the previous transforms.

        Returns:
            dict: ``dict(inputs=Tensor [C, H, W], data_samples=DataSample)``.
        """
        if 'img' not in results:
            raise ReIDUserKeyError('PackReIDInputs needs the key "img" (add '
                                   'LoadImageFromFile before it); got keys '
                                   f'{sorted(results)}.')
        packed = dict(inputs=self.format_input(results['img']))
        data_sample = DataSample()
        if results.get('gt_label') is not None:
            data_sample.set_gt_label(int(results['gt_label']))
        metainfo = {k: results[k] for k in self.meta_keys if k in results}
        if 'img_shape' in self.meta_keys:
            # the shape of the packed image, always (H, W) (some transforms,
            # e.g. mmpretrain's RandomCrop, store (H, W, C))
            metainfo['img_shape'] = tuple(results['img'].shape[:2])
        data_sample.set_metainfo(metainfo)
        packed['data_samples'] = data_sample
        return packed

    def __repr__(self) -> str:
        return f'{type(self).__name__}(meta_keys={self.meta_keys})'

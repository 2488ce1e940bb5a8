"""Transforms of mmreid_gs.

The common transforms of mmcv (``LoadImageFromFile``, ``Resize``,
``RandomFlip``, ``Pad``, ``CenterCrop``, ``Normalize``) are also registered
in the ``mmreid_gs`` scope, so that ``type='LoadImageFromFile'`` works under
the default scope ``mmreid_gs``. The transforms of mmpretrain are used by
scope: ``type='mmpretrain.RandomCrop'``, ``'mmpretrain.Rotate'``.
``ReIDColorJitter`` replaces ``mmpretrain.ColorJitter``, whose hue step
(mmcv's ``adjust_hue``) fails for negative hue factors with NumPy >= 2.
"""
from mmcv.transforms import (CenterCrop, LoadImageFromFile, Normalize, Pad,
                             RandomFlip, Resize)

from mmreid_gs.registry import TRANSFORMS
from .formatting import PackReIDInputs
from .processing import RandomOcclusion, ReIDColorJitter, adjust_hue

for _t in (CenterCrop, LoadImageFromFile, Normalize, Pad, RandomFlip,
           Resize):
    TRANSFORMS.register_module(module=_t, force=True)

__all__ = [
    'PackReIDInputs', 'RandomOcclusion', 'ReIDColorJitter', 'adjust_hue',
    'CenterCrop', 'LoadImageFromFile', 'Normalize', 'Pad', 'RandomFlip',
    'Resize'
]

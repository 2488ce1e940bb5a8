"""Data structures.

Samples are mmpretrain's :class:`~mmpretrain.structures.DataSample`: the
identity is ``gt_label`` and the re-ID metainfo (``img_path``, ``cam_id``,
``timestamp`` when the dataset has one, ``sample_idx``) is set by
``PackReIDInputs``. The model's predictions add a ``feature_map`` field.
"""
from mmpretrain.structures import DataSample

ReIDDataSample = DataSample

__all__ = ['DataSample', 'ReIDDataSample']

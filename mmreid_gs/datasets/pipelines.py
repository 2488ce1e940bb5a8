"""Ready-made data pipelines (lists of transform configs).

Configs may call these functions or copy the lists they return; every type
resolves under the default scope ``mmreid_gs`` (mmcv's transforms are
registered there, mmpretrain's are scope-qualified). The colour jitter is
our ``ReIDColorJitter`` (mmpretrain's ``ColorJitter`` semantics; its hue
step fails for negative factors with NumPy >= 2).
"""
from typing import List


def reid_train_pipeline(height: int = 384, width: int = 128) -> List[dict]:
    """The training augmentation of the public QAConv / QAConv-GS code.

    Bicubic resize to ``(height, width)``; zero padding of 10 pixels and a
    random ``(height, width)`` crop; horizontal flip with probability 0.5;
    rotation by an angle uniform in [-5, 5] degrees (nearest neighbour,
    zero fill); colour jitter with brightness, contrast and saturation
    factors uniform in [0.5, 2] and a hue shift uniform in [-0.1, 0.1]
    (applied in a random order); a white square occlusion whose side is up
    to 0.8 of the shorter image side; packing.

    Args:
        height (int): Output image height. Defaults to 384.
        width (int): Output image width. Defaults to 128.

    Returns:
        list[dict]: Transform configs, from ``LoadImageFromFile`` to
        ``PackReIDInputs``.
    """
    return [
        dict(type='LoadImageFromFile'),
        dict(
            type='Resize',
            scale=(width, height),
            keep_ratio=False,
            interpolation='bicubic'),
        dict(
            type='mmpretrain.RandomCrop',
            crop_size=(height, width),
            padding=10,
            pad_val=0),
        dict(type='RandomFlip', prob=0.5, direction='horizontal'),
        dict(
            type='mmpretrain.Rotate',
            magnitude_range=(0, 5),
            magnitude_std='inf',
            prob=1.0,
            random_negative_prob=0.5,
            pad_val=0,
            interpolation='nearest'),
        dict(
            type='ReIDColorJitter',
            brightness=(0.5, 2.0),
            contrast=(0.5, 2.0),
            saturation=(0.5, 2.0),
            hue=(-0.1, 0.1)),
        dict(type='RandomOcclusion', min_size=0., max_size=0.8),
        dict(type='PackReIDInputs'),
    ]


def reid_test_pipeline(height: int = 384, width: int = 128) -> List[dict]:
    """The test pipeline: load, bicubic resize to ``(height, width)``, pack.

    Args:
        height (int): Output image height. Defaults to 384.
        width (int): Output image width. Defaults to 128.

    Returns:
        list[dict]: Transform configs.
    """
    return [
        dict(type='LoadImageFromFile'),
        dict(
            type='Resize',
            scale=(width, height),
            keep_ratio=False,
            interpolation='bicubic'),
        dict(type='PackReIDInputs'),
    ]

"""Data preprocessor of re-identification models."""
from typing import Optional, Sequence

import torch
from mmengine.model import ImgDataPreprocessor

from mmreid_gs.registry import MODELS


@MODELS.register_module()
class ReIDDataPreprocessor(ImgDataPreprocessor):
    """Stack, convert and normalise re-ID images.

    Takes the output of ``PackReIDInputs`` collated by ``pseudo_collate``
    (``inputs``: list of CHW uint8 BGR tensors, ``data_samples``: list of
    DataSample) or ``default_collate`` (an NCHW tensor), moves it to the
    model's device, converts BGR to RGB, casts to float and normalises with
    ``mean`` / ``std``. ``data_samples`` are passed through unchanged.

    Args:
        mean (Sequence[float]): Per-channel mean (of the RGB channels when
            ``to_rgb=True``), in 0..255 pixel units. Defaults to ImageNet's.
        std (Sequence[float]): Per-channel standard deviation. Defaults to
            ImageNet's.
        to_rgb (bool): Whether to convert BGR inputs to RGB. Defaults to
            True.
        bgr_to_rgb (bool, optional): Alias of ``to_rgb`` (MMEngine's name);
            overrides it when given.
        non_blocking (bool): Whether to copy to the device without blocking.
            Defaults to False.

    Raises:
        ValueError: When the images of a batch have different sizes (re-ID
            pipelines resize every image to the same size).
    """

    def __init__(self,
                 mean: Sequence[float] = (123.675, 116.28, 103.53),
                 std: Sequence[float] = (58.395, 57.12, 57.375),
                 to_rgb: bool = True,
                 bgr_to_rgb: Optional[bool] = None,
                 non_blocking: bool = False):
        if bgr_to_rgb is not None:
            to_rgb = bgr_to_rgb
        super().__init__(
            mean=mean,
            std=std,
            pad_size_divisor=1,
            pad_value=0,
            bgr_to_rgb=to_rgb,
            non_blocking=non_blocking)
        self.to_rgb = to_rgb

    def forward(self, data: dict, training: bool = False) -> dict:
        """Preprocess a batch.

        Args:
            data (dict): ``inputs`` (list of [3, H, W] uint8 tensors or a
                [B, 3, H, W] tensor) and optional ``data_samples``.
            training (bool): Unused; kept for the MMEngine interface.

        Returns:
            dict: ``inputs`` [B, 3, H, W] float32 and ``data_samples``.
        """
        inputs = data.get('inputs') if isinstance(data, dict) else None
        if isinstance(inputs, (list, tuple)) and len(inputs) > 0 and all(
                isinstance(x, torch.Tensor) for x in inputs):
            sizes = {tuple(x.shape[-2:]) for x in inputs}
            if len(sizes) > 1:
                raise ValueError(
                    'ReIDDataPreprocessor: the images of a batch have '
                    f'different sizes {sorted(sizes)}; resize them to one '
                    'size in the pipeline')
        return super().forward(data, training)

"""Image augmentations for person re-identification."""
from numbers import Number
from typing import Sequence, Tuple, Union

import mmcv
import numpy as np
from mmcv.transforms import BaseTransform
from mmcv.transforms.utils import cache_randomness
from mmpretrain.datasets.transforms import ColorJitter
from PIL import Image, ImageEnhance

from mmreid_gs.registry import TRANSFORMS
from mmreid_gs.utils.errors import ReIDUserError


@TRANSFORMS.register_module()
class RandomOcclusion(BaseTransform):
    """Paste a square block of constant colour at a random place.

    The augmentation of the public QAConv code: the side ``s`` of the
    square is drawn uniformly among the integers of
    ``[max(1, int(S * min_size)), int(S * max_size))`` where ``S`` is the
    shorter image side, its top-left corner uniformly among the positions
    that keep it inside the image, and it is filled with white.

    **Required Keys:** img ([H, W, C] or [H, W] np.ndarray)

    **Modified Keys:** img

    Args:
        min_size (float): Smallest side of the square as a fraction of the
            shorter image side. Defaults to 0.
        max_size (float): Largest side (exclusive) as a fraction of the
            shorter image side; 0 disables the transform. Defaults to 0.8.
        fill (Number | Sequence[Number]): Fill value, one number or one per
            channel. Defaults to 255 (white).
        prob (float): Probability of applying the occlusion. Defaults to 1.0
            (the public code always applies it).
    """

    def __init__(self,
                 min_size: float = 0.,
                 max_size: float = 0.8,
                 fill: Union[Number, Sequence[Number]] = 255,
                 prob: float = 1.0):
        if not 0 <= min_size <= max_size <= 1:
            raise ReIDUserError('RandomOcclusion needs 0 <= min_size <= '
                                f'max_size <= 1, got min_size={min_size}, '
                                f'max_size={max_size}.')
        if not 0 <= prob <= 1:
            raise ReIDUserError(
                f'RandomOcclusion: prob must be in [0, 1], got '
                f'{prob}.')
        self.min_size = min_size
        self.max_size = max_size
        self.fill = fill
        self.prob = prob

    @cache_randomness
    def _rand_params(self, height: int,
                     width: int) -> Union[None, Tuple[int, int, int]]:
        """Draw ``(x0, y0, side)`` of the square, or None to skip."""
        if self.max_size == 0 or np.random.rand() >= self.prob:
            return None
        short = min(height, width)
        low = max(1, int(short * self.min_size))
        high = int(short * self.max_size)
        if high <= low:
            side = min(low, short)
        else:
            side = int(np.random.randint(low, high))
        x0 = int(np.random.randint(0, width - side + 1))
        y0 = int(np.random.randint(0, height - side + 1))
        return x0, y0, side

    def transform(self, results: dict) -> dict:
        """Occlude ``results['img']``.

        Args:
            results (dict): Result dict with ``img``.

        Returns:
            dict: The result dict; ``img`` is a modified copy.
        """
        img = results['img']
        params = self._rand_params(img.shape[0], img.shape[1])
        if params is None:
            return results
        x0, y0, side = params
        img = img.copy()
        fill = self.fill
        if not isinstance(fill, Number) and img.ndim == 2:
            fill = fill[0]
        img[y0:y0 + side, x0:x0 + side] = np.asarray(fill, dtype=img.dtype)
        results['img'] = img
        return results

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(min_size={self.min_size}, '
                f'max_size={self.max_size}, fill={self.fill}, '
                f'prob={self.prob})')


def adjust_hue(img: np.ndarray, hue_factor: float) -> np.ndarray:
    """Shift the hue of a BGR uint8 image, as torchvision does.

    The image goes to PIL's 8-bit HSV, ``int(hue_factor * 255)`` is added to
    the hue modulo 256, and the image comes back to BGR. (mmcv's
    ``adjust_hue`` fails for negative factors with NumPy >= 2.)

    Args:
        img (np.ndarray): [H, W, 3] BGR uint8 image, or [H, W] (unchanged).
        hue_factor (float): Shift in [-0.5, 0.5]; 0 keeps the hue.

    Returns:
        np.ndarray: [H, W, 3] BGR uint8 image.
    """
    if not -0.5 <= hue_factor <= 0.5:
        raise ValueError(f'hue_factor must be in [-0.5, 0.5], got '
                         f'{hue_factor}.')
    if img.ndim == 2 or img.shape[-1] == 1:
        return img
    rgb = np.ascontiguousarray(img[..., ::-1].astype(np.uint8))
    out = np.asarray(_pil_hue(Image.fromarray(rgb), hue_factor))[..., ::-1]
    return np.ascontiguousarray(out).astype(img.dtype)


def _pil_hue(img: Image.Image, hue_factor: float) -> Image.Image:
    """:func:`adjust_hue` on an RGB PIL image."""
    h, s, v = img.convert('HSV').split()
    shift = int(hue_factor * 255)
    np_h = ((np.asarray(h, dtype=np.int16) + shift) % 256).astype(np.uint8)
    return Image.merge('HSV', (Image.fromarray(np_h), s, v)).convert('RGB')


@TRANSFORMS.register_module()
class ReIDColorJitter(ColorJitter):
    """mmpretrain's ``ColorJitter`` with a hue shift that works for negative
    factors.

    Same arguments and semantics as :class:`mmpretrain.datasets.transforms.
    ColorJitter` (and torchvision's): a ``(min, max)`` pair is the range of
    the factor, a number ``x`` means ``(1 - x, 1 + x)`` (hue: ``(-x, x)``);
    the four adjustments are applied in a random order. Brightness, contrast
    and saturation use mmcv; the hue uses :func:`adjust_hue`.

    **Required Keys:** img (BGR uint8)

    **Modified Keys:** img

    Args:
        brightness (float | Sequence[float]): Defaults to 0.
        contrast (float | Sequence[float]): Defaults to 0.
        saturation (float | Sequence[float]): Defaults to 0.
        hue (float | Sequence[float]): Defaults to 0.
        backend (str): mmcv backend of brightness/contrast/saturation.
            Defaults to ``'pillow'``.
    """

    def transform(self, results: dict) -> dict:
        """Jitter ``results['img']``.

        Args:
            results (dict): Result dict with ``img``.

        Returns:
            dict: The result dict with the new ``img``.
        """
        img = results['img']
        order, brightness, contrast, saturation, hue = self._rand_params()
        if (self.backend == 'pillow' and img.dtype == np.uint8
                and img.ndim == 3 and img.shape[-1] == 3):
            results['img'] = self._jitter_pil(img, order, brightness,
                                              contrast, saturation, hue)
            return results
        for index in order:
            if index == 0 and brightness is not None:
                img = mmcv.adjust_brightness(
                    img, brightness, backend=self.backend)
            elif index == 1 and contrast is not None:
                img = mmcv.adjust_contrast(img, contrast, backend=self.backend)
            elif index == 2 and saturation is not None:
                img = mmcv.adjust_color(
                    img, alpha=saturation, backend=self.backend)
            elif index == 3 and hue is not None:
                img = adjust_hue(img, hue)
        results['img'] = img
        return results

    @staticmethod
    def _jitter_pil(img: np.ndarray, order, brightness, contrast,
                    saturation, hue) -> np.ndarray:
        """The four adjustments on one PIL image: the same pixels as mmcv's
        per-adjustment functions (each converts BGR -> PIL -> BGR, a
        lossless round trip for uint8), with one conversion instead of up
        to four (the jitter was 2/3 of the demo pipeline's CPU time)."""
        pil = Image.fromarray(np.ascontiguousarray(img[..., ::-1]))
        for index in order:
            if index == 0 and brightness is not None:
                pil = ImageEnhance.Brightness(pil).enhance(brightness)
            elif index == 1 and contrast is not None:
                pil = ImageEnhance.Contrast(pil).enhance(contrast)
            elif index == 2 and saturation is not None:
                pil = ImageEnhance.Color(pil).enhance(saturation)
            elif index == 3 and hue is not None:
                pil = _pil_hue(pil, hue)
        return np.ascontiguousarray(np.asarray(pil)[..., ::-1])

"""RandomOcclusion and colour jitter (datasets/transforms/processing.py)."""
import numpy as np
import pytest
from mmcv.transforms.utils import cache_random_params

from mmreid_gs.datasets.transforms import (RandomOcclusion, ReIDColorJitter,
                                           adjust_hue)


# --------------------------------------------------------------------------
# RandomOcclusion
# --------------------------------------------------------------------------
def _occluded_box(before, after):
    """Bounding box of the changed pixels; checks it is a filled square."""
    changed = np.any(after != before, axis=-1) if after.ndim == 3 else \
        after != before
    ys, xs = np.nonzero(changed)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    assert changed.sum() == (y1 - y0) * (x1 - x0)  # a full rectangle
    return y0, y1, x0, x1


def test_random_occlusion_pastes_a_white_square():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 200, (40, 20, 3), dtype=np.uint8)  # never 255
    t = RandomOcclusion(min_size=0., max_size=0.8)
    sides = []
    np.random.seed(0)
    for _ in range(200):
        out = t(dict(img=img))['img']
        assert out.shape == img.shape and out.dtype == np.uint8
        y0, y1, x0, x1 = _occluded_box(img, out)
        side = y1 - y0
        assert x1 - x0 == side  # a square
        assert np.all(out[y0:y1, x0:x1] == 255)
        # side in [max(1, int(20 * 0)), int(20 * 0.8)) = [1, 16)
        assert 1 <= side < 16
        assert 0 <= y0 and y1 <= 40 and 0 <= x0 and x1 <= 20
        sides.append(side)
    assert min(sides) <= 3 and max(sides) >= 13  # covers the range
    assert np.all(img < 200)  # the input array is not modified


def test_random_occlusion_options():
    img = np.zeros((16, 8, 3), np.uint8)
    np.random.seed(1)
    # min_size bounds the side from below: [int(8 * .5), int(8 * .8)) = [4, 6)
    t = RandomOcclusion(min_size=0.5, max_size=0.8, fill=(1, 2, 3))
    for _ in range(20):
        out = t(dict(img=img))['img']
        y0, y1, x0, x1 = _occluded_box(img, out)
        assert 4 <= y1 - y0 < 6
        assert out[y0, x0].tolist() == [1, 2, 3]
    assert np.array_equal(
        RandomOcclusion(max_size=0.)(dict(img=img))['img'], img)
    assert np.array_equal(
        RandomOcclusion(prob=0.)(dict(img=img))['img'], img)
    gray = np.zeros((16, 8), np.uint8)
    out = RandomOcclusion()(dict(img=gray))['img']
    assert out.shape == (16, 8) and out.max() == 255
    # the same random parameters under cache_random_params
    t = RandomOcclusion()
    with cache_random_params(t):
        a = t(dict(img=img))['img']
        b = t(dict(img=img))['img']
    assert np.array_equal(a, b)
    for bad in (dict(min_size=.5, max_size=.2), dict(max_size=1.5),
                dict(prob=2.)):
        with pytest.raises(ValueError):
            RandomOcclusion(**bad)
    assert 'max_size=0.8' in repr(RandomOcclusion())


# --------------------------------------------------------------------------
# colour jitter
# --------------------------------------------------------------------------
def test_adjust_hue_shifts_both_ways():
    red = np.zeros((2, 2, 3), np.uint8)
    red[..., 2] = 255  # BGR pure red, hue 0
    # +0.333: int(84.9) = 84 of 256 -> ~118 degrees: green
    green = adjust_hue(red, 0.333)
    assert green[0, 0].argmax() == 1 and green[0, 0, 1] == 255
    # -0.333: 256 - 84 = 172 of 256 -> ~242 degrees: blue (fails in mmcv)
    blue = adjust_hue(red, -0.333)
    assert blue[0, 0].argmax() == 0 and blue[0, 0, 0] == 255
    assert np.array_equal(adjust_hue(red, 0.), red)
    gray = np.full((2, 2), 7, np.uint8)
    assert np.array_equal(adjust_hue(gray, 0.1), gray)
    with pytest.raises(ValueError):
        adjust_hue(red, 0.7)


def test_reid_color_jitter():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (8, 4, 3), dtype=np.uint8)
    t = ReIDColorJitter(hue=(-0.1, -0.1))
    assert np.array_equal(t(dict(img=img))['img'], adjust_hue(img, -0.1))
    t = ReIDColorJitter(brightness=(2., 2.))
    expected = np.clip(img.astype(int) * 2, 0, 255)
    assert np.abs(t(dict(img=img))['img'].astype(int) - expected).max() <= 1
    t = ReIDColorJitter(
        brightness=(0.5, 2.0), contrast=(0.5, 2.0), saturation=(0.5, 2.0),
        hue=(-0.1, 0.1))
    np.random.seed(0)
    for _ in range(20):  # negative hue factors included
        out = t(dict(img=img))['img']
        assert out.shape == img.shape and out.dtype == np.uint8


def test_reid_color_jitter_one_pil_conversion_equals_per_step_path():
    # the fast path (one BGR -> PIL -> BGR round trip) gives the pixels of
    # mmcv's per-adjustment functions, for every order and factor drawn
    import mmcv
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, (16, 8, 3), dtype=np.uint8)
    t = ReIDColorJitter(
        brightness=(0.5, 2.0), contrast=(0.5, 2.0), saturation=(0.5, 2.0),
        hue=(-0.1, 0.1))
    np.random.seed(3)
    for _ in range(30):
        with cache_random_params(t):
            fast = t(dict(img=img.copy()))['img']
            order, b, c, s, h = t._rand_params()  # the same draw
        slow = img.copy()
        for index in order:
            if index == 0 and b is not None:
                slow = mmcv.adjust_brightness(slow, b, backend='pillow')
            elif index == 1 and c is not None:
                slow = mmcv.adjust_contrast(slow, c, backend='pillow')
            elif index == 2 and s is not None:
                slow = mmcv.adjust_color(slow, alpha=s, backend='pillow')
            elif index == 3 and h is not None:
                slow = adjust_hue(slow, h)
        assert fast.dtype == np.uint8 and fast.flags.c_contiguous
        assert np.array_equal(fast, slow)

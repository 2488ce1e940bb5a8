"""Tests of the re-identification transforms and the configs' pipelines."""
import copy
import os.path as osp

import cv2
import numpy as np
import pytest
import torch
from mmcv.transforms.utils import cache_random_params
from mmengine.config import Config
from mmengine.dataset import Compose
from mmpretrain.structures import DataSample

from mmreid_gs.datasets.transforms import (PackReIDInputs, RandomOcclusion,
                                           ReIDColorJitter, adjust_hue)
from mmreid_gs.registry import TRANSFORMS

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIGS = osp.join(REPO, 'configs')


def _pipelines(height=384, width=128):
    """The train and test pipelines of every config
    (``_base_/datasets/reid_pipelines.py``), resized to (height, width)."""
    cfg = Config.fromfile(
        osp.join(CONFIGS, '_base_', 'datasets', 'reid_pipelines.py'))
    for t in cfg.train_pipeline + cfg.test_pipeline:
        if t.type == 'Resize':
            t.scale = (width, height)
        elif t.type == 'mmpretrain.RandomCrop':
            t.crop_size = (height, width)
    return cfg.train_pipeline, cfg.test_pipeline


@pytest.fixture(scope='module')
def registered():
    from mmreid_gs.utils import register_all_modules
    register_all_modules()


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


# --------------------------------------------------------------------------
# PackReIDInputs
# --------------------------------------------------------------------------
def test_pack_reid_inputs():
    img = np.arange(4 * 3 * 3, dtype=np.uint8).reshape(4, 3, 3)
    results = dict(
        img=img,
        gt_label=5,
        img_path='a/0001_c1s1_000001_01.jpg',
        cam_id=2,
        timestamp=1234,
        sample_idx=7,
        ori_shape=(10, 6),
        img_shape=(4, 3),
        pid=11)
    out = PackReIDInputs()(copy.deepcopy(results))
    inputs = out['inputs']
    assert inputs.shape == (3, 4, 3) and inputs.dtype == torch.uint8
    assert torch.equal(inputs, torch.from_numpy(img).permute(2, 0, 1))
    assert inputs.is_contiguous()
    sample = out['data_samples']
    assert isinstance(sample, DataSample)
    assert sample.gt_label.tolist() == [5]
    assert sample.metainfo == dict(
        img_path='a/0001_c1s1_000001_01.jpg',
        cam_id=2,
        timestamp=1234,
        sample_idx=7,
        ori_shape=(10, 6),
        img_shape=(4, 3))
    # no label, no timestamp, grayscale image, custom keys
    out = PackReIDInputs(meta_keys=('pid', ))(
        dict(img=np.zeros((4, 3), np.uint8), pid=11))
    assert out['inputs'].shape == (1, 4, 3)
    assert 'gt_label' not in out['data_samples']
    assert out['data_samples'].metainfo == dict(pid=11)
    with pytest.raises(KeyError, match='img'):
        PackReIDInputs()(dict(gt_label=1))


# --------------------------------------------------------------------------
# ready-made pipelines
# --------------------------------------------------------------------------
@pytest.fixture
def image_file(tmp_path):
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (60, 30, 3), dtype=np.uint8)
    path = str(tmp_path / '0001_c1s1_000001_01.jpg')
    cv2.imwrite(path, img)
    return path


def _info(path):
    return dict(img_path=path, gt_label=3, cam_id=0, timestamp=1,
                sample_idx=0)


def test_pipeline_types_resolve(registered):
    from mmengine.registry import DefaultScope
    assert DefaultScope.get_current_instance().scope_name == 'mmreid_gs'
    train, test = _pipelines(32, 16)
    for cfg in train + test:
        t = TRANSFORMS.build(cfg)
        assert callable(t)
    train = _pipelines()[0]
    assert [t.type for t in train] == [
        'LoadImageFromFile', 'Resize', 'mmpretrain.RandomCrop', 'RandomFlip',
        'mmpretrain.Rotate', 'ReIDColorJitter', 'RandomOcclusion',
        'PackReIDInputs'
    ]
    assert train[1].scale == (128, 384) and train[2].padding == 10
    occlusion = TRANSFORMS.build(train[6])
    assert (occlusion.min_size, occlusion.max_size, occlusion.prob) == (
        0., 0.8, 1.)
    jitter = TRANSFORMS.build(train[5])
    assert jitter.brightness == (0.5, 2.0)
    assert jitter.contrast == (0.5, 2.0)
    assert jitter.saturation == (0.5, 2.0)
    assert jitter.hue == (-0.1, 0.1)
    # rotation: angle uniform in [-5, 5] degrees
    rotate = TRANSFORMS.build(train[4])
    assert rotate.prob == 1.0
    np.random.seed(0)
    angles = np.array(
        [rotate.random_negative(rotate.random_magnitude())
         for _ in range(2000)])
    assert angles.min() >= -5 and angles.max() <= 5
    assert angles.min() < -4.5 and angles.max() > 4.5
    assert abs(np.mean(np.abs(angles)) - 2.5) < 0.2


def test_demo_pipelines_edit_the_base_ones():
    # the demo edits the base lists by position: the edits must land on the
    # transforms they name, and leave everything else as in the base
    demo = Config.fromfile(osp.join(CONFIGS, 'qaconv_gs_demo.py'))
    base_train, base_test = _pipelines(128, 64)
    base_train[2].padding = 4
    base_train[6].prob = 0.5
    assert demo.train_pipeline == base_train
    assert demo.test_pipeline == base_test
    for loop in (demo.test_cfg, demo.val_cfg, demo.custom_hooks[0]):
        assert loop.pipeline == base_test


def test_train_pipeline_on_a_real_image(registered, image_file):
    # through a Config, as a config file would copy the list
    pipeline = Compose(_pipelines(32, 16)[0])
    np.random.seed(0)
    outs = [pipeline(_info(image_file)) for _ in range(3)]
    for out in outs:
        assert out['inputs'].shape == (3, 32, 16)
        assert out['inputs'].dtype == torch.uint8
        sample = out['data_samples']
        assert sample.gt_label.tolist() == [3]
        assert sample.cam_id == 0 and sample.timestamp == 1
        assert sample.img_shape == (32, 16)
        assert sample.ori_shape == (60, 30)
        assert sample.img_path == image_file
    assert not torch.equal(outs[0]['inputs'], outs[1]['inputs'])


def test_test_pipeline_is_a_bicubic_resize(registered, image_file):
    pipeline = Compose(_pipelines(32, 16)[1])
    out = pipeline(_info(image_file))
    expected = cv2.resize(
        cv2.imread(image_file), (16, 32), interpolation=cv2.INTER_CUBIC)
    assert torch.equal(out['inputs'],
                       torch.from_numpy(expected).permute(2, 0, 1))
    assert torch.equal(pipeline(_info(image_file))['inputs'], out['inputs'])

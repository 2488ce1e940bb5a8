"""The configs' data pipelines (configs/_base_/datasets/reid_pipelines.py,
the demo's edits of them) built from the registry and run on an image."""
import os.path as osp

import cv2
import numpy as np
import pytest
import torch
from helpers import CONFIGS
from mmengine.config import Config
from mmengine.dataset import Compose

from mmreid_gs.registry import TRANSFORMS


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

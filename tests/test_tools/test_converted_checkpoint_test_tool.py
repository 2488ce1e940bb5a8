"""tools/test.py on a converted public QAConv checkpoint.

A randomly initialised stand-in of the public QAConv model (the one of
``test_model_converters.py``: IBN-b ResNet-18 ``base``, ``neck_conv`` /
``neck_bn`` and the public QAConv matcher formula; random BatchNorm running
statistics, so no BatchNorm is an identity) is saved in the public checkpoint
layout and converted with the converter's command line. ``tools/test.py`` is
then run on the converted checkpoint over two named sets of a tiny generated
benchmark, and its exported scores must equal the public model's on the same
image files, preprocessed here independently of our pipeline (BGR read,
bicubic resize, RGB, ImageNet mean/std).
"""
import os.path as osp
import sys

import mmcv
import numpy as np
import pytest
import torch
from helpers import CONFIGS, TEST_PIPELINE, data_config, load_tool

from mmreid_gs.evaluation.results_file import load_test_results

SETS = ('synthetic_A', 'synthetic_B_unseen')
STORED_SIZE = (80, 40)  # (h, w) of the generated files; resized for the model
MEAN = np.array([123.675, 116.28, 103.53], dtype=np.float32)
STD = np.array([58.395, 57.12, 57.375], dtype=np.float32)


# The stand-in of the public model and its checkpoint layout.
standin = load_tool('tests/test_tools/test_model_converters.py',
                    '_standin_public_qaconv')
qaconv_conv = standin.qaconv_conv
H, W, NECK = standin.H, standin.W, standin.NECK

# The generated benchmark (4 training ids, 80x40 files) and the stand-in's
# network: ResNet-18-IBN with 64 base channels, NECK features.
CONFIG = """
model = dict(
    backbone=dict(type='ResNetIBN', depth=18, base_channels=64),
    neck=dict(in_channels=256, out_channels={neck}),
    head=dict(num_features={neck}, height={h} // 16, width={w} // 16))
train_dataloader = dict(
    num_workers=0, persistent_workers=False,
    dataset=dict(domain_a, split='train', pipeline=test_pipeline))
test_sets = dict(
    synthetic_A=dict(query=dict(domain_a, split='query'),
                     gallery=dict(domain_a, split='gallery')),
    synthetic_B_unseen=dict(query=dict(domain_b, split='query'),
                            gallery=dict(domain_b, split='gallery')))
custom_hooks = []
test_dataloader = dict(batch_size=5, num_workers=0, persistent_workers=False)
val_dataloader = test_dataloader
test_cfg = dict(pipeline=test_pipeline, test_sets=test_sets, progress=False)
val_cfg = dict(pipeline=test_pipeline, test_sets=test_sets)
"""


@pytest.fixture(scope='module')
def public():
    """The public model and matcher, random weights and BN statistics."""
    generator = torch.Generator().manual_seed(1)
    model = standin.PublicResMap()
    criterion = standin.PublicLoss(
        standin.PublicQAConv(NECK, H // 16, W // 16))
    standin.randomise(model, generator)
    standin.randomise(criterion, generator)
    return dict(model=model.eval(), criterion=criterion.eval())


def _preprocess(path):
    """The test pipeline written out: BGR read, bicubic resize, RGB, norm."""
    img = mmcv.imread(path)  # BGR uint8
    assert img.shape[:2] == STORED_SIZE  # the resize does something
    img = mmcv.imresize(img, (W, H), interpolation='bicubic')
    img = (img[..., ::-1].astype(np.float32) - MEAN) / STD
    return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))


def _public_scores(public, query_paths, gallery_paths):
    with torch.no_grad():
        q = public['model'](
            torch.stack([_preprocess(str(p)) for p in query_paths]))
        g = public['model'](
            torch.stack([_preprocess(str(p)) for p in gallery_paths]))
        return public['criterion'].matcher(q, g).numpy()


def test_test_tool_on_converted_checkpoint_matches_public_model(
        public, tmp_path, monkeypatch):
    from mmengine.config import Config

    from mmreid_gs.registry import MODELS
    from mmreid_gs.utils import register_all_modules

    config = tmp_path / 'converted_public.py'
    demo = osp.join(CONFIGS, 'qaconv_gs_demo.py')
    config.write_text(
        f'_base_ = [{demo!r}]\nimg_height, img_width = {H}, {W}\n' +
        data_config(str(tmp_path / 'data'), train_ids=4, test_ids=6,
                    img_size=STORED_SIZE) + TEST_PIPELINE +
        CONFIG.format(h=H, w=W, neck=NECK))

    # Public checkpoint -> converter command line -> MMEngine checkpoint.
    src = tmp_path / 'public' / 'checkpoint.pth.tar'
    src.parent.mkdir()
    torch.save(standin.public_checkpoint(public), src)
    converted = tmp_path / 'converted.pth'
    monkeypatch.setattr(
        sys, 'argv', ['qaconv_to_mmreid.py', str(src), str(converted)])
    qaconv_conv.main()
    state = torch.load(converted, weights_only=True)['state_dict']

    # Every weight of the configured model comes from the checkpoint (the
    # Runner loads non-strictly, so check the keys and shapes here).
    register_all_modules()
    ours = MODELS.build(Config.fromfile(str(config)).model)
    expected = ours.state_dict()
    assert sorted(state) == sorted(expected)
    for key, value in expected.items():
        assert state[key].shape == value.shape, key

    test = load_tool('tools/test.py')
    out = tmp_path / 'scores.npz'
    assert test.run_cli(test.main, [
        str(config), str(converted), '--work-dir',
        str(tmp_path / 'work'), '--out', str(out)
    ]) == 0

    results = load_test_results(str(out))
    assert sorted(results) == sorted(SETS)
    for name in SETS:
        scores = results[name]['scores']
        query_paths = results[name]['query_paths']
        gallery_paths = results[name]['gallery_paths']
        assert scores.shape == (len(query_paths), len(gallery_paths)) == (6,
                                                                          18)
        reference = _public_scores(public, query_paths, gallery_paths)
        assert reference.std() > 0.1, name  # a meaningful comparison
        np.testing.assert_allclose(
            scores, reference, rtol=0, atol=1e-4, err_msg=name)

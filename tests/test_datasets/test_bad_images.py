"""Unreadable images met at run time (``check_images=False``).

A tiny Market-1501-layout folder with one truncated JPEG, read through the
real tools, Runner and dataloader workers: ``on_bad_image='error'`` ends
with one line naming the file (exit 2, nothing deleted); ``'skip'`` uses
another image of the same identity and logs it with a count.
"""
import glob
import os
import os.path as osp

import cv2
import numpy as np
import pytest
import torch
from helpers import TEST_PIPELINE, config_header, load_tool, model_config
from mmengine.registry import DefaultScope

from mmreid_gs.datasets import BadImageError, Market1501
from mmreid_gs.evaluation.results_file import load_test_results
from mmreid_gs.utils import register_all_modules

register_all_modules(init_default_scope=False)

# The tiny network on a Market-1501-layout folder, 2 dataloader workers.
CONFIG = """
root = {root!r}
train_dataloader = dict(
    batch_size=8, num_workers=2, persistent_workers=False,
    sampler=dict(batch_size=8, num_instances=4),
    dataset=dict(_delete_=True, type='Market1501', data_root=root,
                 split='train', pipeline=test_pipeline))
test_sets = dict(tiny=dict(
    query=dict(type='Market1501', data_root=root, split='query'),
    gallery=dict(type='Market1501', data_root=root, split='gallery')))
custom_hooks = []
test_dataloader = dict(batch_size=8, num_workers=2,
                       persistent_workers=False)
val_dataloader = test_dataloader
test_cfg = dict(_delete_=True, type='ReIDTestLoop', pipeline=test_pipeline,
                test_sets=test_sets, progress=False)
val_cfg = dict(_delete_=True, type='ReIDValLoop', pipeline=test_pipeline,
               test_sets=test_sets)
train_cfg = dict(max_epochs=1, val_interval=1)
default_hooks = dict(logger=dict(interval=1))
"""


def _write_market(root):
    """4 training identities x 2 cameras x 2 images; 2 query and 2x4
    gallery images of 2 test identities. Returns the truncated file."""
    rng = np.random.default_rng(0)
    names = {'bounding_box_train': [], 'query': [], 'bounding_box_test': []}
    for pid in (1, 2, 3, 4):
        for cam in (1, 2):
            for frame in (1, 2):
                names['bounding_box_train'].append(
                    f'{pid:04d}_c{cam}s1_{frame:06d}_00.jpg')
    for pid in (7, 8):
        names['query'].append(f'{pid:04d}_c1s1_000009_00.jpg')
        for cam in (1, 2):
            for frame in (3, 4):
                names['bounding_box_test'].append(
                    f'{pid:04d}_c{cam}s1_{frame:06d}_00.jpg')
    for folder, files in names.items():
        os.makedirs(osp.join(root, folder))
        for name in files:
            img = rng.integers(0, 256, (64, 32, 3), dtype=np.uint8)
            cv2.imwrite(osp.join(root, folder, name), img)
    bad = osp.join(root, 'bounding_box_train', '0002_c1s1_000001_00.jpg')
    bad_gallery = osp.join(root, 'bounding_box_test',
                           '0007_c2s1_000003_00.jpg')
    for path in (bad, bad_gallery):
        with open(path, 'rb') as f:
            head = f.read(120)  # the JPEG header only: does not decode
        with open(path, 'wb') as f:
            f.write(head)
    return bad, bad_gallery


@pytest.fixture(scope='module')
def market(tmp_path_factory):
    folder = tmp_path_factory.mktemp('bad_images')
    root = str(folder / 'market')
    bad, bad_gallery = _write_market(root)
    config = folder / 'tiny.py'
    config.write_text(config_header() + TEST_PIPELINE +
                      model_config(channels=8) + CONFIG.format(root=root))
    return str(config), root, bad, bad_gallery, folder


def test_worker_message_becomes_the_original_line():
    # What DataLoader's ExceptionWrapper.reraise passes to the constructor.
    worker_msg = (
        'Caught BadImageError in DataLoader worker process 1.\n'
        'Original Traceback (most recent call last):\n'
        '  File "x.py", line 1, in f\n'
        'mmreid_gs.datasets.base_reid_dataset.BadImageError: Market1501 '
        '(train): image cannot be read or decoded: /d/0002_c1.jpg. Pass x\n')
    err = BadImageError(worker_msg)
    assert str(err) == ('Market1501 (train): image cannot be read or '
                        'decoded: /d/0002_c1.jpg. Pass x')
    assert str(BadImageError('plain')) == 'plain'
    assert isinstance(err, ValueError)


def test_dataset_error_and_same_identity_replacement(market):
    _, root, bad, _, _ = market
    pipeline = [dict(type='LoadImageFromFile'), dict(type='PackReIDInputs')]
    with DefaultScope.overwrite_default_scope('mmreid_gs'):
        strict = Market1501(root, split='train', pipeline=pipeline)
        lenient = Market1501(root, split='train', pipeline=pipeline,
                             on_bad_image='skip')
    idx = [i for i in range(len(strict))
           if strict.get_data_info(i)['img_path'] == bad][0]
    with pytest.raises(BadImageError, match='0002_c1s1_000001_00.jpg'):
        strict[idx]
    for _ in range(2):  # the second time from the process's bad list
        with torch.inference_mode():
            data = lenient[idx]
        sample = data['data_samples']
        # same identity, same camera first: the other c1 image of 0002
        assert osp.basename(sample.img_path) == '0002_c1s1_000002_00.jpg'
        assert int(sample.gt_label) == strict.get_data_info(idx)['gt_label']
    # another pipeline (a hook loading training images) is handled alike
    with DefaultScope.overwrite_default_scope('mmreid_gs'):
        from mmengine.dataset import Compose
        load = Compose([dict(type='LoadImageFromFile')])
    assert osp.basename(lenient.prepare_data_with(idx, load)['img_path']) \
        == '0002_c1s1_000002_00.jpg'
    with pytest.raises(BadImageError, match='0002_c1s1_000001_00.jpg'):
        strict.prepare_data_with(idx, load)
    # good samples are untouched
    other = (idx + 4) % len(lenient)
    assert lenient[other]['data_samples'].img_path == \
        lenient.get_data_info(other)['img_path']


def test_all_images_of_an_identity_bad(tmp_path):
    root = str(tmp_path / 'm')
    _write_market(root)
    for path in glob.glob(osp.join(root, 'bounding_box_train', '0002_*')):
        with open(path, 'wb') as f:
            f.write(b'not an image')
    with DefaultScope.overwrite_default_scope('mmreid_gs'):
        ds = Market1501(root, split='train', on_bad_image='skip',
                        pipeline=[dict(type='LoadImageFromFile')])
    idx = [i for i in range(len(ds))
           if osp.basename(ds.get_data_info(i)['img_path']).startswith(
               '0002_')][0]
    with pytest.raises(BadImageError, match='no other image of its identity'):
        ds[idx]


def test_training_with_workers_error_then_skip(market, capsys):
    config, root, bad, _, folder = market
    train = load_tool('tools/train.py')
    work_dir = str(folder / 'train_error')
    code = train.run_cli(train.main, [config, '--work-dir', work_dir,
                                      '--no-validate'])
    err = capsys.readouterr().err
    assert code == 2
    lines = [line for line in err.splitlines() if line.startswith('error')]
    assert len(lines) == 1 and 'Traceback' not in err
    assert lines[0].startswith('error (BadImageError): Market1501 (train): '
                               f'image cannot be read or decoded: {bad}')
    assert osp.isdir(work_dir)  # nothing deleted

    work_dir = str(folder / 'train_skip')
    code = train.run_cli(train.main, [
        config, '--work-dir', work_dir, '--no-validate', '--cfg-options',
        'train_dataloader.dataset.on_bad_image=skip'
    ])
    assert code == 0, capsys.readouterr().err
    assert osp.isfile(osp.join(work_dir, 'epoch_1.pth'))
    logs = glob.glob(osp.join(work_dir, '*', '*.log'))
    text = open(logs[0]).read()
    assert f'image cannot be read or decoded: {bad}; using ' in text
    assert 'Bad images met by this process so far: 1.' in text


def test_testing_with_workers_error_then_skip(market, capsys):
    config, _, _, bad_gallery, folder = market
    test = load_tool('tools/test.py')
    code = test.run_cli(
        test.main, [config, '--work-dir', str(folder / 'test_error')])
    err = capsys.readouterr().err
    assert code == 2
    assert (f'error (BadImageError): Market1501 (gallery): image cannot be '
            f'read or decoded: {bad_gallery}') in err
    out = str(folder / 'scores.npz')
    code = test.run_cli(test.main, [
        config, '--work-dir', str(folder / 'test_skip'), '--out', out,
        '--cfg-options', 'test_cfg.test_sets.tiny.gallery.on_bad_image=skip'
    ])
    assert code == 0, capsys.readouterr().err
    scores = load_test_results(out)['tiny']['scores']
    assert scores.shape == (2, 8)
    assert np.isfinite(scores).all()


def test_graph_sampler_hook_images_handled_alike(market):
    """The Graph Sampler hook loads one training image per class through
    its own (test) pipeline: an undecodable one is handled as in training
    batches."""
    from mmreid_gs.engine.hooks.class_images import ClassImages
    _, root, bad, _, _ = market
    pipeline = [dict(type='LoadImageFromFile'), dict(type='PackReIDInputs')]
    with DefaultScope.overwrite_default_scope('mmreid_gs'):
        from mmengine.dataset import Compose
        strict = Market1501(root, split='train')
        lenient = Market1501(root, split='train', on_bad_image='skip')
        load = Compose(pipeline)
    idx = [i for i in range(len(strict))
           if strict.get_data_info(i)['img_path'] == bad][0]
    with pytest.raises(BadImageError, match='0002_c1s1_000001_00.jpg'):
        ClassImages(strict, [idx], load)[0]
    out = ClassImages(lenient, [idx], load)[0]
    assert osp.basename(out['data_samples'].img_path) == \
        '0002_c1s1_000002_00.jpg'

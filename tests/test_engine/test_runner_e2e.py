"""End to end: the real tools and Runner on a tiny generated benchmark.

Trains QAConv-GS for 2 epochs (1 PK warm-up epoch, then one Graph Sampler
epoch), validates and tests on two named sets (one an unseen camera-style
domain), exports the scores, resumes exactly, and refuses bad input with
clear errors.
"""
import glob
import importlib.util
import json
import os.path as osp

import numpy as np
import pytest
import torch

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def _load_tool(name):
    spec = importlib.util.spec_from_file_location(
        f'_tool_{name}', osp.join(REPO, 'tools', f'{name}.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


TINY_CONFIG = """
_base_ = [{demo!r}]
img_height, img_width = 64, 32
synthetic_root = {root!r}
domain_a = dict(type='SyntheticReID', data_root=synthetic_root + '/A',
                domain='A', num_train_ids=12, num_test_ids=6, num_cams=2,
                imgs_per_cam=2, img_size=(64, 32))
domain_b = dict(domain_a, data_root=synthetic_root + '/B', domain='B')
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(img_width, img_height), keep_ratio=False,
         interpolation='bicubic'),
    dict(type='PackReIDInputs'),
]
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(img_width, img_height), keep_ratio=False,
         interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='RandomOcclusion', min_size=0., max_size=0.5, prob=0.5),
    dict(type='PackReIDInputs'),
]
model = dict(
    backbone=dict(type='ResNetIBN', depth=18, base_channels=16),
    neck=dict(in_channels=64, out_channels=32),
    head=dict(num_features=32, height=4, width=2))
train_dataloader = dict(
    batch_size=16, num_workers=0, persistent_workers=False,
    sampler=dict(batch_size=16, num_instances=4),
    dataset=dict(domain_a, split='train', pipeline=train_pipeline))
test_sets = dict(
    synthetic_A=dict(query=dict(domain_a, split='query'),
                     gallery=dict(domain_a, split='gallery')),
    synthetic_B_unseen=dict(query=dict(domain_b, split='query'),
                            gallery=dict(domain_b, split='gallery')))
custom_hooks = [
    dict(type='GraphSamplerHook', pipeline=test_pipeline, pk_epochs=1,
         batch_size=32, save_graph=True)
]
test_dataloader = dict(batch_size=32, num_workers=0)
val_dataloader = test_dataloader
test_cfg = dict(pipeline=test_pipeline, test_sets=test_sets, progress=False)
val_cfg = dict(pipeline=test_pipeline, test_sets=test_sets)
train_cfg = dict(max_epochs=2, val_interval=2)
default_hooks = dict(logger=dict(interval=4))
"""


@pytest.fixture(scope='module')
def tiny_config(tmp_path_factory):
    folder = tmp_path_factory.mktemp('e2e')
    path = folder / 'tiny_demo.py'
    path.write_text(
        TINY_CONFIG.format(
            demo=osp.join(REPO, 'configs', 'qaconv_gs_demo.py'),
            root=str(folder / 'data')))
    return str(path), folder


@pytest.fixture(scope='module')
def trained(tiny_config):
    config, folder = tiny_config
    train = _load_tool('train')
    work_dir = str(folder / 'run')
    assert train.run_cli(train.main, [config, '--work-dir', work_dir]) == 0
    return config, folder, work_dir


def _state(path):
    return torch.load(path, map_location='cpu',
                      weights_only=True)['state_dict']


def test_train_with_graph_sampler_then_validate(trained):
    _, _, work_dir = trained
    assert osp.isfile(osp.join(work_dir, 'epoch_2.pth'))
    # Epoch 1 is the PK warm-up; the graph of epoch 2 comes from the model.
    assert not osp.exists(osp.join(work_dir, 'graph', 'epoch_1.npz'))
    graph = np.load(osp.join(work_dir, 'graph', 'epoch_2.npz'))
    neighbors = graph['neighbors']
    assert neighbors.shape == (12, 3)  # C x (P - 1), P = 16 / 4
    assert (neighbors != np.arange(12)[:, None]).all()
    # Validation at the last epoch logged both named sets.
    scalars = glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json'))
    assert len(scalars) == 1
    with open(scalars[0]) as f:
        records = [json.loads(line) for line in f]
    val = [r for r in records if 'synthetic_A/Rank-1' in r]
    assert len(val) == 1
    for name in ('synthetic_A', 'synthetic_B_unseen'):
        for key in ('Rank-1', 'Rank-5', 'Rank-10', 'mAP', 'mINP'):
            assert 0.0 <= val[0][f'{name}/{key}'] <= 1.0
    # The sampler state travels in the checkpoint.
    ckpt = torch.load(osp.join(work_dir, 'epoch_2.pth'), map_location='cpu',
                      weights_only=True)
    assert 'graph_sampler' in ckpt


def test_test_tool_exports_scores(trained, tmp_path):
    config, _, work_dir = trained
    test = _load_tool('test')
    out = str(tmp_path / 'scores.npz')
    code = test.run_cli(test.main, [
        config,
        osp.join(work_dir, 'epoch_2.pth'), '--work-dir',
        str(tmp_path / 'test'), '--out', out, '--rerank'
    ])
    assert code == 0
    data = np.load(out)
    for name in ('synthetic_A', 'synthetic_B_unseen'):
        scores = data[f'{name}/scores']
        q_pids = data[f'{name}/query_pids']
        g_pids = data[f'{name}/gallery_pids']
        assert scores.shape == (len(q_pids), len(g_pids))
        assert len(data[f'{name}/query_paths']) == len(q_pids)
        assert np.isfinite(scores).all()
        assert data[f'{name}/distmat_rerank'].shape == scores.shape


def test_untrained_test_and_loaded_scores_agree_with_inference_api(
        trained, tmp_path):
    """tools/test.py scores equal the inference API's on the same images."""
    from mmreid_gs.apis import init_model, match_images
    config, _, work_dir = trained
    ckpt = osp.join(work_dir, 'epoch_2.pth')
    test = _load_tool('test')
    out = str(tmp_path / 's.npz')
    assert test.run_cli(test.main, [
        config, ckpt, '--work-dir',
        str(tmp_path / 't'), '--out', out
    ]) == 0
    data = np.load(out)
    model = init_model(config, ckpt)
    q = [str(p) for p in data['synthetic_A/query_paths'][:3]]
    g = [str(p) for p in data['synthetic_A/gallery_paths'][:5]]
    scores = match_images(model, q, g).numpy()
    np.testing.assert_allclose(
        scores, data['synthetic_A/scores'][:3, :5], rtol=1e-4, atol=1e-4)


def test_resume_reproduces_the_uninterrupted_run(trained, tmp_path):
    config, _, work_dir = trained
    train = _load_tool('train')
    stopped = str(tmp_path / 'stopped')
    assert train.run_cli(train.main, [
        config, '--work-dir', stopped, '--cfg-options',
        'train_cfg.max_epochs=1'
    ]) == 0
    resumed = str(tmp_path / 'resumed')
    assert train.run_cli(train.main, [
        config, '--work-dir', resumed, '--resume',
        osp.join(stopped, 'epoch_1.pth')
    ]) == 0
    # The graph built at the resumed epoch equals the uninterrupted one.
    np.testing.assert_array_equal(
        np.load(osp.join(work_dir, 'graph', 'epoch_2.npz'))['neighbors'],
        np.load(osp.join(resumed, 'graph', 'epoch_2.npz'))['neighbors'])
    full, again = _state(osp.join(work_dir, 'epoch_2.pth')), _state(
        osp.join(resumed, 'epoch_2.pth'))
    assert full.keys() == again.keys()
    for key in full:
        torch.testing.assert_close(
            full[key], again[key], rtol=0, atol=0, msg=key)


def test_bad_inputs_give_clear_errors(tiny_config, tmp_path, capsys):
    config, folder = tiny_config
    train = _load_tool('train')
    test = _load_tool('test')

    # A config key that does not exist.
    assert train.run_cli(train.main, [
        config, '--work-dir',
        str(tmp_path / 'a'), '--cfg-options', 'train_cfg.max_epoch=3'
    ]) == 2
    err = capsys.readouterr().err
    assert 'max_epoch' in err and 'max_epochs' in err

    # Mixed precision without a GPU.
    if not torch.cuda.is_available():
        assert train.run_cli(
            train.main, [config, '--work-dir',
                         str(tmp_path / 'amp'), '--amp']) == 2
        assert '--amp needs a GPU' in capsys.readouterr().err

    # A missing checkpoint, and a truncated one.
    assert test.run_cli(test.main, [config, str(tmp_path / 'none.pth')]) == 2
    assert 'none.pth' in capsys.readouterr().err
    broken = tmp_path / 'broken.pth'
    broken.write_bytes(b'PK\x03\x04 not really a checkpoint')
    assert test.run_cli(test.main, [
        config, str(broken), '--work-dir',
        str(tmp_path / 'b')
    ]) == 2
    err = capsys.readouterr().err
    assert 'broken.pth' in err and 'corrupt' in err
    assert broken.exists()  # nothing a user had is lost

    # A dataset root that does not exist.
    missing = str(tmp_path / 'no_such_market')
    bad = tmp_path / 'bad.py'
    bad.write_text(f"_base_ = [{config!r}]\n"
                   "train_dataloader = dict(dataset=dict("
                   f"_delete_=True, type='Market1501', data_root={missing!r},"
                   " split='train', pipeline=[]))\n")
    assert train.run_cli(train.main,
                         [str(bad), '--work-dir',
                          str(tmp_path / 'c')]) == 2
    assert 'no_such_market' in capsys.readouterr().err

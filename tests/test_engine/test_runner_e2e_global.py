"""End to end with a global-embedding model: the real tools and Runner on
a tiny generated benchmark.

``configs/gs_r18_global_demo.py`` shrunk: a ReIDModel (ResNet-18-IBN to
layer3 -> GlobalEmbeddingHead: pooling, BNNeck, L2 norm, cosine matching,
triplet + identity losses) trained for 2 epochs (1 PK warm-up epoch, then
one Graph Sampler epoch whose class graph comes from the model's cosine
similarities), validated on two named sets, tested with tools/test.py, and
the inference API gives the scores of the test tool.
"""
import glob
import importlib.util
import json
import os.path as osp

import numpy as np
import pytest
import torch

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))

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
    dict(type='PackReIDInputs'),
]
model = dict(
    backbone=dict(type='ResNetIBN', depth=18, base_channels=16),
    head=dict(in_channels=64, num_classes=12, pooling='gem'))
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


def _load_tool(name):
    spec = importlib.util.spec_from_file_location(
        f'_tool_{name}', osp.join(REPO, 'tools', f'{name}.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    folder = tmp_path_factory.mktemp('e2e_global')
    config = folder / 'tiny_global.py'
    config.write_text(
        TINY_CONFIG.format(
            demo=osp.join(REPO, 'configs', 'gs_r18_global_demo.py'),
            root=str(folder / 'data')))
    train = _load_tool('train')
    work_dir = str(folder / 'run')
    assert train.run_cli(train.main, [str(config), '--work-dir',
                                      work_dir]) == 0
    return str(config), work_dir


def test_train_global_model_with_graph_sampler(trained):
    config, work_dir = trained
    ckpt = torch.load(osp.join(work_dir, 'epoch_2.pth'), map_location='cpu',
                      weights_only=True)
    state = ckpt['state_dict']
    assert {'head.bnneck.weight', 'head.gem_p',
            'head.classifier.weight'} <= set(state)
    assert 'graph_sampler' in ckpt
    # no graph in the PK warm-up epoch; the GS epoch's graph is C x (P-1)
    assert not osp.exists(osp.join(work_dir, 'graph', 'epoch_1.npz'))
    neighbors = np.load(osp.join(work_dir, 'graph',
                                 'epoch_2.npz'))['neighbors']
    assert neighbors.shape == (12, 3)
    assert (neighbors != np.arange(12)[:, None]).all()
    scalars = glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json'))
    with open(scalars[0]) as f:
        records = [json.loads(line) for line in f]
    train = [r for r in records if 'loss_triplet' in r]
    assert train and all('loss_id' in r and 'pair_acc' in r for r in train)
    val = [r for r in records if 'synthetic_A/Rank-1' in r]
    assert len(val) == 1
    for name in ('synthetic_A', 'synthetic_B_unseen'):
        for key in ('Rank-1', 'mAP', 'mINP'):
            assert 0.0 <= val[0][f'{name}/{key}'] <= 1.0


def test_graph_is_the_models_cosine_graph(trained):
    """The saved graph equals the nearest classes by the cosine of the
    embeddings of the images the hook chose (checkpoint of epoch 1)."""
    from mmreid_gs.apis import extract_feature_maps, init_model
    from mmreid_gs.engine.graph import build_class_graph
    config, work_dir = trained
    graph = np.load(osp.join(work_dir, 'graph', 'epoch_2.npz'))
    model = init_model(config, osp.join(work_dir, 'epoch_1.pth'))
    emb = extract_feature_maps(model, [str(p) for p in graph['img_paths']])
    assert emb.shape == (12, 64)
    expected = build_class_graph(emb, model.match, 3)
    np.testing.assert_array_equal(graph['neighbors'], expected.numpy())


def test_test_tool_and_inference_api_agree(trained, tmp_path):
    from mmreid_gs.apis import init_model, match_images
    config, work_dir = trained
    ckpt = osp.join(work_dir, 'epoch_2.pth')
    test = _load_tool('test')
    out = str(tmp_path / 'scores.npz')
    assert test.run_cli(test.main, [
        config, ckpt, '--work-dir',
        str(tmp_path / 'test'), '--out', out, '--rerank'
    ]) == 0
    data = np.load(out)
    scores = data['synthetic_A/scores']
    assert scores.shape == (6, 18)
    assert np.all(np.abs(scores) <= 1 + 1e-5)  # cosine similarities
    assert data['synthetic_A/distmat_rerank'].shape == scores.shape
    model = init_model(config, ckpt)
    q = [str(p) for p in data['synthetic_A/query_paths'][:3]]
    g = [str(p) for p in data['synthetic_A/gallery_paths'][:5]]
    np.testing.assert_allclose(match_images(model, q, g).numpy(),
                               scores[:3, :5], rtol=1e-4, atol=1e-5)

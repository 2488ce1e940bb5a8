"""End to end with a global-embedding model: the real tools and Runner on
a tiny generated benchmark.

``configs/gs_r18_global_demo.py`` shrunk: a ReIDModel (ResNet-18-IBN to
layer3 -> GlobalEmbeddingHead: pooling, BNNeck, L2 norm, cosine matching,
triplet + identity losses) trained for 2 epochs (1 PK warm-up epoch, then
one Graph Sampler epoch whose class graph comes from the model's cosine
similarities), validated on two named sets, tested with tools/test.py, and
the inference API gives the scores of the test tool.
"""
import os.path as osp

import numpy as np
import pytest
import torch
from helpers import load_tool, read_scalars

from mmreid_gs.engine.graph import graph_dump_path, load_graph_dump
from mmreid_gs.evaluation.results_file import load_test_results

#: The tiny benchmark of test_runner_e2e.py with the global-embedding model
#: (GeM pooling, a 12-class classifier) and no occlusion.
GLOBAL = dict(model='global_embedding', augment=('flip', ))


@pytest.fixture(scope='module')
def trained(make_tiny_config, tmp_path_factory):
    folder = tmp_path_factory.mktemp('e2e_global')
    config = make_tiny_config(folder, 'tiny_global.py', **GLOBAL)
    train = load_tool('tools/train.py')
    work_dir = str(folder / 'run')
    assert train.run_cli(train.main, [config, '--work-dir', work_dir]) == 0
    return config, work_dir


def test_train_global_model_with_graph_sampler(trained):
    config, work_dir = trained
    ckpt = torch.load(osp.join(work_dir, 'epoch_2.pth'), map_location='cpu',
                      weights_only=True)
    state = ckpt['state_dict']
    assert {'head.bnneck.weight', 'head.gem_p',
            'head.classifier.weight'} <= set(state)
    assert 'graph_sampler' in ckpt
    # no graph in the PK warm-up epoch; the GS epoch's graph is C x (P-1)
    assert not osp.exists(graph_dump_path(work_dir, 1))
    neighbors = load_graph_dump(graph_dump_path(work_dir, 2))['neighbors']
    assert neighbors.shape == (12, 3)
    assert (neighbors != np.arange(12)[:, None]).all()
    records = read_scalars(work_dir)
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
    graph = load_graph_dump(graph_dump_path(work_dir, 2),
                            fields=('neighbors', 'img_paths'))
    model = init_model(config, osp.join(work_dir, 'epoch_1.pth'))
    emb = extract_feature_maps(model, [str(p) for p in graph['img_paths']])
    assert emb.shape == (12, 64)
    expected = build_class_graph(emb, model.match, 3)
    np.testing.assert_array_equal(graph['neighbors'], expected.numpy())


def test_test_tool_and_inference_api_agree(trained, tmp_path):
    from mmreid_gs.apis import init_model, match_images
    config, work_dir = trained
    ckpt = osp.join(work_dir, 'epoch_2.pth')
    test = load_tool('tools/test.py')
    out = str(tmp_path / 'scores.npz')
    assert test.run_cli(test.main, [
        config, ckpt, '--work-dir',
        str(tmp_path / 'test'), '--out', out, '--rerank'
    ]) == 0
    data = load_test_results(out)['synthetic_A']
    scores = data['scores']
    assert scores.shape == (6, 18)
    assert np.all(np.abs(scores) <= 1 + 1e-5)  # cosine similarities
    assert data['distmat_rerank'].shape == scores.shape
    model = init_model(config, ckpt)
    q = [str(p) for p in data['query_paths'][:3]]
    g = [str(p) for p in data['gallery_paths'][:5]]
    np.testing.assert_allclose(match_images(model, q, g).numpy(),
                               scores[:3, :5], rtol=1e-4, atol=1e-5)

"""End to end: the real tools and Runner on a tiny generated benchmark.

Trains QAConv-GS for 2 epochs (1 PK warm-up epoch, then one Graph Sampler
epoch), validates and tests on two named sets (one an unseen camera-style
domain), exports the scores, resumes exactly, and refuses bad input with
clear errors.
"""
import os.path as osp

import numpy as np
import pytest
import torch
from helpers import checkpoint_state, load_tool, read_scalars

from mmreid_gs.engine.graph import graph_dump_path, load_graph_dump
from mmreid_gs.evaluation.results_file import load_test_results

SETS = ('synthetic_A', 'synthetic_B_unseen')


@pytest.fixture(scope='module')
def tiny_config(make_tiny_config, tmp_path_factory):
    """The tiny QAConv-GS benchmark: 12 training ids, 2 epochs, graph
    saved, tested on the two named sets."""
    folder = tmp_path_factory.mktemp('e2e')
    return make_tiny_config(folder, 'tiny_demo.py'), folder


@pytest.fixture(scope='module')
def trained(tiny_config):
    config, folder = tiny_config
    train = load_tool('tools/train.py')
    work_dir = str(folder / 'run')
    assert train.run_cli(train.main, [config, '--work-dir', work_dir]) == 0
    return config, folder, work_dir


def test_train_with_graph_sampler_then_validate(trained):
    _, _, work_dir = trained
    assert osp.isfile(osp.join(work_dir, 'epoch_2.pth'))
    # Epoch 1 is the PK warm-up; the graph of epoch 2 comes from the model.
    assert not osp.exists(graph_dump_path(work_dir, 1))
    neighbors = load_graph_dump(graph_dump_path(work_dir, 2))['neighbors']
    assert neighbors.shape == (12, 3)  # C x (P - 1), P = 16 / 4
    assert (neighbors != np.arange(12)[:, None]).all()
    # Validation at the last epoch logged both named sets.
    val = [r for r in read_scalars(work_dir) if 'synthetic_A/Rank-1' in r]
    assert len(val) == 1
    for name in SETS:
        for key in ('Rank-1', 'Rank-5', 'Rank-10', 'mAP', 'mINP'):
            assert 0.0 <= val[0][f'{name}/{key}'] <= 1.0
    # The sampler state travels in the checkpoint.
    ckpt = torch.load(osp.join(work_dir, 'epoch_2.pth'), map_location='cpu',
                      weights_only=True)
    assert 'graph_sampler' in ckpt


def test_test_tool_exports_scores(trained, tmp_path):
    config, _, work_dir = trained
    test = load_tool('tools/test.py')
    out = str(tmp_path / 'scores.npz')
    code = test.run_cli(test.main, [
        config,
        osp.join(work_dir, 'epoch_2.pth'), '--work-dir',
        str(tmp_path / 'test'), '--out', out, '--rerank'
    ])
    assert code == 0
    results = load_test_results(out)
    assert tuple(results) == SETS
    for name in SETS:
        data = results[name]
        scores = data['scores']
        q_pids, g_pids = data['query_pids'], data['gallery_pids']
        assert scores.shape == (len(q_pids), len(g_pids))
        assert len(data['query_paths']) == len(q_pids)
        assert np.isfinite(scores).all()
        assert data['distmat_rerank'].shape == scores.shape


def test_untrained_test_and_loaded_scores_agree_with_inference_api(
        trained, tmp_path):
    """tools/test.py scores equal the inference API's on the same images."""
    from mmreid_gs.apis import init_model, match_images
    config, _, work_dir = trained
    ckpt = osp.join(work_dir, 'epoch_2.pth')
    test = load_tool('tools/test.py')
    out = str(tmp_path / 's.npz')
    assert test.run_cli(test.main, [
        config, ckpt, '--work-dir',
        str(tmp_path / 't'), '--out', out
    ]) == 0
    data = load_test_results(out)['synthetic_A']
    model = init_model(config, ckpt)
    q = [str(p) for p in data['query_paths'][:3]]
    g = [str(p) for p in data['gallery_paths'][:5]]
    scores = match_images(model, q, g).numpy()
    np.testing.assert_allclose(
        scores, data['scores'][:3, :5], rtol=1e-4, atol=1e-4)


def test_resume_reproduces_the_uninterrupted_run(trained, tmp_path):
    config, _, work_dir = trained
    train = load_tool('tools/train.py')
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
        load_graph_dump(graph_dump_path(work_dir, 2))['neighbors'],
        load_graph_dump(graph_dump_path(resumed, 2))['neighbors'])
    full = checkpoint_state(osp.join(work_dir, 'epoch_2.pth'))
    again = checkpoint_state(osp.join(resumed, 'epoch_2.pth'))
    assert full.keys() == again.keys()
    for key in full:
        torch.testing.assert_close(
            full[key], again[key], rtol=0, atol=0, msg=key)


def test_bad_inputs_give_clear_errors(tiny_config, tmp_path, capsys):
    config, folder = tiny_config
    train = load_tool('tools/train.py')
    test = load_tool('tools/test.py')

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

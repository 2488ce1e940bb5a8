"""2-process DDP (gloo, CPU, torchrun) with a global-embedding model.

``tools/dist_train.sh`` trains the tiny global model of
``test_runner_e2e_global.py`` (1 PK warm-up epoch, then one Graph Sampler
epoch from the model's cosine graph) with 2 processes; the dump hook of
``test_distributed.py`` records what each rank sees, so the test checks that
both ranks use the same (saved) graph, take whole, disjoint batches with
every class the centre of one batch, and keep equal parameters; then
``tools/dist_test.sh`` with 2 processes gives the cosine scores and metrics
of a 1-process ``tools/test.py`` for the trained checkpoint.
"""
import os.path as osp
import sys

import numpy as np
import pytest
from test_distributed import (DIST, DUMP_HOOK, NUM_CLASSES, P, WORLD_SIZE,
                              _check_epoch_batches, _dumps, _env,
                              _logged_metrics, _run, assert_same_results,
                              dist_train, pytestmark)
from test_runner_e2e_global import GLOBAL

from mmreid_gs.engine.graph import graph_dump_path, load_graph_dump
from mmreid_gs.evaluation.results_file import load_test_results

__all__ = ['pytestmark']


@pytest.fixture(scope='module')
def dist_trained(make_tiny_config, tmp_path_factory):
    folder = tmp_path_factory.mktemp('dist_global')
    (folder / 'dist_dump_hook.py').write_text(DUMP_HOOK)
    # no validation
    config = make_tiny_config(folder, 'tiny_dist_global.py', val_interval=3,
                              **GLOBAL, **DIST)
    return config, folder, dist_train(config, folder)


def test_dist_train_global_same_graph_and_params(dist_trained):
    _, _, work_dir = dist_trained
    saved = load_graph_dump(graph_dump_path(work_dir, 2))['neighbors']
    assert saved.shape == (NUM_CLASSES, P - 1)
    pk, gs = _dumps(work_dir, 1), _dumps(work_dir, 2)
    assert not any(bool(d['has_graph']) for d in pk)
    _check_epoch_batches(pk)
    for d in gs:
        np.testing.assert_array_equal(d['graph'], saved)
    _check_epoch_batches(gs, graph=saved)
    # the graph of both ranks' shares came from one model
    np.testing.assert_array_equal(gs[0]['graph_buffers'],
                                  gs[1]['graph_buffers'])
    for dumps in (pk, gs):
        np.testing.assert_array_equal(dumps[0]['params'], dumps[1]['params'])


def test_dist_test_global_equals_single_process(dist_trained):
    config, folder, work_dir = dist_trained
    ckpt = osp.join(work_dir, 'epoch_2.pth')
    env = _env(str(folder))
    outs = {}
    for tag, command in (
            ('dist', ['bash', 'tools/dist_test.sh', config, ckpt,
                      str(WORLD_SIZE)]),
            ('single', [sys.executable, 'tools/test.py', config, ckpt])):
        outs[tag] = str(folder / f'{tag}_scores.npz')
        _run(command + ['--work-dir', str(folder / f'test_{tag}'),
                        '--out', outs[tag]],
             env, 240, str(folder / f'test_{tag}.log'))
    single = load_test_results(outs['single'])
    scores = single['synthetic_A']['scores']
    assert scores.ndim == 2 and scores.shape[0] > 0
    # cosine similarities of L2-normalised embeddings
    assert np.abs(scores).max() <= 1 + 1e-5
    assert_same_results(load_test_results(outs['dist']), single)
    metrics = {tag: _logged_metrics(str(folder / f'test_{tag}'))
               for tag in ('dist', 'single')}
    assert metrics['dist'].keys() == metrics['single'].keys()
    assert 'synthetic_B_unseen/mAP' in metrics['single']
    for key, value in metrics['single'].items():
        assert abs(metrics['dist'][key] - value) <= 1e-6, key

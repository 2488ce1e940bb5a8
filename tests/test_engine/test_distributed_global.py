"""2-process DDP (gloo, CPU, torchrun) with a global-embedding model.

``tools/dist_train.sh`` trains the tiny global model of
``test_runner_e2e_global.py`` (1 PK warm-up epoch, then one Graph Sampler
epoch from the model's cosine graph) with 2 processes; the dump hook of
``test_distributed.py`` records what each rank sees, so the test checks that
both ranks use the same (saved) graph, take whole, disjoint batches with
every class the centre of one batch, and keep equal parameters (the
2-process test loop is model-agnostic and checked in
``test_distributed.py``).
"""
import os.path as osp

import numpy as np
import pytest
from test_distributed import (DUMP_HOOK, NUM_CLASSES, P, WORLD_SIZE,
                              _check_epoch_batches, _dumps, _env, _run,
                              pytestmark)
from test_runner_e2e_global import TINY_CONFIG

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))

__all__ = ['pytestmark']

DIST_CONFIG = TINY_CONFIG + """
custom_imports = dict(imports=['dist_dump_hook'],
                      allow_failed_imports=False)
custom_hooks = [
    dict(type='GraphSamplerHook', pipeline=test_pipeline, pk_epochs=1,
         batch_size=32, save_graph=True),
    dict(type='DistDumpHook'),
]
test_dataloader = dict(batch_size=4, num_workers=0)
val_dataloader = test_dataloader
train_cfg = dict(max_epochs=2, val_interval=3)  # no validation
"""


@pytest.fixture(scope='module')
def dist_trained(tmp_path_factory):
    folder = tmp_path_factory.mktemp('dist_global')
    (folder / 'dist_dump_hook.py').write_text(DUMP_HOOK)
    config = folder / 'tiny_dist_global.py'
    config.write_text(
        DIST_CONFIG.format(
            demo=osp.join(REPO, 'configs', 'gs_r18_global_demo.py'),
            root=str(folder / 'data')))
    work_dir = str(folder / 'train')
    _run([
        'bash', 'tools/dist_train.sh', str(config),
        str(WORLD_SIZE), '--work-dir', work_dir
    ], _env(str(folder)), 300, str(folder / 'train.log'))
    return str(config), folder, work_dir


def test_dist_train_global_same_graph_and_params(dist_trained):
    _, _, work_dir = dist_trained
    saved = np.load(osp.join(work_dir, 'graph', 'epoch_2.npz'))['neighbors']
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

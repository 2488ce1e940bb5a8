"""A real Runner on a tiny generated benchmark: GraphSamplerHook logs the
look-alike share of its graph and draws neighbour grids; the
ReIDVisualizationHook draws ranked lists at validation and test; all through
the visualizer's backends."""
import glob
import os.path as osp

import mmcv
import numpy as np
import pytest
from helpers import read_scalars

from mmreid_gs.engine.graph import graph_dump_path, load_graph_dump
from mmreid_gs.cli import build_runner, load_config


@pytest.fixture(scope='module')
def run(make_tiny_config, tmp_path_factory):
    folder = tmp_path_factory.mktemp('vis_hooks')
    work_dir = str(folder / 'run')
    # the tiny benchmark's domain A only, no augmentation
    path = make_tiny_config(
        folder, test_sets=dict(tiny_A='a'), augment=(),
        graph_hook=dict(visualize=True, vis_classes=5),
        hooks=[dict(type='ReIDVisualizationHook', num_queries=3, topk=4,
                    test_out_dir='pictures')],
        log_interval=2, extra=f'work_dir = {work_dir!r}\n')
    runner = build_runner(load_config(path))
    runner.train()
    runner.test()
    return runner, work_dir


def _image(path):
    img = mmcv.imread(path)
    assert img is not None, path
    return img


def test_graph_hook_logs_family_share_and_draws(run):
    runner, work_dir = run
    hook = [h for h in runner.hooks
            if type(h).__name__ == 'GraphSamplerHook'][0]
    info = hook.last_info
    assert 0.0 <= info['family_share'] <= 1.0
    # 12 classes in families of 4: (4 - 1) / (12 - 1)
    assert info['family_share_random'] == pytest.approx(3 / 11)
    graph = [r for r in read_scalars(work_dir) if 'graph/family_share' in r]
    assert [r['step'] for r in graph] == [2]
    assert graph[0]['graph/family_share'] == pytest.approx(
        info['family_share'])
    dump = load_graph_dump(graph_dump_path(work_dir, 2),
                           fields=('label_families', ))
    assert dump['label_families'].shape == (12, )
    images = glob.glob(osp.join(work_dir, '*', 'vis_data', 'vis_image',
                                'graph_neighbors_2.png'))
    assert len(images) == 1
    vis = runner.visualizer
    grid = _image(images[0])
    # 5 rows of 1 + 3 neighbours (P = 16 / 4)
    assert grid.shape[1] > 4 * 32 and grid.shape[0] > 5 * 64
    assert len(vis.last_layout.get('cells', {})) >= 1


def test_visualization_hook_draws_ranked_lists(run):
    runner, work_dir = run
    val = glob.glob(osp.join(work_dir, '*', 'vis_data', 'vis_image',
                             'rank_list_tiny_A_2.png'))
    assert len(val) == 1
    test = osp.join(work_dir, 'pictures', 'rank_list_tiny_A.png')
    a, b = _image(val[0]), _image(test)
    # same queries, same model: same picture at validation and test
    np.testing.assert_array_equal(a, b)
    # the loop does not keep the outputs unless asked (tools/test.py --out)
    assert runner.test_loop.outputs == {}

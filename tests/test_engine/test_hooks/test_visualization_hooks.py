"""A real Runner on a tiny generated benchmark: GraphSamplerHook logs the
look-alike share of its graph and draws neighbour grids; the
ReIDVisualizationHook draws ranked lists at validation and test; all through
the visualizer's backends."""
import glob
import json
import os.path as osp

import mmcv
import numpy as np
import pytest

from mmreid_gs.engine.runners import build_runner, load_config

REPO = osp.dirname(
    osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

CONFIG = """
_base_ = [{demo!r}]
img_height, img_width = 64, 32
domain_a = dict(type='SyntheticReID', data_root={root!r}, domain='A',
                num_train_ids=12, num_test_ids=6, num_cams=2,
                imgs_per_cam=2, img_size=(64, 32))
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(img_width, img_height), keep_ratio=False),
    dict(type='PackReIDInputs'),
]
model = dict(
    backbone=dict(type='ResNetIBN', depth=18, base_channels=16),
    neck=dict(in_channels=64, out_channels=32),
    head=dict(num_features=32, height=4, width=2))
train_dataloader = dict(
    batch_size=16, num_workers=0, persistent_workers=False,
    sampler=dict(batch_size=16, num_instances=4),
    dataset=dict(domain_a, split='train', pipeline=test_pipeline))
# _delete_: not the demo's sets merged with this one
test_sets = dict(_delete_=True,
                 tiny_A=dict(query=dict(domain_a, split='query'),
                             gallery=dict(domain_a, split='gallery')))
custom_hooks = [
    dict(type='GraphSamplerHook', pipeline=test_pipeline, pk_epochs=1,
         batch_size=32, save_graph=True, visualize=True, vis_classes=5),
    dict(type='ReIDVisualizationHook', num_queries=3, topk=4,
         test_out_dir='pictures'),
]
test_dataloader = dict(batch_size=32, num_workers=0)
val_dataloader = test_dataloader
test_cfg = dict(pipeline=test_pipeline, test_sets=test_sets, progress=False)
val_cfg = dict(pipeline=test_pipeline, test_sets=test_sets)
train_cfg = dict(max_epochs=2, val_interval=2)
default_hooks = dict(logger=dict(interval=2))
work_dir = {work_dir!r}
"""


@pytest.fixture(scope='module')
def run(tmp_path_factory):
    folder = tmp_path_factory.mktemp('vis_hooks')
    path = folder / 'tiny.py'
    path.write_text(
        CONFIG.format(demo=osp.join(REPO, 'configs', 'qaconv_gs_demo.py'),
                      root=str(folder / 'data' / 'A'),
                      work_dir=str(folder / 'run')))
    runner = build_runner(load_config(str(path)))
    runner.train()
    runner.test()
    return runner, str(folder / 'run')


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
    scalars = glob.glob(osp.join(work_dir, '*', 'vis_data',
                                 'scalars.json'))[0]
    with open(scalars) as f:
        records = [json.loads(line) for line in f]
    graph = [r for r in records if 'graph/family_share' in r]
    assert [r['step'] for r in graph] == [2]
    assert graph[0]['graph/family_share'] == pytest.approx(
        info['family_share'])
    dump = np.load(osp.join(work_dir, 'graph', 'epoch_2.npz'))
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

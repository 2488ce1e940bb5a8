"""End to end: configs/qaconv_gs_uda_demo.py at tiny size (2 epochs of
pseudo-label GS on domain B's unlabelled training images, from scratch
instead of the demo's checkpoint)."""
import os.path as osp

import numpy as np
from helpers import (CONFIGS, TEST_PIPELINE, data_config, load_tool,
                     model_config, read_scalars)

from mmreid_gs.engine.graph import graph_dump_path, load_graph_dump

TINY_UDA = """
load_from = None
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(img_width, img_height), keep_ratio=False),
    dict(type='PackReIDInputs'),
]
train_dataloader = dict(
    batch_size=16, num_workers=0, persistent_workers=False,
    sampler=dict(batch_size=16, num_instances=4, batches_per_epoch=3),
    dataset=dict(_delete_=True, type='UnlabeledReIDDataset',
                 dataset=dict(domain_b, split='train'),
                 pipeline=train_pipeline))
test_sets = dict(
    _delete_=True,
    synthetic_B=dict(query=dict(domain_b, split='query'),
                     gallery=dict(domain_b, split='gallery')))
custom_hooks = [
    dict(type='PseudoLabelHook', pipeline=test_pipeline, batch_size=32,
         eps=0.6, min_samples=2, k1=6, k2=2, keep_outliers=True),
    dict(type='GraphSamplerHook', pipeline=test_pipeline, pk_epochs=0,
         batch_size=32, save_graph=True),
]
test_dataloader = dict(batch_size=32, num_workers=0)
val_dataloader = test_dataloader
test_cfg = dict(pipeline=test_pipeline, test_sets=test_sets)
val_cfg = dict(pipeline=test_pipeline, test_sets=test_sets)
train_cfg = dict(max_epochs=2, val_interval=2)
default_hooks = dict(logger=dict(interval=1))
"""


def test_uda_demo_two_tiny_epochs(tmp_path):
    config = tmp_path / 'tiny_uda.py'
    config.write_text(
        f"_base_ = [{osp.join(CONFIGS, 'qaconv_gs_uda_demo.py')!r}]\n"
        'img_height, img_width = 64, 32\n' +
        data_config(str(tmp_path / 'data'), train_ids=12, test_ids=3) +
        TEST_PIPELINE + model_config('qaconv', 8, 12) + TINY_UDA)
    train = load_tool('tools/train.py')
    work_dir = str(tmp_path / 'run')
    assert train.run_cli(train.main, [str(config), '--work-dir',
                                      work_dir]) == 0
    records = read_scalars(work_dir)
    clus = [r for r in records if 'pseudo_label/num_clusters' in r]
    assert [r['step'] for r in clus] == [1, 2]  # every clustering
    for r in clus:
        assert r['pseudo_label/num_clusters'] >= 1
        assert r['pseudo_label/num_outliers'] >= 0
        assert 0 <= r['pseudo_label/nmi'] <= 1
    logs = open(next(iter(
        __import__('glob').glob(osp.join(work_dir, '*', '*.log'))))).read()
    assert logs.count('PseudoLabelHook: epoch') == 2
    assert 'NMI' in logs and 'outliers of 48 images' in logs
    # the GS graph is over the pseudo-classes of each epoch
    for epoch, r in zip((1, 2), clus):
        classes = r['pseudo_label/num_clusters'] + \
            r['pseudo_label/num_outliers']  # keep_outliers: own classes
        nbrs = load_graph_dump(graph_dump_path(work_dir, epoch))['neighbors']
        assert nbrs.shape == (classes, 3)
        assert (nbrs != np.arange(classes)[:, None]).all()
    assert any('synthetic_B/Rank-1' in r for r in records)


def test_gpu_configs_build_their_parts(tmp_path):
    from helpers import make_tiny_reid_trees, point_datasets_at
    from mmengine.config import Config

    from mmreid_gs.registry import DATASETS, HOOKS
    from mmreid_gs.utils import register_all_modules
    register_all_modules()
    roots = make_tiny_reid_trees(str(tmp_path))
    expect = dict(qaconv_gs_uda_market2msmt=(0.7, 'MSMT17', 400, 6),
                  qaconv_gs_uda_msmt2market=(0.6, 'Market1501', 200, 6),
                  qaconv_gs_usl_market=(0.6, 'Market1501', 200, 6))
    for name, (eps, target, batches, images) in expect.items():
        cfg = Config.fromfile(osp.join(CONFIGS, name + '.py'))
        data = cfg.train_dataloader.dataset.to_dict()
        assert data['dataset']['type'] == target
        point_datasets_at(data, roots)
        assert len(DATASETS.build(data)) == images
        assert cfg.train_dataloader.sampler.batches_per_epoch == batches
        hook = HOOKS.build(cfg.custom_hooks[0])
        assert (hook.eps, hook.min_samples, hook.k1, hook.k2) == (eps, 4, 30,
                                                                  6)
        assert cfg.custom_hooks[1]['type'] == 'GraphSamplerHook'

"""The multi-source configs build their datasets: the synthetic demo
(``configs/qaconv_gs_multisource_demo.py``: domains A + B pooled, tested on
C, A and B) on tiny generated trees, and the leave-one-out protocol configs
(``configs/qaconv_gs_loo_*.py``) on tiny Market-1501, CUHK03-NP, MSMT17 and
CUHK-SYSU trees."""
import os.path as osp

import numpy as np
import pytest
from helpers import CONFIGS, make_tiny_reid_trees, point_datasets_at
from mmengine.registry import DefaultScope

from mmreid_gs.datasets import PooledReIDDataset
from mmreid_gs.cli import load_config
from mmreid_gs.cli.config_checks import check_dataset_configs
from mmreid_gs.registry import DATASETS, HOOKS
from mmreid_gs.utils import register_all_modules

TINY_SYNTH = dict(num_train_ids=6, num_test_ids=3, num_cams=2,
                  imgs_per_cam=2, family_size=2, img_size=(32, 16))


def _build(cfg):
    with DefaultScope.overwrite_default_scope('mmreid_gs'):
        return DATASETS.build(cfg)


def _class_count(cfg):
    """Identities of one source config, built on its own (``split='all'``:
    the train split, then the query and gallery ids counted once)."""
    cfg = dict(cfg)
    if cfg.get('split') != 'all':
        return _build(cfg).num_classes
    cls = DATASETS.get(cfg['type'])
    if cls.SPLITS == ('train', ):
        return _build(dict(cfg, split='train')).num_classes
    test = set()
    for s in ('query', 'gallery'):
        ds = _build(dict(cfg, split=s))
        test |= set(ds.get_pids().tolist()) - set(cls.TRAIN_DISTRACTOR_PIDS)
    return _build(dict(cfg, split='train')).num_classes + len(test)


def test_multisource_demo_pools_a_and_b(tmp_path):
    register_all_modules(init_default_scope=False)
    cfg = load_config(osp.join(CONFIGS, 'qaconv_gs_multisource_demo.py'))
    assert list(cfg.test_cfg.test_sets) == [
        'synthetic_C_unseen', 'synthetic_A', 'synthetic_B']
    check_dataset_configs(cfg)
    roots = dict(SyntheticReID=lambda d: str(tmp_path / d['domain']))
    dataset_cfg = cfg.train_dataloader.dataset
    assert point_datasets_at(dataset_cfg, roots, **TINY_SYNTH) == 2
    assert point_datasets_at(cfg.test_cfg, roots, **TINY_SYNTH) == 6
    pooled = _build(dataset_cfg)
    assert isinstance(pooled, PooledReIDDataset)
    assert pooled.source_names == ('synthetic_A', 'synthetic_B')
    assert [type(d).__name__ for d in pooled.datasets] == ['SyntheticReID'] * 2
    # labels exactly 0..C-1, C = the sum of the sources' classes
    counts = [d.num_classes for d in pooled.datasets]
    assert counts == [6, 6]
    labels = pooled.get_gt_labels()
    np.testing.assert_array_equal(np.unique(labels), np.arange(sum(counts)))
    np.testing.assert_array_equal(np.bincount(pooled.class_source), counts)
    # offsets and sources round-trip
    for i in range(len(pooled)):
        info = pooled.get_data_info(i)
        k = info['source_index']
        assert info['source'] == pooled.source_names[k]
        assert info['gt_label'] == pooled.sources[k]['label_offset'] + \
            info['source_label']
        assert pooled.source_of_class(info['gt_label']) == k
    offset = len(pooled.datasets[0])
    info = pooled.datasets[1].get_data_info(0)
    assert pooled.get_data_info(offset)['img_path'] == info['img_path']
    assert pooled.get_data_info(offset)['gt_label'] == 6 + info['gt_label']
    # families of the two domains offset apart
    fams = pooled.get_label_families()
    assert not set(fams[:6]) & set(fams[6:])
    # the test sets: C unseen, A and B
    for name, item in cfg.test_cfg.test_sets.items():
        query = _build(item['query'])
        assert query.metainfo['domain'] == name.split('_')[1]
    # the option of the comment: neighbours within each source
    opts = load_config(osp.join(CONFIGS, 'qaconv_gs_multisource_demo.py'),
                       {'custom_hooks.0.within_source': True})
    with DefaultScope.overwrite_default_scope('mmreid_gs'):
        hook = HOOKS.build(opts.custom_hooks[0])
    assert hook.within_source


@pytest.fixture(scope='module')
def reid_roots(tmp_path_factory):
    return make_tiny_reid_trees(tmp_path_factory.mktemp('reid'))


@pytest.mark.parametrize('name, sources, target', [
    ('qaconv_gs_loo_market', ['cuhk03_np', 'msmt17', 'cuhk_sysu'],
     'market1501'),
    ('qaconv_gs_loo_cuhk03', ['market1501', 'msmt17', 'cuhk_sysu'],
     'cuhk03_np'),
    ('qaconv_gs_loo_msmt17', ['market1501', 'cuhk03_np', 'cuhk_sysu'],
     'msmt17'),
])
def test_leave_one_out_configs_build(reid_roots, name, sources, target):
    register_all_modules(init_default_scope=False)
    cfg = load_config(osp.join(CONFIGS, f'{name}.py'))
    check_dataset_configs(cfg)
    # the paper's settings: ResNet-50-IBN-b, 384x128, B = 64, K = 4
    assert cfg.model.backbone.depth == 50
    assert cfg.model.head.height == 24 and cfg.model.head.width == 8
    assert cfg.train_pipeline[1].scale == (128, 384)
    assert cfg.train_dataloader.batch_size == 64
    assert cfg.train_dataloader.sampler.type == 'GraphSampler'
    assert cfg.train_cfg.max_epochs == 15
    # trained on three sources, tested on the fourth, never seen
    assert list(cfg.test_cfg.test_sets) == [target]
    assert list(cfg.val_cfg.test_sets) == [target]
    dataset_cfg = cfg.train_dataloader.dataset
    assert dataset_cfg.names == sources and target not in sources
    assert point_datasets_at(dataset_cfg, reid_roots) == 3
    assert point_datasets_at(cfg.test_cfg.test_sets, reid_roots) == 2
    counts = [_class_count(c) for c in dataset_cfg.datasets]
    pooled = _build(dataset_cfg)
    assert [s['num_classes'] for s in pooled.sources] == counts
    np.testing.assert_array_equal(np.unique(pooled.get_gt_labels()),
                                  np.arange(sum(counts)))
    np.testing.assert_array_equal(np.bincount(pooled.class_source), counts)
    # all splits of the training sources (MSMT17: its 'all' mode)
    splits = {s['name']: s['splits'] for s in pooled.sources}
    for source in ('market1501', 'cuhk03_np'):
        if source in splits:
            assert splits[source] == ('train', 'query', 'gallery')
    if 'msmt17' in splits:
        assert pooled.datasets[pooled.sources[sources.index('msmt17')]
                               ['parts'][0]].mode == 'all'
    assert splits['cuhk_sysu'] == ('train', )
    # the pipeline is the pooled dataset's
    out = pooled[0]
    assert out['inputs'].shape == (3, 384, 128)
    assert out['data_samples'].gt_label.tolist() == [
        pooled.get_data_info(0)['gt_label']]
    for split in ('query', 'gallery'):
        assert len(_build(cfg.test_cfg.test_sets[target][split])) > 0

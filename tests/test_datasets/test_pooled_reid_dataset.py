"""PooledReIDDataset: several labelled datasets pooled into one train split,
on tiny trees of the real layouts and on the generated benchmark."""
import os.path as osp

import numpy as np
import pytest
from helpers import make_tiny_reid_trees
from mmengine.registry import DefaultScope

from mmreid_gs.datasets import (CUHK03NP, MSMT17, CUHKSYSU, GraphSampler,
                                Market1501, PooledReIDDataset, SyntheticReID)
from mmreid_gs.registry import DATASETS
from mmreid_gs.utils import register_all_modules
from mmreid_gs.utils.errors import ReIDUserError

TINY_SYNTH = dict(num_train_ids=6, num_test_ids=3, num_cams=2,
                  imgs_per_cam=2, family_size=2, img_size=(32, 16))


@pytest.fixture(scope='module')
def roots(tmp_path_factory):
    register_all_modules(init_default_scope=False)
    return make_tiny_reid_trees(tmp_path_factory.mktemp('reid'))


def _cfg(roots, typ, **kw):
    return dict(type=typ, data_root=roots[typ], **kw)


def _check_round_trip(pooled, parts):
    """Every pooled sample is the sample of its source split, relabelled
    and with its cameras offset; ``parts``: (source index, dataset) in
    pooling order."""
    pos = 0
    for k, part in parts:
        source = pooled.sources[k]
        for j in range(len(part)):
            mine = pooled.get_data_info(pos)
            theirs = part.get_data_info(j)
            pos += 1
            assert mine['img_path'] == theirs['img_path']
            assert mine['pid'] == theirs['pid']
            assert mine['source_index'] == k
            assert mine['source'] == source['name']
            assert mine['source_split'] == part.split
            assert mine['source_cam_id'] == theirs['cam_id']
            assert mine['cam_id'] == source['cam_offset'] + theirs['cam_id']
            assert mine['gt_label'] == (source['label_offset'] +
                                        mine['source_label'])
            assert pooled.source_of_class(mine['gt_label']) == k
    assert pos == len(pooled)


def test_labels_disjoint_contiguous_with_offsets(roots):
    market = Market1501(roots['Market1501'])
    cuhk = CUHK03NP(roots['CUHK03NP'])
    pooled = PooledReIDDataset(
        [_cfg(roots, 'Market1501'), _cfg(roots, 'CUHK03NP', split='train')])
    assert isinstance(pooled.datasets[0], Market1501)
    assert pooled.source_names == ('Market1501', 'CUHK03NP')
    assert pooled.num_sources == 2 and len(pooled) == len(market) + len(cuhk)
    labels = pooled.get_gt_labels()
    num = market.num_classes + cuhk.num_classes
    assert pooled.num_classes == num == 6
    np.testing.assert_array_equal(np.unique(labels), np.arange(num))
    # source k: its own labels offset by the classes of the sources before
    np.testing.assert_array_equal(
        labels, np.concatenate([market.get_gt_labels(),
                                cuhk.get_gt_labels() + market.num_classes]))
    np.testing.assert_array_equal(pooled.class_source, [0, 0, 0, 1, 1, 1])
    np.testing.assert_array_equal(pooled.source_of_class([5, 0]), [1, 0])
    np.testing.assert_array_equal(pooled.get_sources(),
                                  [0] * len(market) + [1] * len(cuhk))
    # cameras made distinct per source: Market's 3, then CUHK03's 2
    np.testing.assert_array_equal(
        pooled.get_cam_ids(), np.concatenate([market.get_cam_ids(),
                                              cuhk.get_cam_ids() + 3]))
    assert pooled.metainfo['num_cameras'] == 5
    assert pooled.metainfo['sources'] == ('Market1501', 'CUHK03NP')
    assert [s['label_offset'] for s in pooled.sources] == [0, 3]
    _check_round_trip(pooled, [(0, market), (1, cuhk)])
    assert pooled.get_cat_ids(len(market)) == [3]
    # no families known: -1 everywhere
    np.testing.assert_array_equal(pooled.get_label_families(), [-1] * 6)
    sampler = GraphSampler(pooled, batch_size=4, num_instances=2, seed=0)
    assert sampler.num_classes == 6
    with pytest.raises(ValueError, match='labels must be in'):
        pooled.source_of_class(6)


def test_split_all_uses_the_dataset_whole(roots):
    pooled = PooledReIDDataset(
        [_cfg(roots, 'Market1501', split='all'),
         _cfg(roots, 'CUHK03NP', mode='labeled', split=['train', 'query']),
         _cfg(roots, 'CUHKSYSU', split='all')],
        names=['market', 'cuhk03', 'sysu'])
    assert [s['splits'] for s in pooled.sources] == [
        ('train', 'query', 'gallery'), ('train', 'query'), ('train', )]
    market = [Market1501(roots['Market1501'], split=s)
              for s in ('train', 'query', 'gallery')]
    # train ids 2, 7, 12, then the test ids 3, 4 (query and gallery share
    # them); the gallery's distractor 0000 and junk are dropped
    assert pooled.sources[0]['num_classes'] == 5
    assert pooled.sources[0]['num_images'] == 6 + 2 + 2
    infos = [pooled.get_data_info(i) for i in range(10)]
    assert [i['pid'] for i in infos] == [2, 2, 7, 7, 12, 12, 3, 4, 3, 4]
    assert [i['gt_label'] for i in infos] == [0, 0, 1, 1, 2, 2, 3, 4, 3, 4]
    gallery = [i for i in range(len(market[2]))
               if market[2].get_data_info(i)['pid'] != 0]
    _check_round_trip(pooled.get_subset(list(range(8))),
                      [(0, market[0]), (0, market[1])])
    assert [infos[8 + n]['img_path'] for n in range(2)] == [
        market[2].get_data_info(i)['img_path'] for i in gallery]
    assert pooled.sources[1]['num_classes'] == 3 + 2
    sysu = CUHKSYSU(roots['CUHKSYSU'])
    assert pooled.sources[2]['num_classes'] == sysu.num_classes == 4
    labels = pooled.get_gt_labels()
    np.testing.assert_array_equal(np.unique(labels), np.arange(14))
    np.testing.assert_array_equal(np.bincount(pooled.class_source),
                                  [5, 5, 4])
    # CUHK-SYSU: one camera for all its images, after Market's 3 and
    # CUHK03's 2
    sysu_cams = pooled.get_cam_ids()[pooled.get_sources() == 2]
    assert set(sysu_cams.tolist()) == {5}


def test_msmt17_all_split_equals_its_all_mode(roots):
    """split='all' pools MSMT17 as MSMT17(mode='all') does: same images in
    the same order, same classes (test ids restart at 0, counted apart)."""
    mode_all = MSMT17(roots['MSMT17'], split='train', mode='all')
    for spec in (_cfg(roots, 'MSMT17', split='all'),
                 _cfg(roots, 'MSMT17', split='train', mode='all')):
        pooled = PooledReIDDataset([spec])
        assert [pooled.get_data_info(i)['img_path']
                for i in range(len(pooled))] == [
                    mode_all.get_data_info(i)['img_path']
                    for i in range(len(mode_all))]
        np.testing.assert_array_equal(pooled.get_gt_labels(),
                                      mode_all.get_gt_labels())
        np.testing.assert_array_equal(pooled.get_cam_ids(),
                                      mode_all.get_cam_ids())
    # both: every image twice, refused
    with pytest.raises(ReIDUserError, match='pooled once'):
        PooledReIDDataset([_cfg(roots, 'MSMT17', split='all',
                                mode='all')])


def test_pipeline_runs_on_pooled_labels(roots):
    pipeline = [
        dict(type='LoadImageFromFile'),
        dict(type='PackReIDInputs'),
    ]
    with DefaultScope.overwrite_default_scope('mmreid_gs'):
        pooled = DATASETS.build(
            dict(type='PooledReIDDataset',
                 datasets=[_cfg(roots, 'CUHKSYSU'),
                           _cfg(roots, 'Market1501', pipeline=pipeline)],
                 pipeline=pipeline, lazy_init=True))
        assert not pooled._fully_initialized
        assert 'not fully initialized' in repr(pooled)
        out = pooled[len(pooled) - 1]
    assert isinstance(pooled, PooledReIDDataset)
    assert out['inputs'].shape == (3, 8, 4)
    sample = out['data_samples']
    # the last Market image: label 2 of Market -> 4 + 2, camera 3 -> 1 + 2
    assert sample.gt_label.tolist() == [6]
    assert sample.cam_id == 1 + 2
    assert sample.img_path.endswith('0012_c3s2_000040_01.jpg')
    assert 'sources=' in repr(pooled) and 'num_ids=7' in repr(pooled)


def test_built_sources_and_their_pipelines(roots):
    market = Market1501(roots['Market1501'])
    pooled = PooledReIDDataset([market, _cfg(roots, 'CUHKSYSU')])
    assert pooled.datasets[0] is market
    assert pooled.source_names == ('Market1501', 'CUHKSYSU')
    with DefaultScope.overwrite_default_scope('mmreid_gs'):
        own = Market1501(roots['Market1501'],
                         pipeline=[dict(type='LoadImageFromFile')])
        with pytest.raises(ValueError, match="source 'Market1501' was built "
                           'with its own pipeline'):
            PooledReIDDataset([own])
        # the same pipeline as the pooled one is fine
        PooledReIDDataset([own], pipeline=[dict(type='LoadImageFromFile')])


class _Unlabelled:
    """A dataset without labels."""

    def __len__(self):
        return 2

    def get_data_info(self, i):
        return dict(img_path=f'/nowhere/{i}.jpg', cam_id=0)


class _Empty(_Unlabelled):

    def __len__(self):
        return 0


def test_errors_name_the_bad_source(roots):
    market = _cfg(roots, 'Market1501')
    with pytest.raises(ValueError, match='non-empty list'):
        PooledReIDDataset([])
    with pytest.raises(ValueError, match='non-empty list'):
        PooledReIDDataset(market)
    with pytest.raises(ValueError, match=r"duplicate source name\(s\) "
                       r"\['Market1501'\].*names=\["):
        PooledReIDDataset([market, _cfg(roots, 'Market1501', split='query')])
    with pytest.raises(ValueError, match=r"duplicate source name\(s\) \['a'"):
        PooledReIDDataset([market, _cfg(roots, 'CUHKSYSU')], names=['a', 'a'])
    with pytest.raises(ValueError, match='one name per source'):
        PooledReIDDataset([market], names=['a', 'b'])
    with pytest.raises(ValueError, match="source 'mk' has a pipeline that "
                       'differs'):
        PooledReIDDataset(
            [dict(market, pipeline=[dict(type='LoadImageFromFile')])],
            names=['mk'])
    with pytest.raises(ValueError, match="source 'Market1501': split 'test'"):
        PooledReIDDataset([dict(market, split='test')])
    with pytest.raises(ValueError, match="split .*'all'"):
        PooledReIDDataset([dict(market, split=['train', 'all'])])
    with pytest.raises(ValueError, match='distinct'):
        PooledReIDDataset([dict(market, split=['train', 'train'])])
    with pytest.raises(ValueError, match="unknown dataset type 'Nope'"):
        PooledReIDDataset([dict(type='Nope')])
    with pytest.raises(ValueError,
                       match="source '_Unlabelled' .* has no labels"):
        PooledReIDDataset([_Unlabelled()])
    with pytest.raises(ValueError, match="source 'empty' .* is empty"):
        PooledReIDDataset([market, _Empty()], names=['m', 'empty'])
    # the same images twice under two names
    with pytest.raises(ValueError, match="in source 'a' split 'train' and "
                       "in source 'b' split 'train'"):
        PooledReIDDataset([market, market], names=['a', 'b'])
    # a missing tree names the path, as the source dataset does
    with pytest.raises(FileNotFoundError, match='cropped_images'):
        PooledReIDDataset([dict(type='CUHKSYSU', data_root=roots['MSMT17'])])


def test_synthetic_sources_keep_families_apart(tmp_path):
    """Two generated domains pooled (A train, B train + test): the families
    of look-alikes are offset like the labels, so look-alikes of different
    sources (or of B's train and test people) never share a family."""
    a = dict(type='SyntheticReID', data_root=str(tmp_path / 'A'), domain='A',
             **TINY_SYNTH)
    b = dict(a, data_root=str(tmp_path / 'B'), domain='B')
    pooled = DATASETS.build(
        dict(type='PooledReIDDataset',
             datasets=[dict(a, split='train'), dict(b, split='all')],
             names=['synthetic_A', 'synthetic_B']))
    train_a = SyntheticReID(split='train', **{k: v for k, v in a.items()
                                              if k != 'type'})
    assert pooled.num_classes == 6 + 6 + 3
    np.testing.assert_array_equal(np.unique(pooled.get_gt_labels()),
                                  np.arange(15))
    fams = pooled.get_label_families()
    assert fams.shape == (15, ) and (fams >= 0).all()
    np.testing.assert_array_equal(fams[:6], train_a.get_label_families())
    # 3 families of 2 in each train split, 2 among B's 3 test ids
    assert len(set(fams[:6])) == 3 and len(set(fams[6:12])) == 3
    assert not set(fams[:6]) & set(fams[6:]) and not set(fams[6:12]) & set(
        fams[12:])
    # the graph sampler reads the pool as any train split
    sampler = GraphSampler(pooled, batch_size=8, num_instances=2, seed=0)
    batches = np.array(list(sampler)).reshape(-1, 8)
    assert len(batches) == 15
    assert osp.isfile(pooled.get_data_info(0)['img_path'])

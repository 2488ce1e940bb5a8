"""Tests of the re-identification dataset loaders on tiny generated trees."""
import logging
import os
import os.path as osp

import cv2
import numpy as np
import pytest
import torch
from mmengine.logging import MMLogger

from mmreid_gs.datasets.base_reid_dataset import BaseReIDDataset
from mmreid_gs.datasets.clonedperson import ClonedPerson
from mmreid_gs.datasets.cuhk03_np import CUHK03NP
from mmreid_gs.datasets.cuhk_sysu import CUHKSYSU
from mmreid_gs.datasets.market1501 import Market1501
from mmreid_gs.datasets.msmt17 import MSMT17
from mmreid_gs.datasets.randperson import RandPerson
from mmreid_gs.registry import DATASETS


def _write_img(path, value=128, size=(8, 4)):
    os.makedirs(osp.dirname(path), exist_ok=True)
    img = np.full((size[0], size[1], 3), value, np.uint8)
    img[0, 0] = (0, 0, 255)
    assert cv2.imwrite(path, img), path


def _make_tree(root, files):
    """``files``: dict folder -> list of file names (relative to root)."""
    for folder, names in files.items():
        os.makedirs(osp.join(root, folder), exist_ok=True)
        for name in names:
            _write_img(osp.join(root, folder, name))


class _CaptureLog(logging.Handler):
    """Collects the records of MMEngine's current logger."""

    def __init__(self):
        super().__init__()
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())

    def __enter__(self):
        self.logger = MMLogger.get_current_instance()
        self.logger.addHandler(self)
        return self

    def __exit__(self, *exc):
        self.logger.removeHandler(self)


# --------------------------------------------------------------------------
# Market-1501
# --------------------------------------------------------------------------
MARKET_FILES = {
    'bounding_box_train': [
        '0002_c1s1_000100_01.jpg',
        '0002_c1s2_000050_01.jpg',
        '0007_c2s1_000300_01.jpg',
        '0007_c1s3_000010_01.jpg',
        '0012_c2s2_000020_01.jpg',
    ],
    'query': [
        '0002_c1s1_000400_00.jpg',
        '0007_c2s1_000900_00.jpg',
    ],
    'bounding_box_test': [
        '0002_c1s2_000070_01.jpg',
        '0007_c1s3_000005_01.jpg',
        '0000_c2s2_000030_02.jpg',  # distractor: kept in the gallery
        '-1_c1s1_000999_02.jpg',  # junk: dropped, ignored for time offsets
        '-1_c2s1_005000_02.jpg',
    ],
}


@pytest.fixture
def market_root(tmp_path):
    root = str(tmp_path / 'market')
    _make_tree(root, MARKET_FILES)
    # Market-1501 ships a Thumbs.db in its folders: not an image, ignored.
    with open(osp.join(root, 'bounding_box_test', 'Thumbs.db'), 'wb') as f:
        f.write(b'\0' * 10)
    return root


def test_market_train_relabel_and_cameras(market_root):
    ds = Market1501(data_root=market_root, split='train')
    assert len(ds) == 5
    assert not ds.test_mode
    names = [osp.basename(ds.get_data_info(i)['img_path'])
             for i in range(len(ds))]
    assert names == sorted(MARKET_FILES['bounding_box_train'])
    # pids 2, 7, 12 -> labels 0, 1, 2 (sorted by original id)
    np.testing.assert_array_equal(ds.get_pids(), [2, 2, 7, 7, 12])
    gt = ds.get_gt_labels()
    assert gt.dtype == np.int64
    np.testing.assert_array_equal(gt, [0, 0, 1, 1, 2])
    np.testing.assert_array_equal(ds.get_cam_ids(), [0, 0, 0, 1, 1])
    assert ds.num_classes == 3
    assert ds.class_ids == (2, 7, 12)
    meta = ds.metainfo
    assert meta['class_ids'] == (2, 7, 12)
    assert meta['num_classes'] == 3
    assert meta['split'] == 'train'
    assert meta['fps'] == 25
    assert meta['has_timestamp']
    info = ds.get_data_info(1)
    assert info['session'] == 2 and info['frame'] == 50
    assert osp.isabs(info['img_path']) or osp.isfile(info['img_path'])


def test_market_timestamps_use_offsets_of_all_folders(market_root):
    # max frame per (camera, session) over the three folders, junk excluded:
    # c1: s1 -> 400 (query), s2 -> 70 (gallery), s3 -> 10 (train)
    # c2: s1 -> 900 (query), s2 -> 30 (gallery distractor)
    # offsets: c1 s1 0, s2 400, s3 470; c2 s1 0, s2 900
    train = Market1501(data_root=market_root, split='train')
    ts = {osp.basename(train.get_data_info(i)['img_path']):
          train.get_data_info(i)['timestamp'] for i in range(len(train))}
    assert ts == {
        '0002_c1s1_000100_01.jpg': 100,
        '0002_c1s2_000050_01.jpg': 450,
        '0007_c1s3_000010_01.jpg': 480,
        '0007_c2s1_000300_01.jpg': 300,
        '0012_c2s2_000020_01.jpg': 920,
    }
    gallery = Market1501(data_root=market_root, split='gallery')
    np.testing.assert_array_equal(gallery.get_timestamps(),
                                  [930, 470, 475])


def test_market_query_gallery_keep_pids_and_distractors(market_root):
    query = Market1501(data_root=market_root, split='query')
    assert query.test_mode
    np.testing.assert_array_equal(query.get_gt_labels(), [2, 7])
    np.testing.assert_array_equal(query.get_cam_ids(), [0, 1])
    gallery = Market1501(data_root=market_root, split='gallery')
    # sorted names: 0000_..., 0002_..., 0007_...; the two -1 junk dropped
    np.testing.assert_array_equal(gallery.get_gt_labels(), [0, 2, 7])
    np.testing.assert_array_equal(gallery.get_cam_ids(), [1, 0, 0])
    assert gallery.metainfo['class_ids'] == (0, 2, 7)


def test_market_train_drops_distractors_and_junk(tmp_path):
    root = str(tmp_path / 'm')
    files = dict(MARKET_FILES)
    files['bounding_box_train'] = files['bounding_box_train'] + [
        '0000_c1s1_000001_01.jpg', '-1_c1s1_000002_01.jpg']
    _make_tree(root, files)
    ds = Market1501(data_root=root, split='train')
    assert len(ds) == 5
    assert ds.class_ids == (2, 7, 12)


def test_market_missing_folders_name_the_path(tmp_path, market_root):
    missing = str(tmp_path / 'nowhere')
    with pytest.raises(FileNotFoundError) as err:
        Market1501(data_root=missing, split='train')
    assert osp.abspath(missing) in str(err.value)
    assert 'bounding_box_train' in str(err.value)  # the expected tree
    os.rename(osp.join(market_root, 'query'), osp.join(market_root, 'q2'))
    with pytest.raises(FileNotFoundError) as err:
        Market1501(data_root=market_root, split='query')
    assert osp.abspath(osp.join(market_root, 'query')) in str(err.value)


def test_bad_split_and_options(market_root):
    with pytest.raises(ValueError, match='split'):
        Market1501(data_root=market_root, split='test')
    with pytest.raises(ValueError, match='on_bad_name'):
        Market1501(data_root=market_root, on_bad_name='ignore')
    with pytest.raises(ValueError, match='on_bad_image'):
        Market1501(data_root=market_root, on_bad_image='ignore')


def test_empty_split_is_a_clear_error(tmp_path):
    root = str(tmp_path / 'm')
    for sub in ('bounding_box_train', 'query', 'bounding_box_test'):
        os.makedirs(osp.join(root, sub))
    with pytest.raises(ValueError) as err:
        Market1501(data_root=root, split='train')
    assert osp.abspath(osp.join(root, 'bounding_box_train')) in str(err.value)
    # only junk: nothing left
    _write_img(osp.join(root, 'query', '-1_c1s1_000001_00.jpg'))
    with pytest.raises(ValueError, match='no image left'):
        Market1501(data_root=root, split='query')


def test_bad_names_skip_or_error(market_root):
    bad = osp.join(market_root, 'bounding_box_train', 'person_12.jpg')
    _write_img(bad)
    _write_img(osp.join(market_root, 'bounding_box_train',
                        '0003_c0s1_000001_01.jpg'))  # camera must be >= 1
    with _CaptureLog() as log:
        ds = Market1501(data_root=market_root, split='train')
    assert len(ds) == 5
    warn = [m for m in log.messages if 'skipped 2 file' in m]
    assert len(warn) == 1 and '0003_c0s1_000001_01.jpg' in warn[0]
    with pytest.raises(ValueError) as err:
        Market1501(data_root=market_root, split='train', on_bad_name='error')
    assert '0003_c0s1_000001_01.jpg' in str(err.value)


def test_check_images_error_or_skip(market_root):
    corrupt = osp.join(market_root, 'query', '0012_c1s1_000001_00.jpg')
    with open(corrupt, 'wb') as f:
        f.write(b'this is not a jpeg')
    # not checked by default
    assert len(Market1501(data_root=market_root, split='query')) == 3
    with pytest.raises(ValueError) as err:
        Market1501(data_root=market_root, split='query', check_images=True)
    assert corrupt in str(err.value)
    with _CaptureLog() as log:
        ds = Market1501(
            data_root=market_root,
            split='query',
            check_images=True,
            on_bad_image='skip')
    assert len(ds) == 2
    assert any('cannot be decoded' in m and corrupt in m
               for m in log.messages)


def test_lazy_init_subset_and_registry(market_root):
    ds = DATASETS.build(
        dict(type='Market1501', data_root=market_root, lazy_init=True))
    assert not ds._fully_initialized
    np.testing.assert_array_equal(ds.get_gt_labels(), [0, 0, 1, 1, 2])
    sub = ds.get_subset([4, 0])
    np.testing.assert_array_equal(sub.get_gt_labels(), [2, 0])
    np.testing.assert_array_equal(sub.get_cam_ids(), [1, 0])
    np.testing.assert_array_equal(ds.get_gt_labels(), [0, 0, 1, 1, 2])
    ds.get_subset_([1, 2])
    np.testing.assert_array_equal(ds.get_gt_labels(), [0, 1])
    assert isinstance(ds, BaseReIDDataset)
    assert 'Market1501' in repr(ds)


def test_getitem_runs_a_pipeline(market_root):
    from mmreid_gs.datasets.transforms import PackReIDInputs  # noqa: F401
    pipeline = [
        dict(type='LoadImageFromFile'),
        dict(
            type='Resize',
            scale=(4, 8),
            keep_ratio=False,
            interpolation='bicubic'),
        dict(type='PackReIDInputs'),
    ]
    from mmengine.registry import DefaultScope
    with DefaultScope.overwrite_default_scope('mmreid_gs'):
        ds = Market1501(data_root=market_root, split='query',
                        pipeline=pipeline)
        out = ds[1]
    assert out['inputs'].shape == (3, 8, 4)
    assert out['inputs'].dtype == torch.uint8
    sample = out['data_samples']
    assert sample.gt_label.tolist() == [7]
    assert sample.cam_id == 1
    assert sample.timestamp == 900
    assert sample.sample_idx == 1
    assert sample.img_path.endswith('0007_c2s1_000900_00.jpg')


# --------------------------------------------------------------------------
# CUHK03-NP
# --------------------------------------------------------------------------
def test_cuhk03_np_modes(tmp_path):
    root = str(tmp_path / 'cuhk03')
    for mode, extra in (('detected', 0), ('labeled', 1)):
        _make_tree(
            root, {
                f'{mode}/bounding_box_train':
                ['0005_c1_1.png', '0005_c2_2.png', '0003_c2_1.png'] +
                (['0009_c1_3.png'] if extra else []),
                f'{mode}/query': ['0100_c1_1.png'],
                f'{mode}/bounding_box_test': ['0100_c2_1.png',
                                              '0101_c1_1.png'],
            })
    det = CUHK03NP(data_root=root, split='train')
    np.testing.assert_array_equal(det.get_gt_labels(), [0, 1, 1])
    np.testing.assert_array_equal(det.get_cam_ids(), [1, 0, 1])
    assert det.class_ids == (3, 5)
    assert not det.metainfo['has_timestamp']
    assert det.get_timestamps() is None
    lab = DATASETS.build(
        dict(type='CUHK03NP', data_root=root, split='train', mode='labeled'))
    assert len(lab) == 4 and lab.num_classes == 3
    assert '/labeled/' in lab.get_data_info(0)['img_path'].replace('\\', '/')
    gal = CUHK03NP(data_root=root, split='gallery', mode='labeled')
    np.testing.assert_array_equal(gal.get_gt_labels(), [100, 101])
    with pytest.raises(ValueError, match='mode'):
        CUHK03NP(data_root=root, mode='both')


def test_cuhk03_np_missing_mode_folder(tmp_path):
    root = str(tmp_path / 'cuhk03')
    _make_tree(root, {'detected/query': ['0001_c1_1.png']})
    with pytest.raises(FileNotFoundError) as err:
        CUHK03NP(data_root=root, split='query', mode='labeled')
    assert osp.abspath(osp.join(root, 'labeled')) in str(err.value)
    with pytest.raises(FileNotFoundError) as err:
        CUHK03NP(data_root=root, split='train')
    assert osp.join('detected', 'bounding_box_train') in str(err.value)


# --------------------------------------------------------------------------
# MSMT17
# --------------------------------------------------------------------------
def _make_msmt(root, train_dir='train', test_dir='test'):
    lists = {
        'list_train.txt': [('0000/0000_000_01_0303morning_0015_0.jpg', 0),
                           ('0000/0000_001_03_0303morning_0036_1.jpg', 0),
                           ('0002/0002_000_15_0303noon_0100_0.jpg', 2)],
        'list_val.txt': [('0001/0001_000_02_0303noon_0007_0.jpg', 1)],
        'list_query.txt': [('0000/0000_000_05_0303morning_0008_0.jpg', 0),
                           ('0001/0001_000_06_0303morning_0009_0.jpg', 1)],
        'list_gallery.txt': [('0000/0000_001_07_0303noon_0010_0.jpg', 0),
                             ('0001/0001_002_06_0303noon_0011_0.jpg', 1),
                             ('0003/0003_000_09_0303noon_0012_0.jpg', 3)],
    }
    for list_name, lines in lists.items():
        img_dir = train_dir if list_name in ('list_train.txt',
                                             'list_val.txt') else test_dir
        for rel, _ in lines:
            _write_img(osp.join(root, img_dir, rel))
        with open(osp.join(root, list_name), 'w') as f:
            f.write(''.join(f'{rel} {pid}\n' for rel, pid in lines))


def test_msmt17_standard(tmp_path):
    root = str(tmp_path / 'msmt')
    _make_msmt(root)
    train = MSMT17(data_root=root, split='train')
    # train + val, relabelled by sorted pid: 0, 0, 2, 1 -> 0, 0, 2, 1
    np.testing.assert_array_equal(train.get_pids(), [0, 0, 2, 1])
    np.testing.assert_array_equal(train.get_gt_labels(), [0, 0, 2, 1])
    np.testing.assert_array_equal(train.get_cam_ids(), [0, 2, 14, 1])
    assert train.num_classes == 3
    assert train.get_data_info(3)['img_path'] == osp.join(
        root, 'train', '0001/0001_000_02_0303noon_0007_0.jpg')
    query = MSMT17(data_root=root, split='query')
    np.testing.assert_array_equal(query.get_gt_labels(), [0, 1])
    np.testing.assert_array_equal(query.get_cam_ids(), [4, 5])
    assert query.get_data_info(0)['img_path'].startswith(
        osp.join(root, 'test'))
    gallery = MSMT17(data_root=root, split='gallery', mode='all')
    np.testing.assert_array_equal(gallery.get_gt_labels(), [0, 1, 3])


def test_msmt17_all_mode_offsets_test_ids(tmp_path):
    root = str(tmp_path / 'msmt')
    _make_msmt(root)
    ds = MSMT17(data_root=root, split='train', mode='all')
    # test ids restart at 0: offset by max train/val id + 1 = 3
    np.testing.assert_array_equal(ds.get_pids(),
                                  [0, 0, 2, 1, 3, 4, 3, 4, 6])
    assert ds.class_ids == (0, 1, 2, 3, 4, 6)
    np.testing.assert_array_equal(ds.get_gt_labels(),
                                  [0, 0, 2, 1, 3, 4, 3, 4, 5])
    assert ds.num_classes == 6
    np.testing.assert_array_equal(ds.get_cam_ids(),
                                  [0, 2, 14, 1, 4, 5, 6, 5, 8])
    with pytest.raises(ValueError, match='mode'):
        MSMT17(data_root=root, mode='combined')


def test_msmt17_v2_folders_bad_lines_and_missing_list(tmp_path):
    root = str(tmp_path / 'msmt')
    _make_msmt(root, 'mask_train_v2', 'mask_test_v2')
    ds = MSMT17(data_root=root, split='train')
    assert 'mask_train_v2' in ds.get_data_info(0)['img_path']
    with open(osp.join(root, 'list_val.txt'), 'a') as f:
        f.write('0004/badname.jpg 4\n\nonly_one_field\n')
    ds = MSMT17(data_root=root, split='train')
    assert len(ds) == 4
    with pytest.raises(ValueError) as err:
        MSMT17(data_root=root, split='train', on_bad_name='error')
    assert 'list_val.txt:2' in str(err.value)
    os.remove(osp.join(root, 'list_gallery.txt'))
    with pytest.raises(FileNotFoundError) as err:
        MSMT17(data_root=root, split='gallery')
    assert osp.abspath(osp.join(root, 'list_gallery.txt')) in str(err.value)
    with pytest.raises(FileNotFoundError) as err:
        MSMT17(data_root=root, split='query', test_dir='test')
    assert osp.abspath(osp.join(root, 'test')) in str(err.value)


# --------------------------------------------------------------------------
# RandPerson / ClonedPerson
# --------------------------------------------------------------------------
def test_randperson(tmp_path):
    root = str(tmp_path / 'randperson')
    _make_tree(
        root, {
            'randperson_subset': [
                '000000_s00_c00_f000264.jpg', '000000_s00_c01_f001032.jpg',
                '000005_s03_c01_f000010.jpg', '000001_s10_c02_f000100.jpg',
                '000001_s11_c00_f000100.jpg'  # unknown scene: skipped
            ]
        })
    ds = RandPerson(data_root=root)
    assert len(ds) == 4
    # sorted names: 000000 s00 c00, 000000 s00 c01, 000001 s10, 000005 s03
    np.testing.assert_array_equal(ds.get_pids(), [0, 0, 1, 5])
    np.testing.assert_array_equal(ds.get_gt_labels(), [0, 0, 1, 2])
    np.testing.assert_array_equal(ds.get_cam_ids(), [0, 1, 17, 7])
    np.testing.assert_array_equal(ds.get_timestamps(),
                                  [264, 1032, 3490100, 490010])
    assert ds.metainfo['fps'] == 24
    assert ds.get_data_info(3)['scene'] == 3
    with pytest.raises(ValueError, match='split'):
        RandPerson(data_root=root, split='query')
    with pytest.raises(FileNotFoundError) as err:
        RandPerson(data_root=root, img_dir='subset')
    assert osp.abspath(osp.join(root, 'subset')) in str(err.value)


def test_clonedperson(tmp_path):
    root = str(tmp_path / 'clonedperson')
    _make_tree(
        root, {
            'train': ['700000_s02_c00_f023389.jpg',
                      '700000_s06_c00_f023413.jpg',
                      '700003_s12_c03_f000005.jpg'],
            'test/query': ['705227_s02_c02_f001117.jpg'],
            'test/gallery': ['705228_s06_c02_f005521.jpg',
                             '705227_s12_c01_f002965.jpg',
                             '-1_s12_c01_f002966.jpg'],
        })
    train = ClonedPerson(data_root=root, split='train')
    np.testing.assert_array_equal(train.get_gt_labels(), [0, 0, 1])
    np.testing.assert_array_equal(train.get_cam_ids(), [0, 0, 3])
    np.testing.assert_array_equal(train.get_timestamps(),
                                  [23389, 23413, 5])
    assert train.get_data_info(2)['scene'] == 12
    gallery = ClonedPerson(data_root=root, split='gallery')
    np.testing.assert_array_equal(gallery.get_gt_labels(), [705227, 705228])
    np.testing.assert_array_equal(gallery.get_cam_ids(), [1, 2])
    query = ClonedPerson(data_root=root, split='query')
    assert query.get_data_info(0)['img_path'] == osp.join(
        root, 'test', 'query', '705227_s02_c02_f001117.jpg')
    with pytest.raises(FileNotFoundError) as err:
        ClonedPerson(data_root=str(tmp_path), split='query')
    assert osp.join('test', 'query') in str(err.value)


# --------------------------------------------------------------------------
# CUHK-SYSU
# --------------------------------------------------------------------------
def test_cuhk_sysu_crops(tmp_path):
    root = str(tmp_path / 'cuhk_sysu')
    _make_tree(root, {'cropped_images': [
        'p11001_s15535.jpg', 'p11001_s15536.jpg', 'p5_s3.jpg', 'p5_s4.png',
        'p-1_s7.jpg',  # junk: dropped
        'person_3.jpg',  # does not parse: skipped
    ]})
    ds = CUHKSYSU(data_root=root)
    assert len(ds) == 4 and ds.num_classes == 2
    # sorted names: p11001_s15535, p11001_s15536, p5_s3, p5_s4
    np.testing.assert_array_equal(ds.get_pids(), [11001, 11001, 5, 5])
    np.testing.assert_array_equal(ds.get_gt_labels(), [1, 1, 0, 0])
    np.testing.assert_array_equal(ds.get_cam_ids(), [0, 0, 0, 0])
    assert [ds.get_data_info(i)['scene'] for i in range(4)] == [
        15535, 15536, 3, 4]
    assert ds.metainfo['num_cameras'] == 1 and ds.get_timestamps() is None
    assert CUHKSYSU.parse_name('p11001_s15535.jpg') == (11001, 15535)
    assert CUHKSYSU.parse_name('s15535_p1.jpg') is None
    # 'all' is the train split; there is no test split
    every = DATASETS.build(dict(type='CUHKSYSU', data_root=root,
                                split='all'))
    assert every.split == 'train'
    np.testing.assert_array_equal(every.get_gt_labels(), ds.get_gt_labels())
    with pytest.raises(ValueError, match='split'):
        CUHKSYSU(data_root=root, split='query')
    with pytest.raises(ValueError) as err:
        CUHKSYSU(data_root=root, on_bad_name='error')
    assert 'person_3.jpg' in str(err.value)


def test_cuhk_sysu_missing_folder_names_the_path(tmp_path):
    root = str(tmp_path / 'cuhk_sysu')
    _make_tree(root, {'images': ['p1_s1.jpg']})
    with pytest.raises(FileNotFoundError) as err:
        CUHKSYSU(data_root=root)
    assert osp.abspath(osp.join(root, 'cropped_images')) in str(err.value)
    assert 'p<pid>_s<scene image>' in str(err.value)  # the expected tree
    ds = CUHKSYSU(data_root=root, img_dir='images')
    assert len(ds) == 1
    with pytest.raises(ValueError, match='no usable image'):
        CUHKSYSU(data_root=str(tmp_path), img_dir='.')

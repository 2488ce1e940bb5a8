"""Tests of the SyntheticReID generator and dataset."""
import json
import multiprocessing as mp
import os
import os.path as osp
from collections import defaultdict

import cv2
import numpy as np
import pytest

from mmreid_gs.datasets.market1501 import Market1501
from mmreid_gs.datasets.synthetic import (GENERATOR_VERSION,
                                          generate_synthetic_reid)

SMALL = dict(num_train_ids=8, num_test_ids=8, num_cams=3, imgs_per_cam=2,
             family_size=2, img_size=(64, 32), seed=0)
DIRS = ('bounding_box_train', 'query', 'bounding_box_test')


def _files(root):
    return {d: sorted(os.listdir(osp.join(root, d))) for d in DIRS}


def _parse_all(root, sub):
    out = []
    for name in sorted(os.listdir(osp.join(root, sub))):
        parsed = Market1501.parse_name(name)
        assert parsed is not None, name
        out.append(parsed)
    return out


@pytest.fixture(scope='module')
def tree_a(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('synth') / 'A')
    meta = generate_synthetic_reid(root, domain='A', **SMALL)
    return root, meta


def test_determinism(tree_a, tmp_path):
    root, _ = tree_a
    other = str(tmp_path / 'again')
    generate_synthetic_reid(other, domain='A', **SMALL)
    assert _files(root) == _files(other)
    for d in DIRS:
        for name in _files(root)[d][:3]:
            with open(osp.join(root, d, name), 'rb') as f1, open(
                    osp.join(other, d, name), 'rb') as f2:
                assert f1.read() == f2.read()
    # another seed gives other images
    third = str(tmp_path / 'seed1')
    generate_synthetic_reid(third, domain='A', **dict(SMALL, seed=1))
    name = _files(root)['bounding_box_train'][0]
    names3 = _files(third)['bounding_box_train']
    assert name not in names3 or open(osp.join(root, 'bounding_box_train',
                                               name), 'rb').read() != open(
        osp.join(third, 'bounding_box_train', name), 'rb').read()


def test_tree_names_and_meta(tree_a):
    root, meta = tree_a
    assert sorted(os.listdir(root)) == sorted(
        list(DIRS) + ['meta.json', 'identities.json'])
    with open(osp.join(root, 'meta.json')) as f:
        on_disk = json.load(f)
    assert on_disk['version'] == GENERATOR_VERSION == meta['version']
    assert on_disk['params'] == dict(
        SMALL, domain='A', min_cams=2, img_size=[64, 32])
    files = _files(root)
    assert on_disk['counts'] == dict(
        train=len(files['bounding_box_train']), query=len(files['query']),
        gallery=len(files['bounding_box_test']))
    for d in DIRS:
        for name in files[d]:
            # PPPP_cCsS_FFFFFF_NN.jpg
            assert len(name) == len('0001_c1s1_000123_00.jpg'), name
            pid, cam, session, frame = Market1501.parse_name(name)
            # domain A: train ids 6n + 1, test ids 6n + 2 (n < 8)
            assert pid % 6 == (1 if d == DIRS[0] else 2) and pid <= 44
            assert 1 <= cam <= 3 and session == 1
            img = cv2.imread(osp.join(root, d, name))
            assert img.shape == (64, 32, 3)
    train_ids = {p[0] for p in _parse_all(root, 'bounding_box_train')}
    test_ids = {p[0] for p in _parse_all(root, 'bounding_box_test')}
    assert len(train_ids) == 8 and len(test_ids) == 8
    assert not train_ids & test_ids


def test_timeline(tree_a):
    """A person walks along the row of cameras: consecutive cameras, frames
    increasing, transit times of at least 100 frames between cameras."""
    root, _ = tree_a
    seen = defaultdict(list)
    for d in DIRS:
        for pid, cam, _, frame in _parse_all(root, d):
            seen[pid].append((frame, cam))
    for pid, items in seen.items():
        items.sort()
        cams = [c for _, c in items]
        order = [c for i, c in enumerate(cams) if i == 0 or c != cams[i - 1]]
        assert len(order) == len(set(order)) >= 2, (pid, cams)
        steps = np.diff(order)
        assert np.all(steps == steps[0]) and abs(steps[0]) == 1, order
        for (f0, c0), (f1, c1) in zip(items, items[1:]):
            assert f1 > f0
            if c1 != c0:
                assert f1 - f0 >= 100


def test_query_gallery_protocol(tree_a):
    root, _ = tree_a
    query = _parse_all(root, 'query')
    gallery = _parse_all(root, 'bounding_box_test')
    pairs = [(p, c) for p, c, _, _ in query]
    assert len(pairs) == len(set(pairs)), 'one query per (id, camera)'
    gal = defaultdict(set)
    for pid, cam, _, _ in gallery:
        gal[pid].add(cam)
    for pid, cam in pairs:
        assert gal[pid] - {cam}, f'query {pid} c{cam} has no cross-camera ' \
                                 'match in the gallery'


def test_families_are_look_alikes(tree_a):
    root, _ = tree_a
    with open(osp.join(root, 'identities.json')) as f:
        ids = json.load(f)
    fams = defaultdict(list)
    for pid, a in ids.items():
        fams[(a['split'], a['family'])].append(a)

    def clothes(a):
        return json.dumps([a['upper'], a['lower'], a['hair'], a['hat'],
                           a['bag'], a['shoes']], sort_keys=True)

    assert all(len(m) == 2 for m in fams.values())
    for members in fams.values():
        a, b = members
        diff = sum(json.dumps(a[k], sort_keys=True) != json.dumps(
            b[k], sort_keys=True) for k in ('upper', 'lower', 'hair', 'hat',
                                            'bag', 'shoes'))
        assert 1 <= diff <= 2
        assert clothes(a) != clothes(b)


def test_regenerates_only_when_parameters_change(tree_a, tmp_path):
    root = str(tmp_path / 'regen')
    generate_synthetic_reid(root, domain='A', **SMALL)
    stamp = os.stat(osp.join(root, 'meta.json')).st_mtime_ns
    generate_synthetic_reid(root, domain='A', **SMALL)
    assert os.stat(osp.join(root, 'meta.json')).st_mtime_ns == stamp
    meta = generate_synthetic_reid(root, domain='A',
                                   **dict(SMALL, num_test_ids=4))
    assert meta['params']['num_test_ids'] == 4
    test_ids = {p[0] for p in _parse_all(root, 'bounding_box_test')}
    assert len(test_ids) == 4
    assert sorted(os.listdir(tmp_path)) == ['regen', 'regen.lock']
    # a foreign non-empty folder is never overwritten
    foreign = tmp_path / 'market'
    foreign.mkdir()
    (foreign / 'keep.txt').write_text('x')
    with pytest.raises(ValueError, match='refusing'):
        generate_synthetic_reid(str(foreign), domain='A', **SMALL)
    assert (foreign / 'keep.txt').exists()


def test_invalid_parameters(tmp_path):
    with pytest.raises(ValueError, match='domain'):
        generate_synthetic_reid(str(tmp_path / 'x'), domain='D')
    with pytest.raises(ValueError, match='min_cams'):
        generate_synthetic_reid(str(tmp_path / 'x'), num_cams=3, min_cams=1)
    with pytest.raises(ValueError, match='num_test_ids'):
        generate_synthetic_reid(str(tmp_path / 'x'), num_test_ids=0)


def _generate_after(barrier, root, queue):
    barrier.wait()
    generate_synthetic_reid(root, domain='B', **SMALL)
    queue.put(os.stat(root).st_ino)


def test_concurrent_generation(tmp_path):
    root = str(tmp_path / 'B')
    ctx = mp.get_context('fork')
    barrier, queue = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=_generate_after, args=(barrier, root, queue))
             for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0]
    # the process that waited for the lock reused the tree of the other one
    inodes = {queue.get(timeout=5) for _ in procs}
    assert inodes == {os.stat(root).st_ino}
    # one tree, no temporary folder left, the same as a fresh generation
    assert sorted(os.listdir(tmp_path)) == ['B', 'B.lock']
    ref = str(tmp_path / 'ref')
    generate_synthetic_reid(ref, domain='B', **SMALL)
    assert _files(root) == _files(ref)
    with open(osp.join(root, 'meta.json')) as f:
        assert json.load(f)['params']['domain'] == 'B'


def test_domains_differ(tree_a, tmp_path):
    root_a, _ = tree_a
    root_b = str(tmp_path / 'B')
    meta_b = generate_synthetic_reid(root_b, domain='B', **SMALL)
    meta_a = tree_a[1]

    # camera styles: B has stronger casts, less saturation, more blur
    def values(meta, key):
        return [cam[key] for cam in meta['cameras']]

    assert max(values(meta_b, 'saturation')) < min(
        values(meta_a, 'saturation'))
    assert min(values(meta_b, 'blur')) > max(values(meta_a, 'blur'))
    assert min(values(meta_b, 'noise')) >= max(values(meta_a, 'noise'))
    assert min(abs(c['temperature']) for c in meta_b['cameras']) >= .1

    def stats(root):
        imgs = [cv2.imread(osp.join(root, 'bounding_box_test', n))
                for n in sorted(os.listdir(osp.join(root,
                                                    'bounding_box_test')))]
        sharp = np.mean([cv2.Laplacian(cv2.cvtColor(
            i, cv2.COLOR_BGR2GRAY), cv2.CV_64F).var() for i in imgs])
        return np.stack(imgs).mean((0, 1, 2)), sharp

    mean_a, sharp_a = stats(root_a)
    mean_b, sharp_b = stats(root_b)
    assert np.abs(mean_a - mean_b).max() > 10  # other colour statistics
    assert sharp_b < sharp_a  # B: blur and low resolution
    # different people: disjoint ids and attributes
    with open(osp.join(root_a, 'identities.json')) as f:
        ids_a = json.load(f)
    with open(osp.join(root_b, 'identities.json')) as f:
        ids_b = json.load(f)
    assert not set(ids_a) & set(ids_b)
    assert {int(p) % 6 for p in ids_b} == {3, 4}  # B: 6n + 3, 6n + 4
    looks_a = {json.dumps([a['upper'], a['lower']]) for a in ids_a.values()}
    looks_b = {json.dumps([a['upper'], a['lower']]) for a in ids_b.values()}
    assert not looks_a & looks_b


def test_domain_c_differs_from_a_and_b(tree_a, tmp_path):
    """Domain C: night and overcast scenes, strong blue or green casts,
    high contrast, noise and smaller persons than A and B."""
    meta_a = tree_a[1]
    meta_b = generate_synthetic_reid(str(tmp_path / 'B'), domain='B', **SMALL)
    root_c = str(tmp_path / 'C')
    meta_c = generate_synthetic_reid(root_c, domain='C', **SMALL)

    def values(meta, key):
        return [cam.get(key) for cam in meta['cameras']]

    # cameras further away: smaller persons than in any A or B camera
    assert max(values(meta_c, 'scale')) < min(
        values(meta_a, 'scale') + values(meta_b, 'scale'))
    assert min(values(meta_c, 'contrast')) > 1.3
    assert values(meta_a, 'contrast') == [None] * 3  # A, B: no contrast
    for cam in meta_c['cameras']:  # blue (R < B) or green (G boosted)
        assert cam['temperature'] <= -.2 or cam['tint'] >= .14
    assert min(values(meta_c, 'noise')) >= 5
    # different people again: ids 6n + 5 (train) and 6n + 6 (test)
    with open(osp.join(root_c, 'identities.json')) as f:
        ids_c = json.load(f)
    assert {int(p) % 6 for p in ids_c} == {5, 0}
    for root in (tree_a[0], str(tmp_path / 'B')):
        with open(osp.join(root, 'identities.json')) as f:
            assert not set(json.load(f)) & set(ids_c)
    imgs = np.stack([
        cv2.imread(osp.join(root_c, 'bounding_box_test', n))
        for n in sorted(os.listdir(osp.join(root_c, 'bounding_box_test')))
    ]).astype(np.float64)
    mean_bgr = imgs.mean((0, 1, 2))
    assert mean_bgr[2] < max(mean_bgr[0], mean_bgr[1])  # red is the least
    # dim light: darker than domain A
    imgs_a = np.stack([
        cv2.imread(osp.join(tree_a[0], 'bounding_box_test', n))
        for n in sorted(os.listdir(osp.join(tree_a[0], 'bounding_box_test')))
    ]).astype(np.float64)
    assert imgs.mean() < imgs_a.mean()


def test_build_from_registry(tmp_path):
    from mmreid_gs.registry import DATASETS
    from mmreid_gs.utils import register_all_modules
    register_all_modules()
    cfg = dict(type='SyntheticReID', data_root=str(tmp_path / 'A'),
               domain='A', **SMALL)
    train = DATASETS.build(dict(cfg, split='train'))
    query = DATASETS.build(dict(cfg, split='query'))
    gallery = DATASETS.build(dict(cfg, split='gallery'))
    meta = train.generation
    assert len(train) == meta['counts']['train']
    assert len(query) == meta['counts']['query']
    assert len(gallery) == meta['counts']['gallery']
    assert train.num_classes == 8
    assert sorted(set(train.get_gt_labels().tolist())) == list(range(8))
    assert set(query.get_gt_labels().tolist()) <= set(
        gallery.get_gt_labels().tolist())
    info = query.get_data_info(0)
    assert {'img_path', 'gt_label', 'cam_id', 'timestamp'} <= set(info)
    assert 0 <= info['cam_id'] < 3 and osp.isfile(info['img_path'])
    assert query.metainfo['domain'] == 'A'

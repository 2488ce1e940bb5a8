"""Writing the synthetic benchmark: the locked, atomic tree writer.

The images are written in the Market-1501 layout, so that
:class:`Market1501` reads them::

    data_root/
        meta.json                 generator version and parameters
        identities.json           attributes and family of every identity
        bounding_box_train/       PPPP_cCsS_FFFFFF_NN.jpg
        query/
        bounding_box_test/

``PPPP`` is the person id (at least 4 digits; the ids of the domains and
splits never meet, see :data:`~.identities.PID_SLOTS`), ``C`` the 1-based
camera, ``S`` the session (1)
and ``FFFFFF`` the frame number on a clock shared by all cameras: a person
walks along the row of cameras, so that the frame differences between
cameras are plausible transit times (for TLift).
"""
import json
import os
import os.path as osp
import shutil
import tempfile
import time
from typing import Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np
from mmengine.logging import print_log

from mmreid_gs.utils.errors import ReIDUserError
from mmreid_gs.utils.progress import ProgressBar
from .identities import make_identity, person_ids
from .renderer import render_image
from .streams import DOMAIN_CODE, DOMAINS, SPLIT_CODE, random_stream
from .styles import camera_scene, camera_style

try:  # pragma: no cover - platform dependent
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

GENERATOR_NAME = 'mmreid_gs.SyntheticReID'
# Bump whenever the generated trees change: trees of another version are
# then regenerated. The demo results of the README were measured with 1.2;
# 1.3 renames the person ids (identities.PID_SLOTS: disjoint across domains
# and splits at any size) and keeps the images, frames and label order of
# 1.2, so the same training runs give the same numbers. 1.4 adds domain C
# and two id slots (6 instead of 4): the ids and file names of A and B
# change again, their images, frames and label order do not.
GENERATOR_VERSION = '1.4'
_SPLIT_DIRS = ('bounding_box_train', 'query', 'bounding_box_test')
#: Splits with at least this many images show a progress bar.
_BAR_MIN = 500


def _walk(seed: int, domain: str, split: str, index: int, speed: float,
          num_cams: int, imgs_per_cam: int, min_cams: int,
          faces_up: Sequence[bool], gaps: np.ndarray,
          span: float) -> List[Dict]:
    """When and where identity ``index`` of a split is seen.

    Cameras stand in a row; a person enters at a random time in ``[50,
    50 + span)``, walks past ``k`` consecutive cameras in one direction
    (``gaps[c]`` frames from camera ``c`` to ``c + 1``, times the person's
    ``speed``) and is seen ``imgs_per_cam`` times by each, so frame
    differences between cameras are transit times.

    Returns:
        list[dict]: one dict per image with cam (0-based), frame, view and
        k (image index within the camera).
    """
    rng = random_stream(seed, DOMAIN_CODE[domain], SPLIT_CODE[split], 3,
                        index)
    k = int(rng.integers(min(min_cams, num_cams), num_cams + 1))
    start = int(rng.integers(0, num_cams - k + 1))
    direction = 1 if rng.random() < .5 else -1
    cams = list(range(start, start + k))
    if direction < 0:
        cams = cams[::-1]
    t = float(rng.uniform(0, span)) + 50
    records = []
    for j, cam in enumerate(cams):
        if j:
            gap = gaps[min(cam, cams[j - 1])]
            t += gap * speed * rng.uniform(.9, 1.1)
        front_p = .85 if faces_up[cam] == (direction > 0) else .15
        for n in range(imgs_per_cam):
            t += rng.uniform(6, 30)
            records.append(dict(
                cam=cam, frame=int(t), k=n,
                view='front' if rng.random() < front_p else 'back'))
    return records


def _queries(seed: int, domain: str, index: int,
             records: List[Dict]) -> set:
    """Which images of test identity ``index`` are queries: one image on
    each of 1..(cameras - 1) random cameras, so that at least one camera
    stays entirely in the gallery.

    Returns:
        set[int]: Positions in ``records``.
    """
    cams: Dict[int, List[int]] = {}
    for r, rec in enumerate(records):
        cams.setdefault(rec['cam'], []).append(r)
    qrng = random_stream(seed, DOMAIN_CODE[domain], 4, index)
    cam_list = sorted(cams)
    nq = int(qrng.integers(1, len(cam_list)))
    return {int(qrng.choice(cams[int(cam)]))
            for cam in qrng.choice(cam_list, nq, replace=False)}


def image_name(pid: int, cam: int, frame: int) -> str:
    """File name of an image, ``PPPP_cCs1_FFFFFF_00.jpg`` (at least 4 digits
    of person id and 6 of frame; more when the numbers need them).

    Args:
        pid (int): Person id.
        cam (int): Camera, 0-based (1-based in the name).
        frame (int): Frame number.

    Returns:
        str: The name, which :meth:`Market1501.parse_name` reads back.
    """
    return f'{int(pid):04d}_c{int(cam) + 1}s1_{int(frame):06d}_00.jpg'


def _params(domain, num_train_ids, num_test_ids, num_cams, imgs_per_cam,
            min_cams, family_size, img_size, seed) -> Dict:
    return dict(domain=str(domain), num_train_ids=int(num_train_ids),
                num_test_ids=int(num_test_ids), num_cams=int(num_cams),
                imgs_per_cam=int(imgs_per_cam), min_cams=int(min_cams),
                family_size=int(family_size),
                img_size=[int(img_size[0]), int(img_size[1])],
                seed=int(seed))


def _check_params(p: Dict) -> None:
    if p['domain'] not in DOMAINS:
        raise ReIDUserError(f'SyntheticReID: domain must be one of {DOMAINS}, '
                            f"got {p['domain']!r}")
    if p['num_train_ids'] < 0 or p['num_test_ids'] < 1:
        raise ReIDUserError('SyntheticReID: num_train_ids must be >= 0 and '
                            'num_test_ids >= 1, got '
                            f"{p['num_train_ids']} and {p['num_test_ids']}")
    if not 2 <= p['num_cams'] <= 9:
        raise ReIDUserError('SyntheticReID: num_cams must be in [2, 9] '
                            f"(1-digit camera ids), got {p['num_cams']}")
    if not 2 <= p['min_cams'] <= p['num_cams']:
        raise ReIDUserError(
            'SyntheticReID: min_cams must be in [2, num_cams] '
            'so that every query has a match on another camera,'
            f" got {p['min_cams']}")
    if p['imgs_per_cam'] < 1 or p['family_size'] < 1:
        raise ReIDUserError('SyntheticReID: imgs_per_cam and family_size must '
                            'be >= 1')
    h, w = p['img_size']
    if h < 32 or w < 16:
        raise ReIDUserError('SyntheticReID: img_size (h, w) must be at least '
                            f'(32, 16), got {tuple(p["img_size"])}')


def _expected_images(p: Dict) -> float:
    """Expected number of images of a tree (a person is seen by
    ``min_cams..num_cams`` cameras, uniformly)."""
    cams = (min(p['min_cams'], p['num_cams']) + p['num_cams']) / 2
    return (p['num_train_ids'] + p['num_test_ids']) * cams * \
        p['imgs_per_cam']


def _write_tree(root: str, p: Dict) -> Dict:
    """Generate every image of one domain into ``root`` (must exist).

    Streams: one identity at a time is drawn, walked, rendered and written,
    and its entry appended to ``identities.json``, so memory stays flat in
    the number of identities (beyond one int per identity for the id
    order). A progress bar over the identities is shown for trees of at
    least ``_BAR_MIN`` images.
    """
    domain, seed = p['domain'], p['seed']
    img_size = tuple(p['img_size'])
    styles = [camera_style(seed, domain, c) for c in range(p['num_cams'])]
    scenes = [camera_scene(seed, domain, c, st, img_size[0])
              for c, st in enumerate(styles)]
    faces_up = [s['faces_up'] for s in styles]
    gaps = random_stream(seed, DOMAIN_CODE[domain], 8).uniform(
        150, 600, max(1, p['num_cams'] - 1))  # frames between cameras
    for d in _SPLIT_DIRS:
        os.makedirs(osp.join(root, d), exist_ok=True)
    counts = dict(train=0, query=0, gallery=0)
    splits = (('train', p['num_train_ids']), ('test', p['num_test_ids']))
    # a bar for what a user waits on (the demo: ~10 s), not tiny trees
    bar = ProgressBar(p['num_train_ids'] + p['num_test_ids']) \
        if _expected_images(p) >= _BAR_MIN else None
    first = True
    with open(osp.join(root, 'identities.json'), 'w') as id_file:
        id_file.write('{')
        for split, num in splits:
            pids = person_ids(seed, domain, split, num)
            span = 40 * max(1, num)
            for i in range(num):
                attrs = make_identity(seed, domain, split, i,
                                      p['family_size'], int(pids[i]))
                entry = json.dumps(dict(attrs, split=split), sort_keys=True)
                id_file.write(('' if first else ',\n') +
                              json.dumps(f'{int(pids[i]):04d}') + ': ' +
                              entry)
                first = False
                recs = _walk(seed, domain, split, i, attrs['speed'],
                             p['num_cams'], p['imgs_per_cam'],
                             p['min_cams'], faces_up, gaps, span)
                query = _queries(seed, domain, i, recs) \
                    if split == 'test' else set()
                for r, rec in enumerate(recs):
                    _write_image(root, split, r in query, attrs, rec,
                                 scenes, styles, img_size, seed, domain, i,
                                 counts)
                if bar is not None:
                    bar.update()
        id_file.write('}\n')
    if bar is not None:
        bar.file.write('\n')
        bar.file.flush()
    return dict(counts=counts, cameras=styles)


def _write_image(root, split, is_query, attrs, rec, scenes, styles,
                 img_size, seed, domain, index, counts) -> None:
    """Render, encode and write one image; count it."""
    cam = rec['cam']
    irng = random_stream(seed, DOMAIN_CODE[domain], SPLIT_CODE[split], 5,
                         index, cam, rec['k'])
    img = render_image(attrs, scenes[cam], styles[cam], rec['view'], irng,
                       img_size)
    ok, buf = cv2.imencode(
        '.jpg', img, [int(cv2.IMWRITE_JPEG_QUALITY), styles[cam]['jpeg']])
    if not ok:  # pragma: no cover
        raise RuntimeError('SyntheticReID: JPEG encoding failed')
    if split == 'train':
        sub, key = 'bounding_box_train', 'train'
    elif is_query:
        sub, key = 'query', 'query'
    else:
        sub, key = 'bounding_box_test', 'gallery'
    counts[key] += 1
    name = image_name(attrs['pid'], cam, rec['frame'])
    with open(osp.join(root, sub, name), 'wb') as f:
        f.write(buf.tobytes())


def _read_meta(root: str) -> Optional[Dict]:
    try:
        with open(osp.join(root, 'meta.json')) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _meta_matches(root: str, params: Dict) -> bool:
    meta = _read_meta(root)
    return (meta is not None and meta.get('generator') == GENERATOR_NAME
            and meta.get('version') == GENERATOR_VERSION
            and meta.get('params') == params
            and all(osp.isdir(osp.join(root, d)) for d in _SPLIT_DIRS))


def generate_synthetic_reid(root: str,
                            domain: str = 'A',
                            num_train_ids: int = 200,
                            num_test_ids: int = 100,
                            num_cams: int = 6,
                            imgs_per_cam: int = 2,
                            min_cams: int = 2,
                            family_size: int = 4,
                            img_size: Tuple[int, int] = (128, 64),
                            seed: int = 0,
                            force: bool = False) -> Dict:
    """Generate a synthetic Market-1501-style benchmark (if needed).

    Nothing is done when ``root/meta.json`` already records the same
    generator version and parameters. Otherwise the images are generated
    into a temporary sibling folder that is then renamed to ``root``, under
    an exclusive lock on ``root + '.lock'``, so that several processes
    (DDP ranks, dataloader workers) can call this at the same time: one
    generates, the others wait and find the finished tree.

    Args:
        root (str): Folder of the benchmark. An existing folder is replaced
            only when it is a SyntheticReID folder (has its ``meta.json``) or
            empty.
        domain (str): Camera-style domain, ``'A'`` (indoor, mild styles),
            ``'B'`` (outdoor daylight, strong colour casts, low saturation,
            blur) or ``'C'`` (outdoor night and overcast, strong blue or
            green casts, high contrast, noise, smaller persons). The person
            ids of the three domains and of the train and test splits never
            meet (:data:`~.identities.PID_SLOTS`).
        num_train_ids (int): Identities in ``bounding_box_train`` (may be 0).
        num_test_ids (int): Identities in ``query``/``bounding_box_test``.
        num_cams (int): Cameras of the domain (2-9).
        imgs_per_cam (int): Images of a person per camera that sees it.
        min_cams (int): Each person is seen by ``min_cams``..``num_cams``
            consecutive cameras (>= 2).
        family_size (int): Identities per family of look-alikes.
        img_size (tuple[int, int]): Stored image size (h, w).
        seed (int): Seed of every random stream.
        force (bool): Regenerate even if the parameters match.

    Returns:
        dict: The content of ``meta.json`` (generator, version, params,
        counts of train/query/gallery images, camera styles).
    """
    params = _params(domain, num_train_ids, num_test_ids, num_cams,
                     imgs_per_cam, min_cams, family_size, img_size, seed)
    _check_params(params)
    root = osp.abspath(root)
    if not force and _meta_matches(root, params):
        return _read_meta(root)
    parent = osp.dirname(root)
    os.makedirs(parent, exist_ok=True)
    with open(root + '.lock', 'a+') as lock:
        if fcntl is not None:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        try:
            # another process may have finished while we waited
            if _meta_matches(root, params) and not force:
                return _read_meta(root)
            if osp.exists(root) and os.listdir(root) and _read_meta(
                    root) is None:
                raise ReIDUserError(
                    f'SyntheticReID: {root} exists, is not empty and has no '
                    'meta.json of SyntheticReID; refusing to overwrite it. '
                    'Point data_root to a new or SyntheticReID folder.')
            begin = time.time()
            print_log(
                f'SyntheticReID: generating domain {domain} into {root} '
                f'({num_train_ids} train + {num_test_ids} test identities, '
                f'{num_cams} cameras)...', logger='current')
            tmp = tempfile.mkdtemp(prefix=osp.basename(root) + '.tmp-',
                                   dir=parent)
            try:
                info = _write_tree(tmp, params)
                meta = dict(generator=GENERATOR_NAME,
                            version=GENERATOR_VERSION, params=params,
                            counts=info['counts'], cameras=info['cameras'],
                            seconds=round(time.time() - begin, 2))
                with open(osp.join(tmp, 'meta.json'), 'w') as f:
                    json.dump(meta, f, indent=2, sort_keys=True)
                old = None
                if osp.exists(root):
                    old = tempfile.mkdtemp(
                        prefix=osp.basename(root) + '.old-', dir=parent)
                    os.rename(root, osp.join(old, 'tree'))
                os.rename(tmp, root)
                if old is not None:
                    shutil.rmtree(old, ignore_errors=True)
                print_log(
                    f'SyntheticReID: {root} ready in {meta["seconds"]} s '
                    f'({info["counts"]}).', logger='current')
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
            return meta
        finally:
            if fcntl is not None:
                fcntl.flock(lock.fileno(), fcntl.LOCK_UN)

"""Market-1501 dataset."""
import logging
import os.path as osp
import re
from collections import defaultdict
from typing import Dict, List, Optional, Tuple

from mmengine.logging import print_log

from mmreid_gs.registry import DATASETS
from .base_reid_dataset import BaseReIDDataset

_NAME_RE = re.compile(r'^(-?\d+)_c(\d+)s(\d+)_(\d+)')


@DATASETS.register_module()
class Market1501(BaseReIDDataset):
    """Market-1501 (Zheng et al., ICCV 2015).

    Expected tree::

        data_root/
        ├── bounding_box_train/   # split='train'  (751 ids, 12,936 images)
        │   ├── 0002_c1s1_000451_03.jpg
        │   └── ...
        ├── query/                # split='query'  (750 ids, 3,368 images)
        └── bounding_box_test/    # split='gallery' (19,732 images)

    File names are ``<pid>_c<camera>s<session>_<frame>_<box>.jpg``:
    ``0002_c1s1_000451_03.jpg`` is person 2, camera 1 (``cam_id`` 0, cameras
    are 1-based in the names), video session 1, frame 451. Person id ``-1``
    marks junk boxes (dropped everywhere); ``0000`` marks distractors, kept
    in the gallery as in the standard protocol (dropped from train, where
    there are none in the official release).

    ``timestamp`` is the frame number made global per camera: the sessions
    of a camera are assumed recorded back to back, so session ``s`` of
    camera ``c`` is offset by the sum over the earlier sessions of that
    camera of their largest frame number, the largest being taken over the
    three folders (the rule of the public QAConv/TLift code). The frame rate
    (25 fps) is ``metainfo['fps']``: ``timestamp / fps`` is in seconds.
    Every data info also has ``frame`` and ``session`` (1-based) fields.

    Args:
        data_root (str): The dataset root, see the tree above.
        split (str): ``'train'``, ``'query'`` or ``'gallery'``.
            Defaults to ``'train'``.
        pipeline (Sequence[dict | Callable]): Transforms. Defaults to ``()``.
        **kwargs: Other arguments of :class:`BaseReIDDataset`
            (``on_bad_name``, ``check_images``, ``lazy_init``...).
    """

    SPLIT_DIRS = dict(
        train='bounding_box_train', query='query', gallery='bounding_box_test')
    TRAIN_DISTRACTOR_PIDS = (0, )
    FPS = 25
    EXPECTED_TREE = ('data_root/\n'
                     '├── bounding_box_train/  0002_c1s1_000451_03.jpg ...\n'
                     '├── query/\n'
                     '└── bounding_box_test/')

    @staticmethod
    def parse_name(name: str) -> Optional[Tuple[int, int, int, int]]:
        """Parse a Market-1501 file name.

        Args:
            name (str): e.g. ``'0002_c1s1_000451_03.jpg'``.

        Returns:
            tuple | None: ``(pid, camera, session, frame)`` with the 1-based
            camera and session of the name, or None if it does not parse.
        """
        match = _NAME_RE.match(name)
        if match is None:
            return None
        pid, cam, session, frame = map(int, match.groups())
        if cam < 1 or session < 1:
            return None
        return pid, cam, session, frame

    def _split_location(self) -> str:
        return osp.abspath(
            osp.join(self.data_root, self.SPLIT_DIRS[self.split]))

    def _load_split(self) -> List[dict]:
        folder = self._require(
            osp.join(self.data_root, self.SPLIT_DIRS[self.split]))
        items = []
        for path, (pid, cam, session, frame) in self._parsed_images(
                folder, 'expected <pid>_c<camera>s<session>_<frame>_<box>.jpg '
                'with 1-based camera and session, e.g. '
                '0002_c1s1_000451_03.jpg'):
            items.append(
                dict(
                    img_path=path,
                    pid=pid,
                    cam_id=cam - 1,
                    session=session,
                    frame=frame))
        offsets = self._session_offsets(items)
        for item in items:
            item['timestamp'] = item['frame'] + offsets.get(
                (item['cam_id'], item['session']), 0)
        return items

    def _session_offsets(
            self, items: List[dict]) -> Dict[Tuple[int, int], int]:
        """Frame offset of each (cam_id, session) pair.

        The largest frame number of every (camera, session) is taken over
        the non-junk images of the three folders of the dataset, so that
        the three splits share one time line per camera.
        """
        max_frame: Dict[Tuple[int, int], int] = defaultdict(int)
        junk = set(self.JUNK_PIDS)
        for item in items:
            if item['pid'] in junk:
                continue
            key = (item['cam_id'], item['session'])
            max_frame[key] = max(max_frame[key], item['frame'])
        missing = []
        for split, sub in self.SPLIT_DIRS.items():
            folder = osp.join(self.data_root, sub)
            if split == self.split:
                continue
            if not osp.isdir(folder):
                missing.append(folder)
                continue
            for name in self._list_images(folder):
                parsed = self.parse_name(name)
                if parsed is None or parsed[0] in junk:
                    continue
                _, cam, session, frame = parsed
                key = (cam - 1, session)
                max_frame[key] = max(max_frame[key], frame)
        if missing:
            print_log(
                f'{type(self).__name__}: {missing} not found; timestamps are '
                'computed from the other folders only.',
                logger='current',
                level=logging.WARNING)
        offsets = {}
        cams = {cam for cam, _ in max_frame}
        for cam in cams:
            last = max(s for c, s in max_frame if c == cam)
            total = 0
            for session in range(1, last + 1):
                offsets[(cam, session)] = total
                total += max_frame.get((cam, session), 0)
        return offsets

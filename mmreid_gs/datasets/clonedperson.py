"""ClonedPerson synthetic dataset."""
import os.path as osp
import re
from typing import List, Optional, Tuple

from mmreid_gs.registry import DATASETS
from .base_reid_dataset import BaseReIDDataset

_NAME_RE = re.compile(r'^(-?\d+)_s(\d+)_c(\d+)_f(\d+)')


@DATASETS.register_module()
class ClonedPerson(BaseReIDDataset):
    """ClonedPerson (Wang et al., CVPR 2022).

    Expected tree::

        data_root/
        ├── train/                  split='train'
        │   ├── 700000_s02_c00_f023389.jpg
        │   └── ...
        └── test/
            ├── query/              split='query'
            └── gallery/            split='gallery'

    File names are ``<pid>_s<scene>_c<camera>_f<frame>.jpg`` (0-based
    camera). As in the public QAConv code, ``cam_id`` is the camera number
    of the name (the scene is kept in the ``scene`` field but does not
    change the camera id) and ``timestamp`` is the frame number (24 fps,
    ``metainfo['fps']``). Person id ``-1`` (junk) is dropped.

    Args:
        data_root (str): The dataset root, see the tree above.
        split (str): ``'train'``, ``'query'`` or ``'gallery'``.
            Defaults to ``'train'``.
        pipeline (Sequence[dict | Callable]): Transforms. Defaults to ``()``.
        **kwargs: Other arguments of :class:`BaseReIDDataset`.
    """

    SPLIT_DIRS = dict(
        train='train', query=osp.join('test', 'query'),
        gallery=osp.join('test', 'gallery'))
    FPS = 24
    EXPECTED_TREE = ('data_root/\n'
                     '├── train/  700000_s02_c00_f023389.jpg ...\n'
                     '└── test/\n'
                     '    ├── query/\n'
                     '    └── gallery/')

    @staticmethod
    def parse_name(name: str) -> Optional[Tuple[int, int, int, int]]:
        """Parse ``'<pid>_s<scene>_c<camera>_f<frame>.jpg'``.

        Returns:
            tuple | None: ``(pid, scene, camera, frame)`` or None.
        """
        match = _NAME_RE.match(name)
        if match is None:
            return None
        return tuple(map(int, match.groups()))

    def _split_location(self) -> str:
        return osp.abspath(
            osp.join(self.data_root, self.SPLIT_DIRS[self.split]))

    def _load_split(self) -> List[dict]:
        folder = self._require(self._split_location())
        items = []
        for path, (pid, scene, cam, frame) in self._parsed_images(
                folder, 'expected <pid>_s<scene>_c<camera>_f<frame>.jpg, '
                'e.g. 700000_s02_c00_f023389.jpg'):
            items.append(
                dict(
                    img_path=path,
                    pid=pid,
                    cam_id=cam,
                    scene=scene,
                    frame=frame,
                    timestamp=frame))
        return items

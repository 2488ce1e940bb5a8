"""CUHK03 with the new protocol (CUHK03-NP)."""
import os.path as osp
import re
from typing import Callable, List, Optional, Sequence, Tuple, Union

from mmreid_gs.registry import DATASETS
from mmreid_gs.utils.errors import ReIDUserError
from .base_reid_dataset import BaseReIDDataset

_NAME_RE = re.compile(r'^(-?\d+)_c(\d+)')


@DATASETS.register_module()
class CUHK03NP(BaseReIDDataset):
    """CUHK03 with the new protocol of Zhong et al. (CVPR 2017), CUHK03-NP.

    767 training and 700 test identities; the ``detected`` and ``labeled``
    versions differ by the person boxes. Expected tree (Market-1501 layout
    per version; the official release has ``.png`` images)::

        data_root/
        ├── detected/
        │   ├── bounding_box_train/   0001_c1_1.png ...   split='train'
        │   ├── query/                                    split='query'
        │   └── bounding_box_test/                        split='gallery'
        └── labeled/
            ├── bounding_box_train/
            ├── query/
            └── bounding_box_test/

    File names start with ``<pid>_c<camera>`` (1-based camera, ``cam_id`` is
    0-based); the rest of the name is ignored. There is no timestamp.

    Args:
        data_root (str): The dataset root, see the tree above.
        split (str): ``'train'``, ``'query'`` or ``'gallery'``.
            Defaults to ``'train'``.
        pipeline (Sequence[dict | Callable]): Transforms. Defaults to ``()``.
        mode (str): ``'detected'`` or ``'labeled'``. Defaults to
            ``'detected'``.
        **kwargs: Other arguments of :class:`BaseReIDDataset`.
    """

    MODES = ('detected', 'labeled')
    SPLIT_DIRS = dict(
        train='bounding_box_train', query='query', gallery='bounding_box_test')
    EXPECTED_TREE = ('data_root/\n'
                     '├── detected/\n'
                     '│   ├── bounding_box_train/  0001_c1_1.png ...\n'
                     '│   ├── query/\n'
                     '│   └── bounding_box_test/\n'
                     '└── labeled/\n'
                     '    └── (same three folders)')

    def __init__(self,
                 data_root: str,
                 split: str = 'train',
                 pipeline: Sequence[Union[dict, Callable]] = (),
                 mode: str = 'detected',
                 **kwargs):
        if mode not in self.MODES:
            raise ReIDUserError(f'CUHK03NP: mode must be one of {self.MODES}, '
                                f'but got {mode!r}.')
        self.mode = mode
        super().__init__(
            data_root=data_root, split=split, pipeline=pipeline, **kwargs)

    @staticmethod
    def parse_name(name: str) -> Optional[Tuple[int, int]]:
        """Parse ``'<pid>_c<camera>...'``.

        Returns:
            tuple | None: ``(pid, camera)`` with the 1-based camera, or None.
        """
        match = _NAME_RE.match(name)
        if match is None:
            return None
        pid, cam = map(int, match.groups())
        return (pid, cam) if cam >= 1 else None

    def _split_location(self) -> str:
        return osp.abspath(
            osp.join(self.data_root, self.mode, self.SPLIT_DIRS[self.split]))

    def _load_split(self) -> List[dict]:
        self._require(osp.join(self.data_root, self.mode))
        folder = self._require(self._split_location())
        return [
            dict(img_path=path, pid=pid, cam_id=cam - 1)
            for path, (pid, cam) in self._parsed_images(
                folder, 'expected <pid>_c<camera>..., e.g. 0001_c1_1.png')
        ]

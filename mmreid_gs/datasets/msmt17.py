"""MSMT17 dataset."""
import logging
import os.path as osp
from typing import Callable, List, Optional, Sequence, Tuple, Union

from mmengine.logging import print_log

from mmreid_gs.registry import DATASETS
from mmreid_gs.utils.errors import ReIDUserError
from .base_reid_dataset import BaseReIDDataset


@DATASETS.register_module()
class MSMT17(BaseReIDDataset):
    """MSMT17 (Wei et al., CVPR 2018), V1 or V2.

    Expected tree::

        data_root/
        ├── train/                 # (V2: mask_train_v2/, found automatically)
        │   └── 0000/0000_000_01_0303morning_0015_0.jpg ...
        ├── test/                  # (V2: mask_test_v2/)
        │   └── 0000/0000_000_01_0303morning_0008_0.jpg ...
        ├── list_train.txt         # lines "<path under train/> <pid>"
        ├── list_val.txt           # lines "<path under train/> <pid>"
        ├── list_query.txt         # lines "<path under test/> <pid>"
        └── list_gallery.txt       # lines "<path under test/> <pid>"

    The camera is the third ``_``-separated field of the file name, 1-based
    (``0000_000_01_0303morning_0015_0.jpg``: camera 1, ``cam_id`` 0). There
    is no timestamp.

    Splits: ``'train'`` reads ``list_train.txt`` and ``list_val.txt``
    (1,041 identities, 32,621 images); ``'query'`` and ``'gallery'`` read
    their list (3,060 test identities). With ``mode='all'`` the train split
    also takes the query and gallery images (MSMT17 (all) of the QAConv-GS
    paper: 4,101 identities, 126,142 images). Test person ids restart at 0
    in the release, so they are offset by (largest train/val id + 1) before
    all identities are relabelled to ``0..C-1``; the offset id is the
    ``pid`` field. ``mode`` does not change the query and gallery splits.

    Args:
        data_root (str): The dataset root, see the tree above.
        split (str): ``'train'``, ``'query'`` or ``'gallery'``.
            Defaults to ``'train'``.
        pipeline (Sequence[dict | Callable]): Transforms. Defaults to ``()``.
        mode (str): ``'standard'`` (train on train + val) or ``'all'``
            (train on train + val + query + gallery). Defaults to
            ``'standard'``.
        train_dir (str, optional): Image folder of the train/val lists,
            relative to ``data_root``. None: ``train`` or, when absent,
            ``mask_train_v2``. Defaults to None.
        test_dir (str, optional): Image folder of the query/gallery lists.
            None: ``test`` or, when absent, ``mask_test_v2``.
            Defaults to None.
        **kwargs: Other arguments of :class:`BaseReIDDataset`.
    """

    MODES = ('standard', 'all')
    LIST_FILES = dict(
        train='list_train.txt',
        val='list_val.txt',
        query='list_query.txt',
        gallery='list_gallery.txt')
    DEFAULT_DIRS = dict(
        train=('train', 'mask_train_v2'), test=('test', 'mask_test_v2'))
    EXPECTED_TREE = ('data_root/\n'
                     '├── train/  (or mask_train_v2/)  0000/0000_000_01_'
                     '0303morning_0015_0.jpg ...\n'
                     '├── test/   (or mask_test_v2/)\n'
                     '├── list_train.txt    lines "<path under train/> '
                     '<pid>"\n'
                     '├── list_val.txt\n'
                     '├── list_query.txt    lines "<path under test/> '
                     '<pid>"\n'
                     '└── list_gallery.txt')

    def __init__(self,
                 data_root: str,
                 split: str = 'train',
                 pipeline: Sequence[Union[dict, Callable]] = (),
                 mode: str = 'standard',
                 train_dir: Optional[str] = None,
                 test_dir: Optional[str] = None,
                 **kwargs):
        if mode not in self.MODES:
            raise ReIDUserError(
                f'MSMT17: mode must be one of {self.MODES}, but '
                f'got {mode!r}.')
        self.mode = mode
        self.train_dir = train_dir
        self.test_dir = test_dir
        super().__init__(
            data_root=data_root, split=split, pipeline=pipeline, **kwargs)

    @staticmethod
    def parse_camera(path: str) -> Optional[int]:
        """1-based camera of an MSMT17 image path, or None."""
        fields = osp.basename(path).split('_')
        if len(fields) < 3 or not fields[2].isdigit():
            return None
        cam = int(fields[2])
        return cam if cam >= 1 else None

    def _image_dir(self, which: str) -> str:
        """Absolute image folder for 'train' or 'test' lists."""
        given = self.train_dir if which == 'train' else self.test_dir
        if given is not None:
            return self._require(osp.join(self.data_root, given))
        candidates = self.DEFAULT_DIRS[which]
        for sub in candidates:
            if osp.isdir(osp.join(self.data_root, sub)):
                return osp.join(self.data_root, sub)
        return self._require(osp.join(self.data_root, candidates[0]))

    def _read_list(self, key: str,
                   img_dir: str) -> List[Tuple[str, int, int]]:
        """Parse one list file into ``(img_path, pid, camera)`` tuples."""
        list_file = self._require(
            osp.join(self.data_root, self.LIST_FILES[key]), 'file')
        out = []
        with open(list_file, encoding='utf-8') as f:
            for lineno, line in enumerate(f, 1):
                line = line.strip()
                if not line:
                    continue
                fields = line.split()
                where = f'{list_file}:{lineno}: {line!r}'
                if len(fields) != 2 or not fields[1].lstrip('-').isdigit():
                    self._bad_name(where, 'expected "<relative path> <pid>"')
                    continue
                cam = self.parse_camera(fields[0])
                if cam is None:
                    self._bad_name(
                        where, 'expected a file name whose third '
                        '"_"-separated field is the 1-based camera, e.g. '
                        '0000_000_01_0303morning_0015_0.jpg')
                    continue
                out.append((osp.join(img_dir, fields[0]), int(fields[1]),
                            cam))
        return out

    def _split_location(self) -> str:
        keys = dict(
            train=['train', 'val'] +
            (['query', 'gallery'] if self.mode == 'all' else []),
            query=['query'],
            gallery=['gallery'])[self.split]
        return ', '.join(
            osp.abspath(osp.join(self.data_root, self.LIST_FILES[k]))
            for k in keys)

    def _load_split(self) -> List[dict]:
        if self.split == 'train':
            train_dir = self._image_dir('train')
            records = self._read_list('train', train_dir)
            records += self._read_list('val', train_dir)
            if self.mode == 'all':
                test_dir = self._image_dir('test')
                test = self._read_list('query', test_dir)
                test += self._read_list('gallery', test_dir)
                offset = max((pid for _, pid, _ in records), default=-1) + 1
                records += [(path, pid + offset if pid >= 0 else pid, cam)
                            for path, pid, cam in test]
        else:
            records = self._read_list(self.split, self._image_dir('test'))

        seen = set()
        items = []
        for path, pid, cam in records:
            if path in seen:
                continue
            seen.add(path)
            items.append(dict(img_path=path, pid=pid, cam_id=cam - 1))
        if len(items) < len(records):
            print_log(
                f'MSMT17 ({self.split}): {len(records) - len(items)} image(s) '
                'listed twice were kept once.',
                logger='current',
                level=logging.WARNING)
        return items

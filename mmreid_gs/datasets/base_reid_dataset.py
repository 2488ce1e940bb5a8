"""Base class of the person re-identification datasets."""
import logging
import os
import os.path as osp
from typing import Callable, Dict, List, Optional, Sequence, Union

import numpy as np
from mmengine.dataset import BaseDataset, force_full_init
from mmengine.logging import print_log

from mmreid_gs.registry import DATASETS
from mmreid_gs.utils.errors import ReIDUserError
from .bad_images import BadImageHandlingMixin

#: File extensions that are treated as images when a folder is scanned.
IMG_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp')


@DATASETS.register_module()
class BaseReIDDataset(BadImageHandlingMixin, BaseDataset):
    """Base class of the person re-identification datasets.

    Subclasses describe one dataset: they implement :meth:`_load_split`,
    which returns one dict per image of ``self.split`` with the keys
    ``img_path`` (str, absolute or relative to the working directory),
    ``pid`` (int, the person id of the dataset, ``-1`` for junk images),
    ``cam_id`` (int, 0-based) and optionally ``timestamp`` (int or float,
    frame number) and any other field (``frame``, ``session``, ...).

    This class then, in this order:

    1. drops the junk images (``pid`` in ``JUNK_PIDS``, i.e. ``-1``, in every
       split) and, in the train split only, the distractors (``pid`` in
       ``TRAIN_DISTRACTOR_PIDS``, e.g. Market-1501's ``0000``; they stay in
       the gallery, as in the standard evaluation protocol);
    2. sets ``gt_label``: in the train split the person ids are relabelled
       to ``0..C-1`` in increasing order of the original id; in the query
       and gallery splits ``gt_label`` is the original person id;
    3. optionally checks that every image decodes (``check_images=True``).

    The original id stays in each data info as ``pid``. The meta information
    (:attr:`metainfo`) holds ``split``, ``class_ids`` (the sorted original
    person ids: ``class_ids[label]`` is the original id of train label
    ``label``), ``num_classes``, ``num_cameras`` and ``has_timestamp``, plus
    what subclasses add (``fps``...). It is filled when the data list is
    loaded (at construction unless ``lazy_init=True``).

    Args:
        data_root (str): Root folder of the dataset (see the tree each
            subclass documents).
        split (str): ``'train'``, ``'query'`` or ``'gallery'``.
            Defaults to ``'train'``.
        pipeline (Sequence[dict | Callable]): Transforms applied to each
            data info. Defaults to ``()``.
        test_mode (bool, optional): MMEngine's test mode (no re-fetch of
            another sample when the pipeline returns None). ``None`` sets it
            from the split: False for train, True otherwise.
            Defaults to None.
        on_bad_name (str): What to do with a file (or list line) whose name
            does not parse: ``'skip'`` skips it, counts it and logs one
            warning with the count and an example; ``'error'`` raises a
            ValueError naming the file. Defaults to ``'skip'``.
        check_images (bool): Decode every image at load time (with OpenCV)
            to find unreadable files before training. Slow on big datasets.
            Defaults to False.
        on_bad_image (str): What to do with an image that cannot be read or
            decoded. With ``check_images=True`` (at load time): ``'error'``
            raises a ValueError naming the file, ``'skip'`` drops it and
            logs a warning with the count and an example. Otherwise at run
            time, when the pipeline fails on a sample whose image does not
            decode (same test as the load-time check): ``'error'`` raises
            :class:`BadImageError` (a user error, one line naming the file,
            also when raised in a dataloader worker); ``'skip'`` returns
            another image of the same identity instead (same camera first,
            then in index order) and logs a warning naming both files with
            the number of bad images this process has met. Defaults to
            ``'error'``.
        metainfo (dict, optional): Extra meta information.
        **kwargs: Other arguments of :class:`mmengine.dataset.BaseDataset`
            (``lazy_init``, ``serialize_data``, ``indices``,
            ``max_refetch``...). ``ann_file`` and ``data_prefix`` are not
            used.
    """

    SPLITS = ('train', 'query', 'gallery')
    #: person ids of junk images, dropped from every split.
    JUNK_PIDS: tuple = (-1, )
    #: person ids dropped from the train split only (distractors).
    TRAIN_DISTRACTOR_PIDS: tuple = ()
    #: the folder tree the dataset expects, shown in errors.
    EXPECTED_TREE: str = ''
    #: frames per second of the timestamps, put in ``metainfo['fps']``.
    FPS: Optional[float] = None
    #: whether ``data_root`` must be given (False for datasets made of
    #: other datasets, e.g. :class:`PooledReIDDataset`).
    REQUIRES_DATA_ROOT: bool = True

    def __init__(self,
                 data_root: str,
                 split: str = 'train',
                 pipeline: Sequence[Union[dict, Callable]] = (),
                 test_mode: Optional[bool] = None,
                 on_bad_name: str = 'skip',
                 check_images: bool = False,
                 on_bad_image: str = 'error',
                 metainfo: Optional[dict] = None,
                 **kwargs):
        if split not in self.SPLITS:
            raise ReIDUserError(
                f'{type(self).__name__}: split must be one of '
                f'{self.SPLITS}, but got {split!r}.')
        if on_bad_name not in ('skip', 'error'):
            raise ReIDUserError("on_bad_name must be 'skip' or 'error', but "
                                f'got {on_bad_name!r}.')
        if on_bad_image not in ('skip', 'error'):
            raise ReIDUserError("on_bad_image must be 'skip' or 'error', but "
                                f'got {on_bad_image!r}.')
        if self.REQUIRES_DATA_ROOT and not data_root:
            raise ReIDUserError(
                f'{type(self).__name__}: data_root must be given.\n'
                f'Expected tree:\n{self.EXPECTED_TREE}')
        for unused in ('ann_file', 'data_prefix'):
            if kwargs.pop(unused, None):
                print_log(
                    f'{type(self).__name__} ignores `{unused}`: images are '
                    'found from data_root and split.',
                    logger='current',
                    level=logging.WARNING)
        self.split = split
        self.on_bad_name = on_bad_name
        self.check_images = check_images
        self.on_bad_image = on_bad_image
        self._bad_names: List[str] = []
        # images found undecodable at run time by this process
        self._bad_images: Dict[str, None] = {}
        self._label_cache: Optional[Dict[str, np.ndarray]] = None
        if test_mode is None:
            test_mode = split != 'train'
        if self.FPS is not None:
            metainfo = dict(metainfo or {})
            metainfo.setdefault('fps', self.FPS)
        super().__init__(
            ann_file='',
            metainfo=metainfo,
            data_root=data_root,
            data_prefix=dict(img_path=''),
            pipeline=list(pipeline),
            test_mode=test_mode,
            **kwargs)

    # ------------------------------------------------------------------
    # to implement in subclasses
    # ------------------------------------------------------------------
    def _load_split(self) -> List[dict]:
        """Read the images of ``self.split``.

        Returns:
            list[dict]: One dict per image with ``img_path``, ``pid``,
            ``cam_id`` and optionally ``timestamp`` and other fields.
        """
        raise NotImplementedError

    # ------------------------------------------------------------------
    # helpers for subclasses
    # ------------------------------------------------------------------
    def _missing(self, path: str, what: str = 'folder') -> FileNotFoundError:
        """Build the error for a missing file or folder of the tree."""
        return FileNotFoundError(
            f'{type(self).__name__}: {what} not found: '
            f'{osp.abspath(path)}\n'
            f'(data_root={self.data_root!r}, split={self.split!r}). '
            f'Expected tree:\n{self.EXPECTED_TREE}')

    def _require(self, path: str, kind: str = 'folder') -> str:
        """Return ``path`` if it is a ``kind`` (``'folder'`` or ``'file'``)
        under an existing ``data_root``, else raise FileNotFoundError naming
        the missing path and the expected tree."""
        if not osp.isdir(self.data_root):
            raise self._missing(self.data_root, 'data_root folder')
        exists = osp.isdir if kind == 'folder' else osp.isfile
        if not exists(path):
            raise self._missing(path, kind)
        return path

    @staticmethod
    def _list_images(folder: str) -> List[str]:
        """Sorted file names of the images directly inside ``folder``."""
        return sorted(
            name for name in os.listdir(folder)
            if name.lower().endswith(IMG_EXTENSIONS)
            and osp.isfile(osp.join(folder, name)))

    def _parsed_images(self, folder: str, expected: str):
        """``(path, self.parse_name(name))`` of the images directly inside
        ``folder`` whose names parse; the others go to :meth:`_bad_name`
        with ``expected`` (the name format, with an example) as the reason.
        """
        for name in self._list_images(folder):
            path = osp.join(folder, name)
            parsed = self.parse_name(name)
            if parsed is None:
                self._bad_name(path, expected)
            else:
                yield path, parsed

    def _bad_name(self, name: str, reason: str) -> None:
        """Record (``on_bad_name='skip'``) or raise for an unparsable name.

        Args:
            name (str): The file name or list line (with its folder or
                list file, so that the user can find it).
            reason (str): What was expected.

        Raises:
            ValueError: If ``on_bad_name='error'``.
        """
        if self.on_bad_name == 'error':
            raise ReIDUserError(
                f'{type(self).__name__}: cannot parse {name!r}: '
                f'{reason}. Pass on_bad_name=\'skip\' to skip '
                'such files.')
        self._bad_names.append(f'{name} ({reason})')

    # ------------------------------------------------------------------
    # loading
    # ------------------------------------------------------------------
    def load_data_list(self) -> List[dict]:
        """Load, clean and label the data infos of the split.

        Returns:
            list[dict]: Data infos with ``img_path``, ``gt_label``, ``pid``,
            ``cam_id`` and optionally ``timestamp``.
        """
        self._bad_names = []
        raw = self._load_split()
        name = type(self).__name__
        if self._bad_names:
            print_log(
                f'{name} ({self.split}): skipped {len(self._bad_names)} '
                'file(s) whose name does not parse, e.g. '
                f'{self._bad_names[0]}.',
                logger='current',
                level=logging.WARNING)
        where = self._split_location()
        if not raw:
            raise ReIDUserError(
                f'{name}: no usable image found for split {self.split!r} in '
                f'{where}. Expected tree:\n{self.EXPECTED_TREE}')

        drop = set(self.JUNK_PIDS)
        if self.split == 'train':
            drop |= set(self.TRAIN_DISTRACTOR_PIDS)
        data_list = [info for info in raw if int(info['pid']) not in drop]
        if len(data_list) < len(raw):
            print_log(
                f'{name} ({self.split}): dropped {len(raw) - len(data_list)} '
                f'junk/distractor image(s) (person ids {sorted(drop)}).',
                logger='current')
        if self.check_images:
            data_list = self._check_decodable(data_list)
        if not data_list:
            raise ReIDUserError(
                f'{name}: split {self.split!r} in {where} has no image left '
                'after dropping junk/distractor (or undecodable) images.')

        pids = sorted({int(info['pid']) for info in data_list})
        if self.split == 'train':
            pid2label = {pid: label for label, pid in enumerate(pids)}
        else:
            pid2label = {pid: pid for pid in pids}
        cams = set()
        has_timestamp = True
        for info in data_list:
            info['pid'] = int(info['pid'])
            info['cam_id'] = int(info['cam_id'])
            info['gt_label'] = pid2label[info['pid']]
            cams.add(info['cam_id'])
            has_timestamp = has_timestamp and 'timestamp' in info

        self._metainfo.update(
            split=self.split,
            class_ids=tuple(pids),
            num_classes=len(pids),
            num_cameras=(max(cams) + 1) if cams else 0,
            has_timestamp=has_timestamp)
        self._label_cache = None
        print_log(
            f'{name} ({self.split}): {len(data_list)} images, {len(pids)} '
            f'identities, {len(cams)} cameras.',
            logger='current')
        return data_list

    def _split_location(self) -> str:
        """Where the images of the split are read from (for messages)."""
        return osp.abspath(self.data_root)

    # ------------------------------------------------------------------
    # accessors
    # ------------------------------------------------------------------
    def _labels(self) -> Dict[str, np.ndarray]:
        """Arrays of gt labels, original pids, cameras and timestamps."""
        if self._label_cache is None:
            infos = [self.get_data_info(i) for i in range(len(self))]
            has_ts = bool(infos) and all('timestamp' in i for i in infos)
            self._label_cache = dict(
                gt_label=np.array([i['gt_label'] for i in infos],
                                  dtype=np.int64),
                pid=np.array([i['pid'] for i in infos], dtype=np.int64),
                cam_id=np.array([i['cam_id'] for i in infos],
                                dtype=np.int64),
                timestamp=np.array([i['timestamp'] for i in infos],
                                   dtype=np.float64) if has_ts else None)
        return self._label_cache

    @force_full_init
    def get_gt_labels(self) -> np.ndarray:
        """Labels of all images.

        Returns:
            np.ndarray: int64 array [N]: train labels ``0..C-1`` in the train
            split, original person ids otherwise.
        """
        return self._labels()['gt_label'].copy()

    @force_full_init
    def get_pids(self) -> np.ndarray:
        """Original person ids of all images.

        Returns:
            np.ndarray: int64 array [N].
        """
        return self._labels()['pid'].copy()

    @force_full_init
    def get_cam_ids(self) -> np.ndarray:
        """0-based camera ids of all images.

        Returns:
            np.ndarray: int64 array [N].
        """
        return self._labels()['cam_id'].copy()

    @force_full_init
    def get_timestamps(self) -> Optional[np.ndarray]:
        """Timestamps (frame numbers) of all images, if the dataset has them.

        Returns:
            np.ndarray | None: float64 array [N], or None when any image has
            no ``timestamp``.
        """
        ts = self._labels()['timestamp']
        return None if ts is None else ts.copy()

    @force_full_init
    def get_cat_ids(self, idx: int) -> List[int]:
        """Category (label) of image ``idx``, as a one-element list."""
        return [int(self.get_data_info(idx)['gt_label'])]

    @property
    def num_classes(self) -> int:
        """Number of distinct labels (train: the number of identities C)."""
        if not self._fully_initialized:
            self.full_init()
        return int(len(np.unique(self._labels()['gt_label'])))

    @property
    def class_ids(self) -> tuple:
        """Sorted original person ids (train: ``class_ids[label]``)."""
        if not self._fully_initialized:
            self.full_init()
        return tuple(self._metainfo['class_ids'])

    # ------------------------------------------------------------------
    # keep the cache consistent with subsets
    # ------------------------------------------------------------------
    def get_subset_(self, indices: Union[Sequence[int], int]) -> None:
        """In-place subset; see :meth:`mmengine.dataset.BaseDataset`."""
        super().get_subset_(indices)
        self._label_cache = None

    def _copy_without_annotation(self, memo=None) -> 'BaseReIDDataset':
        """Copy without the data list; the label cache is reset."""
        other = super()._copy_without_annotation(
            {} if memo is None else memo)
        other._label_cache = None
        return other

    def __repr__(self) -> str:
        """A short description of the dataset."""
        head = f'{type(self).__name__}(split={self.split!r}, ' \
               f'data_root={self.data_root!r}'
        if not self._fully_initialized:
            return head + ', not fully initialized)'
        return head + f', num_images={len(self)}, ' \
                      f'num_ids={self._metainfo["num_classes"]})'

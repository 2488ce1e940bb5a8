"""A training set without identity labels, whose classes are pseudo-labels
(unsupervised / domain-adaptive re-ID: clusters of the images' features)."""
import os
import os.path as osp
from collections.abc import Mapping
from typing import Callable, List, Optional, Sequence, Union

import numpy as np
import torch
from mmengine.dataset import force_full_init
from mmengine.logging import print_log

from mmreid_gs.registry import DATASETS
from mmreid_gs.utils.errors import ConfigError, ReIDUserError
from .base_reid_dataset import IMG_EXTENSIONS, BaseReIDDataset


@DATASETS.register_module()
class UnlabeledReIDDataset(BaseReIDDataset):
    """Images without labels, labelled by the current pseudo-labels.

    The images come from any re-ID dataset (``dataset``: a config or a
    built dataset; its labels are ignored for training and kept as
    ``true_label``, with ``pid``, for the cluster quality that
    :class:`PseudoLabelHook` logs) or from a folder (``data_root``: every
    image under it, recursively, in sorted path order; ``cam_id`` 0; no
    true identities)::

        data_root/
            **/*.jpg|*.jpeg|*.png|*.bmp

    ``gt_label`` (in :meth:`get_data_info`, the packed data samples and
    :meth:`get_gt_labels`) is the image's pseudo-label ``0..C-1``, or -1
    for an image left out (a clustering outlier: samplers of this project
    never sample it). Until the first :meth:`set_pseudo_labels` every
    image is a class of its own (so that a sampler can be built).

    The labels live in one shared-memory tensor, written in place: the
    DataLoader's worker processes (``persistent_workers`` included) see
    every change without being restarted.

    Args:
        dataset (dict | Dataset, optional): The images: a dataset config
            (built here; a ``pipeline`` in it is dropped) or a built dataset
            with ``get_data_info(i)`` giving ``img_path``. Exactly one of
            ``dataset`` and ``data_root`` must be given.
        data_root (str): A folder of images instead. Defaults to ''.
        pipeline (Sequence[dict | Callable]): Transforms (the train
            pipeline). Defaults to ``()``.
        on_bad_image (str): See :class:`BaseReIDDataset`.
            Defaults to ``'error'``.
        metainfo (dict, optional): Extra meta information.
        **kwargs: Other arguments of :class:`mmengine.dataset.BaseDataset`.
    """

    SPLITS = ('train', )
    REQUIRES_DATA_ROOT = False
    EXPECTED_TREE = ('data_root/ (any folder tree of .jpg/.jpeg/.png/.bmp '
                     'images), or dataset=dict(type=..., ...)')

    def __init__(self,
                 dataset: Optional[Union[dict, object]] = None,
                 data_root: str = '',
                 pipeline: Sequence[Union[dict, Callable]] = (),
                 on_bad_image: str = 'error',
                 metainfo: Optional[dict] = None,
                 **kwargs):
        if (dataset is None) == (not data_root):
            raise ConfigError(
                'UnlabeledReIDDataset: give exactly one of `dataset` (a '
                're-ID dataset config or dataset) and `data_root` (a folder '
                f'of images); got dataset={dataset!r}, '
                f'data_root={data_root!r}.')
        if isinstance(dataset, Mapping):
            cfg = dict(dataset)
            cfg.pop('pipeline', None)
            dataset = DATASETS.build(cfg)
        self.source = dataset
        self._pseudo: Optional[torch.Tensor] = None
        self._true: Optional[np.ndarray] = None
        self._families: Optional[np.ndarray] = None
        #: Incremented at every :meth:`set_pseudo_labels` (a key for
        #: caches of what depends on the labels, e.g. label families).
        self.labels_version = 0
        kwargs.pop('split', None)
        kwargs.pop('test_mode', None)
        super().__init__(
            data_root=data_root,
            split='train',
            pipeline=pipeline,
            test_mode=False,
            on_bad_image=on_bad_image,
            metainfo=metainfo,
            **kwargs)

    # ------------------------------------------------------------ loading
    def _load_folder(self) -> List[dict]:
        root = self.data_root
        if not osp.isdir(root):
            raise self._missing(root, 'data_root folder')
        paths = []
        for folder, _, names in os.walk(root):
            paths.extend(
                osp.join(folder, n) for n in names
                if n.lower().endswith(IMG_EXTENSIONS))
        return [dict(img_path=p, cam_id=0, pid=-1) for p in sorted(paths)]

    def _load_source(self) -> List[dict]:
        ds = self.source
        if not hasattr(ds, 'get_data_info'):
            raise ConfigError(
                'UnlabeledReIDDataset: dataset must be a re-ID dataset with '
                f'get_data_info(i); got {type(ds).__name__}.')
        infos = []
        for i in range(len(ds)):
            info = dict(ds.get_data_info(i))
            info.pop('sample_idx', None)
            if 'img_path' not in info:
                raise ReIDUserError(
                    f'UnlabeledReIDDataset: item {i} of '
                    f'{type(ds).__name__} has no img_path.')
            label = info.pop('gt_label', None)
            info['true_label'] = -1 if label is None else int(
                np.asarray(label).reshape(-1)[0])
            info.setdefault('pid', info['true_label'])
            info.setdefault('cam_id', 0)
            infos.append(info)
        return infos

    def load_data_list(self) -> List[dict]:
        """The images, each its own class until pseudo-labels are set.

        Returns:
            list[dict]: Data infos with ``img_path``, ``cam_id``, ``pid``,
            ``true_label`` (-1: unknown) and ``gt_label``.
        """
        infos = self._load_folder() if self.source is None else \
            self._load_source()
        where = (osp.abspath(self.data_root) if self.source is None else
                 type(self.source).__name__)
        if not infos:
            raise ReIDUserError(
                f'UnlabeledReIDDataset: no image found in {where}.')
        for i, info in enumerate(infos):
            info['gt_label'] = i
            info.setdefault('true_label', -1)
        true = np.array([i['true_label'] for i in infos], dtype=np.int64)
        self._true = true if (true >= 0).all() else None
        self._families = self._source_families(len(infos))
        self._pseudo = torch.arange(len(infos),
                                    dtype=torch.int64).share_memory_()
        cams = {int(i['cam_id']) for i in infos}
        self._metainfo.update(
            split='train', class_ids=tuple(range(len(infos))),
            num_classes=len(infos), num_cameras=max(cams) + 1,
            has_timestamp=all('timestamp' in i for i in infos))
        self._label_cache = None
        print_log(
            f'UnlabeledReIDDataset: {len(infos)} images from {where}'
            + ('' if self._true is None else
               f' ({len(np.unique(true))} true identities, used only to '
               'measure the clusters)') + '; labels ignored.',
            logger='current')
        return infos

    def _source_families(self, n: int) -> Optional[np.ndarray]:
        """The look-alike family of every image (from the source's
        ``get_families()``), or None."""
        get = getattr(self.source, 'get_families', None)
        if not callable(get):
            return None
        fams = np.asarray(get(), dtype=np.int64).reshape(-1)
        return fams if fams.size == n else None

    # ------------------------------------------------------------- labels
    def get_data_info(self, idx: int) -> dict:
        """The data info of image ``idx``, ``gt_label`` its pseudo-label."""
        info = super().get_data_info(idx)
        info['gt_label'] = int(self._pseudo[idx])
        return info

    def _labels(self):
        base = super()._labels()
        return dict(base, gt_label=self._pseudo.numpy())

    @force_full_init
    def get_gt_labels(self) -> np.ndarray:
        """The pseudo-labels.

        Returns:
            np.ndarray: int64 [N]: ``0..C-1``, -1 for images left out.
        """
        return self._pseudo.numpy().copy()

    @force_full_init
    def get_true_labels(self) -> Optional[np.ndarray]:
        """The true identities (the source's labels), for measuring.

        Returns:
            np.ndarray | None: int64 [N], or None (a folder of images).
        """
        return None if self._true is None else self._true.copy()

    @property
    def num_classes(self) -> int:
        """Number of pseudo-classes C (the images left out not counted)."""
        if not self._fully_initialized:
            self.full_init()
        return int(self._pseudo.max().clamp(min=-1)) + 1

    @force_full_init
    def set_pseudo_labels(self, labels) -> None:
        """Set this epoch's labels (in place: workers see them too).

        Args:
            labels (array-like): int [N]: ``0..C-1`` with every label used,
                or -1 for an image left out.

        Raises:
            ReIDUserError: If the labels do not fit the dataset.
        """
        new = np.asarray(labels.cpu() if isinstance(labels, torch.Tensor)
                         else labels)
        if new.shape != (len(self), ) or (
                new.size and not np.issubdtype(new.dtype, np.integer)):
            raise ReIDUserError(
                'UnlabeledReIDDataset.set_pseudo_labels: need one integer '
                f'label per image ({len(self)}); got shape {new.shape}, '
                f'dtype {new.dtype}.')
        new = new.astype(np.int64)
        used = new[new >= 0]
        if (new < -1).any() or (used.size and (np.bincount(used) == 0).any()):
            raise ReIDUserError(
                'UnlabeledReIDDataset.set_pseudo_labels: labels must be '
                '0..C-1 with every label used, or -1 (left out); got values '
                f'from {new.min()} to {new.max()}, '
                f'{len(np.unique(used))} distinct.')
        self._pseudo.copy_(torch.from_numpy(new))
        self._metainfo.update(class_ids=tuple(range(self.num_classes)),
                              num_classes=self.num_classes)
        self._label_cache = None
        self.labels_version += 1

    def get_label_families(self) -> np.ndarray:
        """A look-alike family per pseudo-class: the family of the most
        frequent true identity of the cluster (when the source knows
        families, e.g. :class:`SyntheticReID`), so that the look-alike
        shares keep working on pseudo-classes.

        Returns:
            np.ndarray: int64 [C] (-1 everywhere without families, and
            before the first pseudo-labels: a hook that reads the families
            once, before training, then finds none instead of families of
            classes that are about to change).
        """
        labels = self.get_gt_labels()
        c = int(labels.max(initial=-1)) + 1
        out = np.full(c, -1, dtype=np.int64)
        if self._families is None or self._true is None or c == 0 or \
                self.labels_version == 0:
            return out
        keep = labels >= 0
        _, ids = np.unique(self._true[keep], return_inverse=True)
        ids = ids.reshape(-1)
        table = np.zeros((c, int(ids.max()) + 1), dtype=np.int64)
        np.add.at(table, (labels[keep], ids), 1)
        major = table.argmax(axis=1)
        fam_of_id = np.zeros(table.shape[1], dtype=np.int64)
        fam_of_id[ids] = self._families[keep]
        out[:] = fam_of_id[major]
        return out

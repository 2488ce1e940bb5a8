"""Several labelled re-ID datasets pooled into one training set (multi-source
domain generalization: train on the pool, test on a dataset never seen)."""
from collections.abc import Mapping
from typing import Callable, Dict, List, Optional, Sequence, Union

import numpy as np
from mmengine.dataset import Compose
from mmengine.logging import print_log

from mmreid_gs.registry import DATASETS
from mmreid_gs.utils.errors import ConfigError, ReIDUserError
from .base_reid_dataset import BaseReIDDataset

#: The test splits of a dataset: they share their identities (a query's
#: person is in the gallery), which are other people than the train split's.
TEST_SPLITS = ('query', 'gallery')


@DATASETS.register_module()
class PooledReIDDataset(BaseReIDDataset):
    """Labelled re-ID datasets (the *sources*) pooled into one train split.

    The sources are given as :class:`mmengine.dataset.ConcatDataset` takes
    them: ``datasets=[...]``, each a dataset config or a built dataset. Their
    identities are made disjoint and contiguous: the ``C_k`` classes of
    source ``k`` get the labels ``O_k .. O_k + C_k - 1`` with ``O_k = C_0 +
    ... + C_{k-1}``, so :meth:`get_gt_labels` gives ``0..C-1`` over all
    sources (``C = sum C_k``), in source order, each source's classes in its
    own label order. The cameras are made distinct the same way (source
    ``k``'s camera ``c`` is ``cam_id = M_0 + ... + M_{k-1} + c``, ``M_j`` the
    cameras of source ``j``). Every data info keeps the source's fields
    (``img_path``, ``pid``: the person id in its source, ``timestamp``...)
    and gets ``gt_label`` and ``cam_id`` (pooled), ``source`` (the source's
    name), ``source_index``, ``source_split`` (the split of the source it
    comes from), ``source_label`` (``gt_label - O_k``) and ``source_cam_id``.

    Splits of a source: a source config's ``split`` may be

    - a split of its class (``'train'``: the usual training set; the
      default of the class when absent);
    - ``'all'``: every split of its class (``SPLITS``: train + query +
      gallery for Market-1501, CUHK03-NP, MSMT17, ...; train only for
      RandPerson, CUHK-SYSU): the dataset used whole, as the multi-source
      domain generalization protocols train on their sources;
    - a list of splits, e.g. ``['train', 'query']``.

    A source of several splits counts the identities of its train split and
    those of its test splits apart (the query and gallery splits share
    theirs): the train classes first, in their label order, then the test
    identities by increasing person id. Datasets whose test ids restart at
    0 (MSMT17) are thus handled as MSMT17's own ``mode='all'`` does:
    ``dict(type='MSMT17', split='all')`` pools the same images into the same
    classes, in the same order, as ``dict(type='MSMT17', split='train',
    mode='all')`` (give one or the other, not both: an image listed twice is
    an error). The distractors kept in a gallery (Market-1501's person
    ``0000``, the class's ``TRAIN_DISTRACTOR_PIDS``) are dropped, as from
    every train split.

    The pooled dataset owns the one pipeline, run on its own data infos
    (pooled labels and cameras); a source config may repeat the same
    ``pipeline`` (it is dropped) but not give another one, and a built
    source must have no pipeline or the same one.

    Families of look-alikes (:class:`SyntheticReID`: ``get_families()``, or
    ``get_label_families()``) are offset per source (and per split group)
    like the labels, so :meth:`get_label_families` gives distinct families
    over the sources and ``batch_lookalike_share`` keeps working; -1 for the
    classes of sources without families.

    Example:
        >>> dataset = dict(
        ...     type='PooledReIDDataset',
        ...     datasets=[dict(type='Market1501', data_root='data/market1501',
        ...                    split='all'),
        ...               dict(type='CUHKSYSU', data_root='data/cuhk_sysu')],
        ...     names=['market1501', 'cuhk_sysu'],
        ...     pipeline=train_pipeline)

    Args:
        datasets (Sequence[dict | Dataset]): The sources, at least one:
            dataset configs (``split`` as above) or built datasets (used as
            they are) with ``get_gt_labels()`` or ``gt_label`` in their data
            infos.
        pipeline (Sequence[dict | Callable]): Transforms of the pooled data
            infos. Defaults to ``()``.
        names (Sequence[str], optional): One distinct name per source (the
            ``source`` field, the logs). None: the class names, which must
            then be distinct. Defaults to None.
        on_bad_image (str): ``'error'`` or ``'skip'``, see
            :class:`BaseReIDDataset` (run time; give ``check_images`` to the
            sources). Defaults to ``'error'``.
        metainfo (dict, optional): Extra meta information.
        serialize_data (bool): Serialize the data list (shared memory with
            dataloader workers). Defaults to True.
        lazy_init (bool): Defer loading the pooled data list. Defaults to
            False.
        max_refetch (int): See :class:`mmengine.dataset.BaseDataset`.
            Defaults to 1000.
    """

    SPLITS = ('train', )
    REQUIRES_DATA_ROOT = False
    EXPECTED_TREE = '(the trees of the source datasets)'

    def __init__(self,
                 datasets: Sequence[Union[dict, object]],
                 pipeline: Sequence[Union[dict, Callable]] = (),
                 names: Optional[Sequence[str]] = None,
                 on_bad_image: str = 'error',
                 metainfo: Optional[dict] = None,
                 serialize_data: bool = True,
                 lazy_init: bool = False,
                 max_refetch: int = 1000):
        if isinstance(datasets, (str, Mapping)) or not isinstance(
                datasets, Sequence) or not datasets:
            raise ConfigError(
                'PooledReIDDataset: datasets must be a non-empty list of '
                f'dataset configs or datasets; got {datasets!r}.')
        names = self._source_names(datasets, names)
        pipeline = list(pipeline)
        composed = repr(Compose(pipeline))
        #: The built datasets, one per split of every source, in order.
        self.datasets: List = []
        #: One dict per source: ``name``, ``splits`` and ``parts`` (indices
        #: into :attr:`datasets`); once loaded also ``num_images``,
        #: ``num_classes``, ``label_offset``, ``num_cameras``,
        #: ``cam_offset``.
        self.sources: List[Dict] = []
        for name, spec in zip(names, datasets):
            parts = self._build_source(name, spec, pipeline, composed)
            self.sources.append(
                dict(name=name,
                     splits=tuple(getattr(d, 'split', 'train')
                                  for d in parts),
                     parts=tuple(range(len(self.datasets),
                                       len(self.datasets) + len(parts)))))
            self.datasets.extend(parts)
        self._class_source: Optional[np.ndarray] = None
        self._label_families: Optional[np.ndarray] = None
        super().__init__(
            data_root='',
            split='train',
            pipeline=pipeline,
            test_mode=False,
            on_bad_image=on_bad_image,
            metainfo=metainfo,
            serialize_data=serialize_data,
            lazy_init=lazy_init,
            max_refetch=max_refetch)

    # ------------------------------------------------------------------
    # building the sources
    # ------------------------------------------------------------------
    @staticmethod
    def _source_names(datasets, names) -> List[str]:
        """The checked source names (given, or the class names)."""
        if names is None:
            names = []
            for spec in datasets:
                if isinstance(spec, Mapping):
                    typ = spec.get('type')
                    typ = typ if isinstance(typ, str) else getattr(
                        typ, '__name__', str(typ))
                    names.append(typ.split('.')[-1])
                else:
                    names.append(type(spec).__name__)
            given = False
        else:
            if isinstance(names, str) or len(names) != len(datasets):
                raise ConfigError(
                    'PooledReIDDataset: names must be a list of one name per '
                    f'source ({len(datasets)}); got {names!r}.')
            names = list(names)
            given = True
        for name in names:
            if not isinstance(name, str) or not name:
                raise ConfigError('PooledReIDDataset: source names must be '
                                  f'non-empty strings; got {name!r}.')
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            hint = '' if given else (
                ' (the default names are the class names: pass '
                "names=[...], e.g. names=['synthetic_A', 'synthetic_B'])")
            raise ConfigError(
                f'PooledReIDDataset: duplicate source name(s) {twice} in '
                f'{names}{hint}.')
        return names

    @staticmethod
    def _resolve_splits(name: str, cls, split) -> List[Optional[str]]:
        """The splits a source config asks for (None: the class default)."""
        known = tuple(getattr(cls, 'SPLITS', ()))
        if split is None:
            return [None]
        if split == 'all':
            if not known:
                raise ConfigError(
                    f"PooledReIDDataset: source {name!r}: split='all' needs "
                    'a dataset class with SPLITS; list the splits instead.')
            return list(known)
        if isinstance(split, str):
            splits = [split]
        elif isinstance(split, Sequence) and split and all(
                isinstance(s, str) for s in split):
            splits = list(split)
        else:
            raise ConfigError(
                f'PooledReIDDataset: source {name!r}: split must be a split '
                f"name, 'all' or a non-empty list of split names; got "
                f'{split!r}.')
        bad = [s for s in splits if s == 'all' or (known and s not in known)]
        if bad or len(set(splits)) != len(splits):
            raise ConfigError(
                f'PooledReIDDataset: source {name!r}: split {split!r} must '
                f"be one of {known}, 'all' or a list of distinct splits of "
                f'{known}.')
        return splits

    def _build_source(self, name: str, spec, pipeline: list,
                      composed: str) -> list:
        """The built datasets of one source (one per split)."""
        if not isinstance(spec, Mapping):
            own = getattr(spec, 'pipeline', None)
            if own is not None and getattr(own, 'transforms', None) and \
                    repr(own) != composed:
                raise ConfigError(
                    f'PooledReIDDataset: source {name!r} was built with its '
                    'own pipeline; the pooled dataset runs the one pipeline '
                    'on its data infos: build the source without one.')
            return [spec]
        cfg = dict(spec)
        own = cfg.pop('pipeline', None)
        if own and list(own) != pipeline:
            raise ConfigError(
                f'PooledReIDDataset: source {name!r} has a pipeline that '
                'differs from the pooled dataset\'s; the pooled dataset runs '
                'the one pipeline on its data infos: give it to '
                'PooledReIDDataset only.')
        typ = cfg.get('type')
        cls = DATASETS.get(typ) if isinstance(typ, str) else typ
        if cls is None:
            raise ConfigError(f'PooledReIDDataset: source {name!r}: unknown '
                              f'dataset type {typ!r}.')
        split = cfg.pop('split', None)
        parts = []
        for s in self._resolve_splits(name, cls, split):
            parts.append(
                DATASETS.build(cfg if s is None else dict(cfg, split=s)))
        return parts

    # ------------------------------------------------------------------
    # pooling
    # ------------------------------------------------------------------
    @staticmethod
    def _part_labels(name: str, ds) -> np.ndarray:
        """The labels of one built split, int64 [N], checked."""
        get = getattr(ds, 'get_gt_labels', None)
        if callable(get):
            labels = get()
        else:
            labels = [ds.get_data_info(j).get('gt_label')
                      for j in range(len(ds))]
            if any(lb is None for lb in labels):
                labels = None
        if labels is None:
            raise ReIDUserError(
                f'PooledReIDDataset: source {name!r} '
                f'({type(ds).__name__}) has no labels: it needs '
                "get_gt_labels() or a 'gt_label' in every data info.")
        labels = np.asarray(labels).reshape(-1)
        if labels.size != len(ds) or (labels.size and (
                not np.issubdtype(labels.dtype, np.integer)
                or labels.min() < 0)):
            raise ReIDUserError(
                f'PooledReIDDataset: source {name!r} must give one '
                f'non-negative integer label per image; got {labels.size} '
                f'labels of dtype {labels.dtype} for {len(ds)} images.')
        return labels.astype(np.int64)

    @staticmethod
    def _part_families(ds, labels: np.ndarray) -> Optional[np.ndarray]:
        """The family of every image of one built split, or None."""
        get = getattr(ds, 'get_families', None)
        if callable(get):
            return np.asarray(get(), dtype=np.int64).reshape(-1)
        get = getattr(ds, 'get_label_families', None)
        if callable(get):
            by_label = np.asarray(get(), dtype=np.int64).reshape(-1)
            fams = np.full(labels.size, -1, dtype=np.int64)
            ok = labels < by_label.size
            fams[ok] = by_label[labels[ok]]
            return fams
        return None

    def load_data_list(self) -> List[dict]:
        """Pool the data infos of the sources, relabelled.

        Returns:
            list[dict]: The data infos, source by source (each source's
            splits in the order given).
        """
        data_list: List[dict] = []
        class_source: List[int] = []
        label_fams: List[np.ndarray] = []
        paths: Dict[str, str] = {}
        label_offset = cam_offset = fam_offset = 0
        has_timestamp = True
        for k, source in enumerate(self.sources):
            name = source['name']
            items = []  # (info, class key, split group, raw family)
            dropped = 0
            num_cams = 0
            for p in source['parts']:
                ds = self.datasets[p]
                if len(ds) == 0:
                    raise ReIDUserError(
                        f'PooledReIDDataset: source {name!r} '
                        f'({type(ds).__name__}, split '
                        f"{getattr(ds, 'split', '?')!r}) is empty.")
                split = getattr(ds, 'split', 'train')
                group = int(split in TEST_SPLITS)
                labels = self._part_labels(name, ds)
                fams = self._part_families(ds, labels)
                drop = set(getattr(type(ds), 'TRAIN_DISTRACTOR_PIDS', ())) \
                    if group else set()
                for j in range(len(ds)):
                    info = ds.get_data_info(j)
                    info.pop('sample_idx', None)
                    if drop and int(info.get('pid', labels[j])) in drop:
                        dropped += 1
                        continue
                    path = str(info.get('img_path', ''))
                    where = f'source {name!r} split {split!r}'
                    if path and path in paths:
                        raise ReIDUserError(
                            f'PooledReIDDataset: {path} is in {paths[path]} '
                            f'and in {where}: every image must be pooled '
                            "once (e.g. MSMT17 with mode='all' already holds "
                            "its query and gallery: do not add split='all').")
                    paths[path] = where
                    info['source_split'] = split
                    cam = int(info.get('cam_id', 0))
                    num_cams = max(num_cams, cam + 1)
                    has_timestamp = has_timestamp and 'timestamp' in info
                    items.append((info, (group, int(labels[j])), group,
                                  -1 if fams is None else int(fams[j])))
            if not items:
                raise ReIDUserError(
                    f'PooledReIDDataset: source {name!r} has no image left '
                    'after dropping the distractors.')
            keys = sorted({key for _, key, _, _ in items})
            label_of = {key: i for i, key in enumerate(keys)}
            # families: offset per split group, so that they stay distinct
            fam_offsets = {}
            for group in sorted({g for _, _, g, _ in items}):
                top = max((f for _, _, g, f in items if g == group),
                          default=-1)
                if top >= 0:
                    fam_offsets[group] = fam_offset
                    fam_offset += top + 1
            fams = np.full(len(keys), -1, dtype=np.int64)
            for info, key, group, fam in items:
                src_label = label_of[key]
                cam = int(info.get('cam_id', 0))
                info.update(
                    gt_label=label_offset + src_label,
                    cam_id=cam_offset + cam,
                    source=name,
                    source_index=k,
                    source_label=src_label,
                    source_cam_id=cam)
                if fam >= 0:
                    fams[src_label] = fam + fam_offsets[group]
                data_list.append(info)
            source.update(num_images=len(items), num_classes=len(keys),
                          label_offset=label_offset, num_cameras=num_cams,
                          cam_offset=cam_offset)
            print_log(
                f'PooledReIDDataset: source {k} {name!r} '
                f'({"+".join(source["splits"])}): {len(items)} images, '
                f'{len(keys)} identities (labels {label_offset}..'
                f'{label_offset + len(keys) - 1}), {num_cams} cameras'
                + (f'; dropped {dropped} distractor image(s)'
                   if dropped else '') + '.',
                logger='current')
            class_source.extend([k] * len(keys))
            label_fams.append(fams)
            label_offset += len(keys)
            cam_offset += num_cams
        self._class_source = np.asarray(class_source, dtype=np.int64)
        self._label_families = np.concatenate(label_fams)
        self._metainfo.update(
            split='train',
            class_ids=tuple(range(label_offset)),
            num_classes=label_offset,
            num_cameras=cam_offset,
            has_timestamp=has_timestamp,
            sources=tuple(s['name'] for s in self.sources))
        self._label_cache = None
        print_log(
            f'PooledReIDDataset: {len(data_list)} images, {label_offset} '
            f'identities, {cam_offset} cameras from {len(self.sources)} '
            'sources.',
            logger='current')
        return data_list

    # ------------------------------------------------------------------
    # the sources of the classes and samples
    # ------------------------------------------------------------------
    @property
    def source_names(self) -> tuple:
        """tuple[str]: The name of every source, in source order."""
        return tuple(s['name'] for s in self.sources)

    @property
    def num_sources(self) -> int:
        """int: Number of sources."""
        return len(self.sources)

    @property
    def class_source(self) -> np.ndarray:
        """np.ndarray: int64 [C], the source index of every label (of the
        full pool, also after :meth:`get_subset`)."""
        if not self._fully_initialized:
            self.full_init()
        return self._class_source.copy()

    def source_of_class(self, label):
        """The source index of a label (or of an array of labels).

        Args:
            label (int | array-like): Pooled label(s) in ``0..C-1``.

        Returns:
            int | np.ndarray: The source index (int64 array for an array).
        """
        sources = self.class_source
        labels = np.asarray(label, dtype=np.int64)
        if labels.size and (labels.min() < 0 or
                            labels.max() >= sources.size):
            raise ValueError(f'labels must be in [0, {sources.size - 1}]; '
                             f'got {label!r}.')
        out = sources[labels]
        return int(out) if out.ndim == 0 else out

    def get_sources(self) -> np.ndarray:
        """Source index of every sample, in dataset order.

        Returns:
            np.ndarray: int64 [N].
        """
        return self.class_source[self.get_gt_labels()]

    def get_label_families(self) -> np.ndarray:
        """Family of look-alikes of every label, offset per source (-1 for
        the classes of sources without families).

        Returns:
            np.ndarray: int64 [C].
        """
        if not self._fully_initialized:
            self.full_init()
        return self._label_families.copy()

    def __repr__(self) -> str:
        """A short description of the pool."""
        head = f'{type(self).__name__}(sources={list(self.source_names)}'
        if not self._fully_initialized:
            return head + ', not fully initialized)'
        return head + f', num_images={len(self)}, ' \
                      f'num_ids={self._metainfo["num_classes"]})'

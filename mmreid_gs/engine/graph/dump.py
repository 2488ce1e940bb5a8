"""The class-graph dump, ``<work_dir>/graph/epoch_<k>.npz``, written by
``GraphSamplerHook(save_graph=True)`` and read by the class-graph picture
(``tools/visualization/vis_graph.py``) and the sampler studies: the one
writer and the one reader of the format.

Fields: ``class_ids`` [C] (0..C-1), ``neighbors`` [C, P-1] (row i the
nearest classes of class ``class_ids[i]``, best first), ``sample_indices``
[C] (the dataset index of the image of every class), ``img_paths`` [C] and,
when the dataset knows them, ``label_families`` [C] and ``label_sources``
[C] (the source dataset of every class of a pooled multi-source dataset).
"""
import glob
import os
import os.path as osp
import re
from typing import Dict, Optional, Sequence

import numpy as np

from mmreid_gs.utils.errors import ReIDUserError

#: Fields every dump has.
GRAPH_FIELDS = ('class_ids', 'neighbors', 'sample_indices', 'img_paths')


def graph_dump_path(work_dir: str, epoch: int) -> str:
    """Where the graph of 1-based ``epoch`` is saved."""
    return osp.join(work_dir, 'graph', f'epoch_{int(epoch)}.npz')


def save_graph_dump(path: str,
                    neighbors: np.ndarray,
                    sample_indices: Sequence[int],
                    img_paths: Sequence[str],
                    label_families: Optional[np.ndarray] = None,
                    label_sources: Optional[np.ndarray] = None) -> str:
    """Write one class graph.

    Args:
        path (str): The ``.npz`` file (its folder is created).
        neighbors (np.ndarray): int [C, P-1] nearest classes of every class.
        sample_indices (Sequence[int]): [C] dataset index of the image of
            every class.
        img_paths (Sequence[str]): [C] those images' paths.
        label_families (np.ndarray, optional): [C] family of every class.
        label_sources (np.ndarray, optional): [C] source index of every
            class (``PooledReIDDataset.class_source``).

    Returns:
        str: ``path``.
    """
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    neighbors = np.asarray(neighbors)
    extra = {}
    if label_families is not None:
        extra['label_families'] = np.asarray(label_families)
    if label_sources is not None:
        extra['label_sources'] = np.asarray(label_sources)
    np.savez_compressed(
        path,
        class_ids=np.arange(len(neighbors)),
        neighbors=neighbors,
        sample_indices=np.asarray(sample_indices),
        img_paths=np.array(list(img_paths), dtype=str),
        **extra)
    return path


def load_graph_dump(path: str,
                    fields: Sequence[str] = ('neighbors', )
                    ) -> Dict[str, np.ndarray]:
    """Read one class graph, rows in class order.

    Args:
        path (str): A dump written by :func:`save_graph_dump`.
        fields (Sequence[str]): Fields that must be present (``class_ids``
            is always read). Defaults to ``('neighbors', )``.

    Returns:
        dict: ``field -> array`` of every field in the file; the per-class
        fields sorted by ``class_ids`` (then ``class_ids`` is 0..C-1).

    Raises:
        FileNotFoundError: No such file.
        ReIDUserError: A required field is missing, or ``class_ids`` is not
            a permutation of 0..C-1.
    """
    if not osp.isfile(path):
        raise FileNotFoundError(f'no class-graph dump at {path}')
    with np.load(path, allow_pickle=False) as data:
        out = {k: data[k] for k in data.keys()}
    lacking = [f for f in ('class_ids', *fields) if f not in out]
    if lacking:
        raise ReIDUserError(f'{path} lacks {", ".join(lacking)}')
    ids = np.asarray(out['class_ids'], dtype=np.int64)
    if not np.array_equal(np.sort(ids), np.arange(len(ids))):
        raise ReIDUserError(f'{path}: class_ids are not 0..C-1')
    if not np.array_equal(ids, np.arange(len(ids))):
        order = np.argsort(ids)
        out = {k: (v[order] if v.ndim and len(v) == len(ids) else v)
               for k, v in out.items()}
    return out


def load_graph_dumps(work_dir: str,
                     fields: Sequence[str] = ('neighbors', 'img_paths')
                     ) -> Dict[int, Dict[str, np.ndarray]]:
    """Every class graph a run saved.

    Args:
        work_dir (str): The run's work dir (dumps in ``graph/epoch_k.npz``).
        fields (Sequence[str]): Fields every dump must have. Defaults to
            ``('neighbors', 'img_paths')``.

    Returns:
        dict: ``epoch k -> {field: array}`` (see :func:`load_graph_dump`),
        sorted by epoch.

    Raises:
        FileNotFoundError: No dump in ``work_dir/graph``.
        ReIDUserError: A dump lacks a field.
    """
    folder = osp.join(work_dir, 'graph')
    epochs = {}
    for path in glob.glob(osp.join(folder, 'epoch_*.npz')):
        m = re.fullmatch(r'epoch_(\d+)\.npz', osp.basename(path))
        if m:
            epochs[int(m.group(1))] = path
    if not epochs:
        raise FileNotFoundError(
            f'no class-graph dump (epoch_k.npz) in {folder}: train with '
            "custom_hooks=[dict(type='GraphSamplerHook', save_graph=True, "
            '...)]')
    return {e: load_graph_dump(epochs[e], fields) for e in sorted(epochs)}

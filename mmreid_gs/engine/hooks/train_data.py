"""What the training hooks read from the runner's training data: the train
dataloader (when the train loop is built), the family of every training
label (datasets that know look-alikes, e.g. :class:`SyntheticReID`) and the
source of every training label (pooled multi-source datasets,
:class:`PooledReIDDataset`)."""
from typing import Optional, Tuple

import numpy as np
from mmengine.runner import BaseLoop


def train_dataloader(runner):
    """The runner's train dataloader, or None when its train loop is not
    built (a Runner made for testing only)."""
    loop = getattr(runner, '_train_loop', None)
    if hasattr(runner, '_train_loop') and not isinstance(loop, BaseLoop):
        return None
    return getattr(runner, 'train_dataloader', None)


def read_label_families(dataset, runner, who: str) -> Optional[np.ndarray]:
    """The family of every training label, from the dataset's
    ``get_label_families()``.

    Args:
        dataset: The train dataset.
        runner: Its ``logger`` is warned when reading fails.
        who (str): The hook's name, for the warning.

    Returns:
        np.ndarray | None: int64 [C] (-1: unknown family), or None when the
        dataset has no ``get_label_families``, no label of a known family
        (e.g. a pooled dataset of sources without families) or reading it
        failed (warned).
    """
    get = getattr(dataset, 'get_label_families', None)
    if not callable(get):
        return None
    try:
        fams = np.asarray(get(), dtype=np.int64).reshape(-1)
    except (OSError, ValueError, KeyError) as err:
        runner.logger.warning(f'{who}: no look-alike share: '
                              f'get_label_families() failed: {err}')
        return None
    return fams if (fams >= 0).any() else None


def read_class_sources(dataset) -> Optional[Tuple[np.ndarray, Tuple[str]]]:
    """The source dataset of every training label of a pooled multi-source
    dataset (its ``class_source`` and ``source_names``).

    Args:
        dataset: The train dataset.

    Returns:
        tuple | None: ``(class_source, names)``: int64 [C] source index of
        every label and the source names (``'source <i>'`` when the dataset
        has none); None when the dataset has no ``class_source``.
    """
    sources = getattr(dataset, 'class_source', None)
    if sources is None:
        return None
    if callable(sources):
        sources = sources()
    sources = np.asarray(sources, dtype=np.int64).reshape(-1)
    names = getattr(dataset, 'source_names', None)
    if names is None or len(names) <= int(sources.max(initial=-1)):
        names = tuple(f'source {i}'
                      for i in range(int(sources.max(initial=-1)) + 1))
    return sources, tuple(names)

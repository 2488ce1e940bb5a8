"""What the training hooks read from the runner's training data: the train
dataloader (when the train loop is built) and the family of every training
label (datasets that know look-alikes, e.g. :class:`SyntheticReID`)."""
from typing import Optional

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
        np.ndarray | None: int64 [C], or None when the dataset has no
        ``get_label_families`` or reading it failed (warned).
    """
    get = getattr(dataset, 'get_label_families', None)
    if not callable(get):
        return None
    try:
        return np.asarray(get(), dtype=np.int64).reshape(-1)
    except (OSError, ValueError, KeyError) as err:
        runner.logger.warning(f'{who}: no look-alike share: get_label_families() '
                       f'failed: {err}')
        return None

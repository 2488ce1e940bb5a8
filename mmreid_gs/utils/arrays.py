"""Conversion of array-likes (numpy arrays, torch tensors, sequences), and
the check of an integer argument that may be a numpy integer."""
from typing import Optional

import numpy as np
import torch


def to_numpy(x, dtype: Optional[np.dtype] = None,
             name: str = 'value') -> np.ndarray:
    """A numpy array of a numpy array, a torch tensor or a sequence.

    Tensors are detached and moved to the CPU; float16/bfloat16 tensors
    become float32 (numpy has no bfloat16), other tensors keep their dtype.

    Args:
        x (np.ndarray | torch.Tensor | Sequence): The values.
        dtype (np.dtype, optional): Cast to this dtype (no copy when it
            already is). Defaults to None (keep the dtype).
        name (str): What ``x`` is, for the error message.

    Returns:
        np.ndarray: The values, same shape.

    Raises:
        TypeError: When ``x`` cannot be converted.
    """
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        if x.dtype in (torch.float16, torch.bfloat16):
            x = x.float()
        x = x.numpy()
    try:
        return np.asarray(x, dtype=dtype)
    except (TypeError, ValueError) as err:
        raise TypeError(f'{name} must be a numpy array, a torch tensor or a '
                        f'sequence of numbers, got {type(x).__name__}: '
                        f'{err}') from err


def stable_topk(rows: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` smallest entries of each row, in stable order
    (ties to the smaller index).

    Equal to ``np.argsort(rows, axis=1, kind='stable')[:, :k]``, in about
    ``O(n)`` a row instead of ``O(n log n)`` (an ``argpartition``, then the
    ``k`` kept entries sorted; rows with ties at the k-th value redone).

    Args:
        rows (np.ndarray): [b, n] values.
        k (int): Entries to keep, >= 1 (all n when larger).

    Returns:
        np.ndarray: [b, min(k, n)] int64 column indices, smallest first.
    """
    n = rows.shape[1]
    if k >= n:
        return np.argsort(rows, axis=1, kind='stable')
    part = np.argpartition(rows, k - 1, axis=1)[:, :k]
    vals = np.take_along_axis(rows, part, axis=1)
    kth = vals.max(axis=1, keepdims=True)
    # with more than k entries <= the k-th value, the tied entries kept by
    # argpartition may not be the lowest-index ones: redo those rows
    ambiguous = np.count_nonzero(rows <= kth, axis=1) > k
    order = np.lexsort((part, vals), axis=1)
    top = np.take_along_axis(part, order, axis=1)
    if ambiguous.any():
        top[ambiguous] = np.argsort(
            rows[ambiguous], axis=1, kind='stable')[:, :k]
    return top


def check_int(value, name: str, low: int) -> int:
    """``value`` as a Python int, checked: an int or a numpy integer (not a
    bool), at least ``low``.

    Args:
        value: The argument.
        name (str): Its name, for the error message.
        low (int): The smallest value accepted.

    Returns:
        int: ``int(value)``.

    Raises:
        ValueError: When ``value`` is not an integer or is below ``low``.
    """
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f'{name} must be an int, got {value!r}')
    if value < low:
        raise ValueError(f'{name} must be >= {low}, got {value}')
    return int(value)

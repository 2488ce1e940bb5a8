"""Conversion of array-likes (numpy arrays, torch tensors, sequences)."""
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

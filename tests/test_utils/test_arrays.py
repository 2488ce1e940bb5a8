"""to_numpy: the one tensor/array/sequence conversion of the package;
stable_topk."""
import numpy as np
import pytest
import torch

from mmreid_gs.utils.arrays import stable_topk, to_numpy


def test_tensors_arrays_and_sequences():
    t = torch.arange(6, dtype=torch.float64).reshape(2, 3).requires_grad_()
    out = to_numpy(t * 1)
    assert out.dtype == np.float64 and out.shape == (2, 3)
    np.testing.assert_array_equal(out, np.arange(6.).reshape(2, 3))
    # integers keep their dtype; numpy arrays are returned without a copy
    assert to_numpy(torch.tensor([1, 2])).dtype == np.int64
    arr = np.ones(3, np.float32)
    assert to_numpy(arr) is arr
    assert to_numpy(arr, np.float32) is arr
    np.testing.assert_array_equal(to_numpy([1, 2, 3]), [1, 2, 3])


def test_half_precision_becomes_float32():
    for dtype in (torch.float16, torch.bfloat16):
        out = to_numpy(torch.tensor([0.5, -2.], dtype=dtype))
        assert out.dtype == np.float32
        np.testing.assert_array_equal(out, [0.5, -2.])


def test_dtype_cast():
    out = to_numpy(torch.tensor([1.25, 2.5]), np.float64)
    assert out.dtype == np.float64
    np.testing.assert_array_equal(out, [1.25, 2.5])
    assert to_numpy([1, 0, 2], bool).tolist() == [True, False, True]


def test_under_inference_mode():
    with torch.inference_mode():
        t = torch.ones(2, 2)
        np.testing.assert_array_equal(to_numpy(t), np.ones((2, 2)))


def test_bad_input_names_the_value():
    with pytest.raises(TypeError, match='distmat must be'):
        to_numpy([[1, 2], [3]], np.float32, 'distmat')


def test_stable_topk_equals_a_stable_argsort():
    rng = np.random.default_rng(0)
    # few distinct values: many ties at the k-th value
    rows = rng.integers(0, 4, size=(50, 30)).astype(np.float32)
    for k in (1, 5, 29, 30, 40):
        np.testing.assert_array_equal(
            stable_topk(rows, k),
            np.argsort(rows, axis=1, kind='stable')[:, :k])
    assert stable_topk(np.array([[3., 1., 2., 1.]]), 2).tolist() == [[1, 3]]

"""PackReIDInputs (datasets/transforms/formatting.py)."""
import copy

import numpy as np
import pytest
import torch
from mmpretrain.structures import DataSample

from mmreid_gs.datasets.transforms import PackReIDInputs


# --------------------------------------------------------------------------
# PackReIDInputs
# --------------------------------------------------------------------------
def test_pack_reid_inputs():
    img = np.arange(4 * 3 * 3, dtype=np.uint8).reshape(4, 3, 3)
    results = dict(
        img=img,
        gt_label=5,
        img_path='a/0001_c1s1_000001_01.jpg',
        cam_id=2,
        timestamp=1234,
        sample_idx=7,
        ori_shape=(10, 6),
        img_shape=(4, 3),
        pid=11)
    out = PackReIDInputs()(copy.deepcopy(results))
    inputs = out['inputs']
    assert inputs.shape == (3, 4, 3) and inputs.dtype == torch.uint8
    assert torch.equal(inputs, torch.from_numpy(img).permute(2, 0, 1))
    assert inputs.is_contiguous()
    sample = out['data_samples']
    assert isinstance(sample, DataSample)
    assert sample.gt_label.tolist() == [5]
    assert sample.metainfo == dict(
        img_path='a/0001_c1s1_000001_01.jpg',
        cam_id=2,
        timestamp=1234,
        sample_idx=7,
        ori_shape=(10, 6),
        img_shape=(4, 3))
    # no label, no timestamp, grayscale image, custom keys
    out = PackReIDInputs(meta_keys=('pid', ))(
        dict(img=np.zeros((4, 3), np.uint8), pid=11))
    assert out['inputs'].shape == (1, 4, 3)
    assert 'gt_label' not in out['data_samples']
    assert out['data_samples'].metainfo == dict(pid=11)
    with pytest.raises(KeyError, match='img'):
        PackReIDInputs()(dict(gt_label=1))

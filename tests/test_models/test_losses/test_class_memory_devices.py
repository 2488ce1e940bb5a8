"""ClassMemoryLoss without host synchronisations on an accelerator (issue
31, item 6), run on the CPU with the accelerator code paths: the label
check runs on the device (``torch._assert_async``) and the memory update
keeps the last sample of every class without ``nonzero``."""
import pytest
import torch

from mmreid_gs.models.losses import ClassMemoryLoss
from mmreid_gs.testing import accelerator_code_paths


def _cosine(q, g):
    return q.flatten(1) @ g.flatten(1).t()


@pytest.mark.parametrize('accelerator', [False, True])
def test_update_keeps_the_last_sample_of_each_class(accelerator):
    loss = ClassMemoryLoss(4, 2, 1, 1)
    feats = torch.tensor([[1., 0.], [0., 1.], [2., 0.], [0., 3.],
                          [5., 5.]]).view(5, 2, 1, 1)
    labels = torch.tensor([1, 3, 1, 3, 0])
    with accelerator_code_paths() if accelerator else torch.no_grad():
        loss.update(feats, labels)
    assert loss.class_memory.view(4, 2).tolist() == [[5., 5.], [2., 0.],
                                                     [0., 0.], [0., 3.]]
    assert loss.valid_class.tolist() == [1., 1., 0., 1.]


def test_label_check_on_the_device():
    loss = ClassMemoryLoss(3, 2, 1, 1)
    feats = torch.randn(2, 2, 1, 1)
    with accelerator_code_paths():
        value, acc = loss(feats, torch.tensor([0, 2]), _cosine)
        assert value.isfinite() and 0 <= float(acc) <= 1
        with pytest.raises(RuntimeError, match='outside 0..2'):
            loss(feats, torch.tensor([0, 3]), _cosine)
        with torch.inference_mode():
            loss(feats, torch.tensor([1, 1]), _cosine)
    with pytest.raises(ValueError, match='label 3'):
        loss(feats, torch.tensor([0, 3]), _cosine)

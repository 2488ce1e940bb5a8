"""QAConvNeck."""
import pytest
import torch

from mmreid_gs.models.necks import QAConvNeck


def test_neck_normalises_channels():
    neck = QAConvNeck(32, 16).eval()
    assert neck.conv.kernel_size == (3, 3) and neck.conv.bias is None
    assert neck.conv.padding == (1, 1) and neck.bn.num_features == 16
    x = torch.randn(2, 32, 6, 4)
    out = neck((torch.randn(2, 8, 12, 8), x))  # last map of a tuple
    assert out.shape == (2, 16, 6, 4)
    assert torch.allclose(out.norm(dim=1), torch.ones(2, 6, 4), atol=1e-5)
    raw = neck.bn(neck.conv(x))
    assert torch.allclose(out, raw / raw.norm(dim=1, keepdim=True),
                          atol=1e-6)
    assert torch.allclose(neck(x), out)


def test_neck_options_and_errors():
    neck = QAConvNeck(8, out_channels=0)
    x = torch.randn(1, 8, 3, 2)
    assert torch.allclose(neck(x), x / x.norm(dim=1, keepdim=True))
    assert set(QAConvNeck(8, 4).state_dict()) >= {'conv.weight', 'bn.weight',
                                                  'bn.running_mean'}
    raw = QAConvNeck(8, 4, norm=False).eval()
    assert not torch.allclose(raw(x).norm(dim=1), torch.ones(1, 3, 2))
    with pytest.raises(ValueError, match=r'\[B, 8, h, w\]'):
        neck(torch.randn(1, 7, 3, 2))

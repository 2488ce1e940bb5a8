"""TransMatcherNeck: shape, channel order, no L2 norm, the public layout."""
import pytest
import torch
import torch.nn as nn

from mmreid_gs.models.necks import TransMatcherNeck
from mmreid_gs.registry import MODELS
from mmreid_gs.testing import PublicTransMatcherEncoder


def _x(n=2, c=16, h=4, w=3, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, c, h, w, generator=gen)


def test_shape_channel_order_and_no_l2_norm():
    # the BatchNorm variant (conv_bias=False, with_bn=True); the default
    # is the public layout, below
    neck = MODELS.build(
        dict(type='TransMatcherNeck', in_channels=16, d_model=8,
             num_layers=3, dim_feedforward=32, conv_bias=False,
             with_bn=True)).eval()
    assert neck.conv.kernel_size == (3, 3) and neck.conv.padding == (1, 1)
    assert neck.conv.bias is None and isinstance(neck.bn, nn.BatchNorm2d)
    assert len(neck.encoder.layers) == 2 and neck.out_channels == 24
    layer = neck.encoder.layers[0]
    assert layer.self_attn.num_heads == 1 and layer.self_attn.batch_first
    assert layer.linear1.out_features == 32 and not layer.norm_first
    assert layer.dropout.p == 0 and layer.activation_relu_or_gelu == 1
    keys = set(neck.state_dict())
    assert {'conv.weight', 'bn.running_mean',
            'encoder.layers.1.self_attn.in_proj_weight',
            'encoder.layers.0.linear2.weight',
            'encoder.layers.1.norm2.bias'} <= keys

    x = _x()
    with torch.no_grad():
        out = neck((torch.randn(2, 4, 8, 6), x))  # last map of a tuple
        first = neck.bn(neck.conv(x))
        # each chunk is the encoder layer applied to the previous chunk,
        # over the h*w locations taken row-major
        seq = first.flatten(2).transpose(1, 2)
        chunks = [first]
        for enc in neck.encoder.layers:
            seq = enc(seq)
            chunks.append(seq.transpose(1, 2).reshape(2, 8, 4, 3))
    assert out.shape == (2, 24, 4, 3)
    torch.testing.assert_close(out[:, :8], first)
    torch.testing.assert_close(out, torch.cat(chunks, dim=1), atol=1e-5,
                               rtol=0)
    norms = out.norm(dim=1)
    assert not torch.allclose(norms, torch.ones_like(norms), atol=0.1)
    torch.testing.assert_close(neck(x), out)


@pytest.mark.parametrize('train', [True, False])
def test_public_layout_equals_public_feature_map(train):
    """The default (``conv_bias=True, with_bn=False``) is the public
    restranmap neck: its weights load by key (``neck_conv`` -> ``conv``)
    and give the same maps, channels first."""
    public = PublicTransMatcherEncoder(16, 8, 2, 32).train(train)
    neck = TransMatcherNeck(16, 8, 3, 32).train(train)
    assert neck.conv.bias is not None and neck.bn is None
    state = {
        k.replace('neck_conv.', 'conv.'): v
        for k, v in public.state_dict().items()
    }
    neck.load_state_dict(state, strict=True)
    x = _x(seed=1)
    torch.testing.assert_close(neck(x), public(x).permute(0, 3, 1, 2),
                               atol=1e-5, rtol=0)


def test_one_layer_and_errors():
    neck = TransMatcherNeck(8, d_model=4, num_layers=1).eval()
    x = _x(1, 8, 3, 2)
    assert len(neck.encoder.layers) == 0
    torch.testing.assert_close(neck(x), neck.conv(x))
    out = neck.train()(x)
    out.sum().backward()
    assert neck.conv.weight.grad is not None
    with pytest.raises(ValueError, match=r'\[B, 8, h, w\].*\(1, 7, 3, 2\)'):
        neck(torch.randn(1, 7, 3, 2))
    with pytest.raises(ValueError, match='num_layers must be a positive'):
        TransMatcherNeck(8, num_layers=0)
    with pytest.raises(ValueError, match='divisible by nhead'):
        TransMatcherNeck(8, d_model=6, nhead=4)

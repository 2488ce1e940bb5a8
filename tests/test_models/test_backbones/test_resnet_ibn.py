"""ResNetIBN backbone."""
import logging
from collections import OrderedDict

import pytest
import torch
import torch.nn as nn
from mmengine.logging import MMLogger
from torch.nn.modules.batchnorm import _BatchNorm

from mmreid_gs.models.backbones import ResNetIBN


@pytest.mark.parametrize('depth,channels', [(18, 256), (50, 1024)])
def test_shapes_and_in_layers(depth, channels):
    model = ResNetIBN(depth=depth, base_channels=16 if depth == 50 else 64)
    if depth == 50:
        channels = 16 * 4 * 4
    model.init_weights()
    model.eval()
    out = model(torch.rand(2, 3, 64, 32))
    assert isinstance(out, tuple) and len(out) == 1
    assert out[0].shape == (2, channels, 4, 2)  # layer3, stride 16
    assert not hasattr(model, 'layer4')
    assert isinstance(model.bn1, nn.InstanceNorm2d) and model.bn1.affine
    assert model.norm1 is model.bn1
    for i, name in enumerate(model.res_layers):
        layer = getattr(model, name)
        for j, block in enumerate(layer):
            if i < 2 and j == len(layer) - 1:
                assert isinstance(block.IN, nn.InstanceNorm2d)
                assert block.IN.affine
                assert block.IN.num_features == block.out_channels
            else:
                assert block.IN is None
    keys = model.state_dict().keys()
    last1 = len(model.layer1) - 1
    assert f'layer1.{last1}.IN.weight' in keys and 'bn1.weight' in keys
    assert 'bn1.running_mean' not in keys


def test_instance_norm_after_residual_sum():
    model = ResNetIBN(depth=18).eval()
    block = model.layer1[-1]
    x = torch.randn(1, 64, 8, 4)
    with torch.no_grad():
        pre = block._residual(x)
        expected = torch.relu(block.IN(pre))
        assert torch.allclose(block(x), expected)


def test_plain_resnet_and_options():
    model = ResNetIBN(depth=18, ibn=False, num_stages=4, out_indices=(2, 3))
    assert isinstance(model.bn1, nn.BatchNorm2d)
    assert all(b.IN is None for name in model.res_layers
               for b in getattr(model, name))
    outs = model.eval()(torch.rand(1, 3, 64, 32))
    assert [o.shape[1] for o in outs] == [256, 512]
    with pytest.raises(ValueError, match='not built'):
        ResNetIBN(depth=18, out_indices=(3, ))


def test_norm_eval_and_frozen_stages():
    model = ResNetIBN(depth=18, frozen_stages=1)
    model.train()
    bns = [m for m in model.modules() if isinstance(m, _BatchNorm)]
    assert bns and all(not m.training for m in bns)
    assert model.layer2[-1].IN.training  # IN is not touched by norm_eval
    assert not any(p.requires_grad for p in model.bn1.parameters())
    assert not any(p.requires_grad for p in model.layer1.parameters())
    assert all(p.requires_grad for p in model.layer2.parameters())
    model = ResNetIBN(depth=18, norm_eval=False).train()
    assert all(m.training for m in model.modules()
               if isinstance(m, _BatchNorm))


def _torchvision_style_checkpoint(path, ibn=True):
    """A resnet18 state dict with torchvision/IBN-Net keys incl. layer4/fc."""
    src = ResNetIBN(depth=18, ibn=ibn, num_stages=4, out_indices=(3, ))
    gen = torch.Generator().manual_seed(0)
    state = OrderedDict()
    for key, value in src.state_dict().items():
        if value.is_floating_point():
            value = torch.rand(value.shape, generator=gen) + 0.5
        state[key] = value
    if not ibn:  # torchvision stem BN statistics
        assert 'bn1.running_mean' in state
    state['fc.weight'] = torch.rand(1000, 512, generator=gen)
    state['fc.bias'] = torch.rand(1000, generator=gen)
    torch.save(state, path)
    return state


@pytest.mark.parametrize('ibn_ckpt', [True, False])
def test_pretrained_from_local_checkpoint(tmp_path, ibn_ckpt):
    path = str(tmp_path / 'resnet18.pth')
    state = _torchvision_style_checkpoint(path, ibn=ibn_ckpt)
    model = ResNetIBN(
        depth=18, init_cfg=dict(type='Pretrained', checkpoint=path))
    records = []
    handler = logging.Handler(level=logging.WARNING)
    handler.emit = lambda record: records.append(record.getMessage())
    logger = MMLogger.get_current_instance()
    logger.addHandler(handler)
    try:
        model.init_weights()
    finally:
        logger.removeHandler(handler)
    loaded = model.state_dict()
    for key, value in loaded.items():
        if key in state and 'num_batches_tracked' not in key:
            assert torch.equal(value, state[key]), key
    # zero_init_residual must not overwrite the loaded weights
    assert torch.equal(loaded['layer1.0.bn2.weight'],
                       state['layer1.0.bn2.weight'])
    assert torch.equal(loaded['bn1.weight'], state['bn1.weight'])
    text = '\n'.join(records)
    assert 'layer4.0.conv1.weight' in text and 'fc.weight' in text
    if not ibn_ckpt:
        assert 'layer1.1.IN.weight' in text  # missing key reported
    out = model.eval()(torch.rand(1, 3, 64, 32))
    assert out[0].shape == (1, 256, 4, 2)


def test_ibn_layers_equal_instance_norm():
    """The IBN layers (group_norm, one group per channel) give the outputs
    and gradients of nn.InstanceNorm2d, in training and eval mode."""
    from mmreid_gs.models.backbones.resnet_ibn import \
        _GroupNormInstanceNorm2d
    torch.manual_seed(0)
    ref = nn.InstanceNorm2d(6, affine=True)
    with torch.no_grad():
        ref.weight.uniform_(0.5, 1.5)
        ref.bias.uniform_(-0.5, 0.5)
    ours = _GroupNormInstanceNorm2d(6, affine=True)
    ours.load_state_dict(ref.state_dict())
    for train in (True, False):
        ref.train(train)
        ours.train(train)
        x = torch.randn(3, 6, 5, 4, dtype=torch.float64) * 3 + 1
        x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
        g = torch.randn(3, 6, 5, 4, dtype=torch.float64)
        ref.double()
        ours.double()
        y1, y2 = ref(x1), ours(x2)
        torch.testing.assert_close(y2, y1)
        y1.backward(g)
        y2.backward(g)
        torch.testing.assert_close(x2.grad, x1.grad)
    torch.testing.assert_close(ours.weight.grad, ref.weight.grad)
    torch.testing.assert_close(ours.bias.grad, ref.bias.grad)
    with torch.inference_mode():
        x = torch.randn(2, 6, 3, 3, dtype=torch.float64)
        torch.testing.assert_close(ours(x), ref(x))

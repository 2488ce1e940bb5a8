"""Model converters: public QAConv / IBN-Net weights -> mmreid_gs.

A stand-in of the public model is written here from the published facts
(IBN-Net's ``resnet18_ibn_b`` with torchvision names, QAConv's ``resmap``
feature map with ``neck_conv``/``neck_bn`` and the QAConv matcher held by the
loss module as ``matcher``), randomly initialised (random BatchNorm
statistics included), scored on random images and saved in the public
checkpoint layout; the converted weights must reproduce its feature maps and
scores in our ``QAConvReID``.
"""
import os.path as osp
import subprocess
import sys

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from helpers import REPO, load_tool

from mmreid_gs.registry import MODELS
from mmreid_gs.testing import PublicQAConv
from mmreid_gs.utils import register_all_modules

CONVERTERS = osp.join(REPO, 'tools', 'model_converters')
H, W = 64, 32  # input; layer3 map 4 x 2
NECK = 16


qaconv_conv = load_tool(osp.join(CONVERTERS, 'qaconv_to_mmreid.py'),
                        'qaconv_to_mmreid')
ibn_conv = load_tool(osp.join(CONVERTERS, 'ibn_to_mmreid.py'),
                     'ibn_to_mmreid')


# ---------------------------------------------------------------------------
# stand-in of the public model (torchvision / IBN-Net names)
class PublicBasicBlock(nn.Module):
    """BasicBlock of IBN-Net; IBN-b adds ``IN`` after the residual sum."""

    def __init__(self, inplanes, planes, stride=1, with_in=False):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.IN = nn.InstanceNorm2d(planes, affine=True) if with_in else None
        self.downsample = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(
                nn.Conv2d(inplanes, planes, 1, stride, bias=False),
                nn.BatchNorm2d(planes))

    def forward(self, x):
        residual = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out)) + residual
        if self.IN is not None:
            out = self.IN(out)
        return self.relu(out)


class PublicResNet18IBNb(nn.Module):
    """IBN-Net resnet18_ibn_b: IN stem ``bn1``, IN in stages 1 and 2."""

    def __init__(self, num_classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.InstanceNorm2d(64, affine=True)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        inplanes = 64
        for i, (planes, stride) in enumerate(((64, 1), (128, 2), (256, 2),
                                              (512, 2))):
            with_in = i < 2
            blocks = [
                PublicBasicBlock(inplanes, planes, stride),
                PublicBasicBlock(planes, planes, with_in=with_in)
            ]
            setattr(self, f'layer{i + 1}', nn.Sequential(*blocks))
            inplanes = planes
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(512, num_classes)


class PublicResMap(nn.Module):
    """QAConv's resmap.ResNet: base up to layer3, neck, L2 norm."""

    def __init__(self):
        super().__init__()
        self.base = PublicResNet18IBNb()
        self.neck_conv = nn.Conv2d(256, NECK, 3, padding=1, bias=False)
        self.neck_bn = nn.BatchNorm2d(NECK)

    def forward(self, x):
        for name, module in self.base._modules.items():
            x = module(x)
            if name == 'layer3':
                break
        return F.normalize(self.neck_bn(self.neck_conv(x)))


class PublicLoss(nn.Module):
    """Stands for PairwiseMatchingLoss / TripletLoss: holds ``matcher``."""

    def __init__(self, matcher):
        super().__init__()
        self.matcher = matcher


def randomise(module, generator):
    """Random weights and BatchNorm statistics (no default values left)."""
    with torch.no_grad():
        for name, tensor in module.state_dict().items():
            if not tensor.is_floating_point():
                continue
            if name.endswith('running_var'):
                tensor.copy_(0.5 + torch.rand(tensor.shape,
                                              generator=generator))
            elif name.endswith(('running_mean', 'bias')):
                tensor.copy_(0.1 * torch.randn(tensor.shape,
                                               generator=generator))
            elif tensor.dim() == 1:  # norm weights
                tensor.copy_(1 + 0.2 * torch.randn(tensor.shape,
                                                   generator=generator))
            else:  # conv / linear weights, He-like scale
                fan_in = tensor[0].numel()
                tensor.copy_(
                    torch.randn(tensor.shape, generator=generator) *
                    (2.0 / fan_in)**0.5)


@pytest.fixture(scope='module')
def public():
    generator = torch.Generator().manual_seed(0)
    model = PublicResMap()
    criterion = PublicLoss(PublicQAConv(NECK, H // 16, W // 16))
    randomise(model, generator)
    randomise(criterion, generator)
    model.eval()
    criterion.eval()
    images = torch.rand(9, 3, H, W, generator=generator)
    with torch.no_grad():
        feats = model(images)
        scores = criterion.matcher(feats[:5], feats[5:])
    return dict(
        model=model,
        criterion=criterion,
        images=images,
        feats=feats,
        scores=scores)


def public_checkpoint(public):
    """The layout saved by the public main.py."""
    return {
        'model': public['model'].state_dict(),
        'criterion': public['criterion'].state_dict(),
        'optim': {
            'state': {},
            'param_groups': [{
                'lr': 0.001,
                'params': [0]
            }]
        },
        'epoch': 7,
        'base_loss': 0.75,
        'final_epochs': 9,
        'lr_stepped': True,
    }


def build_ours():
    register_all_modules()
    return MODELS.build(
        dict(
            type='QAConvReID',
            backbone=dict(type='ResNetIBN', depth=18),
            neck=dict(type='QAConvNeck', in_channels=256, out_channels=NECK),
            head=dict(
                type='QAConvHead',
                num_features=NECK,
                height=H // 16,
                width=W // 16)))


# ---------------------------------------------------------------------------
def test_qaconv_round_trip_scores(public):
    converted, dropped, unmapped = qaconv_conv.convert_qaconv_with_report(
        public_checkpoint(public))
    assert unmapped == []
    assert sorted(dropped) == sorted(
        k for k in public['model'].state_dict()
        if k.startswith(('base.layer4.', 'base.fc.')))
    assert torch.equal(converted['head.fc.weight'],
                       public['criterion'].matcher.fc.weight)
    assert torch.equal(converted['neck.bn.running_var'],
                       public['model'].neck_bn.running_var)

    ours = build_ours()
    result = ours.load_state_dict(converted, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    ours.eval()
    with torch.no_grad():
        feats = ours.extract_feat(public['images'])
        scores = ours.head.match(feats[:5], feats[5:])
    torch.testing.assert_close(feats, public['feats'], atol=1e-5, rtol=0)
    assert scores.shape == (5, 4)
    assert public['scores'].std() > 0.1  # a meaningful comparison
    assert (scores - public['scores']).abs().max() <= 1e-4
    assert scores.argmax(1).tolist() == public['scores'].argmax(1).tolist()


def test_qaconv_checkpoint_variants_convert_identically(public):
    reference = qaconv_conv.convert_qaconv(public_checkpoint(public))
    model_sd = public['model'].state_dict()
    crit_sd = public['criterion'].state_dict()
    matcher_sd = public['criterion'].matcher.state_dict()  # no prefix
    variants = {
        'DataParallel prefixes': {
            'model': {f'module.{k}': v
                      for k, v in model_sd.items()},
            'criterion': {f'module.{k}': v
                          for k, v in crit_sd.items()},
            'epoch': 3
        },
        'single flat dict': {
            **{f'module.{k}': v
               for k, v in model_sd.items()},
            **crit_sd
        },
        'state_dict wrapper': {
            'state_dict': {
                **model_sd,
                **crit_sd
            }
        },
        'matcher saved alone': {
            'model': model_sd,
            'criterion': matcher_sd
        },
    }
    for name, checkpoint in variants.items():
        converted = qaconv_conv.convert_qaconv(checkpoint, source=name)
        assert list(converted) == list(reference), name
        for key, value in reference.items():
            assert torch.equal(converted[key], value), (name, key)


def test_qaconv_model_settings_and_errors(public, tmp_path):
    converted = qaconv_conv.convert_qaconv(public_checkpoint(public))
    settings = qaconv_conv.infer_model_settings(converted)
    assert settings == dict(
        depth=18, ibn='b', neck_in_channels=256, neck_out_channels=NECK,
        hw=8)

    # unknown keys are reported, not silently mapped
    checkpoint = public_checkpoint(public)
    checkpoint['model'] = dict(checkpoint['model'], extra_head=torch.ones(1))
    checkpoint['criterion'] = dict(
        checkpoint['criterion'], class_memory=torch.zeros(2, 2))
    _, dropped, unmapped = qaconv_conv.convert_qaconv_with_report(checkpoint)
    assert unmapped == ['extra_head'] and 'class_memory' in dropped

    # a model without its matcher is incomplete
    with pytest.raises(ValueError, match=r'model_only\.pth.*matcher'):
        qaconv_conv.convert_qaconv({'model': checkpoint['model']},
                                   source='model_only.pth')
    with pytest.raises(ValueError, match='backbone'):
        qaconv_conv.convert_qaconv({'criterion': checkpoint['criterion']})

    missing = tmp_path / 'missing.pth'
    with pytest.raises(FileNotFoundError, match='missing.pth'):
        qaconv_conv.load_checkpoint_file(str(missing))
    text = tmp_path / 'notes.txt'
    text.write_text('not a checkpoint')
    with pytest.raises(ValueError, match='notes.txt is not a PyTorch'):
        qaconv_conv.load_checkpoint_file(str(text))
    tensor_file = tmp_path / 'tensor.pth'
    torch.save(torch.ones(2), tensor_file)
    with pytest.raises(ValueError, match='not a checkpoint dict'):
        qaconv_conv.load_checkpoint_file(str(tensor_file))


def test_qaconv_cli(public, tmp_path, monkeypatch):
    import numpy as np
    src, dst = tmp_path / 'checkpoint.pth.tar', tmp_path / 'out' / 'ours.pth'
    checkpoint = public_checkpoint(public)
    checkpoint['base_loss'] = np.float64(0.75)  # numpy scalars load too
    torch.save(checkpoint, src)
    # loading in-process leaves the process-wide allow-list as it was
    before = list(torch.serialization.get_safe_globals())
    assert qaconv_conv.load_checkpoint_file(str(src))['base_loss'] == 0.75
    assert torch.serialization.get_safe_globals() == before
    proc = subprocess.run(
        [sys.executable, osp.join(CONVERTERS, 'qaconv_to_mmreid.py'),
         str(src), str(dst)],
        capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    assert 'Dropped' in proc.stdout and 'layer4' in proc.stdout
    saved = torch.load(dst, weights_only=True)
    assert saved['meta']['converted_from'] == str(src)
    assert saved['meta']['source_epoch'] == 7
    assert saved['meta']['model_settings']['hw'] == 8
    reference = qaconv_conv.convert_qaconv(public_checkpoint(public))
    assert list(saved['state_dict']) == list(reference)

    # loads through MMEngine's checkpoint loader into the model
    from mmengine.runner import load_checkpoint
    ours = build_ours()
    load_checkpoint(ours, str(dst), strict=True)
    ours.eval()
    with torch.no_grad():
        feats = ours.extract_feat(public['images'])
        scores = ours.head.match(feats[:5], feats[5:])
    assert (scores - public['scores']).abs().max() <= 1e-4

    monkeypatch.setattr(
        sys, 'argv',
        ['qaconv_to_mmreid.py', str(tmp_path / 'nope.pth'), str(dst)])
    with pytest.raises(FileNotFoundError, match='nope.pth'):
        qaconv_conv.main()


# ---------------------------------------------------------------------------
def test_ibn_conversion_into_resnet_ibn(public, tmp_path):
    base = public['model'].base
    imagenet = base.state_dict()  # IBN-Net release: plain state dict
    converted, dropped, unmapped = ibn_conv.convert_ibn(
        imagenet, backbone_only=True)
    assert unmapped == []
    assert dropped and all(
        k.startswith(('layer4.', 'fc.')) for k in dropped)
    assert ibn_conv.describe(converted) == dict(blocks=[2, 2, 2], ibn='b')

    register_all_modules()
    backbone = MODELS.build(dict(type='ResNetIBN', depth=18)).eval()
    result = backbone.load_state_dict(converted, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    x = public['images'][:3]
    with torch.no_grad():
        ref = x
        for name, module in base._modules.items():
            ref = module(ref)
            if name == 'layer3':
                break
        out = backbone(x)[-1]
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)

    # IBN-Net imagenet.py training checkpoints: state_dict + module.
    wrapped = {
        'epoch': 100,
        'state_dict': {f'module.{k}': v
                       for k, v in imagenet.items()}
    }
    prefixed, _, _ = ibn_conv.convert_ibn(wrapped)
    assert list(prefixed) == ['backbone.' + k for k in converted]
    kept, dropped4, _ = ibn_conv.convert_ibn(imagenet, keep_layer4=True)
    assert any(k.startswith('backbone.layer4.') for k in kept)
    assert all(k.startswith('fc.') for k in dropped4)

    with pytest.raises(ValueError, match='qaconv_to_mmreid'):
        ibn_conv.convert_ibn(public['model'].state_dict(), source='q.pth')
    with pytest.raises(ValueError, match=r'x\.pth holds no ResNet'):
        ibn_conv.convert_ibn({'w': torch.ones(1)}, source='x.pth')


def test_ibn_cli_and_pretrained_init(public, tmp_path, monkeypatch):
    src = tmp_path / 'resnet18_ibn_b.pth'
    torch.save(public['model'].base.state_dict(), src)
    outputs = dict(full=tmp_path / 'full.pth', bb=tmp_path / 'bb.pth')
    proc = subprocess.run(
        [sys.executable, osp.join(CONVERTERS, 'ibn_to_mmreid.py'),
         str(src), str(outputs['full'])],
        capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    assert 'IBN type b' in proc.stdout
    monkeypatch.setattr(sys, 'argv', [
        'ibn_to_mmreid.py', '--backbone-only',
        str(src), str(outputs['bb'])
    ])
    ibn_conv.main()
    saved = torch.load(outputs['full'], weights_only=True)
    assert all(k.startswith('backbone.') for k in saved['state_dict'])
    assert saved['meta']['ibn'] == 'b'

    register_all_modules()
    expected = public['model'].base.layer3[1].conv2.weight
    for name, prefix in (('bb', None), ('full', 'backbone.')):
        init_cfg = dict(type='Pretrained', checkpoint=str(outputs[name]))
        if prefix:
            init_cfg['prefix'] = prefix
        backbone = MODELS.build(
            dict(type='ResNetIBN', depth=18, init_cfg=init_cfg))
        backbone.init_weights()
        assert torch.equal(backbone.layer3[1].conv2.weight, expected), name
        assert torch.equal(backbone.bn1.weight,
                           public['model'].base.bn1.weight)

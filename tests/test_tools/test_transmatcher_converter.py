"""tools/model_converters/transmatcher_to_mmreid.py: a public TransMatcher
checkpoint -> TransMatcherReID.

A stand-in of the public checkpoint is written from the published layout:
the backbone keys (``base.*``, with layer4 / fc) of a tiny ResNet-18-IBN,
the public neck (``neck_conv`` with a bias, ``encoder.layers``) and the
public matcher held by the loss module as ``matcher`` (with its template
``decoder_layer``), all randomly initialised; the converted weights must
load into ``TransMatcherReID`` with ``strict=True`` and reproduce the
public feature maps and scores.
"""
import sys

import pytest
import torch
from helpers import load_tool
from mmengine.runner import load_checkpoint

from mmreid_gs.registry import MODELS
from mmreid_gs.testing import PublicTransMatcher, PublicTransMatcherEncoder
from mmreid_gs.utils import register_all_modules

converter = load_tool('tools/model_converters/transmatcher_to_mmreid.py',
                      'transmatcher_to_mmreid')
H, W = 64, 32  # input; layer3 map 4 x 2
D, L, FF = 8, 2, 16


def build_ours(neck=None, head=None):
    register_all_modules()
    neck = neck or dict(type='TransMatcherNeck', in_channels=256, d_model=D,
                        num_layers=L, dim_feedforward=FF, conv_bias=True,
                        with_bn=False)
    head = head or dict(type='TransMatcherHead', d_model=D, num_layers=L,
                        dim_feedforward=FF)
    return MODELS.build(
        dict(type='TransMatcherReID',
             backbone=dict(type='ResNetIBN', depth=18),
             neck=neck,
             head=dict(head, height=H // 16, width=W // 16)))


def randomise(state, generator):
    """Random weights and BatchNorm statistics (no default values left)."""
    out = {}
    for name, tensor in state.items():
        if not tensor.is_floating_point():
            out[name] = tensor.clone()
        elif name.endswith('running_var'):
            out[name] = 0.5 + torch.rand(tensor.shape, generator=generator)
        elif name.endswith(('running_mean', 'bias')):
            out[name] = 0.1 * torch.randn(tensor.shape, generator=generator)
        elif tensor.dim() == 1:
            out[name] = 1 + 0.2 * torch.randn(tensor.shape,
                                              generator=generator)
        else:
            out[name] = torch.randn(tensor.shape, generator=generator) * (
                2.0 / tensor[0].numel())**0.5
    return out


@pytest.fixture(scope='module')
def public():
    gen = torch.Generator().manual_seed(0)
    ours = build_ours()
    base = randomise(ours.backbone.state_dict(), gen)
    base.update({
        'layer4.0.conv1.weight': torch.randn(512, 256, 3, 3,
                                             generator=gen),
        'fc.weight': torch.randn(10, 512, generator=gen),
        'fc.bias': torch.zeros(10)
    })
    encoder = PublicTransMatcherEncoder(256, D, L - 1, FF)
    encoder.load_state_dict(randomise(encoder.state_dict(), gen))
    ours.backbone.load_state_dict(
        {k: v for k, v in base.items() if not k.startswith(('layer4',
                                                            'fc'))})
    images = torch.rand(9, 3, H, W, generator=gen)
    ours.eval()
    encoder.eval()
    with torch.no_grad():
        feats = encoder(ours.backbone(images)[-1])  # [n, h, w, L*d]
    matcher = PublicTransMatcher((H // 16) * (W // 16), D, L, FF)
    matcher.randomise_(gen, feats).eval()
    with torch.no_grad():
        matcher.make_kernel(feats[:5])
        scores = matcher(feats[5:])
    model_sd = {'base.' + k: v for k, v in base.items()}
    model_sd.update(encoder.state_dict())
    return dict(model=model_sd,
                criterion={f'matcher.{k}': v
                           for k, v in matcher.state_dict().items()},
                matcher=matcher,
                images=images,
                feats=feats,
                scores=scores)


def checkpoint_of(public):
    """The layout saved by the public projects/transmatcher/main.py."""
    return {
        'model': public['model'],
        'criterion': public['criterion'],
        'optim': {'state': {}, 'param_groups': [{'lr': 0.005}]},
        'epoch': 15,
    }


def test_round_trip_loads_strict_and_reproduces_scores(public):
    converted, dropped, unmapped = \
        converter.convert_transmatcher_with_report(checkpoint_of(public))
    assert unmapped == []
    assert any(k.startswith('base.layer4.') for k in dropped)
    assert 'base.fc.weight' in dropped
    assert 'matcher.decoder_layer.score_embed' in dropped
    assert torch.equal(converted['head.decoder.layers.1.score_embed'],
                       public['matcher'].decoder.layers[1].score_embed)
    assert 'neck.encoder.layers.0.self_attn.in_proj_weight' in converted

    ours = build_ours()
    result = ours.load_state_dict(converted, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    ours.eval()
    with torch.no_grad():
        feats = ours.extract_feat(public['images'])
        scores = ours.match(feats[:5], feats[5:])
    torch.testing.assert_close(feats, public['feats'].permute(0, 3, 1, 2),
                               atol=1e-5, rtol=1e-5)
    assert scores.shape == (5, 4)
    assert public['scores'].std() > 0.1  # a meaningful comparison
    torch.testing.assert_close(scores, public['scores'], atol=1e-4, rtol=0)


def test_checkpoint_variants_convert_identically(public):
    reference = converter.convert_transmatcher(checkpoint_of(public))
    model_sd, crit_sd = public['model'], public['criterion']
    matcher_sd = public['matcher'].state_dict()  # decoder.* keys
    variants = {
        'DataParallel prefixes': {
            'model': {f'module.{k}': v for k, v in model_sd.items()},
            'criterion': {f'module.{k}': v for k, v in crit_sd.items()},
        },
        'single flat dict': {**model_sd, **crit_sd},
        'flat dict, matcher keys alone': {**model_sd, **matcher_sd},
        'state_dict wrapper': {'state_dict': {**model_sd, **crit_sd}},
        'matcher saved alone': {'model': model_sd, 'criterion': matcher_sd},
    }
    for name, checkpoint in variants.items():
        converted = converter.convert_transmatcher(checkpoint, source=name)
        assert list(converted) == list(reference), name
        for key, value in reference.items():
            assert torch.equal(converted[key], value), (name, key)

    # a neck with BatchNorm (our default TransMatcherNeck)
    with_bn = dict(model_sd)
    with_bn.pop('neck_conv.bias')
    with_bn.update({f'neck_bn.{k}': v for k, v in torch.nn.BatchNorm2d(
        D).state_dict().items()})
    converted = converter.convert_transmatcher({**with_bn, **crit_sd})
    settings = converter.infer_model_settings(converted)
    assert settings['with_bn'] and not settings['conv_bias']
    config = converter.model_config(settings)
    ours = build_ours(config['neck'], config['head'])
    ours.load_state_dict(converted, strict=True)


def test_settings_and_errors(public):
    converted = converter.convert_transmatcher(checkpoint_of(public))
    settings = converter.infer_model_settings(converted)
    assert settings == dict(
        depth=18, ibn='b', neck_in_channels=256, d_model=D, conv_bias=True,
        with_bn=False, num_layers=L, num_encoder_layers=L - 1,
        encoder_dim_feedforward=FF, dim_feedforward=FF, hw=8)

    checkpoint = checkpoint_of(public)
    checkpoint['model'] = dict(checkpoint['model'], extra=torch.ones(1),
                               **{'classifier.weight': torch.ones(2)})
    with pytest.raises(ValueError,
                       match=r"ckpt\.pth holds 2 keys.*'extra', "
                       r"'classifier\.weight'"):
        converter.convert_transmatcher(checkpoint, source='ckpt.pth')
    _, _, unmapped = converter.convert_transmatcher_with_report(
        checkpoint, strict=False)
    assert unmapped == ['extra', 'classifier.weight']

    with pytest.raises(ValueError, match=r'model_only.*matcher\.decoder'):
        converter.convert_transmatcher({'model': public['model']},
                                       source='model_only')
    with pytest.raises(ValueError, match=r'backbone.*neck'):
        converter.convert_transmatcher(
            {'criterion': public['criterion']})


def test_cli_writes_a_checkpoint_mmengine_loads(public, tmp_path,
                                                monkeypatch, capsys):
    src, dst = tmp_path / 'checkpoint.pth.tar', tmp_path / 'out' / 'tm.pth'
    torch.save(checkpoint_of(public), src)
    monkeypatch.setattr(sys, 'argv', ['transmatcher_to_mmreid.py',
                                      str(src), str(dst)])
    converter.main()
    printed = capsys.readouterr().out
    assert 'Dropped' in printed and 'decoder_layer' in printed
    assert "'conv_bias': True" in printed
    saved = torch.load(dst, weights_only=True)
    meta = saved['meta']
    assert meta['source_epoch'] == 15
    assert meta['converted_from'] == str(src)
    assert meta['model_settings']['hw'] == 8

    ours = build_ours(meta['model_config']['neck'],
                      meta['model_config']['head'])
    load_checkpoint(ours, str(dst), strict=True)
    ours.eval()
    with torch.no_grad():
        feats = ours.extract_feat(public['images'])
        scores = ours.match(feats[:5], feats[5:])
    torch.testing.assert_close(scores, public['scores'], atol=1e-4, rtol=0)

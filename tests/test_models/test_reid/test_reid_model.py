"""ReIDModel built from the registry with different backbones, and
QAConvHead.match_pairs against QAConvHead.match."""
import pytest
import torch
import torch.nn.functional as F
from mmpretrain.structures import DataSample

from mmreid_gs.registry import MODELS
from mmreid_gs.utils.contract import check_reid_model


@pytest.fixture(scope='module', autouse=True)
def registered():
    from mmreid_gs.utils import register_all_modules
    register_all_modules()


def _batch(n=8, h=64, w=32):
    g = torch.Generator().manual_seed(0)
    inputs = [torch.randint(0, 256, (3, h, w), dtype=torch.uint8,
                            generator=g) for _ in range(n)]
    samples = [DataSample().set_gt_label(i // 2) for i in range(n)]
    return dict(inputs=inputs, data_samples=samples)


def _head(c, **kwargs):
    return dict(type='GlobalEmbeddingHead', in_channels=c, num_classes=4,
                id_loss=dict(type='mmpretrain.LabelSmoothLoss',
                             label_smooth_val=0.1, mode='original'),
                **kwargs)


VIT = dict(type='mmpretrain.VisionTransformer',
           arch=dict(embed_dims=32, num_layers=1, num_heads=2,
                     feedforward_channels=64),
           img_size=(64, 32), patch_size=16, out_type='cls_token')

BACKBONES = {
    'resnet_ibn': (dict(type='ResNetIBN', depth=18, base_channels=16,
                        num_stages=3, out_indices=(2, )), 64),
    'mmpretrain_resnet': (dict(type='mmpretrain.ResNet', depth=18,
                               out_indices=(2, 3)), 512),
    'vit_cls_token': (VIT, 32),
    'vit_featmap': (dict(VIT, out_type='featmap'), 32),
}


@pytest.mark.parametrize('name', sorted(BACKBONES))
def test_global_model_modes(name):
    backbone, channels = BACKBONES[name]
    model = MODELS.build(dict(type='ReIDModel', backbone=backbone,
                              head=_head(channels, pooling='gem')))
    model.init_weights()
    check_reid_model(model, 'test')
    assert model.match_pairs is None  # the global head has none
    data = model.data_preprocessor(_batch(), training=True)
    model.train()
    losses = model(**data, mode='loss')
    assert {'loss_triplet', 'loss_id', 'pair_acc', 'id_acc'} == set(losses)
    sum(v for k, v in losses.items() if 'loss' in k).backward()
    model.eval()
    with torch.no_grad():
        emb = model(data['inputs'], mode='tensor')
    assert emb.shape == (8, channels)
    assert torch.allclose(emb.norm(dim=1), torch.ones(8), atol=1e-5)
    scores = model.match(emb, emb[:3])
    assert scores.shape == (8, 3)
    assert torch.allclose(scores, emb @ emb[:3].t(), atol=1e-6)
    with torch.inference_mode():
        samples = model(data['inputs'], mode='predict')
        assert torch.allclose(samples[0].feature, emb[0], atol=1e-6)


def test_neck_and_errors():
    model = MODELS.build(dict(
        type='ReIDModel',
        backbone=dict(type='mmpretrain.ResNet', depth=18,
                      out_indices=(3, )),
        neck=dict(type='mmpretrain.GlobalAveragePooling'),
        head=_head(512)))
    model.eval()
    x = torch.randn(2, 3, 64, 32)
    assert model.extract_feat(x).shape == (2, 512)  # the neck pooled
    with pytest.raises(ValueError, match='invalid mode'):
        model(x, mode='nope')
    with pytest.raises(ValueError, match='one data sample with a gt_label'):
        model(x, [DataSample()], mode='loss')
    with pytest.raises(TypeError, match='has no match'):
        MODELS.build(dict(type='ReIDModel',
                          backbone=dict(type='ResNetIBN', depth=18),
                          head=dict(type='mmpretrain.LinearClsHead',
                                    num_classes=2, in_channels=4,
                                    loss=dict(
                                        type='mmpretrain.CrossEntropyLoss'))))
    with pytest.raises(TypeError, match='QAConvReID: neck must be'):
        MODELS.build(dict(type='QAConvReID',
                          backbone=dict(type='ResNetIBN', depth=18),
                          neck=None,
                          head=dict(type='QAConvHead', num_features=4,
                                    height=2, width=1)))


def _qaconv_head(c=8, h=3, w=2):
    head = MODELS.build(dict(type='QAConvHead', num_features=c, height=h,
                             width=w))
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        head.fc.weight.mul_(1 + 0.3 * torch.randn(head.fc.weight.shape,
                                                  generator=g))
        head.bn.running_mean.fill_(0.2)
        head.bn.running_var.fill_(0.5)
        head.logit_bn.running_mean.fill_(-0.1)
        head.logit_bn.running_var.fill_(3.)
    return head.eval()


@pytest.mark.parametrize('channels_last', [False, True])
def test_qaconv_match_pairs_equals_match(channels_last):
    head = _qaconv_head()
    g = torch.Generator().manual_seed(0)
    feats = F.normalize(torch.randn(30, 8, 3, 2, generator=g), dim=1)
    cands = torch.randint(0, 30, (7, 11), generator=g)
    query = feats[:7]
    source = feats.contiguous(memory_format=torch.channels_last) \
        if channels_last else feats
    out = head.match_pairs(query, source[cands])
    ref = torch.stack([head.match(query[i:i + 1], feats[cands[i]])[0]
                       for i in range(7)])
    assert out.shape == (7, 11) and out.dtype == torch.float32
    assert torch.allclose(out, ref, atol=1e-5)
    # small blocks and the model-level delegate give the same scores
    from mmreid_gs.models.heads.qaconv_list_kernels import \
        folded_pair_list_scores
    w, scale, offset = head._folded_affine()
    tiny = folded_pair_list_scores(head._flatten(query, 'q'), source[cands],
                                   w, scale, offset, torch.float32, 1)
    assert torch.allclose(tiny, ref, atol=1e-5)
    with torch.inference_mode():
        assert torch.allclose(head.match_pairs(query, source[cands]), ref,
                              atol=1e-5)
        # the index form: the kernel gathers the lists itself
        assert torch.allclose(head.match_pairs(query, source, index=cands),
                              ref, atol=1e-5)
    tiny = folded_pair_list_scores(head._flatten(query, 'q'),
                                   head._flatten(source, 'g'), w, scale,
                                   offset, torch.float32, 1, index=cands)
    assert torch.allclose(tiny, ref, atol=1e-5)
    with pytest.raises(ValueError, match='index out of range'):
        head.match_pairs(query, feats[:5], index=cands)
    with pytest.raises(ValueError, match='int64 index of shape'):
        head.match_pairs(query, feats, index=cands[:3])
    # training mode: one match call per query (BatchNorm over its pairs)
    head.train()
    train_ref = torch.cat([head.match(query[i:i + 1], feats[cands[i]])
                           for i in range(7)])
    assert torch.allclose(head.match_pairs(query, feats[cands]), train_ref,
                          atol=1e-5)
    assert torch.allclose(head.match_pairs(query, feats, index=cands),
                          train_ref, atol=1e-5)


def test_qaconv_match_pairs_negative_and_nan_maxima():
    """The list kernel reads the maxima as integers where exact: sets whose
    similarities are all negative (query = -gallery) and features holding a
    NaN must still give the float results of :meth:`match`."""
    head = _qaconv_head()
    g = torch.Generator().manual_seed(1)
    feats = F.normalize(torch.randn(6, 8, 3, 2, generator=g), dim=1)
    # a constant map against its negation: every similarity is negative
    const = F.normalize(torch.ones(1, 8, 3, 2), dim=1)
    query = torch.cat([const, feats[1:3]])
    gallery = torch.stack([torch.cat([-const, feats[3:5]])] * 3)
    ref = torch.stack([head.match(query[i:i + 1], gallery[i])[0]
                       for i in range(3)])
    assert torch.allclose(head.match_pairs(query, gallery), ref, atol=1e-5)
    bad = gallery.clone()
    bad[1, 2, 0, 0, 0] = float('nan')
    out = head.match_pairs(query, bad)
    assert torch.isnan(out[1, 2]) and torch.isfinite(out[0]).all()
    assert torch.allclose(out[0], ref[0], atol=1e-5)


def test_qaconv_model_exposes_match_pairs_and_errors():
    model = MODELS.build(dict(
        type='QAConvReID',
        backbone=dict(type='ResNetIBN', depth=18, base_channels=16),
        neck=dict(type='QAConvNeck', in_channels=64, out_channels=8),
        head=dict(type='QAConvHead', num_features=8, height=4, width=2)))
    assert model.match_pairs is not None
    feats = torch.randn(2, 8, 4, 2)
    with pytest.raises(ValueError, match=r'gallery lists of shape'):
        model.match_pairs(feats, feats)
    model.eval()
    assert model.match_pairs(feats, feats[None].expand(2, 2, 8, 4, 2)
                             ).shape == (2, 2)

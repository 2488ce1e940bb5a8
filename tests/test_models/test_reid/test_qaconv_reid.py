"""QAConvReID built from the registry, and ReIDDataPreprocessor."""
import pytest
import torch
from mmpretrain.structures import DataSample

from mmreid_gs.registry import MODELS


@pytest.fixture(scope='module')
def model():
    from mmreid_gs.utils import register_all_modules
    register_all_modules()
    cfg = dict(
        type='QAConvReID',
        backbone=dict(type='ResNetIBN', depth=18),
        neck=dict(type='QAConvNeck', in_channels=256, out_channels=16),
        head=dict(type='QAConvHead', num_features=16, height=4, width=2))
    model = MODELS.build(cfg)
    model.init_weights()
    return model


def _batch(n=4, h=64, w=32, seed=0):
    gen = torch.Generator().manual_seed(seed)
    inputs = [torch.randint(0, 256, (3, h, w), dtype=torch.uint8,
                            generator=gen) for _ in range(n)]
    samples = [DataSample().set_gt_label(i // 2) for i in range(n)]
    return dict(inputs=inputs, data_samples=samples)


def test_data_preprocessor():
    pre = MODELS.build(dict(type='ReIDDataPreprocessor', mean=(1., 2., 3.),
                            std=(2., 2., 2.)))
    img = torch.zeros(3, 2, 2, dtype=torch.uint8)
    img[0] = 10  # B
    img[2] = 30  # R
    data = pre(dict(inputs=[img, img], data_samples=['a', 'b']))
    assert data['inputs'].shape == (2, 3, 2, 2)
    assert data['inputs'].dtype == torch.float32
    # RGB order after conversion: R=30, G=0, B=10
    assert torch.allclose(data['inputs'][0, :, 0, 0],
                          torch.tensor([14.5, -1., 3.5]))
    assert data['data_samples'] == ['a', 'b']
    with pytest.raises(ValueError, match='different sizes'):
        pre(dict(inputs=[img, torch.zeros(3, 4, 2, dtype=torch.uint8)]))


def test_modes_and_backward(model):
    assert model.data_preprocessor.__class__.__name__ == \
        'ReIDDataPreprocessor'
    keys = set(model.state_dict())
    assert {'backbone.conv1.weight', 'backbone.bn1.weight',
            'backbone.layer1.1.IN.weight', 'neck.conv.weight',
            'neck.bn.running_mean', 'head.bn.weight', 'head.fc.weight',
            'head.fc.bias', 'head.logit_bn.running_var'} <= keys
    data = model.data_preprocessor(_batch(), training=True)
    model.train()
    losses = model(**data, mode='loss')
    assert set(losses) == {'loss', 'pair_acc'}
    assert torch.isfinite(losses['loss'])
    losses['loss'].backward()
    grads = [p.grad for p in model.backbone.layer1.parameters()]
    assert any(g is not None and g.abs().sum() > 0 for g in grads)
    assert model.head.fc.weight.grad is not None
    assert model.neck.conv.weight.grad.abs().sum() > 0

    model.eval()
    with torch.no_grad():
        feats = model(data['inputs'], mode='tensor')
        assert feats.shape == (4, 16, 4, 2)
        assert torch.allclose(feats.norm(dim=1), torch.ones(4, 4, 2),
                              atol=1e-5)
        preds = model(data['inputs'], data['data_samples'], mode='predict')
        assert preds is data['data_samples']
        assert torch.allclose(preds[1].feature_map, feats[1])
        preds = model(data['inputs'], mode='predict')
        assert len(preds) == 4 and preds[0].feature_map.shape == (16, 4, 2)
        scores = model.head.match(feats, feats)
        assert scores.shape == (4, 4)
    # test_step / train_step of MMEngine work on the raw batch
    outs = model.test_step(_batch(2))
    assert outs[0].feature_map.shape == (16, 4, 2)


def test_errors(model):
    with pytest.raises(ValueError, match=r'128x32.*8x2.*4x2'):
        model.extract_feat(torch.zeros(1, 3, 128, 32))
    with pytest.raises(ValueError, match='gt_label'):
        model(torch.zeros(2, 3, 64, 32), None, mode='loss')
    with pytest.raises(ValueError, match='invalid mode'):
        model(torch.zeros(1, 3, 64, 32), mode='foo')


def test_scope_qualified_backbone():
    from mmreid_gs.utils import register_all_modules
    register_all_modules()
    model = MODELS.build(
        dict(type='QAConvReID',
             backbone=dict(type='mmpretrain.ResNet', depth=18,
                           num_stages=3, strides=(1, 2, 2),
                           dilations=(1, 1, 1), out_indices=(2, )),
             neck=dict(type='QAConvNeck', in_channels=256, out_channels=8),
             head=dict(type='QAConvHead', num_features=8, height=4,
                       width=2)))
    assert type(model.backbone).__name__ == 'ResNet'
    feats = model.eval()(torch.zeros(1, 3, 64, 32))
    assert feats.shape == (1, 8, 4, 2)

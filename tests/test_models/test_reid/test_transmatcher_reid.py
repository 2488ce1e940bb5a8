"""TransMatcherReID built from the registry: loss with backward, features,
matching, the feature-size check."""
import pytest
import torch
from mmpretrain.structures import DataSample

from mmreid_gs.registry import MODELS
from mmreid_gs.utils.contract import check_reid_model

D, L = 8, 2


@pytest.fixture(scope='module')
def model():
    from mmreid_gs.utils import register_all_modules
    register_all_modules()
    model = MODELS.build(
        dict(
            type='TransMatcherReID',
            backbone=dict(type='ResNetIBN', depth=18),
            neck=dict(type='TransMatcherNeck', in_channels=256, d_model=D,
                      num_layers=L, dim_feedforward=16),
            head=dict(type='TransMatcherHead', height=4, width=2,
                      d_model=D, num_layers=L, dim_feedforward=16)))
    model.init_weights()
    return model


def _batch(n=4, h=64, w=32, seed=0):
    gen = torch.Generator().manual_seed(seed)
    inputs = [torch.randint(0, 256, (3, h, w), dtype=torch.uint8,
                            generator=gen) for _ in range(n)]
    samples = [DataSample().set_gt_label(i // 2) for i in range(n)]
    return dict(inputs=inputs, data_samples=samples)


def test_loss_backward_and_matching(model):
    assert type(model).__name__ == 'TransMatcherReID'
    assert model.feature_field == 'feature_map'
    check_reid_model(model, 'test')
    keys = set(model.state_dict())
    assert {'neck.conv.weight', 'neck.encoder.layers.0.linear1.weight',
            'head.decoder.layers.1.score_embed',
            'head.decoder.norm.running_var'} <= keys
    data = model.data_preprocessor(_batch(), training=True)
    model.train()
    losses = model(**data, mode='loss')
    assert set(losses) == {'loss', 'pair_acc'}
    assert torch.isfinite(losses['loss'])
    losses['loss'].backward()
    assert model.neck.conv.weight.grad.abs().sum() > 0
    assert model.neck.encoder.layers[0].linear1.weight.grad.abs().sum() > 0
    assert model.head.decoder.layers[1].score_embed.grad.abs().sum() > 0
    assert any(p.grad is not None and p.grad.abs().sum() > 0
               for p in model.backbone.layer3.parameters())

    model.eval()
    with torch.no_grad():
        feats = model(data['inputs'], mode='tensor')
        assert feats.shape == (4, L * D, 4, 2)
        scores = model.match(feats[:3], feats)
        assert scores.shape == (3, 4) and scores.dtype == torch.float32
        torch.testing.assert_close(scores, model.head.match(feats[:3],
                                                            feats))
        preds = model(data['inputs'], mode='predict')
        assert preds[0].feature_map.shape == (L * D, 4, 2)


def test_feature_size_check_names_the_model(model):
    with pytest.raises(ValueError, match=r'TransMatcherReID: .*128x32.*'
                       r'8x2.*4x2'):
        model.extract_feat(torch.zeros(1, 3, 128, 32))

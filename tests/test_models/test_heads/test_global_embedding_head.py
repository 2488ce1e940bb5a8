"""GlobalEmbeddingHead and the triplet / identity losses against hand
computations; built from the registry."""
import math

import pytest
import torch
import torch.nn.functional as F

from mmreid_gs.registry import MODELS


@pytest.fixture(scope='module', autouse=True)
def registered():
    from mmreid_gs.utils import register_all_modules
    register_all_modules()


def _head(**kwargs):
    cfg = dict(type='GlobalEmbeddingHead', in_channels=2)
    cfg.update(kwargs)
    return MODELS.build(cfg)


def test_pooling_by_hand():
    x = torch.tensor([[[[1., 4.], [0., 3.]], [[2., 2.], [2., 2.]]]])
    assert torch.allclose(_head(pooling='avg').pool(x),
                          torch.tensor([[2., 2.]]))
    assert torch.allclose(_head(pooling='max').pool(x),
                          torch.tensor([[4., 2.]]))
    gem = _head(pooling='gem', gem_p=3.).pool(x)
    # (mean(x^3))^(1/3); the 0 is clamped to 1e-6
    expected = ((1 + 64 + 27) / 4)**(1 / 3)
    assert gem[0, 0].item() == pytest.approx(expected, rel=1e-5)
    assert gem[0, 1].item() == pytest.approx(2., rel=1e-5)
    assert _head(pooling='gem').gem_p.requires_grad
    # vectors (e.g. a ViT class token) pass through
    v = torch.randn(3, 2)
    assert torch.equal(_head().pool(v), v)


def test_embed_and_match_by_hand():
    head = _head().eval()
    head.bnneck.running_mean.copy_(torch.tensor([1., 0.]))
    head.bnneck.running_var.copy_(torch.tensor([4. - 1e-5, 1. - 1e-5]))
    x = torch.tensor([[3., 1.], [1., -2.]])
    emb = head.embed(x)
    # (x - mean) / sqrt(var + eps): [1, 1] and [0, -2], then L2 norm
    assert torch.allclose(emb, torch.tensor([[2**-0.5, 2**-0.5], [0., -1.]]),
                          atol=1e-6)
    scores = head.match(emb, emb)
    assert scores.dtype == torch.float32
    assert torch.allclose(
        scores, torch.tensor([[1., -2**-0.5], [-2**-0.5, 1.]]), atol=1e-6)
    euc = _head(metric='euclidean', normalize=False)
    q = torch.tensor([[0., 0.], [3., 4.]])
    g = torch.tensor([[3., 0.], [0., 4.], [0., 0.]])
    assert torch.allclose(euc.match(q, g),
                          -torch.tensor([[3., 4., 0.], [4., 3., 5.]]),
                          atol=1e-5)
    # blocks of queries give the same scores
    many = F.normalize(torch.randn(37, 2), dim=1)
    blocked = _head(block_size=5).match(many, many)
    assert torch.allclose(blocked, many @ many.t(), atol=1e-6)
    with torch.inference_mode():
        assert torch.allclose(head.match(emb, emb), scores)
        assert torch.allclose(head.embed(x), emb)
    assert head.match(emb[:0], emb).shape == (0, 2)


def test_triplet_loss_by_hand():
    from mmreid_gs.models.losses import HardTripletLoss
    scores = torch.tensor([[1.0, 0.5, 0.8, 0.1],
                           [0.5, 1.0, 0.2, 0.6],
                           [0.8, 0.2, 1.0, 0.3],
                           [0.1, 0.6, 0.3, 1.0]])
    labels = torch.tensor([0, 0, 1, 1])
    # row: hardest positive (lowest same-label score, self excluded),
    # hardest negative (highest other-label score)
    min_pos = torch.tensor([0.5, 0.5, 0.3, 0.3])
    max_neg = torch.tensor([0.8, 0.6, 0.8, 0.6])
    gap = min_pos - max_neg
    loss, acc = HardTripletLoss(margin=0.3)(scores, labels)
    assert loss.item() == pytest.approx(F.relu(0.3 - gap).mean().item())
    assert acc.item() == 0.
    soft_loss = HardTripletLoss(soft_margin=True, loss_weight=2.)
    soft, _ = soft_loss(scores, labels)
    expected = 2 * sum(math.log1p(math.exp(-v)) for v in gap.tolist()) / 4
    assert soft.item() == pytest.approx(expected, rel=1e-6)


def test_head_loss_by_hand():
    torch.manual_seed(0)
    head = _head(num_classes=3,
                 triplet_loss=dict(type='HardTripletLoss', margin=0.3,
                                   loss_weight=0.5),
                 id_loss=dict(type='mmpretrain.LabelSmoothLoss',
                              label_smooth_val=0.1, mode='original',
                              loss_weight=2.))
    head.train()
    feats = torch.randn(6, 2, 3, 2, requires_grad=True)
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    out = head.loss(feats, labels)
    assert set(out) == {'loss_triplet', 'pair_acc', 'loss_id', 'id_acc'}
    # by hand: avg pool, batch-statistics BatchNorm (bias 0), L2 norm
    x = feats.detach().mean(dim=(2, 3))
    bn = (x - x.mean(0)) / torch.sqrt(x.var(0, unbiased=False) + 1e-5)
    emb = F.normalize(bn, dim=1)
    s = emb @ emb.t()
    same = labels[:, None] == labels[None]
    eye = torch.eye(6, dtype=torch.bool)
    min_pos = s.masked_fill(~same | eye, 9.).amin(1)
    max_neg = s.masked_fill(same, -9.).amax(1)
    trip = 0.5 * F.relu(0.3 - (min_pos - max_neg)).mean()
    assert out['loss_triplet'].item() == pytest.approx(trip.item(), abs=1e-6)
    logits = bn @ head.classifier.weight.detach().t()
    target = F.one_hot(labels, 3) * 0.9 + 0.1 / 3
    ce = 2. * -(target * logits.log_softmax(1)).sum(1).mean()
    assert out['loss_id'].item() == pytest.approx(ce.item(), rel=1e-5)
    (out['loss_triplet'] + out['loss_id']).backward()
    assert feats.grad is not None and torch.isfinite(feats.grad).all()
    # the BNNeck bias stays frozen at zero
    assert not head.bnneck.bias.requires_grad


def test_euclidean_loss_and_no_triplet():
    head = _head(metric='euclidean', normalize=False)
    feats = torch.randn(4, 2, requires_grad=True)
    out = head.loss(feats, torch.tensor([0, 0, 1, 1]))
    out['loss_triplet'].backward()  # the diagonal's zero distance is safe
    assert torch.isfinite(feats.grad).all()
    only_id = _head(triplet_loss=None, num_classes=2,
                    id_loss=dict(type='mmpretrain.CrossEntropyLoss'))
    assert set(only_id.loss(torch.randn(4, 2), torch.tensor([0, 1, 0, 1]))
               ) == {'loss_id', 'id_acc'}


def test_errors():
    with pytest.raises(ValueError, match='pooling must be one of'):
        _head(pooling='mean')
    with pytest.raises(ValueError, match='metric must be one of'):
        _head(metric='l1')
    with pytest.raises(ValueError, match='id_loss needs num_classes'):
        _head(id_loss=dict(type='mmpretrain.CrossEntropyLoss'))
    head = _head(num_classes=2,
                 id_loss=dict(type='mmpretrain.CrossEntropyLoss'))
    with pytest.raises(ValueError, match=r'expects in_channels=2'):
        head.embed(torch.randn(2, 3, 4, 4))
    with pytest.raises(ValueError, match="out_type='cls_token'"):
        head.embed(torch.randn(2, 5, 2))
    with pytest.raises(ValueError, match=r'embeddings must have shape'):
        head.match(torch.randn(2, 3), torch.randn(2, 2))
    with pytest.raises(ValueError, match=r'labels must be in \[0, 1\]'):
        head.loss(torch.randn(2, 2), torch.tensor([0, 2]))

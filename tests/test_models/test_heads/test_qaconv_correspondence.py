"""QAConvHead.pair_correspondence: local matches and an exact split of the
pair's score into per-location contributions."""
import pytest
import torch
from helpers import feature_maps

from mmreid_gs.registry import MODELS
from mmreid_gs.utils import register_all_modules

register_all_modules(init_default_scope=False)


def _head(c=8, h=3, w=2, seed=0):
    torch.manual_seed(seed)
    head = MODELS.build(
        dict(type='mmreid_gs.QAConvHead', num_features=c, height=h,
             width=w))
    with torch.no_grad():  # a trained-looking head: nothing at its init
        head.fc.weight.normal_()
        head.fc.bias.normal_()
        for bn in (head.bn, head.logit_bn):
            bn.running_mean.normal_()
            bn.running_var.uniform_(0.5, 2.)
            bn.weight.normal_()
            bn.bias.normal_()
    return head.eval()


def _maps(n, c=8, h=3, w=2, seed=1):
    return feature_maps(n, c, h, w, seed)


@pytest.mark.parametrize('inference', [False, True])
def test_contributions_sum_to_match_score(inference):
    head = _head()
    feats = _maps(4)
    scores = head.match(feats, feats)
    ctx = torch.inference_mode() if inference else torch.no_grad()
    with ctx:
        for i in range(4):
            for j in range(4):
                out = head.pair_correspondence(feats[i], feats[j:j + 1])
                total = (out['query_contrib'].sum() +
                         out['gallery_contrib'].sum() + out['bias'])
                assert abs(float(total) - float(scores[i, j])) <= 1e-4
                assert abs(float(out['score']) - float(scores[i, j])) <= 1e-4


def test_maxima_and_argmax_against_hand_computation():
    head = _head(c=2, h=1, w=3)
    # query locations: e_x, e_y, (e_x + e_y)/sqrt2; gallery: e_y, -e_x, e_x
    s = 2**-.5
    q = torch.tensor([[1., 0., s], [0., 1., s]]).view(1, 2, 1, 3)
    g = torch.tensor([[0., -1., 1.], [1., 0., 0.]]).view(1, 2, 1, 3)
    out = head.pair_correspondence(q, g)
    sim = torch.tensor([[0., -1., 1.], [1., 0., 0.], [s, -s, s]],
                       dtype=torch.float64)
    torch.testing.assert_close(out['similarity'], sim)
    torch.testing.assert_close(out['query_max'],
                               torch.tensor([1., 1., s], dtype=torch.float64))
    assert out['query_argmax'].tolist() == [2, 0, 0]
    torch.testing.assert_close(out['gallery_max'],
                               torch.tensor([1., 0., 1.],
                                            dtype=torch.float64))
    assert out['gallery_argmax'].tolist() == [1, 1, 0]
    # contribution = a2 * w_i * bn(max_i), bn and logit_bn as affine maps
    w = head.fc.weight.detach().double().view(-1)
    a1, b1 = head._bn_affine(head.bn)
    a2, b2 = head._bn_affine(head.logit_bn)
    torch.testing.assert_close(out['query_contrib'],
                               a2 * w * (a1 * out['query_max'] + b1))
    torch.testing.assert_close(out['bias'],
                               a2 * 2 * head.fc.bias.double().sum() + b2)


def test_same_score_in_training_mode_uses_running_stats():
    head = _head()
    feats = _maps(2)
    expected = head.match(feats, feats)[0, 1]
    head.train()
    out = head.pair_correspondence(feats[0], feats[1])
    assert abs(float(out['score']) - float(expected)) <= 1e-4
    assert head.training  # mode untouched


def test_bad_input_is_refused():
    head = _head()
    feats = _maps(2)
    with pytest.raises(ValueError, match='one pair'):
        head.pair_correspondence(feats, feats[:1])
    with pytest.raises(ValueError, match='shape'):
        head.pair_correspondence(feats[0, :4], feats[1])

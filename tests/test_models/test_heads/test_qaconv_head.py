"""QAConvHead against a plain implementation of the public QAConv formula."""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from helpers import feature_maps

from mmreid_gs.models.heads import QAConvHead, qaconv_kernels
from mmreid_gs.models.losses import PairwiseMatchingLoss
from mmreid_gs.testing import PublicQAConv


def _feats(n, c=8, h=4, w=3, seed=0):
    return feature_maps(n, c, h, w, seed)


def _randomised_ref(c=8, h=4, w=3, seed=1):
    gen = torch.Generator().manual_seed(seed)
    ref = PublicQAConv(c, h, w)
    with torch.no_grad():
        ref.fc.weight.copy_(torch.rand(1, h * w, generator=gen) + 0.5)
        ref.fc.bias.fill_(0.3)
        for bn, (m, v, wt, b) in ((ref.bn, (0.2, 0.05, 1.3, -0.1)),
                                  (ref.logit_bn, (1.5, 0.7, 0.8, 0.2))):
            bn.running_mean.fill_(m)
            bn.running_var.fill_(v)
            bn.weight.fill_(wt)
            bn.bias.fill_(b)
    return ref


def test_init_matches_public_reset_parameters():
    head = QAConvHead(16, 4, 3)
    assert torch.allclose(head.fc.weight, torch.full((1, 12), 1 / 12))
    assert isinstance(head.bn, nn.BatchNorm1d) and head.bn.num_features == 1
    assert isinstance(head.logit_bn, nn.BatchNorm1d)
    assert isinstance(head.loss_module, PairwiseMatchingLoss)
    keys = set(head.state_dict())
    assert {'bn.weight', 'bn.running_mean', 'fc.weight', 'fc.bias',
            'logit_bn.weight', 'logit_bn.running_var'} <= keys


@pytest.mark.parametrize('budget_kw', [
    dict(),
    dict(memory_budget_mb=1e-4),  # one pair per block
    dict(prob_batch_size=3, gal_batch_size=2),
])
def test_eval_match_equals_public_formula(budget_kw):
    ref = _randomised_ref().eval()
    head = QAConvHead(8, 4, 3, **budget_kw)
    missing, unexpected = head.load_state_dict(ref.state_dict(), strict=False)
    assert not unexpected and not missing
    head.eval()
    q, g = _feats(7, seed=2), _feats(5, seed=3)
    with torch.no_grad():
        expected = ref(q, g)
        got = head.match(q, g)
    assert got.shape == (7, 5)
    assert torch.allclose(got, expected, atol=1e-4, rtol=0)
    q_blk, g_blk = head.block_sizes(7, 5)
    if 'memory_budget_mb' in budget_kw:
        assert (q_blk, g_blk) == (1, 1)


def test_block_sizes_respect_budget():
    head = QAConvHead(64, 24, 8, memory_budget_mb=64)
    hw = 24 * 8
    q_blk, g_blk = head.block_sizes(1000, 5000, device=torch.device('cuda'))
    assert q_blk * g_blk * hw * hw * 4 <= 64 * 2**20
    assert q_blk * g_blk * hw * hw * 4 > 32 * 2**20  # not needlessly small
    q_blk, g_blk = head.block_sizes(1000, 5000)  # cpu: cache sized
    assert q_blk * g_blk * hw * hw * 4 <= 64 * 2**20


def test_eval_match_with_grad_features_is_exact_and_differentiable():
    ref = _randomised_ref().eval()
    head = QAConvHead(8, 4, 3, prob_batch_size=2, gal_batch_size=2)
    head.load_state_dict(ref.state_dict(), strict=False)
    head.eval()
    q = _feats(3, seed=4).requires_grad_()
    g = _feats(4, seed=5).requires_grad_()
    q_ref = q.detach().clone().requires_grad_()
    g_ref = g.detach().clone().requires_grad_()
    out, expected = head.match(q, g), ref(q_ref, g_ref)
    assert torch.allclose(out, expected, atol=1e-5)
    weights = torch.randn(3, 4, generator=torch.Generator().manual_seed(0))
    (out * weights).sum().backward()
    (expected * weights).sum().backward()
    assert torch.allclose(q.grad, q_ref.grad, atol=1e-5)
    assert torch.allclose(g.grad, g_ref.grad, atol=1e-5)


def test_training_loss_equals_reference_on_batch():
    ref = _randomised_ref().train()
    head = QAConvHead(8, 4, 3, memory_budget_mb=1e-4).train()
    head.load_state_dict(ref.state_dict(), strict=False)
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    x = _feats(6, seed=6).requires_grad_()
    x_ref = x.detach().clone().requires_grad_()

    out = head.loss(x, labels)
    scores_ref = ref(x_ref, x_ref)
    loss_ref, acc_ref = PairwiseMatchingLoss()(scores_ref, labels)
    assert torch.allclose(out['loss'], loss_ref, atol=1e-5)
    assert torch.allclose(out['pair_acc'], acc_ref)
    # BatchNorm over all B x B pairs: running statistics updated alike
    assert torch.allclose(head.bn.running_mean, ref.bn.running_mean)
    assert torch.allclose(head.bn.running_var, ref.bn.running_var)
    assert torch.allclose(head.logit_bn.running_var, ref.logit_bn.running_var)
    out['loss'].backward()
    loss_ref.backward()
    assert torch.allclose(x.grad, x_ref.grad, atol=1e-5)
    assert torch.allclose(head.fc.weight.grad, ref.fc.weight.grad, atol=1e-5)
    assert torch.allclose(head.bn.weight.grad, ref.bn.weight.grad, atol=1e-5)


def test_training_mode_match_uses_batch_statistics():
    ref = _randomised_ref().train()
    head = QAConvHead(8, 4, 3).train()
    head.load_state_dict(ref.state_dict(), strict=False)
    q, g = _feats(4, seed=7), _feats(3, seed=8)
    with torch.no_grad():
        assert torch.allclose(head.match(q, g), ref(q, g), atol=1e-5)


def test_match_rejects_wrong_shapes():
    head = QAConvHead(8, 4, 3)
    with pytest.raises(ValueError, match=r'\[N, 8, 4, 3\].*\(2, 8, 5, 3\)'):
        head.match(torch.zeros(2, 8, 5, 3), torch.zeros(2, 8, 4, 3))
    assert head.eval().match(torch.zeros(0, 8, 4, 3),
                             _feats(2)).shape == (0, 2)


def test_triplet_loss_through_head():
    head = QAConvHead(8, 4, 3, loss=dict(type='HardTripletLoss', margin=4.))
    labels = torch.tensor([0, 0, 1, 1])
    out = head.train().loss(_feats(4, seed=9).requires_grad_(), labels)
    assert set(out) == {'loss', 'pair_acc'} and out['loss'].requires_grad


@pytest.mark.parametrize('num_query,blocks', [(6, (1, 2)), (1, (1, 2)),
                                              (3, (1, 1))])
@pytest.mark.parametrize('threads', [1, 2])
def test_cpu_worker_threads_give_same_scores(num_query, blocks, threads,
                                             monkeypatch):
    """Query rows dealt to threads, or (few queries) gallery ranges split;
    the gallery laid out for the GEMM in chunks of 4."""
    monkeypatch.setattr(qaconv_kernels, 'GALLERY_CHUNK', 4)
    ref = _randomised_ref().eval()
    head = QAConvHead(8, 4, 3)
    head.load_state_dict(ref.state_dict(), strict=False)
    head.eval()
    q, g = _feats(num_query, seed=10), _feats(9, seed=11)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with torch.no_grad():
            got = head.match(q, g, *blocks)
        assert torch.get_num_threads() == threads  # restored
    finally:
        torch.set_num_threads(before)
    with torch.no_grad():
        assert torch.allclose(got, ref(q, g), atol=1e-4, rtol=0)


def _signed_feats(c=8, h=4, w=3):
    """Queries and a gallery whose similarity blocks include all-negative
    ones (non-negative maps against non-positive ones) and mixed ones."""
    gen = torch.Generator().manual_seed(4)
    q = _feats(5, c, h, w, seed=20)
    q[0] = F.normalize(torch.rand(c, h, w, generator=gen), dim=0)
    g = torch.cat([
        -F.normalize(torch.rand(2, c, h, w, generator=gen), dim=1),
        _feats(8, c, h, w, seed=22)
    ])
    return q, g


def _edge_feats(case, c=8, h=4, w=3):
    """(queries, gallery, blocks) of the integer-maxima edge cases."""
    q, g = _signed_feats(c, h, w)
    if case == 'signed':  # all-negative and mixed blocks, 2 x 2 blocks
        return q, g, (2, 2)
    if case == 'split':  # one query: gallery ranges split over the threads,
        # partial last blocks of 3, all-negative blocks in the first range
        return q[:1], torch.cat([g, g[:1]]), (1, 3)
    if case == 'zeros':  # +0 and -0 similarities
        q[1] = 0.
        g[2] = -torch.zeros(c, h, w)
        g[3] = 0.
        return q, g, (2, 2)
    if case == 'inf':  # inf * 0 = NaN (sign bit set on x86) in a row of
        # +-inf: the integer maxima alone would drop it
        q, g = _feats(2, c, h, w, seed=50), _feats(3, c, h, w, seed=60)
        q[0, 0, 0, 0] = float('inf')
        g[0, 0, 0, 1] = 0.
        return q, g, (2, 2)
    raise ValueError(case)


@pytest.mark.parametrize(
    'dtype', [torch.float32, torch.float64, torch.bfloat16, torch.float16])
@pytest.mark.parametrize('threads', [1, 2])
@pytest.mark.parametrize('case', ['signed', 'split', 'zeros', 'inf'])
def test_cpu_maxima_on_bits_equal_float_maxima(dtype, threads, case,
                                               monkeypatch):
    """CPU scoring takes the maxima on the integer bit patterns; the scores
    must be bit-identical to float maxima of the same GEMM blocks: with
    all-negative sets (recomputed in floating point), +-0, and NaNs made
    by the GEMM (propagated, as with float maxima)."""
    monkeypatch.setattr(qaconv_kernels, 'GALLERY_CHUNK', 4)
    ref = _randomised_ref().eval()
    head = QAConvHead(8, 4, 3)
    head.load_state_dict(ref.state_dict(), strict=False)
    head.eval()
    q, g, blocks = _edge_feats(case)
    if case in ('signed', 'split'):
        sims = torch.einsum('pcs,gcr->pgsr', q.flatten(2), g.flatten(2))
        assert (sims[0, :2] < 0).all()  # all-negative blocks are covered
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with torch.no_grad():
            assert qaconv_kernels._max_bits_dtype(dtype, q.device) is not None
            got = head.match(q.to(dtype), g.to(dtype), *blocks)
            monkeypatch.setattr(qaconv_kernels, '_max_bits_dtype',
                                lambda *args: None)
            expected = head.match(q.to(dtype), g.to(dtype), *blocks)
    finally:
        torch.set_num_threads(before)
    torch.testing.assert_close(got, expected, rtol=0, atol=0,
                               equal_nan=True)
    if case == 'inf':
        assert got.isnan().any()
        return
    with torch.no_grad():  # and close to the float32 public formula
        full = ref(q, g)
    assert (got - full).abs().max() <= 5e-3 * full.abs().max()


def test_loss_ignores_cpu_autocast():
    head = _loaded_eval_head().train()
    feats = _feats(8, seed=40)
    labels = torch.arange(4).repeat_interleave(2)
    expected = head.loss(feats, labels)['loss']
    with torch.autocast('cpu', dtype=torch.bfloat16):
        got = head.loss(feats, labels)['loss']
    assert torch.equal(got, expected)


def test_cpu_autocast_matches_in_bfloat16():
    head = _loaded_eval_head()
    q, g = _feats(3, seed=30), _feats(4, seed=31)
    with torch.no_grad():
        with torch.autocast('cpu', dtype=torch.bfloat16):
            got = head.match(q, g)
        expected = head.match(q.bfloat16(), g.bfloat16())
        full = head.match(q, g)
    assert got.dtype == torch.float32
    assert torch.equal(got, expected)
    assert not torch.equal(got, full)


def _loaded_eval_head():
    head = QAConvHead(8, 4, 3)
    head.load_state_dict(_randomised_ref().state_dict(), strict=False)
    return head.eval()

"""TransMatcherHead against a plain transcription of the public TransMatcher
(``make_kernel(query)`` then ``forward(gallery)``, one einsum over all
pairs, channels-last features)."""
import contextlib

import pytest
import torch
from torch.nn.init import calculate_gain

from mmreid_gs.models.heads import TransMatcherHead
from mmreid_gs.models.heads import transmatcher_head as head_module
from mmreid_gs.models.losses import ClassMemoryLoss, PairwiseMatchingLoss
from mmreid_gs.registry import MODELS
from mmreid_gs.testing import PublicTransMatcher

H, W, D, L, FF = 4, 3, 8, 3, 16
C = L * D
HW = H * W


def _maps(n, seed, dtype=torch.float32):
    """Maps as the neck gives them (no L2 norm), channels first."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, C, H, W, generator=gen).to(dtype)


def _last(x):
    """Channels first -> the public channels-last layout."""
    return x.permute(0, 2, 3, 1)


def _public(q, g):
    """The public call: q is the query (make_kernel), g the gallery."""
    return lambda ref: (ref.make_kernel(_last(q)), ref(_last(g)))[1]


@pytest.fixture(scope='module')
def public():
    gen = torch.Generator().manual_seed(1)
    ref = PublicTransMatcher(HW, D, L, FF)
    return ref.randomise_(gen, _last(_maps(10, seed=0))).eval()


def _pair(public, dtype=torch.float32, train=False, **head_kw):
    """A fresh copy of the reference and a head holding its weights."""
    ref = PublicTransMatcher(HW, D, L, FF)
    ref.load_state_dict(public.state_dict())
    head = TransMatcherHead(H, W, D, L, FF, **head_kw)
    missing, unexpected = head.load_state_dict(ref.state_dict(),
                                               strict=False)
    assert not missing
    assert unexpected and all(k.startswith('decoder_layer.')
                              for k in unexpected)
    return ref.to(dtype).train(train), head.to(dtype).train(train)


@contextlib.contextmanager
def num_threads(n):
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def test_build_names_and_public_init():
    head = MODELS.build(
        dict(type='TransMatcherHead', height=H, width=W, d_model=D,
             num_layers=L, dim_feedforward=FF))
    assert isinstance(head, TransMatcherHead)
    assert (head.num_features, head.height, head.width) == (C, H, W)
    assert isinstance(head.loss_module, PairwiseMatchingLoss)
    ref_keys = {k for k in PublicTransMatcher(HW, D, L, FF).state_dict()
                if not k.startswith('decoder_layer.')}
    assert set(head.state_dict()) == ref_keys
    layer = head.decoder.layers[1]
    assert layer.score_embed.shape == (1, 1, HW, HW)
    # reset_parameters: Xavier on every parameter of > 1 dimension, the
    # symmetric score_embed init overridden (as the public module)
    bound = (6. / (2 * HW * HW))**0.5
    assert layer.score_embed.abs().max() <= bound
    assert not torch.allclose(layer.score_embed[0, 0],
                              layer.score_embed[0, 0].t())
    fan = (6. / (D + D))**0.5 * calculate_gain('linear')
    assert layer.fc1.weight.abs().max() <= fan
    assert torch.equal(layer.bn2.weight, torch.ones(FF))


@pytest.mark.parametrize('dtype,tol', [(torch.float64, 1e-10),
                                       (torch.float32, 1e-4)])
@pytest.mark.parametrize('blocks', [
    dict(),
    dict(memory_budget_mb=1e-4),  # one pair a block, one map a chunk
    dict(prob_batch_size=3, gal_batch_size=2),
])
def test_eval_scores_equal_public(public, dtype, tol, blocks):
    ref, head = _pair(public, dtype, **blocks)
    q, g = _maps(7, 2, dtype), _maps(5, 3, dtype)
    with torch.no_grad():
        expected = _public(q, g)(ref)
        got = head.match(q, g)
    assert got.shape == (7, 5) and got.dtype == dtype
    assert expected.std() > 0.1  # a meaningful comparison
    torch.testing.assert_close(got, expected, atol=tol, rtol=0)
    if 'memory_budget_mb' in blocks:
        assert head.block_sizes(7, 5, dtype) == (1, 1)


@pytest.mark.parametrize('dtype,tol', [(torch.float64, 1e-10),
                                       (torch.float32, 1e-4)])
def test_train_scores_and_grads_equal_public(public, dtype, tol):
    """BatchNorm over the pairs of the call; gradients through the blockwise
    maxima to the features, score_embed, fc1 and the MLP."""
    ref, head = _pair(public, dtype, train=True, prob_batch_size=2,
                      gal_batch_size=3)
    q, g = _maps(5, 4, dtype), _maps(7, 5, dtype)
    q_ref, g_ref = (x.clone().requires_grad_() for x in (q, g))
    q, g = q.requires_grad_(), g.requires_grad_()
    got = head.match(q, g)
    expected = _public(q_ref, g_ref)(ref)
    torch.testing.assert_close(got, expected, atol=tol, rtol=0)
    weights = torch.randn(5, 7, generator=torch.Generator().manual_seed(6),
                          dtype=dtype)
    (got * weights).sum().backward()
    (expected * weights).sum().backward()
    torch.testing.assert_close(q.grad, q_ref.grad, atol=tol, rtol=0)
    torch.testing.assert_close(g.grad, g_ref.grad, atol=tol, rtol=0)
    assert q.grad.abs().max() > 0.1
    params = dict(ref.named_parameters())
    for name, param in head.named_parameters():
        torch.testing.assert_close(param.grad, params[name].grad,
                                   atol=tol, rtol=0, msg=name)
    assert head.decoder.layers[2].score_embed.grad.abs().max() > 1e-3
    # running statistics updated alike
    buffers = dict(ref.named_buffers())
    for name, buf in head.named_buffers():
        torch.testing.assert_close(buf, buffers[name], atol=tol, rtol=0,
                                   msg=name)


def test_eval_match_with_grad_features_is_exact(public):
    ref, head = _pair(public, torch.float64, prob_batch_size=2,
                      gal_batch_size=2)
    q = _maps(3, 7, torch.float64).requires_grad_()
    g = _maps(4, 8, torch.float64)
    q_ref = q.detach().clone().requires_grad_()
    got, expected = head.match(q, g), _public(q_ref, g)(ref)
    torch.testing.assert_close(got, expected, atol=1e-10, rtol=0)
    got.sum().backward()
    expected.sum().backward()
    torch.testing.assert_close(q.grad, q_ref.grad, atol=1e-10, rtol=0)


def test_loss_equals_public_pairwise_loss(public):
    ref, head = _pair(public, train=True, memory_budget_mb=1e-4)
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    x = _maps(6, 9).requires_grad_()
    x_ref = x.detach().clone().requires_grad_()
    out = head.loss(x, labels)
    loss_ref, acc_ref = PairwiseMatchingLoss()(_public(x_ref, x_ref)(ref),
                                               labels)
    assert set(out) == {'loss', 'pair_acc'}
    torch.testing.assert_close(out['loss'], loss_ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out['pair_acc'], acc_ref)
    out['loss'].backward()
    loss_ref.backward()
    torch.testing.assert_close(x.grad, x_ref.grad, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(head.decoder.layers[0].fc1.weight.grad,
                               ref.decoder.layers[0].fc1.weight.grad,
                               atol=1e-5, rtol=1e-4)


def test_class_memory_loss_through_head():
    head = TransMatcherHead(
        H, W, D, L, FF,
        loss=ClassMemoryLoss(5, C, H, W, mem_batch_size=2)).train()
    labels = torch.tensor([0, 0, 3, 3])
    x = _maps(4, 10).requires_grad_()
    out = head.loss(x, labels)  # empty memory: loss 0
    out = head.loss(_maps(4, 11).requires_grad_(), labels)
    assert set(out) == {'loss', 'acc'} and out['loss'] > 0
    out['loss'].backward()
    assert head.decoder.layers[1].fc2.weight.grad.abs().sum() > 0


@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
def test_blocks_and_buffers_do_not_change_scores(public, dtype,
                                                 monkeypatch):
    """Blocks of any size, chunks of one map, and worker buffers holding a
    single gallery block / MLP piece of two rows give the same scores."""
    _, head = _pair(public, dtype)
    q, g = _maps(9, 12, dtype), _maps(11, 13, dtype)
    with torch.no_grad():
        reference = head.match(q, g)
        variants = [head.match(q, g, 4, 3), head.match(q, g, 1, 11)]
        head.memory_budget_mb = 1e-4
        variants.append(head.match(q, g))
        monkeypatch.setattr(head_module, 'CPU_ROWS_BYTES', 1)
        monkeypatch.setattr(head_module, 'CPU_MLP_BYTES', 1)
        variants.append(head.match(q, g, 2, 3))
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    for got in variants:
        torch.testing.assert_close(got, reference, atol=tol, rtol=0)


@pytest.mark.parametrize('mode', ['no_grad', 'inference_mode'])
@pytest.mark.parametrize('num_query,blocks', [(6, (1, 2)), (1, (1, 2))])
@pytest.mark.parametrize('threads', [1, 2])
def test_modes_and_worker_threads(public, mode, num_query, blocks, threads):
    """Query block rows dealt to the threads, or (one query) gallery
    ranges split; the caller's mode and thread count kept."""
    ref, head = _pair(public)
    q, g = _maps(num_query, 14), _maps(9, 15)
    with torch.no_grad():
        expected = _public(q, g)(ref)
    context = getattr(torch, mode)
    with num_threads(threads), context():
        got = head.match(q, g, *blocks)
        assert torch.get_num_threads() == threads
        if mode == 'inference_mode':
            assert got.is_inference()
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=0)


def test_training_mode_match_under_inference_mode(public):
    ref, head = _pair(public, train=True)
    q, g = _maps(4, 16), _maps(3, 17)
    with torch.inference_mode():
        got = head.match(q, g)
        expected = _public(q, g)(ref)
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=0)


def test_not_symmetric(public):
    _, head = _pair(public)
    q, g = _maps(4, 18), _maps(5, 19)
    with torch.no_grad():
        forward = head.match(q, g)
        backward = head.match(g, q).t()
        self_scores = head(q)
    assert (forward - backward).abs().max() > 1e-2
    assert (self_scores - self_scores.t()).abs().max() > 1e-2


def test_cpu_autocast_runs_the_gemm_in_bfloat16(public):
    ref, head = _pair(public)
    q, g = _maps(3, 20), _maps(4, 21)
    with torch.no_grad():
        expected = _public(q, g)(ref)
        with torch.autocast('cpu', dtype=torch.bfloat16):
            got = head.match(q, g)
    assert got.dtype == torch.float32
    assert (got - expected).abs().max() < 0.1 * expected.std() + 0.05


def test_wrong_shapes_and_empty_inputs():
    head = TransMatcherHead(H, W, D, L, FF)
    with pytest.raises(ValueError, match=r'\[N, 24, 4, 3\].*L\*d.*'
                       r'3 \* 8.*\(2, 4, 3, 24\)'):
        head.match(torch.zeros(2, 4, 3, C), torch.zeros(2, C, H, W))
    with pytest.raises(ValueError, match=r'gallery.*\(1, 16, 4, 3\)'):
        head.match(torch.zeros(2, C, H, W), torch.zeros(1, 16, H, W))
    with pytest.raises(ValueError, match=r'training.*\[N, 24, 4, 3\]'):
        head.loss(torch.zeros(2, C, 3, 4), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match='d_model must be a positive'):
        TransMatcherHead(H, W, d_model=0)
    assert head.eval().match(torch.zeros(0, C, H, W),
                             _maps(2, 22)).shape == (0, 2)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')
def test_cuda_autocast(public):
    """GEMMs in float16 under autocast, BatchNorm / MLP in float32."""
    ref, head = _pair(public)
    ref, head = ref.cuda(), head.cuda()
    q, g = _maps(6, 23).cuda(), _maps(70, 24).cuda()
    with torch.no_grad():
        expected = _public(q, g)(ref)
        with torch.autocast('cuda', dtype=torch.float16):
            fast = head.match(q, g)
        exact = head.train().match(q, g)  # batch statistics, float32
        ref.train()
        exact_ref = _public(q, g)(ref)
    assert fast.dtype == torch.float32
    assert (fast - expected).abs().max() < 0.05 * expected.std() + 0.02
    torch.testing.assert_close(exact, exact_ref, atol=1e-3, rtol=1e-3)
    x = _maps(8, 25).cuda().requires_grad_()
    with torch.autocast('cuda', dtype=torch.float16):
        out = head.loss(x, torch.arange(8).cuda() // 2)
    out['loss'].backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().max() > 0


def test_block_and_chunk_sizes_respect_budget():
    head = TransMatcherHead(24, 8, memory_budget_mb=64)  # paper sizes
    hw, block = 24 * 8, 64 * 2**20
    q_blk, g_blk = head.block_sizes(1000, 5000, device=torch.device('cuda'))
    assert q_blk * g_blk * hw * hw * 4 <= block
    assert q_blk * g_blk * hw * hw * 4 > block / 2  # not needlessly small
    q_blk, g_blk = head.block_sizes(1000, 5000)  # cpu: cache sized
    assert q_blk * g_blk * hw * hw * 4 <= block
    # fc1 outputs of a chunk of maps: at most half the budget
    assert head._chunk_items(torch.float32) * 3 * 512 * hw * 4 <= block / 2


def test_export_matcher_equals_match(public):
    """Plain ops, all pairs at once (what tools/deployment exports)."""
    _, head = _pair(public)
    q, g = _maps(3, 26), _maps(5, 27)
    matcher = head.export_matcher()
    with torch.no_grad():
        torch.testing.assert_close(matcher(q, g), head.match(q, g),
                                   atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match='training mode'):
        head.train().export_matcher()

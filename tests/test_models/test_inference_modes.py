"""Matching gives the same scores in every PyTorch mode, with 1 or many
worker threads.

Grad mode, inference mode and autocast are thread-local in PyTorch: the
CPU matcher runs its blocks in worker threads, which must work in the
caller's mode (``torch.inference_mode()`` used to crash with "Inplace update
to inference tensor outside InferenceMode").
"""
import contextlib

import numpy as np
import pytest
import torch
from helpers import feature_maps

from mmreid_gs.engine.graph import build_class_graph
from mmreid_gs.models.heads import QAConvHead
from mmreid_gs.utils.thread_state import capture_thread_state

MODES = {
    'plain': contextlib.nullcontext,
    'no_grad': torch.no_grad,
    'inference_mode': torch.inference_mode,
    'enable_grad': torch.enable_grad,
    'inference_in_no_grad': lambda: _nested(torch.no_grad(),
                                            torch.inference_mode()),
}


@contextlib.contextmanager
def _nested(*managers):
    with contextlib.ExitStack() as stack:
        for m in managers:
            stack.enter_context(m)
        yield


@contextlib.contextmanager
def num_threads(n):
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _feats(n, c=16, h=6, w=4, seed=0):
    return feature_maps(n, c, h, w, seed)


def _head(seed=1, c=16, h=6, w=4):
    gen = torch.Generator().manual_seed(seed)
    head = QAConvHead(c, h, w)
    with torch.no_grad():
        head.fc.weight.copy_(torch.rand(1, h * w, generator=gen) + 0.5)
        head.fc.bias.fill_(0.1)
        head.bn.running_mean.fill_(0.3)
        head.bn.running_var.fill_(0.05)
        head.logit_bn.running_mean.fill_(1.2)
        head.logit_bn.running_var.fill_(0.8)
    return head.eval()


@pytest.fixture(scope='module')
def problem():
    # enough queries and gallery items for several blocks per worker
    head = _head()
    q, g = _feats(40), _feats(260, seed=2)
    with num_threads(1):
        ref = head.match(q, g)
    return head, q, g, ref


@pytest.mark.parametrize('threads', [1, 4])
@pytest.mark.parametrize('mode', sorted(MODES))
def test_match_every_grad_mode(problem, mode, threads):
    head, q, g, ref = problem
    with num_threads(threads), MODES[mode]():
        out = head.match(q, g)
        # also when the inputs are inference tensors
        if torch.is_inference_mode_enabled():
            out2 = head.match(q.clone(), g.clone())
            assert torch.equal(out2, out)
    assert out.shape == ref.shape
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    assert not out.requires_grad


@pytest.mark.parametrize('threads', [1, 4])
def test_match_thread_count_restored(problem, threads):
    head, q, g, _ = problem
    with num_threads(threads):
        with torch.inference_mode():
            head.match(q, g)
        assert torch.get_num_threads() == threads


@pytest.mark.parametrize('threads', [1, 4])
@pytest.mark.parametrize('mode', ['plain', 'no_grad', 'inference_mode'])
def test_match_cpu_autocast_bfloat16(problem, mode, threads):
    head, q, g, ref = problem
    with num_threads(threads), MODES[mode](), torch.autocast(
            'cpu', dtype=torch.bfloat16):
        out = head.match(q, g)
    assert out.dtype == torch.float32
    # bfloat16 similarities: 8 bits of mantissa
    err = (out - ref).abs().max().item()
    assert err < 0.05 * ref.abs().max().item()
    # the ranking of each query is nearly the same
    top_ref = ref.topk(5, dim=1).indices
    top = out.topk(5, dim=1).indices
    agree = (top[:, :1] == top_ref[:, :1]).float().mean().item()
    assert agree > 0.9


def test_match_deterministic_algorithms(problem):
    head, q, g, ref = problem
    old = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        with num_threads(4), torch.inference_mode():
            out = head.match(q, g)
    finally:
        torch.use_deterministic_algorithms(old)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('mode', ['no_grad', 'inference_mode'])
def test_training_mode_match_under_no_grad_modes(mode):
    """BatchNorm over the pairs of the call (training mode) runs under
    no_grad / inference mode and updates the running statistics."""
    head = _head()
    head.train()
    q, g = _feats(6), _feats(9, seed=3)
    with torch.no_grad():
        ref_head = _head().train()
        ref = ref_head.match(q, g)
    with MODES[mode]():
        out = head.match(q, g)
    torch.testing.assert_close(out, ref)
    torch.testing.assert_close(head.bn.running_mean,
                               ref_head.bn.running_mean)


def test_loss_gradient_unaffected_by_outer_modes():
    """The training path still gets gradients under enable_grad inside an
    outer no_grad (what a user's training step inside evaluation code
    does)."""
    head = _head().train()
    feats = _feats(8).requires_grad_()
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    with torch.no_grad(), torch.enable_grad():
        loss = head.loss(feats, labels)['loss']
    loss.backward()
    assert feats.grad is not None and torch.isfinite(feats.grad).all()


@pytest.mark.parametrize('threads', [1, 4])
@pytest.mark.parametrize('num_candidates', [None, 12])
@pytest.mark.parametrize('mode', ['no_grad', 'inference_mode'])
def test_build_class_graph_every_mode(mode, num_candidates, threads):
    head = _head()
    feats = _feats(48, seed=5)
    # the two-stage path itself (on maps this small the cost rule would
    # compute the exact graph instead)
    kwargs = dict(exact_fallback=False) if num_candidates else {}
    with num_threads(1), torch.no_grad():
        ref = build_class_graph(feats, head.match, 3, num_candidates,
                                **kwargs)
    with num_threads(threads), MODES[mode]():
        out = build_class_graph(feats, head.match, 3, num_candidates,
                                **kwargs)
    assert torch.equal(out, ref)


def test_build_class_graph_bfloat16_autocast():
    head = _head()
    feats = _feats(48, seed=5)
    with torch.no_grad():
        ref = build_class_graph(feats, head.match, 3)
    with torch.inference_mode(), torch.autocast('cpu', dtype=torch.bfloat16):
        out = build_class_graph(feats, head.match, 3)
    # bfloat16 may swap near-ties; most neighbour sets agree
    same = np.mean([
        len(set(a.tolist()) & set(b.tolist())) / 3
        for a, b in zip(out, ref)
    ])
    assert same > 0.8


def test_capture_thread_state_carries_modes():
    import threading
    seen = {}

    def worker(enter_state):
        with enter_state():
            seen['inference'] = torch.is_inference_mode_enabled()
            seen['grad'] = torch.is_grad_enabled()
            seen['autocast'] = torch.is_autocast_enabled('cpu')
            seen['dtype'] = torch.get_autocast_dtype('cpu')

    def run(enter_state):
        t = threading.Thread(target=worker, args=(enter_state, ))
        t.start()
        t.join()
        return dict(seen)

    with torch.inference_mode():
        assert run(capture_thread_state()) == dict(
            inference=True, grad=False, autocast=False,
            dtype=torch.get_autocast_dtype('cpu'))
    with torch.no_grad(), torch.autocast('cpu', dtype=torch.bfloat16):
        assert run(capture_thread_state()) == dict(
            inference=False, grad=False, autocast=True,
            dtype=torch.bfloat16)
    # a fresh thread without the captured state: defaults
    assert run(contextlib.nullcontext)['grad'] is True


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')
@pytest.mark.parametrize('mode', ['no_grad', 'inference_mode'])
def test_match_cuda_autocast_float16(problem, mode):
    head, q, g, ref = problem
    head = _head().cuda()
    with MODES[mode](), torch.autocast('cuda', dtype=torch.float16):
        out = head.match(q.cuda(), g.cuda()).cpu()
    err = (out - ref).abs().max().item()
    assert err < 0.01 * ref.abs().max().item()

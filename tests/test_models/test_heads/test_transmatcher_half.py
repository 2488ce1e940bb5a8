"""TransMatcher under float16: its maps are not L2-normalised, so its
similarities can exceed float16's range (65,504); such blocks run in
float32 (similarity_dtype), the others stay float16."""
import pytest
import torch

from mmreid_gs.models.heads import TransMatcherHead
from mmreid_gs.models.heads import transmatcher_kernels as kernels
from mmreid_gs.models.heads.transmatcher_kernels import (FLOAT16_SAFE_BOUND,
                                                         similarity_dtype)
from mmreid_gs.testing import PublicTransMatcher

H, W, D, L, FF = 4, 3, 8, 3, 16
C = L * D

f16, bf16, f32 = torch.float16, torch.bfloat16, torch.float32


def _maps(n, seed, scale=1.):
    gen = torch.Generator().manual_seed(seed)
    return scale * torch.randn(n, C, H, W, generator=gen)


def _head(scale):
    """A head whose BatchNorm statistics come from maps of ``scale``."""
    gen = torch.Generator().manual_seed(1)
    ref = PublicTransMatcher(H * W, D, L, FF)
    ref.randomise_(gen, _maps(10, 0, scale).permute(0, 2, 3, 1))
    head = TransMatcherHead(H, W, D, L, FF)
    head.load_state_dict(ref.state_dict(), strict=False)
    return head.eval()


def _largest_similarity(head, q, g):
    """max |fc1(q)[t] . fc1(g)[s]| over all pairs and layers, float64."""
    big = 0.
    with torch.no_grad():
        for k, layer in enumerate(head.decoder.layers):
            ch = slice(k * D, (k + 1) * D)
            w, b = layer.fc1.weight.double(), layer.fc1.bias.double()
            qf = q.double()[:, ch].flatten(2).transpose(1, 2) @ w.t() + b
            gf = g.double()[:, ch].flatten(2).transpose(1, 2) @ w.t() + b
            big = max(big, float(torch.einsum('qtd,ksd->qkts', qf,
                                              gf).abs().max()))
    return big


def test_similarity_dtype():
    assert FLOAT16_SAFE_BOUND == 65504 / 4
    assert similarity_dtype(f16, 1000.) == f16
    assert similarity_dtype(f16, torch.tensor(16376.)) == f16
    assert similarity_dtype(f16, 16377.) == f32
    assert similarity_dtype(f16, float('inf')) == f32
    assert similarity_dtype(f16, float('nan')) == f32
    for dtype in (bf16, f32, torch.float64):  # float32's range
        assert similarity_dtype(dtype, 1e30) == dtype


def test_overflowing_similarities_are_computed_in_float32(monkeypatch):
    head = _head(scale=100.)
    q, g = _maps(5, 2, 100.), _maps(7, 3, 100.)
    assert _largest_similarity(head, q, g) > 65504  # overflows float16
    index = torch.tensor([[0, 6, 6], [1, 2, 3], [4, 5, 0], [2, 2, 1],
                          [6, 3, 0]])
    with torch.no_grad():
        exact = head.match(q, g)
        with torch.autocast('cpu', dtype=f16):
            fast = head.match(q, g)
            pairs = head.match_pairs(q, g, index=index)
        # what float16 similarities would give
        monkeypatch.setattr(kernels, 'FLOAT16_SAFE_BOUND', float('inf'))
        with torch.autocast('cpu', dtype=f16):
            naive = head.match(q, g)
            naive_pairs = head.match_pairs(q, g, index=index)
    assert exact.std() > 0.3
    assert not torch.isfinite(naive).all()
    assert not torch.isfinite(naive_pairs).all()
    torch.testing.assert_close(fast, exact, atol=1e-4, rtol=0)
    torch.testing.assert_close(pairs, exact.gather(1, index), atol=1e-3,
                               rtol=0)


def test_training_step_under_float16(monkeypatch):
    """The loss of 16-bit maps (what CUDA autocast gives the head) stays
    finite, with finite gradients, as its float32 value."""
    head = _head(scale=100.).train()
    x = _maps(6, 4, 100.).half()
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    assert _largest_similarity(head, x.float(), x.float()) > 65504
    state = {k: v.clone() for k, v in head.state_dict().items()}
    x16 = x.clone().requires_grad_()
    out = head.loss(x16, labels)
    out['loss'].backward()
    head.load_state_dict(state)  # running statistics as before
    x32 = x.float().requires_grad_()
    ref = head.loss(x32, labels)
    ref['loss'].backward()
    assert torch.isfinite(out['loss']) and torch.isfinite(x16.grad).all()
    torch.testing.assert_close(out['loss'], ref['loss'], atol=1e-4,
                               rtol=1e-4)
    torch.testing.assert_close(x16.grad.float(), x32.grad, atol=1e-6,
                               rtol=1e-3)
    head.load_state_dict(state)
    monkeypatch.setattr(kernels, 'FLOAT16_SAFE_BOUND', float('inf'))
    with torch.no_grad():
        naive = head.match(x, x)
    assert not torch.isfinite(naive).all()


def test_moderate_similarities_stay_float16():
    """Normal-sized maps keep the float16 GEMMs (scores rounded, close)."""
    head = _head(scale=1.)
    q, g = _maps(4, 5), _maps(6, 6)
    assert _largest_similarity(head, q, g) < 1000
    with torch.no_grad():
        exact = head.match(q, g)
        with torch.autocast('cpu', dtype=f16):
            fast = head.match(q, g)
            pairs = head.match_pairs(q, g, index=torch.arange(6).expand(4, 6))
    assert not torch.equal(fast, exact)  # float16 rounding: float16 ran
    for got in (fast, pairs):
        assert (got - exact).abs().max() < 0.02 * exact.std()


@pytest.mark.parametrize('half', [True, False])
def test_init_model_keeps_the_head_float32(half):
    from mmreid_gs.apis import init_model
    model = init_model('configs/transmatcher_gs_demo.py', None,
                       half=half, dtype=None if half else 'float16')
    dtype = bf16 if half else f16  # half=True: bfloat16 on the CPU
    assert next(model.backbone.parameters()).dtype == dtype
    assert {p.dtype for p in model.head.parameters()} == {f32}
    assert {b.dtype for b in model.head.buffers()
            if b.is_floating_point()} == {f32}

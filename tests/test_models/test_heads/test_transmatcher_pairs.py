"""TransMatcherHead.match_pairs (each query against its own gallery list,
in the index form) against TransMatcherHead.match on the same pairs, and
its use by the two-stage class graph and the shortlisted test."""
import contextlib

import pytest
import torch
from mmengine.config import Config

from mmreid_gs.engine.graph import build_class_graph
from mmreid_gs.evaluation.functional.shortlist import shortlisted_scores
from mmreid_gs.models.heads import TransMatcherHead
from mmreid_gs.registry import MODELS
from mmreid_gs.testing import PublicTransMatcher
from mmreid_gs.utils import register_all_modules
from mmreid_gs.utils.contract import takes_index

H, W, D, L, FF = 4, 3, 8, 3, 16
C = L * D


def _maps(n, seed, dtype=torch.float32, channels=C, height=H, width=W):
    """Maps as the neck gives them (no L2 norm), channels first."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, channels, height, width, generator=gen).to(dtype)


@pytest.fixture(scope='module')
def state():
    """Trained-looking matcher weights and BatchNorm statistics."""
    gen = torch.Generator().manual_seed(1)
    ref = PublicTransMatcher(H * W, D, L, FF)
    ref.randomise_(gen, _maps(10, seed=0).permute(0, 2, 3, 1))
    return ref.state_dict()


def _make(state, dtype=torch.float32, **kw):
    head = TransMatcherHead(H, W, D, L, FF, **kw)
    head.load_state_dict(state, strict=False)
    return head.to(dtype).eval()


@pytest.fixture(scope='module')
def head(state):
    return _make(state)


@contextlib.contextmanager
def num_threads(n):
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _index(n, m, num_gallery, seed):
    index = torch.randint(num_gallery, (n, m),
                          generator=torch.Generator().manual_seed(seed))
    index[0, :3] = index[0, 0]  # duplicates within a list
    index[1, 0] = index[0, 0]  # and across lists
    return index


@pytest.mark.parametrize('dtype,tol', [(torch.float64, 1e-10),
                                       (torch.float32, 1e-5)])
@pytest.mark.parametrize('budget', [256, 1e-4])  # one pair a block
@pytest.mark.parametrize('mode', ['no_grad', 'inference_mode'])
@pytest.mark.parametrize('threads', [1, 2])
def test_match_pairs_equals_match(state, dtype, tol, budget, mode,
                                  threads):
    head = _make(state, dtype, memory_budget_mb=budget)
    query, gallery = _maps(6, 2, dtype), _maps(11, 3, dtype)
    index = _index(6, 5, 11, seed=4)
    with torch.no_grad():
        expected = head.match(query, gallery).gather(1, index)
    assert expected.std() > 0.1  # a meaningful comparison
    with num_threads(threads), getattr(torch, mode)():
        got = head.match_pairs(query, gallery, index=index)
        lists = head.match_pairs(query, gallery[index])  # [n, m, ...] form
        assert torch.get_num_threads() == threads
    assert got.shape == (6, 5) and got.dtype == dtype
    assert got.is_inference() == (mode == 'inference_mode')
    torch.testing.assert_close(got, expected, atol=tol, rtol=0)
    torch.testing.assert_close(lists, expected, atol=tol, rtol=0)
    # duplicates within a list score alike
    assert torch.equal(got[0, :3], got[0, :1].expand(3))


def test_match_pairs_smallest_buffers(state, monkeypatch):
    """One pair a GEMM block, one list item a span of maxima, MLP pieces
    of two rows: the same scores."""
    from mmreid_gs.models.heads import transmatcher_head as head_module
    head = _make(state, memory_budget_mb=1e-4)
    query, gallery = _maps(4, 16), _maps(7, 17)
    index = _index(4, 6, 7, seed=18)
    with torch.no_grad():
        expected = head.match(query, gallery).gather(1, index)
        monkeypatch.setattr(head_module, 'CPU_ROWS_BYTES', 1)
        monkeypatch.setattr(head_module, 'CPU_MLP_BYTES', 1)
        got = head.match_pairs(query, gallery, index=index)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


def test_match_pairs_takes_index_and_small_cases(head):
    assert takes_index(head.match_pairs)
    query, gallery = _maps(3, 5), _maps(4, 6)
    with torch.no_grad():
        full = head.match(query, gallery)
        # every query against the whole gallery: match itself
        every = torch.arange(4).expand(3, 4).contiguous()
        torch.testing.assert_close(
            head.match_pairs(query, gallery, index=every), full, atol=1e-5,
            rtol=0)
        assert head.match_pairs(query, gallery,
                                index=every[:, :0]).shape == (3, 0)
        assert head.match_pairs(query[:0], gallery,
                                index=every[:0]).shape == (0, 4)


def test_match_pairs_training_mode_and_grad(head):
    """Training mode: match on each query's list (BatchNorm over that
    list's pairs); eval features requiring grad: differentiable."""
    query, gallery = _maps(3, 7), _maps(6, 8)
    index = _index(3, 4, 6, seed=9)
    head.train()
    try:
        with torch.no_grad():
            got = head.match_pairs(query, gallery, index=index)
            expected = torch.cat([
                head.match(query[i:i + 1], gallery[index[i]])
                for i in range(3)
            ])
    finally:
        head.eval()
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)
    q = query.clone().requires_grad_()
    out = head.match_pairs(q, gallery, index=index)
    with torch.no_grad():
        fast = head.match_pairs(query, gallery, index=index)
    torch.testing.assert_close(out.detach(), fast, atol=1e-5, rtol=0)
    out.sum().backward()
    assert q.grad.abs().max() > 0


def test_match_pairs_bad_input(head):
    query, gallery = _maps(2, 10), _maps(5, 11)
    with pytest.raises(ValueError, match=r'int64 index of shape \[n, m\] '
                       r'with n = 2.*\(3, 2\)'):
        head.match_pairs(query, gallery, index=torch.zeros(3, 2).long())
    with pytest.raises(ValueError, match='int64 index.*torch.int32'):
        head.match_pairs(query, gallery,
                         index=torch.zeros(2, 2, dtype=torch.int32))
    with pytest.raises(ValueError, match=r'out of range for 5 gallery maps: '
                       r'\[0, 5\]'):
        head.match_pairs(query, gallery, index=torch.tensor([[0, 5],
                                                             [1, 2]]))
    with pytest.raises(ValueError, match=r'gallery lists of shape \[n, m, '
                       r'24, 4, 3\] with n = 2'):
        head.match_pairs(query, gallery)
    with pytest.raises(ValueError, match=r'gallery feature maps must have '
                       r'shape \[N, 24, 4, 3\]'):
        head.match_pairs(query, gallery[:, :8], index=torch.zeros(2, 1).long())


@pytest.fixture(scope='module')
def demo_model():
    """The TransMatcher demo's model (8x4 maps of 3 x 64 channels), eval
    mode, with trained-looking matcher weights."""
    register_all_modules(init_default_scope=False)
    cfg = Config.fromfile('configs/transmatcher_gs_demo.py')
    model = MODELS.build(cfg.model)
    h = model.head
    gen = torch.Generator().manual_seed(3)
    ref = PublicTransMatcher(h.height * h.width, h.d_model, h.num_layers,
                             h.dim_feedforward)
    feats = _maps(8, 12, channels=h.num_features, height=h.height,
                  width=h.width)
    ref.randomise_(gen, feats.permute(0, 2, 3, 1))
    h.load_state_dict(ref.state_dict(), strict=False)
    return model.eval()


def _spy(monkeypatch, head):
    """Record the calls of head.match_pairs (keeping its signature's
    ``index``, which is how callers detect the index form)."""
    calls = []
    real = head.match_pairs

    def match_pairs(query, gallery, index=None):
        calls.append(None if index is None else tuple(index.shape))
        return real(query, gallery, index=index)

    monkeypatch.setattr(head, 'match_pairs', match_pairs)
    return calls


def test_demo_class_graph_uses_match_pairs(demo_model, monkeypatch):
    """GraphSamplerHook(num_candidates=...) passes model.match_pairs: the
    TransMatcher demo's two-stage class graph now scores its candidates
    through the head's index form; with every class a candidate it is the
    exact graph."""
    h = demo_model.head
    feats = _maps(24, 13, channels=h.num_features, height=h.height,
                  width=h.width)
    with torch.no_grad():
        exact = build_class_graph(feats, demo_model.match, 4)
    calls = _spy(monkeypatch, h)
    assert takes_index(demo_model.match_pairs)
    with torch.inference_mode():
        two_stage = build_class_graph(feats, demo_model.match, 4,
                                      num_candidates=23,
                                      candidate_fn='pooled',
                                      pair_matcher=demo_model.match_pairs,
                                      exact_fallback=False)
    assert calls and all(c is not None and c[1] == 23 for c in calls)
    assert sum(c[0] for c in calls) == 24
    assert torch.equal(two_stage, exact)


def test_shortlisted_transmatcher_test_uses_match_pairs(demo_model,
                                                        monkeypatch):
    """The shortlisted test (model.match_pairs in its index form): the
    shortlisted columns hold match's exact scores; N >= the gallery is
    match itself."""
    h = demo_model.head
    query = _maps(5, 14, channels=h.num_features, height=h.height,
                  width=h.width)
    gallery = _maps(17, 15, channels=h.num_features, height=h.height,
                    width=h.width)
    with torch.no_grad():
        exact = demo_model.match(query, gallery)
    calls = _spy(monkeypatch, h)
    with torch.inference_mode():
        scores, shortlist = shortlisted_scores(query, gallery, 16,
                                               demo_model.match,
                                               demo_model.match_pairs)
        full, _ = shortlisted_scores(query, gallery, 17, demo_model.match,
                                     demo_model.match_pairs)
    assert calls == [(5, 16)]
    torch.testing.assert_close(scores.gather(1, shortlist),
                               exact.gather(1, shortlist), atol=1e-5,
                               rtol=0)
    torch.testing.assert_close(full, exact, atol=0, rtol=0)

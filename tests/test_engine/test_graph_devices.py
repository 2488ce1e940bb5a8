"""Device placement and the accelerator code paths of the class graph,
on the CPU: :class:`mmreid_gs.testing.FakeAccelerator` tags tensors moved to
``'cuda'`` and raises where a GPU would (issue 31, item 1: the union second
stage indexed the CPU ``rows`` with indices on the features' device), and
:func:`mmreid_gs.testing.accelerator_code_paths` makes CPU tensors take the
accelerator block sizes (item 6)."""
import pytest
import torch
import torch.nn.functional as F

from mmreid_gs.engine.graph import build_class_graph
from mmreid_gs.engine.graph.candidates import (_pooled_blocks,
                                               _pooled_prepare,
                                               _pooled_score)
from mmreid_gs.testing import (FakeAccelerator, accelerator_code_paths,
                               is_fake)
from mmreid_gs.utils.thread_state import cpu_workers, uses_cpu_paths


def maps(num, seed=0):
    """[num, 8, 4, 2] L2-normalised maps in 5 look-alike groups."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(5, 8, 4, 2, generator=g)
    out = centres[torch.arange(num) % 5] + 0.5 * torch.randn(
        num, 8, 4, 2, generator=g)
    return F.normalize(out, dim=1)


def qaconv_max(q, g):
    """Parameter-free QAConv-like matcher: mean of the best matches both
    ways (runs on any device)."""
    s = torch.einsum('acl,bcm->ablm', q.flatten(2), g.flatten(2))
    return s.amax(3).mean(2) + s.amax(2).mean(2)


def test_fake_accelerator_raises_where_a_gpu_would():
    with FakeAccelerator():
        cpu_rows = torch.arange(6)
        feats = torch.randn(6, 3).to('cuda')
        pos = torch.tensor([1, 4]).to(feats.device)
        assert feats.device == torch.device('cuda', 0) and is_fake(pos)
        # CPU indices into a "CUDA" tensor: allowed, result on "CUDA"
        assert is_fake(feats[torch.tensor([0, 2])])
        with pytest.raises(RuntimeError, match='indices should be either'):
            cpu_rows[pos]
        with pytest.raises(RuntimeError, match='same device'):
            feats + torch.ones(6, 3)
        with pytest.raises(RuntimeError, match='numpy'):
            feats.numpy()
        assert not is_fake(feats.cpu()) and is_fake(feats)
        assert (feats.cpu() == feats.cpu()).all()


@pytest.mark.parametrize('kind', ['union', 'union-pooled', 'pairs',
                                  'exact'])
def test_graph_with_features_on_an_accelerator(kind):
    """build_class_graph with the features on a (fake) CUDA device gives
    the CPU graph: the union second stage (no pair scorer: a head without
    match_pairs), with the 'gap' and the 'pooled' proxy (its accelerator
    blocks), the batched pair scorer and the exact graph."""
    feats = maps(60, seed=3)
    options = dict(num_neighbors=3, exact_fallback=False)
    if kind != 'exact':
        options['num_candidates'] = 8
    if kind == 'union-pooled':
        options['candidate_fn'] = 'pooled'
    if kind == 'pairs':
        options['pair_matcher'] = lambda q, g: torch.einsum(
            'acl,abcm->ablm', q.flatten(2), g.flatten(3)).amax(3).mean(2) + \
            torch.einsum('acl,abcm->ablm', q.flatten(2),
                         g.flatten(3)).amax(2).mean(2)
    ref = build_class_graph(feats, qaconv_max, **options)
    with FakeAccelerator():
        on_gpu = feats.to('cuda')
        out = build_class_graph(on_gpu, qaconv_max, rows=list(range(60)),
                                **options)
    assert not is_fake(out) and out.dtype == torch.long
    assert torch.equal(out, ref)


def test_pooled_blocks_cpu_and_accelerator():
    """The pooled proxy's blocks: 8 queries x up to 2^20 similarities on
    the CPU (cache-sized), 64 queries x up to 2^26 on an accelerator, by
    hand: 48 pooled locations (24x8 maps) -> 2304 similarities a pair."""
    cpu = torch.device('cpu')
    assert _pooled_blocks(1000, 48, cpu) == (8, 2**20 // (8 * 2304))
    assert _pooled_blocks(1000, 48, torch.device('cuda')) == \
        (64, 2**26 // (64 * 2304))
    assert _pooled_blocks(3, 48, torch.device('cuda')) == \
        (3, 2**26 // (3 * 2304))
    assert uses_cpu_paths(cpu)
    with accelerator_code_paths():
        assert not uses_cpu_paths(cpu) and cpu_workers(cpu) == 1
        assert _pooled_blocks(1000, 48, cpu) == (64, 2**26 // (64 * 2304))
    assert uses_cpu_paths(cpu)


def test_pooled_proxy_accelerator_blocks_same_scores():
    """The accelerator blocks of the pooled proxy give the CPU blocks'
    scores (also under inference mode), on CPU tensors."""
    prepared = _pooled_prepare(maps(70, seed=5))
    ref = _pooled_score(prepared, prepared)
    sim = torch.einsum('acl,bcm->ablm', prepared, prepared)
    assert torch.allclose(ref, sim.amax(3).mean(2) + sim.amax(2).mean(2),
                          atol=1e-6)
    with accelerator_code_paths(), torch.inference_mode():
        out = _pooled_score(prepared, prepared)
    assert torch.allclose(out, ref, atol=1e-6)

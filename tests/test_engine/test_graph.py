from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

import mmreid_gs.engine.graph.build as graph_module
import mmreid_gs.engine.graph.candidates as graph_candidates
from mmreid_gs.engine.graph import (build_class_graph, candidate_classes,
                                    candidates_decision,
                                    class_graph_from_scores,
                                    compute_class_scores, two_stage_cost_ratio)
from mmreid_gs.engine.graph.candidates import (PAIR_OVERHEAD_MACS,
                                               POOLED_MAC_PENALTY,
                                               SECOND_STAGE_PENALTY,
                                               _pooled_prepare, _pooled_score,
                                               resolve_pair_matcher,
                                               takes_index, union_blocks,
                                               union_decision, union_pairs)


def cosine(q, g):
    return F.normalize(q.flatten(1), dim=1) @ F.normalize(g.flatten(1),
                                                          dim=1).t()


class CountingMatcher:
    """Cosine matcher that counts the pairs it scores."""

    def __init__(self):
        self.pairs = 0

    def __call__(self, q, g):
        self.pairs += q.shape[0] * g.shape[0]
        return cosine(q, g)


def brute_force(features, k):
    """Reference: full score matrix, self masked, python sort with ties to
    the smaller index."""
    s = cosine(features, features).tolist()
    out = []
    for i, row in enumerate(s):
        cand = sorted((j for j in range(len(row)) if j != i),
                      key=lambda j: (-row[j], j))
        out.append(cand[:k])
    return torch.tensor(out, dtype=torch.long)


def clustered_maps(num_classes, seed=0, groups=6, noise=0.5):
    """[C, 8, 4, 2] maps: classes in look-alike groups plus noise."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(groups, 8, 4, 2, generator=g)
    grp = torch.arange(num_classes) % groups
    maps = centres[grp] + noise * torch.randn(num_classes, 8, 4, 2,
                                              generator=g)
    return F.normalize(maps, dim=1)


@pytest.mark.parametrize('block_size', [1, 5, 256])
def test_exact_matches_brute_force(block_size):
    g = torch.Generator().manual_seed(1)
    feats = torch.randn(23, 4, 3, 2, generator=g)
    matcher = CountingMatcher()
    nbrs = build_class_graph(feats, matcher, 6, block_size=block_size)
    assert nbrs.dtype == torch.long and nbrs.shape == (23, 6)
    assert torch.equal(nbrs, brute_force(feats, 6))
    assert matcher.pairs == 23 * 23
    assert not (nbrs == torch.arange(23)[:, None]).any()
    # a subset of rows (the share of one rank)
    rows = [22, 3, 7]
    assert torch.equal(
        build_class_graph(feats, cosine, 6, rows=rows, block_size=2),
        brute_force(feats, 6)[rows])


def test_ties_and_nan_are_deterministic():
    feats = torch.zeros(6, 2)

    def flat(q, g):
        return torch.ones(q.shape[0], g.shape[0])

    nbrs = build_class_graph(feats, flat, 3)
    expected = [[j for j in range(6) if j != i][:3] for i in range(6)]
    assert nbrs.tolist() == expected

    def nan_first(q, g):
        s = torch.ones(q.shape[0], g.shape[0])
        s[:, 0] = float('nan')
        return s

    nbrs = build_class_graph(feats, nan_first, 5)
    assert nbrs[1].tolist() == [2, 3, 4, 5, 0]  # NaN counts as worst


def test_class_graph_from_scores_distances_and_rows():
    scores = torch.tensor([[0.0, 0.3, 0.1, 0.9], [0.3, 0.0, 0.8, 0.2],
                           [0.1, 0.8, 0.0, 0.5], [0.9, 0.2, 0.5, 0.0]])
    # distances: self has the smallest value but is excluded
    assert class_graph_from_scores(scores, 2, largest=False).tolist() == [
        [2, 1], [3, 0], [0, 3], [1, 2]
    ]
    assert class_graph_from_scores(scores, 2).tolist() == [[3, 1], [2, 0],
                                                           [1, 3], [0, 2]]
    assert class_graph_from_scores(scores[[2]], 1, rows=[2]).tolist() == [[1]]
    with pytest.raises(ValueError, match='need `rows`'):
        class_graph_from_scores(scores[:2], 1)


def test_compute_class_scores_blocks():
    # seeded, and an absolute tolerance: blocks change the GEMM's summation
    # order, so a score near 0 may differ by ~1e-8 (failed unseeded)
    feats = torch.randn(7, 3, 2, 2,
                        generator=torch.Generator().manual_seed(0))
    full = compute_class_scores(feats, cosine, block_size=3)
    assert torch.allclose(full, cosine(feats, feats), atol=1e-6)
    assert torch.allclose(compute_class_scores(feats, cosine, rows=[4, 1]),
                          cosine(feats, feats)[[4, 1]], atol=1e-6)


def test_candidates_all_is_exact():
    feats = clustered_maps(20)
    exact = build_class_graph(feats, cosine, 4)
    assert torch.equal(build_class_graph(feats, cosine, 4, num_candidates=19),
                       exact)
    assert torch.equal(build_class_graph(feats, cosine, 4, num_candidates=50),
                       exact)


@pytest.mark.parametrize('proxy', ['pooled', 'gap', None, 'callable'])
def test_candidates_rescore_and_recall(proxy):
    feats = clustered_maps(60, seed=2)
    k, n = 5, 15
    candidate_fn = cosine if proxy == 'callable' else proxy
    matcher = CountingMatcher()
    # tiny maps: the exact graph would be chosen (see test_cost_model_*)
    nbrs, cands = build_class_graph(feats, matcher, k, num_candidates=n,
                                    candidate_fn=candidate_fn,
                                    return_candidates=True,
                                    exact_fallback=False)
    assert nbrs.shape == (60, k) and cands.shape == (60, n)
    # the union second stage: blocks of classes against the union of
    # their candidates, at least half of the scored pairs candidate pairs
    blocks = union_blocks(torch.arange(60), cands, 60, 256)
    assert matcher.pairs == union_pairs(blocks) <= 2 * 60 * n
    assert sorted(torch.cat([p for p, _ in blocks]).tolist()) == list(
        range(60))
    full = cosine(feats, feats)
    for i in range(60):
        assert i not in cands[i].tolist()
        # the neighbours are the best re-scored candidates, in order
        cand = sorted(cands[i].tolist(), key=lambda j: (-full[i, j], j))
        assert nbrs[i].tolist() == cand[:k]
    exact = build_class_graph(feats, cosine, k)
    hits = sum(len(set(a.tolist()) & set(b.tolist()))
               for a, b in zip(exact, nbrs))
    assert hits / exact.numel() >= 0.9
    if proxy == 'callable':  # same function as the matcher: exact
        assert torch.equal(nbrs, exact)


def test_candidates_fraction_and_rows():
    feats = clustered_maps(40, seed=3)
    a = build_class_graph(feats, cosine, 3, num_candidates=0.25,
                          exact_fallback=False)
    b = build_class_graph(feats, cosine, 3, num_candidates=10,
                          exact_fallback=False)
    assert torch.equal(a, b)
    rows = torch.tensor([5, 0, 39])
    assert torch.equal(
        build_class_graph(feats, cosine, 3, num_candidates=10, rows=rows,
                          exact_fallback=False), b[rows])
    cands = candidate_classes(feats, 10, 'gap', rows=rows)
    assert cands.shape == (3, 10)
    assert (cands[:, 1:] > cands[:, :-1]).all()  # sorted by class index


def test_errors():
    feats = torch.randn(5, 2, 2, 2)
    with pytest.raises(ValueError, match=r'num_neighbors.*\[0, 4\]'):
        build_class_graph(feats, cosine, 5)
    with pytest.raises(ValueError, match='num_candidates .* >= num_neighbors'):
        build_class_graph(feats, cosine, 3, num_candidates=2)
    with pytest.raises(ValueError, match='num_candidates must be'):
        build_class_graph(feats, cosine, 1, num_candidates=-1)
    with pytest.raises(ValueError, match=r'matcher must return .* \[2, 5\]'):
        build_class_graph(feats, lambda q, g: torch.zeros(len(q)), 1,
                          block_size=2)
    with pytest.raises(ValueError, match='Unknown candidate_fn'):
        build_class_graph(feats, cosine, 1, num_candidates=2,
                          candidate_fn='nope')
    with pytest.raises(ValueError, match='features must be'):
        build_class_graph(torch.randn(5), cosine, 1)
    with pytest.raises(ValueError, match='at least 2 classes'):
        build_class_graph(torch.randn(1, 3), cosine, 0)
    with pytest.raises(ValueError, match='rows must be class indices'):
        build_class_graph(feats, cosine, 1, rows=[7])
    with pytest.raises(ValueError, match='pooled.*needs feature maps'):
        build_class_graph(torch.randn(5, 3), cosine, 1, num_candidates=2,
                          candidate_fn='pooled')


def test_empty_neighbours():
    nbrs = build_class_graph(torch.randn(4, 3), cosine, 0)
    assert nbrs.shape == (4, 0)


def _old_exact(scores, k, rows):
    """The exact graph as computed before the running top-k: the full
    rows, stable sort (ties to the smaller index), self dropped."""
    return class_graph_from_scores(scores[rows], k, rows=rows)


@pytest.mark.parametrize('col_block', [None, 7, 13, 1])
@pytest.mark.parametrize('levels', [0, 3])
def test_exact_running_topk_equals_full_sort(col_block, levels):
    """Column chunks + running top-k == stable sort of the full rows, with
    many ties (scores quantised to a few levels), NaN and -inf."""
    g = torch.Generator().manual_seed(levels + (col_block or 0))
    num_classes, k = 41, 6
    scores = torch.randn(num_classes, num_classes, generator=g)
    if levels:
        scores = (scores * levels).round()
    scores[3, :30] = float('nan')  # fewer than k finite values in row 3
    scores[5, 10:20] = -float('inf')
    feats = torch.arange(num_classes).float()[:, None]

    def lookup(q, gal):
        return scores[q[:, 0].long()][:, gal[:, 0].long()]

    rows = torch.tensor([3, 0, 5, 40, 17, 8])
    for block in (1, 4, 256):
        nbrs = build_class_graph(feats, lookup, k, rows=rows,
                                 block_size=block, col_block_size=col_block)
        assert torch.equal(nbrs, _old_exact(scores, k, rows))
    full = build_class_graph(feats, lookup, k, col_block_size=col_block)
    assert torch.equal(full, _old_exact(scores, k, torch.arange(41)))


def test_exact_column_chunks_and_memory_bound():
    """The matcher sees column chunks of at most col_block_size classes
    (each with more than k columns), never the C x C matrix."""
    feats = clustered_maps(50, seed=4)
    shapes = []

    def spy(q, gal):
        shapes.append((q.shape[0], gal.shape[0]))
        return cosine(q, gal)

    nbrs = build_class_graph(feats, spy, 5, block_size=8, col_block_size=12)
    assert max(s[1] for s in shapes) <= 13 and min(s[1] for s in shapes) > 5
    assert max(s[0] for s in shapes) <= 8
    assert sum(a * b for a, b in shapes) == 50 * 50
    assert torch.equal(nbrs, brute_force(feats, 5))


class PairCosine:
    """Each query against its own gallery list; counts calls and pairs."""

    def __init__(self):
        self.calls = self.pairs = 0

    def __call__(self, q, gal):
        self.calls += 1
        self.pairs += gal.shape[0] * gal.shape[1]
        qn = F.normalize(q.flatten(1), dim=1)
        gn = F.normalize(gal.flatten(2), dim=2)
        return torch.einsum('nd,nmd->nm', qn, gn)


def test_candidates_batched_pair_matcher():
    feats = clustered_maps(80, seed=5)
    k, n = 5, 20
    pair = PairCosine()
    matcher = CountingMatcher()
    nbrs, cands = build_class_graph(feats, matcher, k, num_candidates=n,
                                    pair_matcher=pair, block_size=32,
                                    return_candidates=True,
                                    exact_fallback=False)
    assert matcher.pairs == 0  # only the batched scorer re-scores
    assert pair.pairs == 80 * n and pair.calls == 3  # blocks of 32 rows
    full = cosine(feats, feats)
    for i in range(80):
        cand = sorted(cands[i].tolist(), key=lambda j: (-full[i, j], j))
        assert nbrs[i].tolist() == cand[:k]
    # the same neighbours as the per-block union path of a plain matcher
    assert torch.equal(
        build_class_graph(feats, cosine, k, num_candidates=n,
                          exact_fallback=False), nbrs)


def test_union_path_blocks_rows():
    """Without a pair matcher, blocks of classes whose candidate lists
    overlap share one matcher call on the union of their candidates (at
    least half of its pairs are candidate pairs)."""
    feats = clustered_maps(200, seed=6)
    matcher = CountingMatcher()
    calls = []

    def spy(q, gal):
        calls.append(q.shape[0])
        return matcher(q, gal)

    nbrs, cands = build_class_graph(feats, spy, 4, num_candidates=10,
                                    return_candidates=True,
                                    exact_fallback=False)
    # first stage is the proxy: every matcher call is a second-stage block
    blocks = union_blocks(torch.arange(200), cands, 200, 256)
    assert calls == [p.numel() for p, _ in blocks] and sum(calls) == 200
    assert max(calls) > 1  # look-alike classes share their calls
    for pos, union in blocks:
        assert pos.numel() * 10 >= 0.5 * pos.numel() * union.numel()
    assert matcher.pairs == union_pairs(blocks) <= 2 * 200 * 10
    full = cosine(feats, feats)
    for i in range(200):
        cand = sorted(cands[i].tolist(), key=lambda j: (-full[i, j], j))
        assert nbrs[i].tolist() == cand[:4]


def test_candidates_fall_back_to_exact():
    maps = clustered_maps(40, seed=7)
    matcher = CountingMatcher()
    # more candidates than a quarter of the classes: exact
    nbrs, cands = build_class_graph(maps, matcher, 3, num_candidates=11,
                                    return_candidates=True)
    assert cands is None and matcher.pairs == 40 * 40
    assert torch.equal(nbrs, brute_force(maps, 3))
    # [C, d] embeddings with the 'gap' proxy: exact (same cost as cosine)
    emb = maps.flatten(1)
    matcher = CountingMatcher()
    nbrs, cands = build_class_graph(emb, matcher, 3, num_candidates=5,
                                    return_candidates=True)
    assert cands is None and matcher.pairs == 40 * 40
    with pytest.raises(ValueError, match='pair_matcher must be'):
        build_class_graph(maps, cosine, 3, num_candidates=5,
                          pair_matcher='x')


def test_graph_under_inference_mode():
    feats = clustered_maps(30, seed=8)
    expected = build_class_graph(feats, cosine, 4)
    with torch.inference_mode():
        assert torch.equal(
            build_class_graph(feats, cosine, 4, col_block_size=9), expected)
        nbrs = build_class_graph(feats, cosine, 4, num_candidates=7,
                                 pair_matcher=PairCosine(),
                                 exact_fallback=False)
    assert nbrs.shape == (30, 4)


def test_cost_model_decision_rule():
    """Two-stage only where C^2 proxy pairs + C*N re-scored pairs are
    predicted clearly cheaper than C^2 matcher pairs."""
    ratio = two_stage_cost_ratio((64, 8, 4), 3000, 300, 'pooled')
    matcher = 64 * 32**2 + PAIR_OVERHEAD_MACS
    proxy = POOLED_MAC_PENALTY * 64 * (4 * 2)**2 + PAIR_OVERHEAD_MACS
    assert ratio == pytest.approx(proxy / matcher +
                                  SECOND_STAGE_PENALTY * 300 / 3000)
    assert two_stage_cost_ratio((64, 8, 4), 30, 3, cosine) is None

    def decide(shape, num_classes, n, proxy):
        return candidates_decision(torch.empty(num_classes, *shape), n,
                                   proxy)

    # must use the two-stage graph: 10% candidates on QAConv-sized maps
    for shape in [(64, 24, 8), (64, 8, 4), (32, 6, 4)]:
        for proxy in ['gap', None, 'pooled']:
            use, why = decide(shape, 3000, 300, proxy)
            assert use, why
    # must not: 20% candidates with the pooled proxy (0.73x predicted)
    use, why = decide((64, 8, 4), 3000, 600, 'pooled')
    assert not use and 'predicted to cost 0.73x' in why
    # nor on tiny maps, where every pair costs about the same
    for n in (6, 15):
        for proxy in ['gap', 'pooled']:
            assert not decide((8, 4, 2), 60, n, proxy)[0]
    # nor on [C, d] embeddings with the 'gap' proxy (a cosine itself)
    assert not decide((512, ), 10000, 100, 'gap')[0]
    # nor beyond a quarter of the classes, whatever the proxy
    use, why = decide((64, 24, 8), 100, 26, cosine)
    assert not use and 'more than 0.25' in why
    # a callable proxy's cost is unknown: two-stage within the quarter
    assert decide((512, ), 100, 25, cosine) == (
        True, 'callable proxy (cost unknown)')
    assert candidates_decision(torch.empty(3000, 64, 24, 8), 300, 'gap')[0]
    assert not candidates_decision(torch.empty(3000, 64, 24, 8), None, 'gap')[0]


@pytest.mark.parametrize('mode', ['no_grad', 'inference_mode'])
def test_pooled_on_small_maps_falls_back_to_exact(mode, monkeypatch):
    """Candidates with the pooled proxy on 8x4 maps where they cannot pay
    off: the exact graph, bit for bit, and the reason logged once."""
    from mmreid_gs.models.heads import QAConvHead
    head = QAConvHead(16, 8, 4).eval()
    feats = F.normalize(torch.randn(
        40, 16, 8, 4, generator=torch.Generator().manual_seed(9)), dim=1)
    logged = []
    monkeypatch.setattr(graph_module, 'print_log',
                        lambda msg, **kw: logged.append(msg))
    monkeypatch.setattr(graph_module, '_LOGGED_FALLBACKS', set())
    context = torch.inference_mode if mode == 'inference_mode' else \
        torch.no_grad
    with torch.no_grad():
        exact = build_class_graph(feats, head.match, 5)
        forced = build_class_graph(feats, head.match, 5, num_candidates=8,
                                   candidate_fn='pooled',
                                   pair_matcher=head.match_pairs,
                                   exact_fallback=False)
    with context():
        for _ in range(2):
            nbrs, cands = build_class_graph(
                feats, head.match, 5, num_candidates=8,
                candidate_fn='pooled', pair_matcher=head.match_pairs,
                return_candidates=True)
            assert cands is None and torch.equal(nbrs, exact)
        # the two-stage path itself (QAConv match_pairs) in this mode
        assert torch.equal(
            build_class_graph(feats, head.match, 5, num_candidates=8,
                              candidate_fn='pooled',
                              pair_matcher=head.match_pairs,
                              exact_fallback=False), forced)
    assert len(logged) == 1
    assert 'computing the exact graph' in logged[0]
    assert "'pooled' proxy, 8 candidates of 40 classes" in logged[0]


@pytest.mark.parametrize('threads', [1, 3])
def test_pooled_proxy_threads(threads):
    """The pooled proxy scores the same with worker threads (row ranges)
    as in one thread, also under inference mode."""
    maps = _pooled_prepare(clustered_maps(45, seed=10))
    q, g = maps.reshape(45, 8, -1), maps.reshape(45, 8, -1)
    sim = torch.einsum('acl,bcm->ablm', q, g)
    ref = sim.amax(3).mean(2) + sim.amax(2).mean(2)
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with torch.inference_mode():
            out = _pooled_score(q, g)
    finally:
        torch.set_num_threads(old)
    assert torch.get_num_threads() == old
    assert torch.allclose(out, ref, atol=1e-6)


@pytest.mark.parametrize('threads', [1, 3])
def test_pair_list_kernel_one_query_many_blocks(threads):
    """A single query with a long list (the second stage's blocks of one
    class on large maps): its list blocks are spread over the worker
    threads, with the scores of QAConvHead.match."""
    from mmreid_gs.models.heads import QAConvHead
    from mmreid_gs.models.heads.qaconv_list_kernels import \
        folded_pair_list_scores
    head = QAConvHead(8, 4, 2).eval()
    feats = clustered_maps(50, seed=11)
    cands = torch.randperm(50, generator=torch.Generator().manual_seed(1))
    cands = cands[cands != 0][None, :30]
    ref = head.match(feats[:1], feats[cands[0]])
    w, scale, offset = head._folded_affine()
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with torch.inference_mode():
            # 4 pairs of 8x8 float32 similarities per block: 8 blocks
            out = folded_pair_list_scores(
                head._flatten(feats[:1], 'q'), feats[cands], w, scale,
                offset, torch.float32, 4 * 64 * 4)
    finally:
        torch.set_num_threads(old)
    assert torch.allclose(out, ref, atol=1e-5)


class _PairScorer:
    """A matcher object with a batched pair scorer that counts its calls."""

    def __init__(self):
        self.pair_calls = 0

    def match(self, q, g):
        return cosine(q, g)

    def match_pairs(self, q, g):
        self.pair_calls += 1
        return torch.einsum('nd,nmd->nm', F.normalize(q.flatten(1), dim=1),
                            F.normalize(g.flatten(2), dim=2))


def test_pair_scorer_found_from_the_documented_call():
    """build_class_graph(feats, obj.match, ...) uses obj.match_pairs; a
    plain function or another method of the object does not."""
    owner = _PairScorer()
    assert resolve_pair_matcher(owner.match) == owner.match_pairs
    assert resolve_pair_matcher(cosine) is None
    assert resolve_pair_matcher(owner.match_pairs) is None  # not a `match`
    explicit = object()
    assert resolve_pair_matcher(owner.match, explicit) is explicit
    model = SimpleNamespace(match_pairs=None)  # a model whose head has none
    assert resolve_pair_matcher(model) is None
    feats = clustered_maps(60, seed=4)
    nbrs = build_class_graph(feats, owner.match, 4, num_candidates=12,
                             exact_fallback=False)
    assert owner.pair_calls > 0
    plain = build_class_graph(feats, cosine, 4, num_candidates=12,
                              exact_fallback=False)
    assert torch.equal(nbrs, plain)


class _IndexPairCosine:
    """A pair scorer of the protocol's index form, counting its calls."""

    def __init__(self):
        self.calls = self.pairs = 0

    def __call__(self, q, g, index=None):
        self.calls += 1
        self.pairs += index.numel()
        return torch.einsum('nd,nmd->nm', F.normalize(q.flatten(1), dim=1),
                            F.normalize(g[index].flatten(2), dim=2))


def test_pair_scorer_index_form():
    """A pair scorer that takes ``index=`` gets the class features whole
    and each row's candidates as indices (it gathers them itself); the
    neighbours equal those of the gathered form."""
    assert takes_index(_IndexPairCosine())
    assert not takes_index(PairCosine()) and not takes_index(max)
    feats = clustered_maps(80, seed=5)
    pair = _IndexPairCosine()
    nbrs = build_class_graph(feats, CountingMatcher(), 5, num_candidates=20,
                             pair_matcher=pair, exact_fallback=False)
    assert pair.calls == 1 and pair.pairs == 80 * 20  # all rows at once
    assert torch.equal(
        nbrs,
        build_class_graph(feats, cosine, 5, num_candidates=20,
                          pair_matcher=PairCosine(), exact_fallback=False))


def test_union_stage_priced_from_its_blocks(monkeypatch):
    """Without a pair scorer the decision is made on the real union blocks:
    where their pairs (and calls) are not clearly fewer than the exact
    graph's, the exact graph is computed, bit for bit."""
    feats = clustered_maps(200, seed=6)
    cands = candidate_classes(feats, 10, 'gap')
    blocks = union_blocks(torch.arange(200), cands, 200, 256)
    monkeypatch.setattr(graph_candidates, 'UNION_CALL_PAIRS', 0)
    ok, why = union_decision(feats, 200, 10, cosine, blocks)
    assert ok and 'union second stage' in why  # its pairs alone are cheap
    monkeypatch.setattr(graph_candidates, 'UNION_CALL_PAIRS', 10**6)
    ok, why = union_decision(feats, 200, 10, cosine, blocks)
    assert not ok and 'more than 1/1.5' in why
    monkeypatch.setattr(graph_candidates, 'MAX_CANDIDATE_FRACTION', 1.)
    matcher = CountingMatcher()
    nbrs, got = build_class_graph(feats, matcher, 4, num_candidates=10,
                                  candidate_fn=cosine,
                                  return_candidates=True)
    assert got is None and matcher.pairs == 200 * 200
    assert torch.equal(nbrs, build_class_graph(feats, cosine, 4))


# ------------------------------------------------- graphs within groups
def brute_force_within(features, k, groups):
    """Reference: full score matrix, the other groups' classes at -inf, self
    masked, python sort with ties to the smaller index."""
    s = cosine(features, features).tolist()
    out = []
    for i, row in enumerate(s):
        cand = sorted((j for j in range(len(row))
                       if j != i and groups[j] == groups[i]),
                      key=lambda j: (-row[j], j))
        out.append(cand[:k])
    return torch.tensor(out, dtype=torch.long)


#: three sources of 9, 14 and 11 classes, interleaved
GROUPS = torch.tensor([0] * 9 + [1] * 14 + [2] * 11)[torch.randperm(
    34, generator=torch.Generator().manual_seed(0))]


@pytest.mark.parametrize('block_size', [1, 4, 256])
def test_exact_within_groups_never_leaves_the_group(block_size):
    feats = clustered_maps(34, seed=7, groups=5)
    matcher = CountingMatcher()
    nbrs = build_class_graph(feats, matcher, 5, block_size=block_size,
                             groups=GROUPS)
    assert torch.equal(nbrs, brute_force_within(feats, 5, GROUPS.tolist()))
    assert (GROUPS[nbrs] == GROUPS[:, None]).all()
    # only the within-group pairs are scored
    counts = torch.bincount(GROUPS)
    assert matcher.pairs == int((counts**2).sum())
    # without groups the graph crosses them (the classes are clustered
    # across the groups)
    assert (GROUPS[build_class_graph(feats, cosine, 5)] !=
            GROUPS[:, None]).any()
    # the same as masking the full score matrix before the top-k
    assert torch.equal(
        class_graph_from_scores(cosine(feats, feats), 5, groups=GROUPS),
        nbrs)
    # groups given as a list or a numpy array
    assert torch.equal(build_class_graph(feats, cosine, 5,
                                         groups=GROUPS.tolist()), nbrs)


def test_rows_split_over_ranks_and_gathered_give_the_whole_graph():
    """What GraphSamplerHook does under DDP: each rank computes a share of
    the rows (the last one padded with class 0), the shares gathered in rank
    order equal the single-process graph, within groups too, exact and
    two-stage."""
    feats = clustered_maps(34, seed=8, groups=5)
    for opts in (dict(), dict(num_candidates=6, exact_fallback=False),
                 dict(num_candidates=6, exact_fallback=False,
                      pair_matcher=PairCosine())):
        whole = build_class_graph(feats, cosine, 5, groups=GROUPS, **opts)
        assert (GROUPS[whole] == GROUPS[:, None]).all()
        for world in (2, 3):
            chunk = -(-34 // world)
            parts = []
            for rank in range(world):
                mine = list(range(rank * chunk, min(34, (rank + 1) * chunk)))
                padded = mine + [0] * (chunk - len(mine))
                part = build_class_graph(feats, cosine, 5, rows=padded,
                                         block_size=3, groups=GROUPS,
                                         **opts)
                parts.append(part[:len(mine)])
            assert torch.equal(torch.cat(parts), whole), (opts, world)


def test_two_stage_within_groups():
    feats = clustered_maps(34, seed=9, groups=5)
    nbrs, cands = build_class_graph(feats, cosine, 4, num_candidates=6,
                                    return_candidates=True,
                                    exact_fallback=False, groups=GROUPS)
    assert cands.shape == (34, 6)
    # candidates and neighbours stay in the group; the neighbours are the
    # best re-scored candidates
    assert (GROUPS[cands] == GROUPS[:, None]).all()
    full = cosine(feats, feats)
    for i in range(34):
        assert i not in cands[i].tolist()
        cand = sorted(cands[i].tolist(), key=lambda j: (-full[i, j], j))
        assert nbrs[i].tolist() == cand[:4]
    # a fraction of C is taken of each group's classes (ceil(0.5 * n_g))
    _, cands = build_class_graph(feats, cosine, 3, num_candidates=0.5,
                                 return_candidates=True,
                                 exact_fallback=False, groups=GROUPS)
    assert cands is None  # 5, 7 and 6 candidates: no common width
    # with the exact fallback (tiny maps), the exact graph within groups
    nbrs, cands = build_class_graph(feats, cosine, 4, num_candidates=6,
                                    return_candidates=True, groups=GROUPS)
    assert cands is None
    assert torch.equal(nbrs, brute_force_within(feats, 4, GROUPS.tolist()))


def test_groups_errors_and_rerank():
    feats = clustered_maps(34, seed=10, groups=5)
    # group 0 has 9 classes: at most 8 neighbours within it
    assert build_class_graph(feats, cosine, 8, groups=GROUPS).shape == (34,
                                                                        8)
    with pytest.raises(ValueError, match=r'group 0 has 9 class\(es\).* 10'):
        build_class_graph(feats, cosine, 9, groups=GROUPS)
    with pytest.raises(ValueError, match='one per class'):
        build_class_graph(feats, cosine, 3, groups=GROUPS[:-1])
    with pytest.raises(ValueError, match='integers'):
        build_class_graph(feats, cosine, 3, groups=GROUPS.float())
    with pytest.raises(ValueError, match=r'group 1 has 1 class'):
        class_graph_from_scores(torch.rand(3, 3), 0, groups=[0, 1, 0])
    # no neighbours: nothing to check but the shapes
    assert build_class_graph(feats, cosine, 0, groups=GROUPS).shape == (34,
                                                                        0)
    # the re-ranked graph: re-ranked over all classes, neighbours within
    # the group, ranked by the re-ranked distance
    from mmreid_gs.engine.graph import reranked_class_graph
    scores = cosine(feats, feats) * 5
    nbrs = reranked_class_graph(scores, 4, k1=6, k2=3, groups=GROUPS)
    assert (GROUPS[nbrs] == GROUPS[:, None]).all()
    free = reranked_class_graph(scores, 33, k1=6, k2=3)
    for i in range(34):
        same = [j for j in free[i].tolist() if GROUPS[j] == GROUPS[i]]
        assert nbrs[i].tolist() == same[:4]

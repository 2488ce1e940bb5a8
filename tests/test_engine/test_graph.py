import pytest
import torch
import torch.nn.functional as F

from mmreid_gs.engine.graph import (build_class_graph, candidate_classes,
                                    class_graph_from_scores,
                                    compute_class_scores)


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
    feats = torch.randn(7, 3, 2, 2)
    full = compute_class_scores(feats, cosine, block_size=3)
    assert torch.allclose(full, cosine(feats, feats))
    assert torch.allclose(compute_class_scores(feats, cosine, rows=[4, 1]),
                          cosine(feats, feats)[[4, 1]])


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
    nbrs, cands = build_class_graph(feats, matcher, k, num_candidates=n,
                                    candidate_fn=candidate_fn,
                                    return_candidates=True)
    assert nbrs.shape == (60, k) and cands.shape == (60, n)
    assert matcher.pairs == 60 * n  # only the candidates are re-scored
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
    a = build_class_graph(feats, cosine, 3, num_candidates=0.25)
    b = build_class_graph(feats, cosine, 3, num_candidates=10)
    assert torch.equal(a, b)
    rows = torch.tensor([5, 0, 39])
    assert torch.equal(
        build_class_graph(feats, cosine, 3, num_candidates=10, rows=rows),
        b[rows])
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

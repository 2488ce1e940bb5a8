"""mmreid_gs.two_stage: the stages both the class graph and the shortlisted
test use, on hand-computed cases."""
import math

import pytest
import torch
import torch.nn.functional as F

from mmreid_gs.two_stage import (matcher_pair_macs, proxy_candidates,
                                 proxy_features, proxy_pair_macs,
                                 score_candidates, top_candidates,
                                 two_stage_cost_ratio, union_groups,
                                 union_pairs)


def cosine(q, g):
    return F.normalize(q.flatten(1), dim=1) @ F.normalize(g.flatten(1),
                                                          dim=1).t()


class IndexPairs:
    """Index-form pair scorer of :func:`cosine` that records its calls."""

    def __init__(self):
        self.calls = []

    def __call__(self, q, g, index=None):
        self.calls.append(len(q))
        return torch.stack(
            [cosine(q[i:i + 1], g[index[i]])[0] for i in range(len(q))])


def gathered_pairs(q, g):
    return torch.stack([cosine(q[i:i + 1], g[i])[0] for i in range(len(q))])


def test_top_candidates_orders_and_exclusion():
    s = torch.tensor([[0.1, 0.9, 0.5, 0.7], [0.8, 0.2, 0.6, 0.4]])
    assert top_candidates(s.clone(), 2).tolist() == [[1, 3], [0, 2]]
    assert top_candidates(s.clone(), 2, by_index=True).tolist() == [[1, 3],
                                                                   [0, 2]]
    # row 0 never proposes item 1, row 1 never item 0
    out = top_candidates(s.clone(), 2, exclude=torch.tensor([1, 0]))
    assert out.tolist() == [[3, 2], [2, 3]]
    out = top_candidates(s.clone(), 2, exclude=torch.tensor([1, 0]),
                         by_index=True)
    assert out.tolist() == [[2, 3], [2, 3]]


def test_proxy_candidates_in_blocks_equal_one_block():
    g = torch.Generator().manual_seed(0)
    feats = torch.randn(23, 4, 3, 2, generator=g)
    p = proxy_features(feats)
    whole = proxy_candidates(p, p, 5, block_rows=1000)
    assert torch.equal(proxy_candidates(p, p, 5, block_rows=4), whole)
    ref = (p @ p.t()).topk(5, dim=1).indices
    assert torch.equal(whole, ref)
    rows = torch.tensor([3, 7, 11])
    own = proxy_candidates(p, p, 5, rows=rows, exclude_self=True,
                           by_index=True, block_rows=2)
    sim = p @ p.t()
    sim[rows, rows] = -math.inf
    assert torch.equal(own, sim[rows].topk(5, dim=1).indices.sort(1).values)
    assert proxy_candidates(p, p, 5, rows=rows[:0]).shape == (0, 5)


def test_union_groups_by_best_item():
    # rows visited by their first item: 2 (0), 0 (1), 3 (5), 1 (6)
    lists = torch.tensor([[1, 2], [6, 7], [0, 1], [5, 6]])
    groups = union_groups(lists, 8, max_rows=64)
    # cap = 2 / 0.5 = 4 items: rows 2, 0 share {0, 1, 2}; row 3 would make 5
    assert [(r.tolist(), u.tolist()) for r, u in groups] == [
        ([2, 0], [0, 1, 2]), ([3, 1], [5, 6, 7])]
    assert union_pairs(groups) == 2 * 3 + 2 * 3
    # one row a group at most
    groups = union_groups(lists, 8, max_rows=1)
    assert [r.tolist() for r, _ in groups] == [[2], [0], [3], [1]]


def test_union_groups_walk_the_candidate_graph():
    # rows are classes 0..5; 0's candidates are 4 and 5, which come next
    lists = torch.tensor([[4, 5], [2, 3], [1, 3], [1, 2], [0, 5], [0, 4]])
    groups = union_groups(lists, 6, max_rows=8, row_items=torch.arange(6))
    assert [(r.tolist(), u.tolist()) for r, u in groups] == [
        ([0, 4, 5], [0, 4, 5]), ([1, 2, 3], [1, 2, 3])]
    for rows, union in groups:
        # at least MIN_UNION_EFFICIENCY of the block's pairs are list pairs
        assert rows.numel() * 2 >= 0.5 * rows.numel() * union.numel()


@pytest.mark.parametrize('scorer', ['index', 'gathered', 'union'])
def test_score_candidates_every_path(scorer):
    g = torch.Generator().manual_seed(1)
    gallery = torch.randn(30, 4, 2, 2, generator=g)
    query = torch.randn(9, 4, 2, 2, generator=g)
    lists = torch.stack([torch.randperm(30, generator=g)[:6]
                         for _ in range(9)])
    ref = cosine(query, gallery).gather(1, lists)
    pairs = dict(index=IndexPairs(), gathered=gathered_pairs,
                 union=None)[scorer]
    out = score_candidates(query, gallery, lists, cosine, pairs,
                           gather_bytes=1, index_rows=4)
    torch.testing.assert_close(out, ref)
    if scorer == 'index':
        assert pairs.calls == [4, 4, 1]
    # rows given as indices into the query features
    rows = torch.tensor([8, 0, 3])
    out = score_candidates(query, gallery, lists[:3], cosine, pairs,
                           query_rows=rows)
    torch.testing.assert_close(out,
                               cosine(query[rows], gallery).gather(
                                   1, lists[:3]))


def test_score_candidates_checks_the_shape():
    q, g = torch.randn(3, 4), torch.randn(5, 4)
    with pytest.raises(ValueError, match=r'matcher \(match\) returned'):
        score_candidates(q, g, torch.zeros(3, 2, dtype=torch.long),
                         lambda a, b: torch.zeros(len(a)))


def test_cost_model_numbers():
    assert matcher_pair_macs((64, 24, 8)) == 64 * 192**2 + 512
    assert matcher_pair_macs((128, )) == 128 + 512
    assert proxy_pair_macs((64, 24, 8), 'gap') == 64 + 512
    assert proxy_pair_macs((64, 24, 8), 'pooled') == 2.0 * 64 * 48**2 + 512
    assert proxy_pair_macs((64, 24, 8), cosine) is None
    ratio = two_stage_cost_ratio((64, 24, 8), 1000, 50, 'gap')
    assert ratio == pytest.approx(576 / (64 * 192**2 + 512) + 3.0 * 0.05)

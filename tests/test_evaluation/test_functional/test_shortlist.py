"""Shortlisted evaluation, the pure functions: the pooled-map proxy, the
shortlist, the exact scores of the shortlist (pair scorer and union paths),
the combined scores and the recall of the exact top-k."""
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import feature_maps

from mmreid_gs.evaluation.functional import (check_refine, check_shortlist,
                                             combine_scores,
                                             proxy_features,
                                             score_shortlist,
                                             shortlist_indices,
                                             shortlist_recall,
                                             shortlisted_scores)
from mmreid_gs.evaluation.functional.shortlist import union_groups
from mmreid_gs.models.heads import QAConvHead
from mmreid_gs.two_stage import (pooled_pair_scores, pooled_proxy_features,
                                 pooled_proxy_scores)
from mmreid_gs.utils.errors import ConfigError

C, H, W = 16, 4, 2


@pytest.fixture(scope='module')
def head():
    torch.manual_seed(0)
    head = QAConvHead(C, H, W).eval()
    with torch.no_grad():  # trained-looking BatchNorm statistics
        head.bn.running_mean.fill_(0.5)
        head.bn.running_var.fill_(0.04)
    return head


@pytest.fixture(scope='module')
def maps():
    return feature_maps(11, C, H, W, seed=1), feature_maps(37, C, H, W, seed=2)


# --------------------------------------------------------------- checks
@pytest.mark.parametrize('bad', [0, -3, 2.5, True, '10', [5]])
def test_bad_shortlist_is_a_config_error_naming_key_and_value(bad):
    with pytest.raises(ConfigError) as err:
        check_shortlist(bad, 'test_cfg.shortlist')
    assert 'test_cfg.shortlist' in str(err.value)
    assert repr(bad) in str(err.value)


def test_good_shortlist_values():
    assert check_shortlist(None) is None
    assert check_shortlist(1) == 1
    assert check_shortlist(np.int64(500)) == 500


# ---------------------------------------------------------------- proxy
def test_proxy_is_the_normalised_average_of_the_locations():
    maps = torch.zeros(2, 3, 1, 2)
    maps[0, :, 0, 0] = torch.tensor([1., 0., 0.])
    maps[0, :, 0, 1] = torch.tensor([0., 1., 0.])
    maps[1, :, 0, 0] = torch.tensor([0., 0., 2.])
    out = proxy_features(maps)
    s = 2**-0.5
    torch.testing.assert_close(out, torch.tensor([[s, s, 0.], [0., 0., 1.]]))
    # global vectors are only normalised
    vec = torch.tensor([[3., 4.]])
    torch.testing.assert_close(proxy_features(vec), torch.tensor([[.6, .8]]))
    assert proxy_features(maps.double()).dtype == torch.float32


def test_shortlist_indices_blockwise_by_decreasing_cosine():
    gallery = F.normalize(torch.tensor([[1., 0.], [0., 1.], [1., 1.],
                                        [-1., 0.], [1., .2]]), dim=1)
    query = F.normalize(torch.tensor([[1., 0.5], [0., 1.], [-1., -0.2]]),
                        dim=1)
    idx = shortlist_indices(query, gallery, 2, block_rows=2)
    assert idx.tolist() == [[4, 2], [1, 2], [3, 1]]
    # N beyond the gallery: every item
    assert shortlist_indices(query, gallery, 99).shape == (3, 5)


# ------------------------------------------------------------- combined
def test_combined_scores_by_hand():
    proxy = torch.tensor([[0.9, 0.1, 0.5, -0.3], [0.2, 0.8, 1.0, 0.0]])
    shortlist = torch.tensor([[0, 2], [2, 1]])
    exact = torch.tensor([[-4., 3.], [10., 12.]])
    out = combine_scores(proxy.clone(), shortlist, exact)
    # exact where shortlisted; low - max(1, |low|) * (2 - p) elsewhere
    expected = torch.tensor([[-4., -4. - 4. * 1.9, 3., -4. - 4. * 2.3],
                             [10. - 10. * 1.8, 12., 10., 10. - 10. * 2.]])
    torch.testing.assert_close(out, expected)


def test_combined_scores_survive_huge_and_tiny_magnitudes():
    proxy = torch.tensor([[0.3, 0.2, 0.1, 1.0000001]])
    for low in (1e-3, -1e-3, 1e6, -1e6):
        exact = torch.tensor([[low]])
        out = combine_scores(proxy.clone(), torch.tensor([[3]]), exact)
        assert out[0, 3] == low
        assert (out[0, :3] < low).all()
        assert out[0, 0] > out[0, 1] > out[0, 2]


def _check_rows(scores, shortlist, exact, proxy):
    """Every row: shortlisted entries are the exact scores and come first;
    the rest follow in proxy order."""
    for i in range(scores.shape[0]):
        row, idx = scores[i], shortlist[i]
        torch.testing.assert_close(row[idx], exact[i, idx], rtol=1e-5,
                                   atol=1e-5)
        rest = torch.ones(row.numel(), dtype=torch.bool)
        rest[idx] = False
        assert row[idx].min() > row[rest].max()
        order = torch.argsort(proxy[i, rest], descending=True)
        assert (row[rest][order].diff() <= 0).all()
        # the shortlist is the proxy's best, by decreasing proxy
        assert proxy[i, idx].min() >= proxy[i, rest].max()
        assert (proxy[i, idx].diff() <= 0).all()


@pytest.mark.parametrize('path', ['match_pairs', 'union'])
def test_shortlisted_scores(head, maps, path):
    query, gallery = maps
    pair = head.match_pairs if path == 'match_pairs' else None
    with torch.no_grad():
        exact = head.match(query, gallery)
        scores, shortlist = shortlisted_scores(query, gallery, 6, head.match,
                                               pair, block_rows=4)
    assert scores.shape == (11, 37) and scores.dtype == torch.float32
    assert shortlist.shape == (11, 6) and shortlist.dtype == torch.long
    proxy = proxy_features(query) @ proxy_features(gallery).t()
    _check_rows(scores, shortlist, exact, proxy)


def test_scoring_paths_agree_and_take_the_pair_scorer(head, maps):
    query, gallery = maps
    calls = dict(match=0, pairs=0)

    def match(q, g):
        calls['match'] += 1
        return head.match(q, g)

    def pairs(q, g):
        calls['pairs'] += 1
        assert g.shape[:2] == (q.shape[0], 5)
        return head.match_pairs(q, g)

    shortlist = shortlist_indices(proxy_features(query),
                                  proxy_features(gallery), 5)
    with torch.no_grad():
        a = score_shortlist(query, gallery, shortlist, match, pairs)
        assert calls == dict(match=0, pairs=1)
        b = score_shortlist(query, gallery, shortlist, match)
        assert calls['match'] >= 1 and calls['pairs'] == 1
        # small gathers: several calls, same scores
        c = score_shortlist(query, gallery, shortlist, match, pairs,
                            gather_bytes=1)
        assert calls['pairs'] == 1 + 11
        ref = head.match(query, gallery).gather(1, shortlist)
    for out in (a, b, c):
        torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)


def test_full_shortlist_is_the_matcher(head, maps):
    query, gallery = maps
    with torch.no_grad():
        scores, shortlist = shortlisted_scores(query, gallery, 37, head.match)
        exact = head.match(query, gallery)
    assert torch.equal(scores, exact)
    assert (shortlist == torch.arange(37)).all()


def test_row_split_gives_the_same_rows(head, maps):
    """The rows are independent: the two halves of a distributed split
    (and any block size) give the rows of the whole."""
    query, gallery = maps
    gp = proxy_features(gallery)
    with torch.no_grad():
        whole, idx = shortlisted_scores(query, gallery, 6, head.match,
                                        head.match_pairs, gallery_proxy=gp)
        parts = [shortlisted_scores(query[s], gallery, 6, head.match,
                                    head.match_pairs, gallery_proxy=gp,
                                    block_rows=2)
                 for s in (slice(0, 6), slice(6, 11))]
    assert torch.equal(torch.cat([p[1] for p in parts]), idx)
    torch.testing.assert_close(torch.cat([p[0] for p in parts]), whole,
                               rtol=1e-6, atol=1e-6)


def test_works_under_inference_mode_and_writes_into_out(head, maps):
    query, gallery = maps
    out = torch.full((11, 37), float('nan'))
    with torch.inference_mode():
        scores, idx = shortlisted_scores(query, gallery, 4, head.match,
                                         head.match_pairs, out=out)
        union, _ = shortlisted_scores(query, gallery, 4, head.match)
    assert scores is out and not torch.isnan(out).any()
    torch.testing.assert_close(union, out, rtol=1e-5, atol=1e-5)


def test_wrong_shapes_are_errors(head, maps):
    query, gallery = maps
    with pytest.raises(ValueError, match=r'pair_matcher .* expected scores '
                       r'of shape \(11, 3\)'):
        shortlisted_scores(query, gallery, 3, head.match,
                           lambda q, g: torch.zeros(len(q), 2))
    with pytest.raises(ValueError, match='out has shape'):
        shortlisted_scores(query, gallery, 3, head.match,
                           out=torch.empty(2, 2))
    with pytest.raises(ValueError, match='num'):
        shortlisted_scores(query, gallery, 0, head.match)


def test_union_groups_cover_every_row_once():
    gen = torch.Generator().manual_seed(0)
    shortlist = torch.stack([torch.randperm(50, generator=gen)[:6]
                             for _ in range(40)])
    shortlist[10:20] = shortlist[10]  # one identity: equal shortlists
    groups = union_groups(shortlist, 50, max_union=20, max_rows=8)
    rows = torch.cat([r for r, _ in groups])
    assert sorted(rows.tolist()) == list(range(40))
    for r, union in groups:
        assert len(r) <= 8 and 6 <= len(union) <= max(12, 6)
        assert (union.diff() > 0).all()
        assert set(shortlist[r].reshape(-1).tolist()) == set(union.tolist())
    # the ten equal shortlists share groups of up to 8 rows
    assert max(len(r) for r, _ in groups) == 8


# --------------------------------------------------------------- recall
def test_recall_by_hand():
    exact = np.array([[5., 4., 3., 2., 1.],
                      [0., 9., 9., 1., 7.]], dtype=np.float32)
    shortlist = np.array([[0, 2], [2, 4]])
    # query 0: top-1 {0} kept, top-2 {0, 1}: 1 of 2; query 1: top-1 is the
    # smaller index of the tie (1, not kept), top-2 {1, 2}: 1 of 2
    assert shortlist_recall(exact, shortlist, 1) == pytest.approx(0.5)
    assert shortlist_recall(exact, shortlist, 2) == pytest.approx(0.5)
    np.testing.assert_allclose(
        shortlist_recall(torch.from_numpy(exact), torch.from_numpy(shortlist),
                         3, per_query=True), [2 / 3, 2 / 3])
    # k beyond the gallery: over g
    assert shortlist_recall(exact, shortlist, 50) == pytest.approx(0.4)
    with pytest.raises(ValueError, match='k must be'):
        shortlist_recall(exact, shortlist, 0)
    with pytest.raises(ValueError, match='same rows'):
        shortlist_recall(exact, shortlist[:1], 1)


def test_full_top1_recall_keeps_the_exact_best(head, maps):
    """A query whose exact best item survived the shortlist ranks it first
    in the combined scores too."""
    query, gallery = maps
    with torch.no_grad():
        exact = head.match(query, gallery)
        scores, idx = shortlisted_scores(query, gallery, 12, head.match)
    kept = shortlist_recall(exact, idx, 1, per_query=True) == 1
    assert kept.any()
    np.testing.assert_array_equal(scores[kept].argmax(dim=1),
                                  exact[kept].argmax(dim=1))


# ------------------------------------------------------------ the cascade
@pytest.mark.parametrize('bad', [0, -1, 2.5, True, '40'])
def test_bad_refine_is_a_config_error_naming_key_and_value(bad):
    with pytest.raises(ConfigError,
                       match=r'test_cfg.shortlist_refine must be .*' +
                       re.escape(repr(bad))):
        check_refine(bad, 10)
    assert check_refine(None, 10) is None and check_refine(40, 10) == 40


def test_refine_not_above_the_shortlist_is_a_config_error():
    with pytest.raises(ConfigError, match=r'shortlist_refine=10 must be '
                       r'larger than the shortlist N=10'):
        check_refine(10, 10)


def test_pooled_pair_scores_are_the_index_form_of_the_pooled_proxy(maps):
    query, gallery = maps
    q, g = pooled_proxy_features(query), pooled_proxy_features(gallery)
    full = pooled_proxy_scores(q, g)
    lists = torch.stack([torch.randperm(37, generator=torch.Generator(
        ).manual_seed(i))[:9] for i in range(11)])
    with torch.inference_mode():
        pairs = pooled_pair_scores(q, g, lists)
    torch.testing.assert_close(pairs, full.gather(1, lists), rtol=1e-5,
                               atol=1e-6)


def test_cascade_keeps_the_pooled_best_of_the_cosine_candidates(head, maps):
    query, gallery = maps
    cos = proxy_features(query) @ proxy_features(gallery).t()
    pooled = pooled_proxy_scores(pooled_proxy_features(query),
                                 pooled_proxy_features(gallery))
    with torch.inference_mode():
        exact = head.match(query, gallery)
        scores, lists = shortlisted_scores(query, gallery, 4, head.match,
                                           head.match_pairs, refine=12,
                                           block_rows=3)
        plain, _ = shortlisted_scores(query, gallery, 4, head.match,
                                      head.match_pairs, refine=4)
        ref, _ = shortlisted_scores(query, gallery, 4, head.match,
                                    head.match_pairs)
    torch.testing.assert_close(plain, ref)  # refine <= N: no cascade
    wide = cos.topk(12, dim=1).indices
    for i in range(11):
        want = wide[i][pooled[i, wide[i]].argsort(descending=True)[:4]]
        assert lists[i].tolist() == want.tolist()
        row, idx = scores[i], lists[i]
        torch.testing.assert_close(row[idx], exact[i, idx], rtol=1e-5,
                                   atol=1e-5)
        # the tiers: exact shortlist > the other cascade candidates by
        # their pooled scores > the rest of the gallery by the cosine
        middle = torch.tensor([j for j in wide[i].tolist()
                               if j not in idx.tolist()])
        rest = torch.ones(37, dtype=torch.bool)
        rest[wide[i]] = False
        assert row[idx].min() > row[middle].max()
        assert row[middle].min() > row[rest].max()
        assert torch.equal(middle[row[middle].argsort(descending=True)],
                           middle[pooled[i, middle].argsort(
                               descending=True)])
        r = rest.nonzero()[:, 0]
        assert torch.equal(r[row[r].argsort(descending=True)],
                           r[cos[i, r].argsort(descending=True)])

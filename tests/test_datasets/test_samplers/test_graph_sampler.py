import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers import LabelDataset

from mmreid_gs.datasets.samplers import GraphSampler


class InfoDataset:
    """Labels only through get_data_info (no get_gt_labels)."""

    def __init__(self, labels):
        self.labels = list(labels)

    def __len__(self):
        return len(self.labels)

    def get_data_info(self, i):
        return dict(img_path=f'{i}.jpg', gt_label=self.labels[i])


def counts_to_labels(counts):
    return np.repeat(np.arange(len(counts)), counts)


def batches_of(sampler):
    idx = np.array(list(sampler), dtype=np.int64)
    assert len(idx) == len(sampler)
    return idx.reshape(-1, sampler.batch_size)


def batch_classes(sampler, batch):
    """Classes of a batch, one per block of K; checks the blocks."""
    lab = sampler.labels[batch].reshape(-1, sampler.num_instances)
    assert (lab == lab[:, :1]).all(), 'a K-block mixes classes'
    return lab[:, 0]


def ring_graph(num_classes, k):
    return np.array([[(c + j) % num_classes for j in range(1, k + 1)]
                     for c in range(num_classes)])


COUNTS = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]


def test_len_fixed_and_pk_batches():
    labels = counts_to_labels(COUNTS)
    s = GraphSampler(LabelDataset(labels), batch_size=8, num_instances=2,
                     seed=0)
    assert s.num_classes == 10 and s.num_classes_per_batch == 4
    assert s.num_batches == 10 and len(s) == 80
    lengths = []
    for epoch in range(3):
        if epoch == 2:
            s.set_graph(ring_graph(10, 3))
        s.set_epoch(epoch)
        b = batches_of(s)
        lengths.append(len(s))
        centres = []
        for batch in b:
            cls = batch_classes(s, batch)
            assert len(set(cls.tolist())) == 4  # P distinct classes
            centres.append(cls[0])
        assert sorted(centres) == list(range(10))  # every class a centre
    assert lengths == [80, 80, 80]


def test_graph_batches_follow_graph():
    labels = counts_to_labels([4] * 12)
    s = GraphSampler(LabelDataset(labels), batch_size=12, num_instances=3,
                     seed=3)
    rng = np.random.default_rng(0)
    graph = np.stack([
        rng.choice(np.delete(np.arange(12), c), 3, replace=False)
        for c in range(12)
    ])
    s.set_graph(graph)
    assert np.array_equal(s.graph, graph)
    b = batches_of(s)
    assert b.shape == (12, 12)
    for batch in b:
        cls = batch_classes(s, batch)
        assert np.array_equal(cls[1:], graph[cls[0]])
    # a class with >= K images never repeats an image inside a batch
    for batch in b:
        for blk in batch.reshape(-1, 3):
            assert len(set(blk.tolist())) == 3


def test_cycling_balanced_and_small_classes_repeat():
    counts = [1, 2, 5, 7]
    labels = counts_to_labels(counts)
    s = GraphSampler(LabelDataset(labels), batch_size=6, num_instances=3,
                     seed=1)
    used = np.zeros(len(labels), dtype=np.int64)
    for epoch in range(6):
        s.set_epoch(epoch)
        for batch in batches_of(s):
            for blk in batch.reshape(-1, 3):
                c = labels[blk[0]]
                if counts[c] == 1:
                    assert (blk == blk[0]).all()  # the one image K times
                elif counts[c] >= 3:
                    assert len(set(blk.tolist())) == 3
                np.add.at(used, blk, 1)
                u = used[labels == c]
                # cycling: every image used once before any is used again
                assert u.max() - u.min() <= 1


def test_shuffle_false_is_ordered():
    labels = counts_to_labels([2, 2, 2, 2, 2])
    s = GraphSampler(LabelDataset(labels), batch_size=4, num_instances=2,
                     shuffle=False, seed=0)
    b = batches_of(s)
    assert b.tolist()[:2] == [[0, 1, 2, 3], [2, 3, 4, 5]]
    assert batch_classes(s, b[4]).tolist() == [4, 0]


def test_determinism_seed_epoch_and_reiteration():
    labels = counts_to_labels([3, 5, 2, 6, 4, 1, 7])

    def run(seed, epochs, graph_from=None):
        s = GraphSampler(LabelDataset(labels), 6, 2, seed=seed)
        out = []
        for e in epochs:
            if graph_from is not None and e >= graph_from:
                s.set_graph(ring_graph(7, 2))
            s.set_epoch(e)
            out.append(list(s))
        return out

    a, b = run(5, range(4), 2), run(5, range(4), 2)
    assert a == b
    assert a[0] != a[1]
    assert run(6, range(1)) != run(5, range(1))
    s = GraphSampler(LabelDataset(labels), 6, 2, seed=5)
    first = list(s)
    assert list(s) == first  # same epoch, no new graph: same indices


def test_state_dict_resume_continues_identically():
    labels = counts_to_labels([3, 5, 2, 6, 4, 1, 7, 2])
    ref = GraphSampler(LabelDataset(labels), 8, 2, seed=11)
    expected = []
    for e in range(4):
        ref.set_epoch(e)
        if e >= 1:
            ref.set_graph(ring_graph(8, 3)[:, ::(-1) ** e])
        expected.append(list(ref))

    s = GraphSampler(LabelDataset(labels), 8, 2, seed=11)
    s.set_epoch(0)
    assert list(s) == expected[0]
    s.set_epoch(1)
    s.set_graph(ring_graph(8, 3)[:, ::-1])
    assert list(s) == expected[1]
    state = s.state_dict()
    assert all(
        isinstance(v, (int, torch.Tensor)) for v in state.values()
        if v is not None)
    resumed = GraphSampler(LabelDataset(labels), 8, 2, seed=99)
    resumed.load_state_dict(state)
    assert resumed.seed == 11 and resumed.epoch == 1
    assert np.array_equal(resumed.graph, ring_graph(8, 3)[:, ::-1])
    for e in (2, 3):
        resumed.set_epoch(e)
        resumed.set_graph(ring_graph(8, 3)[:, ::(-1) ** e])
        assert list(resumed) == expected[e]


def test_load_state_dict_rejects_other_dataset():
    s = GraphSampler(LabelDataset(counts_to_labels([2, 3, 4])), 4, 2, seed=0)
    other = GraphSampler(LabelDataset(counts_to_labels([3, 3, 3])), 4, 2,
                         seed=0)
    with pytest.raises(ValueError, match='class 0'):
        other.load_state_dict(s.state_dict())
    bigger = GraphSampler(LabelDataset(counts_to_labels([2, 3, 4, 1])), 4, 2)
    with pytest.raises(ValueError, match='3 classes, the dataset has 4'):
        bigger.load_state_dict(s.state_dict())


@pytest.mark.parametrize('world_size', [2, 3, 4])
@pytest.mark.parametrize('with_graph', [False, True])
def test_ddp_disjoint_whole_batches(world_size, with_graph):
    labels = counts_to_labels([2, 3, 4, 5, 2, 3, 4, 5, 6, 1])
    full = GraphSampler(LabelDataset(labels), 6, 2, seed=4)
    ranks = [
        GraphSampler(LabelDataset(labels), 6, 2, seed=4, rank=r,
                     world_size=world_size) for r in range(world_size)
    ]
    for s in [full] + ranks:
        s.set_epoch(3)
        if with_graph:
            s.set_graph(ring_graph(10, 2))
    ref = batches_of(full)
    per_rank = [batches_of(s) for s in ranks]
    n = math.ceil(10 / world_size)
    assert all(len(b) == n for b in per_rank)
    assert all(len(s) == n * 6 for s in ranks)
    padded = np.concatenate([ref, ref])[:n * world_size]
    for r, b in enumerate(per_rank):
        assert np.array_equal(b, padded[r::world_size])
    # the first C batches over all ranks (batch j on rank j % W) are the
    # epoch's C batches: every class a centre exactly once
    order = np.stack([per_rank[j % world_size][j // world_size]
                      for j in range(10)])
    assert np.array_equal(order, ref)
    assert sorted(batch_classes(full, b)[0] for b in order) == list(range(10))


def test_ddp_without_round_up():
    labels = counts_to_labels([2] * 7)
    ranks = [
        GraphSampler(LabelDataset(labels), 4, 2, seed=0, round_up=False,
                     rank=r, world_size=3) for r in range(3)
    ]
    assert [s.num_batches for s in ranks] == [3, 2, 2]
    allb = np.concatenate([batches_of(s) for s in ranks])
    assert len(allb) == 7
    full = GraphSampler(LabelDataset(labels), 4, 2, seed=0)
    assert sorted(map(tuple, allb.tolist())) == sorted(
        map(tuple, batches_of(full).tolist()))


def test_get_data_info_fallback_and_registry():
    from mmreid_gs.registry import DATA_SAMPLERS
    labels = [1, 0, 2, 1, 0, 2, 2]
    s = DATA_SAMPLERS.build(
        dict(type='GraphSampler', batch_size=4, num_instances=2, seed=0),
        default_args=dict(dataset=InfoDataset(labels)))
    assert isinstance(s, GraphSampler)
    assert s.num_classes == 3
    assert [c.tolist() for c in s.class_indices] == [[1, 4], [0, 3],
                                                     [2, 5, 6]]
    assert len(list(s)) == 12


def test_seed_none_uses_sync_random_seed(monkeypatch):
    import mmreid_gs.datasets.samplers.graph_sampler as mod
    monkeypatch.setattr(mod, 'sync_random_seed', lambda: 1234)
    s = GraphSampler(LabelDataset([0, 1, 1]), 2, 1)
    assert s.seed == 1234


@pytest.mark.parametrize('labels, kwargs, match', [
    ([0, 2, 2, 0], {}, r'0\.\.C-1.*missing e\.g\. \[1\]'),
    ([1, 1, 2, 2], {}, '0..C-1'),
    ([-2, 0, 1], {}, '0..C-1'),  # -1: left out (outliers)
    ([-1, -1], {}, 'nothing to sample'),
    ([0, 1, 1, 0], dict(batch_size=6, num_instances=2), 'fewer than P'),
    ([0, 1], dict(batch_size=5, num_instances=2), 'multiple of'),
    ([0, 1], dict(batch_size=4, num_instances=0), 'num_instances'),
    ([], {}, 'no labelled'),
    ([0.5, 1.0], {}, 'integer'),
])
def test_errors(labels, kwargs, match):
    args = dict(batch_size=2, num_instances=1)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        GraphSampler(_RawDataset(labels), **args)


class _RawDataset(LabelDataset):

    def __init__(self, labels):
        self.labels = np.asarray(labels)


def test_set_graph_errors():
    s = GraphSampler(LabelDataset(counts_to_labels([2] * 5)), 6, 2, seed=0)
    with pytest.raises(ValueError, match=r'shape \[C, P-1\] = \[5, 2\]'):
        s.set_graph(np.zeros((5, 3), dtype=int))
    with pytest.raises(ValueError, match=r'in \[0, 4\]; row 1'):
        s.set_graph(np.array([[1, 2], [5, 0], [0, 1], [0, 1], [0, 1]]))
    with pytest.raises(ValueError, match='must not contain class i; row 2'):
        s.set_graph(np.array([[1, 2], [2, 0], [2, 1], [0, 1], [0, 1]]))
    with pytest.raises(ValueError, match='distinct; row 3'):
        s.set_graph(np.array([[1, 2], [2, 0], [0, 1], [1, 1], [0, 1]]))
    with pytest.raises(ValueError, match='integer'):
        s.set_graph(np.zeros((5, 2)) + 0.5)
    s.set_graph(torch.tensor(ring_graph(5, 2)))
    assert np.array_equal(s.graph, ring_graph(5, 2))
    s.set_graph(None)
    assert s.graph is None


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(
    counts=st.lists(st.integers(1, 6), min_size=1, max_size=12),
    k=st.integers(1, 4),
    p=st.integers(1, 5),
    world_size=st.integers(1, 4),
    round_up=st.booleans(),
    use_graph=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_properties(counts, k, p, world_size, round_up, use_graph, seed):
    num_classes = len(counts)
    p = min(p, num_classes)
    labels = counts_to_labels(counts)
    graph = None
    if use_graph:
        rng = np.random.default_rng(seed)
        graph = np.stack([
            rng.choice(np.delete(np.arange(num_classes), c), p - 1,
                       replace=False) for c in range(num_classes)
        ]).reshape(num_classes, p - 1)
    samplers = [
        GraphSampler(LabelDataset(labels), p * k, k, seed=seed,
                     round_up=round_up, rank=r, world_size=world_size)
        for r in range(world_size)
    ]
    centres_all = []
    for epoch in range(2):
        per_rank = []
        for s in samplers:
            s.set_epoch(epoch)
            if graph is not None:
                s.set_graph(graph)
            length = len(s)
            b = batches_of(s)
            assert len(s) == length == len(b) * p * k
            per_rank.append(b)
            for batch in b:
                cls = batch_classes(s, batch)
                assert len(set(cls.tolist())) == p
                if graph is not None:
                    assert np.array_equal(cls[1:], graph[cls[0]])
                for blk in batch.reshape(-1, k):
                    c = labels[blk[0]]
                    assert len(set(blk.tolist())) == min(k, counts[c])
        total = sum(len(b) for b in per_rank)
        if round_up:
            assert total == math.ceil(num_classes / world_size) * world_size
        else:
            assert total == num_classes
        centres = [
            samplers[0].labels[per_rank[j % world_size][j // world_size][0]]
            for j in range(num_classes)
        ]
        assert sorted(centres) == list(range(num_classes))
        centres_all.append(centres)
    assert all(len(s) == len(samplers[0]) or not round_up for s in samplers)

"""GraphSampler(batches_per_epoch=N): a fixed epoch length at any number of
classes, with a graph and without one (PK), under DDP too; None keeps the
paper's C batches and its indices."""
import math

import numpy as np
import pytest

from helpers import LabelDataset

from mmreid_gs.datasets.samplers import GraphSampler


C, B, K = 23, 16, 4  # P = 4 classes a batch
# 1..5 images a class: classes with fewer than K images repeat images
LABELS = np.repeat(np.arange(C), 1 + np.arange(C) % 5)


def ring_graph(num_classes, k):
    return np.array([[(c + j) % num_classes for j in range(1, k + 1)]
                     for c in range(num_classes)])


def epoch_batches(sampler, epoch):
    sampler.set_epoch(epoch)
    idx = np.array(list(sampler), dtype=np.int64)
    assert len(idx) == len(sampler)
    return idx.reshape(-1, sampler.batch_size)


def centres(sampler, batches):
    """The first class of every batch (its first K images)."""
    first = sampler.labels[batches[:, :K]]
    assert (first == first[:, :1]).all()
    return first[:, 0]


def make(n=None, **kwargs):
    return GraphSampler(LabelDataset(LABELS), batch_size=B, num_instances=K,
                        seed=kwargs.pop('seed', 7), batches_per_epoch=n,
                        **kwargs)


@pytest.mark.parametrize('n', [5, C, 50])
@pytest.mark.parametrize('graph', [False, True])
def test_length_is_fixed_across_epochs(n, graph):
    sampler = make(n)
    assert sampler.total_batches == n and len(sampler) == n * B
    for epoch in range(4):
        if graph and epoch == 1:  # PK first, then the graph
            sampler.set_graph(ring_graph(C, 3))
        batches = epoch_batches(sampler, epoch)
        assert batches.shape == (n, B) and len(sampler) == n * B
        got = centres(sampler, batches)
        if n <= C:  # drawn without replacement: distinct centres
            assert len(set(got.tolist())) == n
        else:  # cycling: every class once per pass of C centres
            for start in range(0, n - C + 1, C):
                assert sorted(got[start:start + C].tolist()) == list(
                    range(C))
            counts = np.bincount(got, minlength=C)
            assert counts.min() >= n // C and counts.max() <= math.ceil(
                n / C)
        if graph and epoch >= 1:
            ring = ring_graph(C, 3)
            for row, c in zip(batches, got):
                classes = sampler.labels[row].reshape(-1, K)[:, 0]
                assert classes.tolist() == [c] + ring[c].tolist()


def test_centres_differ_between_epochs_and_seeds():
    sampler = make(8)
    a = centres(sampler, epoch_batches(sampler, 0))
    b = centres(sampler, epoch_batches(sampler, 1))
    assert a.tolist() != b.tolist()
    other = make(8, seed=8)
    assert centres(other, epoch_batches(other, 0)).tolist() != a.tolist()


def test_none_is_c_batches_and_n_equal_c_gives_the_same_indices():
    for shuffle in (True, False):
        ref, same = make(None, shuffle=shuffle), make(C, shuffle=shuffle)
        assert ref.total_batches == C and len(ref) == len(same) == C * B
        for epoch in range(3):
            if epoch == 2:
                ref.set_graph(ring_graph(C, 3))
                same.set_graph(ring_graph(C, 3))
            assert np.array_equal(epoch_batches(ref, epoch),
                                  epoch_batches(same, epoch))


def test_not_shuffled_walks_through_the_classes():
    sampler = make(10, shuffle=False)
    got = [centres(sampler, epoch_batches(sampler, e)).tolist()
           for e in range(3)]
    walk = [c % C for c in range(30)]
    assert got == [walk[:10], walk[10:20], walk[20:30]]


@pytest.mark.parametrize('round_up', [True, False])
@pytest.mark.parametrize('n', [10, 50])
def test_distributed_length_is_fixed(n, round_up):
    world = 3
    ranks = [make(n, rank=r, world_size=world, round_up=round_up)
             for r in range(world)]
    full = make(n)
    for epoch in range(3):
        if epoch == 1:
            for s in ranks + [full]:
                s.set_graph(ring_graph(C, 3))
        rows = full_rows = epoch_batches(full, epoch)
        parts = [epoch_batches(s, epoch) for s in ranks]
        for r, (s, part) in enumerate(zip(ranks, parts)):
            expect = math.ceil(n / world) if round_up else len(
                range(r, n, world))
            assert s.num_batches == expect and len(part) == expect
            assert len(s) == expect * B
            # whole batches rank, rank + W, ... of the one epoch list
            idx = np.arange(r, expect * world if round_up else n, world) % n
            assert np.array_equal(part, rows[idx])
        # every batch of the epoch is trained on by one rank
        seen = {tuple(b) for p in parts for b in p}
        assert seen >= {tuple(b) for b in full_rows}


@pytest.mark.parametrize('bad', [0, -3, 2.5, True, '10'])
def test_bad_value_is_named(bad):
    with pytest.raises(ValueError, match='batches_per_epoch.*' + repr(
            bad).replace('.', r'\.')):
        make(bad)

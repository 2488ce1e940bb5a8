"""DepthFirstGraphSampler: batches grown by a depth-first walk of the class
graph (nearest neighbour first, a class once a batch), K images a class in
chunks round-robin over its cameras, a fixed length, whole-batch DDP
shards."""
import math

import numpy as np
import pytest
import torch

from helpers import LabelDataset

from mmreid_gs.datasets.samplers import (DepthFirstGraphSampler,
                                         GraphSampler,
                                         missing_graph_sampler_members)
from mmreid_gs.datasets.samplers.depth_first_graph_sampler import \
    camera_round_robin

B, K = 16, 4  # P = 4 classes a batch


class CamDataset(LabelDataset):
    """Labels and cameras (``get_cam_ids``)."""

    def __init__(self, labels, cams):
        super().__init__(labels)
        self.cams = np.asarray(cams, dtype=np.int64)

    def get_cam_ids(self):
        return self.cams


class InfoDataset:
    """Labels and cameras only through ``get_data_info``."""

    def __init__(self, labels, cams):
        self.labels, self.cams = list(labels), list(cams)

    def __len__(self):
        return len(self.labels)

    def get_data_info(self, i):
        return dict(img_path=f'{i}.jpg', gt_label=self.labels[i],
                    cam_id=self.cams[i])


def dataset(num_classes=12, cams_per_class=(4, 4)):
    """``num_classes`` classes; class c has cams_per_class[j] images of
    camera j."""
    labels, cams = [], []
    for c in range(num_classes):
        for cam, n in enumerate(cams_per_class):
            labels += [c] * n
            cams += [cam] * n
    return CamDataset(labels, cams)


def make(data=None, **kwargs):
    kwargs.setdefault('seed', 3)
    kwargs.setdefault('num_neighbors', 3)
    return DepthFirstGraphSampler(dataset() if data is None else data, B, K,
                                  **kwargs)


def chain_graph(num_classes, k=3):
    """Row c: c+1 (nearest), then c+5, c+6, ... (mod C)."""
    offsets = [1] + list(range(5, 5 + k - 1))
    return np.array([[(c + o) % num_classes for o in offsets]
                     for c in range(num_classes)])


def cluster_graph(num_classes, size):
    """Classes in consecutive clusters of ``size``; row c lists the other
    members of c's cluster (nearest = next in the cluster)."""
    rows = []
    for c in range(num_classes):
        start = c // size * size
        rows.append([start + (c - start + j) % size for j in range(1, size)])
    return np.array(rows)


def epoch_batches(sampler, epoch):
    sampler.set_epoch(epoch)
    idx = np.array(list(sampler), dtype=np.int64)
    assert len(idx) == len(sampler)
    return idx.reshape(-1, sampler.batch_size)


def batch_classes(sampler, batch):
    """The classes of a batch, one per block of K (checks the blocks)."""
    lab = sampler.labels[batch].reshape(-1, K)
    assert (lab == lab[:, :1]).all(), 'a K-block mixes classes'
    return lab[:, 0]


def test_protocol_registry_and_hook_width():
    from mmreid_gs.registry import DATA_SAMPLERS
    data = InfoDataset(dataset().labels, dataset().cams)
    s = DATA_SAMPLERS.build(
        dict(type='DepthFirstGraphSampler', batch_size=B, num_instances=K,
             num_neighbors=5, seed=0),
        default_args=dict(dataset=data))
    assert type(s) is DepthFirstGraphSampler and isinstance(s, GraphSampler)
    assert missing_graph_sampler_members(s) == []
    # the hook builds num_neighbors columns, not P - 1 = 3
    assert s.num_neighbors == 5 and s.num_classes_per_batch == 4
    assert s.cam_ids.tolist() == data.cams
    # 12 classes x 8 images: 2 chunks a class a round, 24 / 4 = 6 batches
    assert s.total_batches == 6 and len(s) == 6 * B
    wide = cluster_graph(12, 12)  # [12, 11]: the 5 nearest are kept
    s.set_graph(torch.from_numpy(wide))
    assert np.array_equal(s.graph, wide[:, :5])


@pytest.mark.parametrize('n', [None, 5, 17])
def test_length_fixed_across_epochs_with_and_without_graph(n):
    s = make(batches_per_epoch=n)
    length = len(s)
    assert length == (6 if n is None else n) * B
    for epoch in range(4):
        if epoch == 2:
            s.set_graph(chain_graph(12))
        batches = epoch_batches(s, epoch)
        assert len(s) == length and batches.size == length
        for batch in batches:  # P distinct classes, K images each
            assert len(set(batch_classes(s, batch).tolist())) == 4
            assert len(set(batch.tolist())) == B  # 8 images: no repeats


def test_walk_is_depth_first_nearest_first_and_goes_on():
    # chain graph: depth-first nearest-first from 0 is 0, 1, 2, 3 (a star
    # of 0 would be 0, 1, 5, 6); the next batch starts where the walk is
    s = make(shuffle=False)
    s.set_graph(chain_graph(12))
    got = [batch_classes(s, b).tolist() for b in epoch_batches(s, 0)]
    assert got[:3] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11]]
    assert s.restarts.tolist() == [0] * 6


@pytest.mark.parametrize('size, restarts', [(8, False), (6, True)])
def test_every_class_joins_through_a_neighbour_or_a_restart(size, restarts):
    # 24 classes in clusters of `size`, one chunk a class a round
    s = make(dataset(24, (2, 2)), num_neighbors=size - 1)
    graph = cluster_graph(24, size)
    s.set_graph(graph)
    for epoch in range(3):
        batches = epoch_batches(s, epoch)
        joined_by_restart = []
        for b, batch in enumerate(batches):
            classes = batch_classes(s, batch)
            outside = [j for j in range(1, 4) if not np.isin(
                classes[j], graph[classes[:j]]).any()]
            # a class outside the neighbours of the classes before it in
            # the batch is one of the batch's random restarts
            assert len(outside) <= s.restarts[b]
            joined_by_restart.append(len(outside))
            if not restarts:  # clusters of 8 = 2 batches: never stuck
                assert len({c // size for c in classes}) == 1
        assert sum(joined_by_restart) == s.restarts.sum()
        # within a round of 6 batches every class is used once
        assert sorted(s.labels[batches[:, ::K]].ravel().tolist()) == list(
            range(24))
        if restarts:  # a cluster of 6 fills 1.5 batches: the walk restarts
            assert s.restarts.sum() > 0
        else:
            assert s.restarts.sum() == 0


def test_without_graph_random_pk_of_the_same_length():
    s = make(dataset(24, (2, 2)))  # 4 images: one chunk a class a round
    a = epoch_batches(s, 0)
    assert s.restarts.tolist() == [3] * 6  # every class a random start
    classes = np.stack([batch_classes(s, b) for b in a])
    # one round (24 chunks / P = 6 batches): every class once
    assert sorted(classes.ravel().tolist()) == list(range(24))
    assert not np.array_equal(a, epoch_batches(s, 1))
    s.set_graph(chain_graph(24))
    assert len(epoch_batches(s, 2)) == len(a)
    s.set_graph(None)
    assert s.graph is None and len(epoch_batches(s, 3)) == len(a)


def test_chunks_round_robin_over_cameras():
    # class with 4 + 4 images on 2 cameras: every chunk of 4 holds 2 + 2
    s = make()
    s.set_graph(chain_graph(12))
    for epoch in range(2):
        for batch in epoch_batches(s, epoch):
            for chunk in batch.reshape(-1, K):
                assert sorted(s.cam_ids[chunk].tolist()) == [0, 0, 1, 1]
    # 4 cameras of 2 images, K = 2: chunks of 2 distinct cameras, the
    # cameras with most images left first
    images = np.arange(8)
    cams = np.repeat([0, 1, 2, 3], 2)
    order = camera_round_robin(images, cams, 2)
    assert cams[order].tolist() == [0, 1, 2, 3, 0, 1, 2, 3]
    order = camera_round_robin(images, cams, 2,
                               torch.Generator().manual_seed(1))
    assert sorted(order.tolist()) == list(range(8))
    for chunk in cams[order].reshape(-1, 2):
        assert chunk[0] != chunk[1]
    # uneven cameras (6 + 2), K = 4: rounds of one image a camera
    cams = np.array([0] * 6 + [1] * 2)
    assert cams[camera_round_robin(images, cams, 4)].tolist() == [
        0, 1, 0, 1, 0, 0, 0, 0]


def test_small_classes_and_no_cameras():
    # 1..5 images a class, one camera (LabelDataset has none): K images a
    # class, repeated for classes with fewer than K
    labels = np.repeat(np.arange(10), 1 + np.arange(10) % 5)
    s = DepthFirstGraphSampler(LabelDataset(labels), 8, 4, num_neighbors=2,
                               seed=0)
    assert (s.cam_ids == 0).all()
    s.set_graph(chain_graph(10, 2))
    for batch in epoch_batches(s, 0):
        classes = batch_classes(s, batch)
        assert len(set(classes.tolist())) == 2
        for c, chunk in zip(classes, batch.reshape(-1, 4)):
            assert len(set(chunk.tolist())) == min(4, (c % 5) + 1)


@pytest.mark.parametrize('world_size', [2, 3])
def test_ddp_shards_are_disjoint_whole_batches(world_size):
    full = make(batches_per_epoch=7)
    ranks = [make(batches_per_epoch=7, rank=r, world_size=world_size)
             for r in range(world_size)]
    for s in [full] + ranks:
        s.set_graph(chain_graph(12))
    ref = epoch_batches(full, 2)
    per_rank = [epoch_batches(s, 2) for s in ranks]
    n = math.ceil(7 / world_size)
    assert [len(b) for b in per_rank] == [n] * world_size
    # batch j of the epoch on rank j % W: disjoint shards covering it
    order = np.stack([per_rank[j % world_size][j // world_size]
                      for j in range(7)])
    assert np.array_equal(order, ref)
    padded = np.concatenate([ref, ref])[:n * world_size]
    for r, b in enumerate(per_rank):
        assert np.array_equal(b, padded[r::world_size])


def test_determinism_and_resume():
    a, b = make(), make()
    for s in (a, b):
        s.set_graph(chain_graph(12))
    assert np.array_equal(epoch_batches(a, 1), epoch_batches(b, 1))
    state = a.state_dict()
    assert state['graph'].shape == (12, 3)
    nxt = epoch_batches(a, 2)
    fresh = make(seed=99)
    fresh.load_state_dict(state)
    assert fresh.seed == 3 and np.array_equal(epoch_batches(fresh, 2), nxt)
    other = make(seed=4)
    other.set_graph(chain_graph(12))
    assert not np.array_equal(epoch_batches(other, 1), epoch_batches(b, 1))


def test_errors():
    with pytest.raises(ValueError, match=r'num_neighbors.*\[1, 11\]'):
        make(num_neighbors=12)
    with pytest.raises(ValueError, match='num_neighbors'):
        make(num_neighbors=0)
    s = make()
    with pytest.raises(ValueError, match=r'\[12, >= 3\].*\[12, 2\]'):
        s.set_graph(chain_graph(12, 2))
    bad = chain_graph(12)
    bad[4, 1] = 4
    with pytest.raises(ValueError, match='must not contain class i'):
        s.set_graph(bad)
    with pytest.raises(ValueError, match='one integer camera id'):
        make(CamDataset(dataset().labels, dataset().cams[:5]))

"""GraphSampler.set_labels: new labels (pseudo-labels), -1 left out,
fixed length."""
import numpy as np
import pytest

from mmreid_gs.datasets.samplers import GraphSampler


class Labels:

    def __init__(self, labels):
        self.labels = np.asarray(labels)

    def __len__(self):
        return len(self.labels)

    def get_gt_labels(self):
        return self.labels


def test_minus_one_never_sampled_and_set_labels_keeps_length():
    ds = Labels([0, 0, 1, 1, -1, 2, 2, -1])
    s = GraphSampler(ds, batch_size=4, num_instances=2, seed=0,
                     batches_per_epoch=5)
    assert s.num_classes == 3
    assert [c.tolist() for c in s.class_indices] == [[0, 1], [2, 3], [5, 6]]
    first = list(s)
    assert len(first) == 20 and not {4, 7} & set(first)
    s.set_graph([[1], [2], [0]])
    # new labels: 2 classes, images 0 and 1 left out
    ds.labels = np.array([-1, -1, 0, 0, 0, 1, 1, 1])
    s.set_labels()
    assert s.graph is None and s.num_classes == 2
    assert [c.tolist() for c in s.class_indices] == [[2, 3, 4], [5, 6, 7]]
    s.set_epoch(1)
    second = list(s)
    assert len(second) == 20 and not {0, 1} & set(second)
    # every batch: K=2 images of each of its P=2 classes
    for b in np.asarray(second).reshape(5, 4):
        assert sorted(ds.labels[b].tolist()) == [0, 0, 1, 1]
    # explicit labels, and the state round trip with outliers
    s.set_labels(np.array([1, 1, 0, 0, -1, -1, 0, 1]))
    assert [c.tolist() for c in s.class_indices] == [[2, 3, 6], [0, 1, 7]]
    state = s.state_dict()
    s.load_state_dict(state)


def test_set_labels_errors():
    ds = Labels([0, 0, 1, 1])
    with pytest.raises(ValueError, match='batches_per_epoch'):
        GraphSampler(ds, 2, 1, seed=0).set_labels()
    s = GraphSampler(ds, 4, 2, seed=0, batches_per_epoch=3)
    with pytest.raises(ValueError, match='3 labels for a dataset of 4'):
        s.set_labels([0, 1, 1])
    with pytest.raises(ValueError, match='fewer than P'):
        s.set_labels([0, 0, 0, -1])
    with pytest.raises(ValueError, match='integers'):
        s.set_labels([0.5, 1, 1, 0])

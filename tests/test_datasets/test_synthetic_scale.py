"""SyntheticReID at scale, on labels only (no images): the person ids of
the three domains and of the train and test splits never collide, at sizes
beyond the old 4-digit limit; the 6-slot ids of generator 1.4 keep the
label order of the 4-slot ids of 1.3; and the test identities do not depend
on the number of training identities."""
import os
import os.path as osp

import numpy as np
import pytest

from mmreid_gs.datasets.market1501 import Market1501
from mmreid_gs.datasets.synthetic import generate_synthetic_reid
from mmreid_gs.datasets.synthetic.identities import (NUM_PID_SLOTS,
                                                     PID_SLOTS, person_ids)
from mmreid_gs.datasets.synthetic.streams import (DOMAIN_CODE, DOMAINS,
                                                  SPLIT_CODE, random_stream)
from mmreid_gs.datasets.synthetic.writer import image_name


@pytest.mark.parametrize('num_train, num_test', [(8000, 100), (6000, 5500),
                                                 (100, 7000)])
def test_no_id_collision_between_domains_and_splits(num_train, num_test):
    groups = {}
    assert DOMAINS == ('A', 'B', 'C') and NUM_PID_SLOTS == 6
    for domain in DOMAINS:
        for split, num in (('train', num_train), ('test', num_test)):
            pids = person_ids(0, domain, split, num)
            assert pids.shape == (num, ) and pids.dtype == np.int64
            assert len(np.unique(pids)) == num  # no two people share one
            assert pids.min() >= 1  # 0 (distractor) and -1 (junk) unused
            assert (pids % NUM_PID_SLOTS == PID_SLOTS[(domain, split)]
                    % NUM_PID_SLOTS).all()
            groups[(domain, split)] = set(pids.tolist())
    keys = list(groups)
    for i, a in enumerate(keys):
        for b in keys[i + 1:]:
            assert not groups[a] & groups[b], (a, b)
    # and not with the ids of other sizes of another group either: the
    # residues differ, whatever the sizes
    other = set(person_ids(0, 'B', 'train', num_train + 1234).tolist())
    assert not other & groups[('A', 'train')]
    assert not other & groups[('A', 'test')]
    other = set(person_ids(0, 'C', 'test', num_test + 4321).tolist())
    for key in keys:
        assert key == ('C', 'test') or not other & groups[key], key


def test_ids_are_a_shuffle_of_the_split_slots():
    pids = person_ids(3, 'A', 'train', 5001)
    assert sorted(pids.tolist()) == list(range(1, 6 * 5001, 6))
    # the same seed gives the same ids, another seed other ones
    assert np.array_equal(pids, person_ids(3, 'A', 'train', 5001))
    assert not np.array_equal(pids, person_ids(4, 'A', 'train', 5001))
    with pytest.raises(ValueError, match="'D'"):
        person_ids(0, 'D', 'train', 3)


#: The slots of generator 1.3 (4 slots, no domain C).
OLD_SLOTS = {('A', 'train'): 1, ('A', 'test'): 2, ('B', 'train'): 3,
             ('B', 'test'): 4}


@pytest.mark.parametrize('num_ids', [7, 300, 2500])
def test_six_slots_keep_the_label_order_of_four(num_ids):
    """1.4 renamed the ids of A and B (6 slots instead of 4); the labels
    (ranks of the ids: train labels, test sort order) of every identity are
    those of 1.3, also past 1,667 ids where the 6-slot ids get 5 digits."""
    for (domain, split), slot in OLD_SLOTS.items():
        order = random_stream(0, DOMAIN_CODE[domain], SPLIT_CODE[split],
                              0).permutation(num_ids)
        old = 4 * order.astype(np.int64) + slot
        new = person_ids(0, domain, split, num_ids)
        assert np.array_equal(new, 6 * order + PID_SLOTS[(domain, split)])
        # sorted ids map to the same identity indices
        assert np.array_equal(np.argsort(old), np.argsort(new))
        # the label of identity i (rank of its id) is unchanged
        assert np.array_equal(np.argsort(np.argsort(old)),
                              np.argsort(np.argsort(new)))


def test_large_ids_round_trip_through_file_names():
    name = image_name(6 * 7999 + 3, 5, 321098)
    assert name == '47997_c6s1_321098_00.jpg'
    assert Market1501.parse_name(name) == (47997, 6, 1, 321098)
    assert image_name(2, 0, 7) == '0002_c1s1_000007_00.jpg'


def test_test_split_is_the_same_at_any_training_size(tmp_path):
    small = dict(num_test_ids=3, num_cams=2, imgs_per_cam=1,
                 img_size=(32, 16), seed=0, domain='A')
    roots = []
    for num_train in (1, 5):
        root = str(tmp_path / f'train{num_train}')
        generate_synthetic_reid(root, num_train_ids=num_train, **small)
        roots.append(root)
    for sub in ('query', 'bounding_box_test'):
        names = [sorted(os.listdir(osp.join(r, sub))) for r in roots]
        assert names[0] == names[1] and names[0]
        for name in names[0]:
            with open(osp.join(roots[0], sub, name), 'rb') as f0, open(
                    osp.join(roots[1], sub, name), 'rb') as f1:
                assert f0.read() == f1.read()

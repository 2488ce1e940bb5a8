import os.path as osp

import numpy as np
import pytest
import torch
from helpers import TINY_MARKET, make_image_tree, write_image
from torch.utils.data import DataLoader

from mmreid_gs.datasets import UnlabeledReIDDataset
from mmreid_gs.registry import DATASETS
from mmreid_gs.utils import register_all_modules

register_all_modules()


def test_from_dataset_config(tmp_path):
    root = make_image_tree(str(tmp_path / 'market'), TINY_MARKET)
    ds = DATASETS.build(
        dict(type='UnlabeledReIDDataset',
             dataset=dict(type='Market1501', data_root=root,
                          pipeline=[dict(type='LoadImageFromFile')])))
    assert len(ds) == 6
    # every image its own class until pseudo-labels are set
    assert ds.get_gt_labels().tolist() == list(range(6))
    assert ds.get_true_labels().tolist() == [0, 0, 1, 1, 2, 2]
    assert ds.get_data_info(3)['pid'] == 7
    ds.set_pseudo_labels([1, 1, -1, 0, 0, 0])
    assert ds.get_gt_labels().tolist() == [1, 1, -1, 0, 0, 0]
    assert ds.get_data_info(2)['gt_label'] == -1
    assert ds.get_data_info(4)['gt_label'] == 0
    assert ds.num_classes == 2 and ds.get_label_families().tolist() == [
        -1, -1]
    for bad, match in [([0, 1], 'one integer label per image'),
                       ([0, 2, 2, 2, 2, 2], 'every label used'),
                       ([0, 0, 0, 0, 0, -2], 'every label used')]:
        with pytest.raises(ValueError, match=match):
            ds.set_pseudo_labels(bad)


def _first_label(batch):
    return int(batch['gt_label'][0])


class _Label:
    """A picklable pipeline: the gt_label only."""

    def __call__(self, info):
        return dict(gt_label=info['gt_label'])


def test_folder_and_persistent_workers_see_new_labels(tmp_path):
    for i, rel in enumerate(['a/x.jpg', 'a/y.png', 'b/c/z.jpg']):
        write_image(osp.join(str(tmp_path), rel), 50 + i)
    (tmp_path / 'notes.txt').write_text('not an image')
    ds = UnlabeledReIDDataset(data_root=str(tmp_path), pipeline=[_Label()])
    assert len(ds) == 3 and ds.get_true_labels() is None
    assert ds.get_data_info(2)['img_path'].endswith(osp.join('c', 'z.jpg'))
    loader = DataLoader(ds, batch_size=3, num_workers=1,
                        persistent_workers=True)
    first = next(iter(loader))['gt_label'].tolist()
    ds.set_pseudo_labels(np.array([0, -1, 0]))
    second = next(iter(loader))['gt_label'].tolist()
    assert first == [0, 1, 2] and second == [0, -1, 0]


def test_errors(tmp_path):
    with pytest.raises(ValueError, match='exactly one of'):
        UnlabeledReIDDataset()
    with pytest.raises(FileNotFoundError, match='nowhere'):
        UnlabeledReIDDataset(data_root=str(tmp_path / 'nowhere'))
    with pytest.raises(ValueError, match='no image found'):
        UnlabeledReIDDataset(data_root=str(tmp_path))
    with torch.inference_mode():
        write_image(str(tmp_path / 'i.jpg'))
        assert len(UnlabeledReIDDataset(data_root=str(tmp_path))) == 1


def test_label_families_follow_the_pseudo_labels():

    class Source:
        """6 images of identities 0,0,1,1,2,2; families 5,5,5,5,7,7."""

        def __len__(self):
            return 6

        def get_data_info(self, i):
            return dict(img_path=f'{i}.jpg', gt_label=i // 2, cam_id=0)

        def get_families(self):
            return [5, 5, 5, 5, 7, 7]

    ds = UnlabeledReIDDataset(dataset=Source())
    assert ds.get_label_families().tolist() == [-1] * 6  # none set yet
    # cluster 0 = identity 2 (family 7); cluster 1 mostly identity 0 (5)
    ds.set_pseudo_labels([1, 1, 1, -1, 0, 0])
    assert ds.labels_version == 1
    assert ds.get_label_families().tolist() == [7, 5]

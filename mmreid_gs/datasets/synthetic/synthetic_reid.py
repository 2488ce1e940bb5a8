"""SyntheticReID: the generated benchmark as a Market-1501 dataset."""
import json
import os.path as osp
from typing import Tuple

import numpy as np

from mmreid_gs.registry import DATASETS
from mmreid_gs.utils.errors import ReIDUserError
from ..market1501 import Market1501
from .writer import generate_synthetic_reid


@DATASETS.register_module()
class SyntheticReID(Market1501):
    """Generated person re-identification benchmark in the Market-1501 tree.

    On construction the images are generated into ``data_root`` unless
    ``data_root/meta.json`` already records the same generator version and
    parameters (see :func:`generate_synthetic_reid`: atomic, and safe when
    several processes start at once). The split is then read as
    :class:`Market1501` does, so every data info has ``img_path``,
    ``gt_label``, ``pid``, ``cam_id`` and ``timestamp`` (frame number on a
    clock shared by the cameras of the domain).

    Expected (generated) tree::

        data_root/
        ├── meta.json  identities.json
        ├── bounding_box_train/   # split='train'
        ├── query/                # split='query'
        └── bounding_box_test/    # split='gallery'

    Every split of one benchmark must be built with the same generation
    parameters (share one dict in the config): different parameters for the
    same ``data_root`` regenerate the folder.

    Scale: any number of identities (e.g. 8,000 training identities, as
    RandPerson), generated one identity at a time (memory flat in their
    number, about 300 images/s on 2 CPU cores). Person ids never collide
    between the three domains and the train/test splits, at any size (see
    :data:`~mmreid_gs.datasets.synthetic.identities.PID_SLOTS`), and
    identity ``i`` of a split is the same person whatever the number of
    identities: trees with more training identities hold the same test
    identities and images, so every size is tested on the same people.

    Args:
        data_root (str): Folder of the benchmark (created if needed).
        split (str): ``'train'``, ``'query'`` or ``'gallery'``.
        domain (str): ``'A'`` (indoor scenes, mild camera styles), ``'B'``
            (outdoor daylight scenes, strong colour casts, low saturation,
            low resolution, blur) or ``'C'`` (outdoor night and overcast
            scenes, strong blue or green casts, high contrast, noise,
            smaller persons). Same identity distribution, different people.
        num_train_ids (int): Identities of the train split (any number).
            Defaults to 200.
        num_test_ids (int): Identities of query/gallery. Defaults to 100.
        seed (int): Generation seed. Defaults to 0.
        img_size (tuple[int, int]): Stored image size (h, w); the pipeline
            resizes. Defaults to (128, 64).
        num_cams (int): Cameras of the domain. Defaults to 6.
        imgs_per_cam (int): Images of a person per camera that sees it.
            Defaults to 2.
        min_cams (int): Fewest cameras that see a person. Defaults to 2.
        family_size (int): Identities per family of look-alikes.
            Defaults to 4.
        **kwargs: Other arguments of :class:`Market1501` (``pipeline``,
            ``lazy_init``, ...).
    """

    def __init__(self,
                 data_root: str,
                 split: str = 'train',
                 domain: str = 'A',
                 num_train_ids: int = 200,
                 num_test_ids: int = 100,
                 seed: int = 0,
                 img_size: Tuple[int, int] = (128, 64),
                 num_cams: int = 6,
                 imgs_per_cam: int = 2,
                 min_cams: int = 2,
                 family_size: int = 4,
                 **kwargs):
        if not data_root:
            raise ReIDUserError('SyntheticReID: data_root must be given (the '
                                'folder to generate the benchmark into).')
        self.generation = generate_synthetic_reid(
            data_root, domain=domain, num_train_ids=num_train_ids,
            num_test_ids=num_test_ids, num_cams=num_cams,
            imgs_per_cam=imgs_per_cam, min_cams=min_cams,
            family_size=family_size, img_size=img_size, seed=seed)
        super().__init__(data_root=data_root, split=split, **kwargs)
        # Set after loading: BaseDataset takes a string metainfo value for a
        # file to read and warns that 'A' is not one.
        self._metainfo.setdefault('domain', domain)

    def get_families(self) -> np.ndarray:
        """Family of look-alikes of every item, in dataset order.

        Members of a family share most attributes (the generator's hard
        neighbours); family ids are unique within a split.

        Returns:
            np.ndarray: int64 [len(self)].
        """
        path = osp.join(self.data_root, 'identities.json')
        try:
            with open(path) as f:
                identities = json.load(f)
        except (OSError, ValueError) as e:
            raise ValueError(f'SyntheticReID: cannot read {path}: {e}')
        fams = []
        for i in range(len(self)):
            pid = int(self.get_data_info(i)['pid'])
            entry = identities.get(f'{pid:04d}')
            if entry is None:
                raise ValueError(f'SyntheticReID: identity {pid} is not in '
                                 f'{path}')
            fams.append(int(entry['family']))
        return np.asarray(fams, dtype=np.int64)

    def get_label_families(self) -> np.ndarray:
        """Family of every label ``0..max(gt_label)`` (e.g. of the training
        classes that :class:`GraphSampler` sees); -1 for absent labels.

        Returns:
            np.ndarray: int64 [max label + 1].
        """
        labels = np.asarray(self.get_gt_labels(), dtype=np.int64)
        fams = self.get_families()
        out = np.full(int(labels.max()) + 1 if labels.size else 0, -1,
                      dtype=np.int64)
        out[labels] = fams
        return out

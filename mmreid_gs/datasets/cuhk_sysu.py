"""CUHK-SYSU person crops (the re-ID version of the person-search dataset)."""
import os.path as osp
import re
from typing import Callable, List, Optional, Sequence, Tuple, Union

from mmreid_gs.registry import DATASETS
from .base_reid_dataset import BaseReIDDataset

_NAME_RE = re.compile(r'^p(-?\d+)_s(\d+)')


@DATASETS.register_module()
class CUHKSYSU(BaseReIDDataset):
    """CUHK-SYSU (Xiao et al., CVPR 2017) as a re-ID training set.

    The person-search dataset's labelled person boxes, cropped: the version
    that multi-source domain generalization protocols train on (M3L,
    MetaBIN; fast-reid's ``CUHK-SYSU/cropped_images``): every labelled
    identity, train and test persons of the search protocol alike, about
    11,934 identities and 34,574 images. Training only: ``split='train'``
    (``'all'`` is the same).

    Expected tree::

        data_root/
        └── cropped_images/
            ├── p1_s1.jpg
            ├── p1_s1470.jpg
            └── ...

    File names start with ``p<pid>_s<image>``: the person id and the number
    of the scene image (``s<image>.jpg`` of the release's ``Image/SSM``) the
    box was cut from; the rest of the name is ignored. Person id ``-1``
    (junk) is dropped. To prepare the crops
    from the official release (``Image/SSM/*.jpg`` and
    ``annotation/Person.mat``), cut every labelled box of every person out
    of its scene image and save it as ``p<pid>_s<image>.jpg``, or use the
    ``cropped_images`` folder prepared by the M3L / MetaBIN / fast-reid
    data instructions.

    Cameras: CUHK-SYSU has no camera ids (street snaps from a hand-held
    camera and movie frames): every image gets ``cam_id`` 0, as the public
    multi-source code does, and the scene image number is kept in each data
    info as ``scene``. There is no timestamp.

    Args:
        data_root (str): The dataset root, see the tree above.
        split (str): ``'train'`` (or ``'all'``, the same). Defaults to
            ``'train'``.
        pipeline (Sequence[dict | Callable]): Transforms. Defaults to ``()``.
        img_dir (str): Folder of the crops under ``data_root``. Defaults to
            ``'cropped_images'``.
        **kwargs: Other arguments of :class:`BaseReIDDataset`.
    """

    SPLITS = ('train', )
    EXPECTED_TREE = ('data_root/\n'
                     '└── cropped_images/  p1_s1.jpg p1_s1470.jpg ...\n'
                     '    (p<pid>_s<scene image>.jpg: the labelled person '
                     'boxes cut from Image/SSM)')

    def __init__(self,
                 data_root: str,
                 split: str = 'train',
                 pipeline: Sequence[Union[dict, Callable]] = (),
                 img_dir: str = 'cropped_images',
                 **kwargs):
        self.img_dir = img_dir
        super().__init__(
            data_root=data_root,
            split='train' if split == 'all' else split,
            pipeline=pipeline,
            **kwargs)

    @staticmethod
    def parse_name(name: str) -> Optional[Tuple[int, int]]:
        """Parse ``'p<pid>_s<image>...'``.

        Args:
            name (str): e.g. ``'p11001_s15535.jpg'``.

        Returns:
            tuple | None: ``(pid, scene image)``, or None if it does not
            parse.
        """
        match = _NAME_RE.match(name)
        return None if match is None else tuple(map(int, match.groups()))

    def _split_location(self) -> str:
        return osp.abspath(osp.join(self.data_root, self.img_dir))

    def _load_split(self) -> List[dict]:
        folder = self._require(osp.join(self.data_root, self.img_dir))
        return [
            dict(img_path=path, pid=pid, cam_id=0, scene=scene)
            for path, (pid, scene) in self._parsed_images(
                folder, 'expected p<pid>_s<scene image>..., e.g. '
                'p11001_s15535.jpg')
        ]

"""RandPerson synthetic dataset."""
import os.path as osp
import re
from typing import Callable, List, Optional, Sequence, Tuple, Union

from mmreid_gs.registry import DATASETS
from .base_reid_dataset import BaseReIDDataset

_NAME_RE = re.compile(r'^(\d+)_s(\d+)_c(\d+)_f(\d+)')


@DATASETS.register_module()
class RandPerson(BaseReIDDataset):
    """RandPerson (Wang et al., ACM MM 2020), training only.

    The public subset used for training: 8,000 identities, 132,145 images
    from 11 scenes (``s00``..``s10``). Expected tree::

        data_root/
        └── randperson_subset/
            ├── 000000_s00_c00_f000264.jpg
            └── ...

    File names are ``<pid>_s<scene>_c<camera>_f<frame>.jpg`` with 0-based
    scene, camera and frame numbers counted within each scene. As in the
    public QAConv code, the cameras of the scenes are numbered one after the
    other (``cam_id = CAMERA_OFFSETS[scene] + camera``) and the scenes are
    put on one time line (``timestamp = FRAME_OFFSETS[scene] + frame``,
    24 fps, ``metainfo['fps']``). Data infos also have ``scene`` and
    ``frame``. Only ``split='train'`` exists.

    Args:
        data_root (str): The dataset root, see the tree above.
        split (str): Must be ``'train'``. Defaults to ``'train'``.
        pipeline (Sequence[dict | Callable]): Transforms. Defaults to ``()``.
        img_dir (str): Image folder under ``data_root``.
            Defaults to ``'randperson_subset'``.
        **kwargs: Other arguments of :class:`BaseReIDDataset`.
    """

    SPLITS = ('train', )
    CAMERA_OFFSETS = (0, 2, 4, 6, 8, 9, 10, 12, 13, 14, 15)
    FRAME_OFFSETS = (0, 160000, 340000, 490000, 640000, 1070000, 1330000,
                     1590000, 1890000, 3190000, 3490000)
    FPS = 24
    EXPECTED_TREE = ('data_root/\n'
                     '└── randperson_subset/  000000_s00_c00_f000264.jpg ...')

    def __init__(self,
                 data_root: str,
                 split: str = 'train',
                 pipeline: Sequence[Union[dict, Callable]] = (),
                 img_dir: str = 'randperson_subset',
                 **kwargs):
        self.img_dir = img_dir
        super().__init__(
            data_root=data_root, split=split, pipeline=pipeline, **kwargs)

    @classmethod
    def parse_name(cls, name: str) -> Optional[Tuple[int, int, int, int]]:
        """Parse ``'<pid>_s<scene>_c<camera>_f<frame>.jpg'``.

        Returns:
            tuple | None: ``(pid, scene, camera, frame)`` or None when the
            name does not parse or the scene is unknown.
        """
        match = _NAME_RE.match(name)
        if match is None:
            return None
        pid, scene, cam, frame = map(int, match.groups())
        if scene >= len(cls.CAMERA_OFFSETS):
            return None
        return pid, scene, cam, frame

    def _split_location(self) -> str:
        return osp.abspath(osp.join(self.data_root, self.img_dir))

    def _load_split(self) -> List[dict]:
        folder = self._require(osp.join(self.data_root, self.img_dir))
        items = []
        for path, (pid, scene, cam, frame) in self._parsed_images(
                folder, 'expected <pid>_s<scene>_c<camera>_f<frame>.jpg with '
                f'scene < {len(self.CAMERA_OFFSETS)}, e.g. '
                '000000_s00_c00_f000264.jpg'):
            items.append(
                dict(
                    img_path=path,
                    pid=pid,
                    cam_id=self.CAMERA_OFFSETS[scene] + cam,
                    scene=scene,
                    frame=frame,
                    timestamp=self.FRAME_OFFSETS[scene] + frame))
        return items

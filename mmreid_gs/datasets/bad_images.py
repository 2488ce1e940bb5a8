"""Images that cannot be read or decoded: :class:`BadImageError`,
:func:`image_decodes` (the test used at load time and at run time) and
:class:`BadImageHandlingMixin`, the part of
:class:`~mmreid_gs.datasets.BaseReIDDataset` that checks every image at load
time (``check_images=True``) and raises for, or replaces, an undecodable
image at run time, as its ``on_bad_image`` argument says."""
import logging
import os.path as osp
from typing import Callable, List

import cv2
import numpy as np
from mmengine.logging import print_log

from mmreid_gs.utils.errors import ReIDUserError


class BadImageError(ReIDUserError):
    """An image of a dataset cannot be read or decoded.

    Raised in a dataloader worker, PyTorch re-creates the exception in the
    main process from one string holding the worker's traceback; this
    constructor keeps only the original message, so that the tools still
    report one line naming the file.

    Args:
        msg (str): The message.
    """

    def __init__(self, msg: str = ''):
        msg = str(msg)
        marker = f'{type(self).__name__}: '
        if 'Original Traceback' in msg and marker in msg:
            msg = msg.rstrip().rsplit(marker, 1)[1]
        super().__init__(msg)


def image_decodes(path: str) -> bool:
    """Whether a file exists and decodes as an image with OpenCV.

    Args:
        path (str): Image file.

    Returns:
        bool: True when ``cv2.imdecode`` returns a non-empty image.
    """
    if not osp.isfile(path):
        return False
    try:
        buf = np.fromfile(path, dtype=np.uint8)
    except OSError:
        return False
    if not buf.size:
        return False
    img = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    return img is not None and img.size > 0


class BadImageHandlingMixin:
    """Load-time check and run-time handling of undecodable images.

    Mixed into :class:`~mmreid_gs.datasets.BaseReIDDataset` before
    MMEngine's ``BaseDataset`` (its :meth:`prepare_data` replaces the base
    one); see that class's ``check_images`` and ``on_bad_image``. Uses the
    dataset's ``split``, ``on_bad_image``, ``pipeline``, ``get_data_info``,
    ``_labels()`` and ``_bad_images`` (the images found undecodable at run
    time by this process).
    """

    def _check_decodable(self, data_list: List[dict]) -> List[dict]:
        """Decode every image; raise or drop the unreadable ones."""
        print_log(
            f'{type(self).__name__} ({self.split}): checking that '
            f'{len(data_list)} images decode...',
            logger='current')
        kept, bad = [], []
        for info in data_list:
            path = info['img_path']
            if not image_decodes(path):
                if self.on_bad_image == 'error':
                    raise ReIDUserError(
                        f'{type(self).__name__}: image cannot be read or '
                        f'decoded: {path}. Pass on_bad_image=\'skip\' to '
                        'drop such images.')
                bad.append(path)
                continue
            kept.append(info)
        if bad:
            print_log(
                f'{type(self).__name__} ({self.split}): skipped {len(bad)} '
                f'image(s) that cannot be decoded, e.g. {bad[0]}.',
                logger='current',
                level=logging.WARNING)
        return kept

    # ------------------------------------------------------------------
    # run-time handling of unreadable images
    # ------------------------------------------------------------------
    def prepare_data(self, idx: int):
        """The pipeline's output for sample ``idx``.

        When the pipeline fails and the sample's image does not decode, the
        failure is handled as ``on_bad_image`` says (see the class
        docstring); any other failure propagates unchanged.

        Args:
            idx (int): Sample index.

        Returns:
            Any: The pipeline's output (of a replacement sample of the same
            identity when the image is bad and ``on_bad_image='skip'``).

        Raises:
            BadImageError: With ``on_bad_image='error'``, or when every
                image of the identity is bad.
        """
        return self.prepare_data_with(idx, self.pipeline)

    def prepare_data_with(self, idx: int, pipeline: Callable):
        """:meth:`prepare_data` through another pipeline (e.g. the test
        pipeline of a hook that loads training images), with the same
        handling of undecodable images.

        Args:
            idx (int): Sample index.
            pipeline (callable): Called on a copy of the data info.

        Returns:
            Any: ``pipeline``'s output for ``idx`` (or for a replacement).
        """
        try:
            return pipeline(self.get_data_info(idx))
        except Exception:
            path = self.get_data_info(idx).get('img_path')
            if not path or image_decodes(path):
                raise
        return self._replace_bad_image(idx, path, pipeline)

    def _replace_bad_image(self, idx: int, path: str, pipeline: Callable):
        """Raise for, or replace, the undecodable image of sample ``idx``."""
        name = f'{type(self).__name__} ({self.split})'
        if self.on_bad_image == 'error':
            raise BadImageError(
                f'{name}: image cannot be read or decoded: {path}. Pass '
                "on_bad_image='skip' to use another image of the same "
                'identity instead, or check_images=True to find all such '
                'images before training.')
        first_time = path not in self._bad_images
        self._bad_images[path] = None
        labels = self._labels()
        label, cam = labels['gt_label'][idx], labels['cam_id'][idx]
        same = np.flatnonzero(labels['gt_label'] == label)
        same = np.concatenate([same[same > idx], same[same < idx]])
        same_cam = labels['cam_id'][same] == cam
        for j in np.concatenate([same[same_cam], same[~same_cam]]):
            other = self.get_data_info(int(j)).get('img_path')
            if other in self._bad_images:
                continue
            try:
                data = pipeline(self.get_data_info(int(j)))
            except Exception:
                if not other or image_decodes(other):
                    raise
                self._bad_images[other] = None
                continue
            if first_time:
                print_log(
                    f'{name}: image cannot be read or decoded: {path}; '
                    f'using {other} (same identity) instead. Bad images '
                    f'met by this process so far: {len(self._bad_images)}.',
                    logger='current',
                    level=logging.WARNING)
            return data
        raise BadImageError(
            f'{name}: image cannot be read or decoded: {path}, and no other '
            f'image of its identity (label {int(label)}, {len(same) + 1} '
            'image(s)) decodes either.')

"""Inference: build a re-ID model from a config, extract feature maps of
images, score and rank them.

    from mmreid_gs.apis import ReIDInferencer

    inferencer = ReIDInferencer('configs/qaconv_gs_demo.py',
                                'work_dirs/gs/epoch_8.pth')
    feats = inferencer.extract(['a.jpg', 'b.jpg'])      # [2, c, h, w]
    scores = inferencer.match(['a.jpg'], ['b.jpg'])     # [1, 1]
    result = inferencer.rank('query.jpg', 'gallery_dir/', topk=10)

Everything runs without gradients and also under the caller's
``torch.inference_mode()``; images are paths or HxWx3 BGR uint8 arrays.
A file that does not exist, is not an image or does not decode raises an
error naming it.
"""
import os
import os.path as osp
from dataclasses import dataclass
from typing import List, Optional, Sequence, Union

import cv2
import numpy as np
import torch
from mmengine.config import Config
from mmengine.dataset import Compose
from mmengine.registry import DefaultScope
from mmengine.runner import load_checkpoint

from mmreid_gs.evaluation.functional import (format_fpr,
                                             pair_scores_and_labels,
                                             verification_rates)
from mmreid_gs.evaluation.results_file import load_test_set
from mmreid_gs.registry import MODELS
from mmreid_gs.utils import register_all_modules
from mmreid_gs.utils.errors import ReIDUserError

ImageLike = Union[str, np.ndarray]
ImagesLike = Union[str, Sequence[ImageLike]]

#: File extensions that are treated as images when a folder is listed.
IMG_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp')

_DTYPES = {
    'float32': torch.float32,
    'fp32': torch.float32,
    'float16': torch.float16,
    'fp16': torch.float16,
    'half': torch.float16,
    'bfloat16': torch.bfloat16,
    'bf16': torch.bfloat16,
}


def _as_dtype(dtype) -> Optional[torch.dtype]:
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    key = str(dtype).replace('torch.', '').lower()
    if key not in _DTYPES:
        raise ReIDUserError(f'dtype must be one of {sorted(_DTYPES)}, got '
                            f'{dtype!r}')
    return _DTYPES[key]


def _as_device(device) -> torch.device:
    device = torch.device(device)
    if device.type == 'cuda' and not torch.cuda.is_available():
        raise ReIDUserError(f'device {device} requested but CUDA is not '
                            'available on this machine; use device="cpu"')
    return device


def read_image(path: str) -> np.ndarray:
    """Read an image file as an HxWx3 BGR uint8 array.

    Args:
        path (str): Image file.

    Returns:
        np.ndarray: [H, W, 3] uint8, BGR.

    Raises:
        FileNotFoundError: When ``path`` does not exist.
        IsADirectoryError: When ``path`` is a folder.
        ReIDUserError: When ``path`` is empty or does not decode as an image
            (not an image, truncated or corrupt).
    """
    if not osp.exists(path):
        raise FileNotFoundError(f'image not found: {path}')
    if osp.isdir(path):
        raise IsADirectoryError(
            f'expected an image file, got a folder: {path}')
    try:
        buf = np.fromfile(path, dtype=np.uint8)
    except OSError as err:
        raise ReIDUserError(
            f'cannot read image file {path}: {err}') from None
    img = cv2.imdecode(buf, cv2.IMREAD_COLOR) if buf.size else None
    if img is None or img.size == 0:
        raise ReIDUserError(
            f'cannot decode image {path} ({buf.size} bytes): not an image, '
            'or a truncated or corrupt file')
    return img


def list_images(folder: str) -> List[str]:
    """Sorted paths of the image files directly inside a folder.

    Args:
        folder (str): The folder.

    Returns:
        list[str]: Paths of the files whose extension is in
        ``IMG_EXTENSIONS`` (case-insensitive).

    Raises:
        FileNotFoundError: When ``folder`` does not exist.
        NotADirectoryError: When ``folder`` is a file.
        ReIDUserError: When the folder holds no image file.
    """
    if not osp.exists(folder):
        raise FileNotFoundError(f'folder not found: {folder}')
    if not osp.isdir(folder):
        raise NotADirectoryError(f'expected a folder of images, got a file: '
                                 f'{folder}')
    paths = sorted(
        osp.join(folder, name) for name in os.listdir(folder)
        if name.lower().endswith(IMG_EXTENSIONS)
        and osp.isfile(osp.join(folder, name)))
    if not paths:
        raise ReIDUserError(f'no image file ({", ".join(IMG_EXTENSIONS)}) '
                            f'in {folder}')
    return paths


def init_model(config: Union[str, Config],
               checkpoint: Optional[str] = None,
               device: Union[str, torch.device] = 'cpu',
               dtype: Optional[Union[str, torch.dtype]] = None,
               half: bool = False,
               cfg_options: Optional[dict] = None) -> torch.nn.Module:
    """Build a re-ID model from a config and load its weights.

    Args:
        config (str | Config): Config file or object.
        checkpoint (str, optional): Checkpoint file. Without it (or with
            ``'none'``), the network keeps its initialisation.
        device (str | torch.device): ``'cpu'``, ``'cuda'``, ``'cuda:1'``...
            Defaults to ``'cpu'``.
        dtype (str | torch.dtype, optional): dtype of the network's
            parameters (``'float16'``, ``'bfloat16'``, ``'float32'``);
            the data preprocessor and the matching head (its BatchNorm /
            MLP layers) stay float32 and inputs are cast. None keeps
            float32.
        half (bool): Shortcut for 16-bit inference: float16 on CUDA,
            bfloat16 on the CPU (where float16 convolutions are slow or
            missing). Ignored when ``dtype`` is given.
        cfg_options (dict, optional): ``key -> value`` config overrides.

    Returns:
        nn.Module: The model in eval mode on ``device``, with its config as
        ``model.cfg``.

    Raises:
        ReIDUserError: When CUDA is requested but not available, or the
            checkpoint cannot be read.
        FileNotFoundError: When the config or checkpoint does not exist.
    """
    device = _as_device(device)
    dtype = _as_dtype(dtype)
    if dtype is None and half:
        dtype = torch.float16 if device.type == 'cuda' else torch.bfloat16
    if isinstance(config, str):
        if not osp.isfile(config):
            raise FileNotFoundError(f'config file not found: {config}')
        config = Config.fromfile(config)
    if cfg_options:
        config.merge_from_dict(cfg_options)
    register_all_modules(init_default_scope=False)
    with DefaultScope.overwrite_default_scope('mmreid_gs'):
        model = MODELS.build(config.model)
    if checkpoint is not None and str(checkpoint).lower() != 'none':
        if not osp.isfile(checkpoint):
            raise FileNotFoundError(f'checkpoint not found: {checkpoint}')
        load_checkpoint(model, checkpoint, map_location='cpu',
                        logger='current')
    else:
        model.init_weights()
    model.cfg = config
    model = model.to(device).eval()
    if dtype is not None and dtype != torch.float32:
        model.to(dtype)
        model.data_preprocessor.float()
        head = getattr(model, 'head', None)
        if isinstance(head, torch.nn.Module):
            # the matching head's BatchNorm / MLP stay float32: their
            # running variances and inputs (e.g. TransMatcher's similarity
            # maxima, whose maps are not L2-normalised) can exceed float16's
            # range (65,504); the heads take 16-bit features and choose
            # their own GEMM dtype
            head.float()
    return model


def _model_dtype(model: torch.nn.Module) -> torch.dtype:
    for p in model.parameters():
        if p.is_floating_point():
            return p.dtype
    return torch.float32


def _test_pipeline(model) -> Compose:
    """The config's test pipeline without its image loader (images are
    loaded here, so that arrays work too)."""
    cfg = model.cfg
    pipeline = cfg.get('test_pipeline') or (cfg.get('test_cfg')
                                            or {}).get('pipeline')
    if pipeline is None:
        raise KeyError('The config has no `test_pipeline`: inference needs '
                       'it to resize and pack images.')
    pipeline = [
        dict(t) for t in pipeline
        if not str(t['type']).endswith('LoadImageFromFile')
    ]
    with DefaultScope.overwrite_default_scope('mmreid_gs'):
        return Compose(pipeline)


def _as_image_list(images: ImagesLike, what: str) -> List[ImageLike]:
    """A folder, one image or a sequence of images -> a list of images."""
    if isinstance(images, (str, os.PathLike)):
        images = str(images)
        return list_images(images) if osp.isdir(images) else [images]
    if isinstance(images, np.ndarray) and images.ndim == 3:
        return [images]
    images = list(images)
    if not images:
        raise ReIDUserError(f'no {what} image given')
    return images


class ReIDInferencer:
    """Build a model once, then extract, match and rank images.

    Args:
        model (str | Config | nn.Module): A config (file or object), or a
            model from :func:`init_model`.
        checkpoint (str, optional): Checkpoint (with a config). None or
            ``'none'``: the network as initialised.
        device (str | torch.device): Device (with a config). Defaults to
            ``'cpu'``.
        dtype (str | torch.dtype, optional): Parameter dtype (with a
            config), see :func:`init_model`.
        half (bool): 16-bit inference (with a config), see
            :func:`init_model`.
        batch_size (int): Images per forward pass. Defaults to 64.
        cfg_options (dict, optional): Config overrides (with a config).

    Example:
        >>> inferencer = ReIDInferencer('configs/qaconv_gs_demo.py', 'none')
        >>> result = inferencer.rank('query.jpg', 'gallery/', topk=5)
        >>> result.paths[0], result.scores[0]
    """

    def __init__(self,
                 model: Union[str, Config, torch.nn.Module],
                 checkpoint: Optional[str] = None,
                 device: Union[str, torch.device] = 'cpu',
                 dtype: Optional[Union[str, torch.dtype]] = None,
                 half: bool = False,
                 batch_size: int = 64,
                 cfg_options: Optional[dict] = None):
        if not isinstance(model, torch.nn.Module):
            model = init_model(model, checkpoint, device, dtype, half,
                               cfg_options)
        if int(batch_size) <= 0:
            raise ReIDUserError(
                f'batch_size must be positive, got {batch_size}')
        self.model = model.eval()
        self.batch_size = int(batch_size)
        self.pipeline = _test_pipeline(model)

    @property
    def device(self) -> torch.device:
        """Device of the model."""
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        """dtype of the model's parameters (and of the feature maps)."""
        return _model_dtype(self.model)

    def _pack(self, image: ImageLike, index: int) -> dict:
        if isinstance(image, (str, os.PathLike)):
            path = str(image)
            img = read_image(path)
        else:
            path = ''
            img = np.asarray(image)
            if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
                raise ReIDUserError(
                    f'image {index}: expected an HxWx3 uint8 BGR array, got '
                    f'shape {img.shape} and dtype {img.dtype}')
        return self.pipeline(
            dict(img=img, img_shape=img.shape[:2], ori_shape=img.shape[:2],
                 gt_label=-1, cam_id=-1, img_path=path, sample_idx=index))

    def extract(self, images: ImagesLike) -> torch.Tensor:
        """Feature maps of images.

        Args:
            images (str | Sequence[str | ndarray]): A folder, an image path,
                or a sequence of image paths / HxWx3 BGR uint8 arrays.

        Returns:
            Tensor: ``model.extract_feat`` of the images on the model's
            device, in its dtype: [N, c, h, w] feature maps L2-normalised
            over channels for QAConv, [N, d] embeddings for a
            global-embedding model.
        """
        images = _as_image_list(images, 'input')
        model = self.model
        dtype = self.dtype
        feats: List[torch.Tensor] = []
        with torch.no_grad():
            for start in range(0, len(images), self.batch_size):
                batch = [
                    self._pack(image, start + i) for i, image in enumerate(
                        images[start:start + self.batch_size])
                ]
                data = model.data_preprocessor(
                    dict(inputs=[b['inputs'] for b in batch],
                         data_samples=[b['data_samples'] for b in batch]),
                    False)
                feats.append(model.extract_feat(data['inputs'].to(dtype)))
        return torch.cat(feats)

    def _feats(self, x, what: str) -> torch.Tensor:
        if isinstance(x, torch.Tensor):  # features of :meth:`extract`
            return x.to(self.device)
        return self.extract(_as_image_list(x, what))

    def match(self, query, gallery) -> torch.Tensor:
        """Scores of every query/gallery pair (``model.match``).

        Args:
            query (Tensor | str | Sequence): Features from :meth:`extract`
                ([q, c, h, w] maps for QAConv), or images as for
                :meth:`extract`.
            gallery (Tensor | str | Sequence): Same, for the gallery.

        Returns:
            Tensor: [q, g] float32 scores on the CPU, higher = more similar.
        """
        q = self._feats(query, 'query')
        g = self._feats(gallery, 'gallery')
        with torch.no_grad():
            return self.model.match(q, g).float().cpu()

    def rank(self, query: ImageLike, gallery: ImagesLike,
             topk: Optional[int] = None) -> 'RankResult':
        """Rank gallery images by their score against one query image.

        Args:
            query (str | ndarray): The query image (path or BGR array).
            gallery (str | Sequence[str]): A folder of images or a sequence
                of image paths.
            topk (int, optional): Keep the best ``topk``; None keeps all.

        Returns:
            RankResult: Gallery paths (``''`` for arrays), scores and
            gallery indices, best first.
        """
        if topk is not None and int(topk) <= 0:
            raise ReIDUserError(f'topk must be positive, got {topk}')
        gallery = _as_image_list(gallery, 'gallery')
        scores = self.match([query], gallery)[0]
        order = torch.argsort(scores, descending=True, stable=True)
        if topk is not None:
            order = order[:int(topk)]
        order = order.numpy()
        paths = [
            str(g) if isinstance(g, (str, os.PathLike)) else ''
            for g in gallery
        ]
        return RankResult(
            query=str(query) if isinstance(query,
                                           (str, os.PathLike)) else '',
            paths=[paths[i] for i in order],
            scores=scores.numpy()[order].astype(np.float32),
            indices=order.astype(np.int64))


@dataclass
class RankResult:
    """Ranked gallery of one query (:meth:`ReIDInferencer.rank`).

    Attributes:
        query (str): Path of the query (``''`` for an array).
        paths (list[str]): Gallery paths, best first.
        scores (np.ndarray): [k] float32 scores, descending.
        indices (np.ndarray): [k] int64 positions in the given gallery.
    """
    query: str
    paths: List[str]
    scores: np.ndarray
    indices: np.ndarray


def extract_feature_maps(model,
                         images: Sequence[ImageLike],
                         batch_size: int = 64) -> torch.Tensor:
    """Feature maps of images (paths or BGR uint8 arrays).

    Args:
        model (nn.Module): A model from :func:`init_model`.
        images (Sequence[str | ndarray]): Image paths or HxWx3 BGR arrays.
        batch_size (int): Images per forward pass. Defaults to 64.

    Returns:
        Tensor: Feature maps [N, c, h, w], float32 on the CPU.
    """
    inferencer = ReIDInferencer(model, batch_size=batch_size)
    return inferencer.extract(list(images)).float().cpu()


def match_images(model, query: Sequence[ImageLike],
                 gallery: Sequence[ImageLike]) -> torch.Tensor:
    """Similarity scores of every query/gallery image pair.

    Args:
        model (nn.Module): A model from :func:`init_model`.
        query (Sequence[str | ndarray]): Query images.
        gallery (Sequence[str | ndarray]): Gallery images.

    Returns:
        Tensor: Scores [len(query), len(gallery)] on the CPU; higher is
        more similar.
    """
    inferencer = ReIDInferencer(model)
    return inferencer.match(list(query), list(gallery))


def threshold_at_fpr(results: str,
                     fpr: float = 1e-3,
                     set_name: Optional[str] = None) -> dict:
    """Same/different score threshold at a false-positive rate, from the
    scores ``tools/test.py --out`` saved.

    The threshold is the one the metric's ``verification=True`` reports
    (:func:`~mmreid_gs.evaluation.functional.verification_rates` on all
    query/gallery pairs of the set): a pair is "same" when its score is
    strictly greater. It only means something for the checkpoint (and
    dtype) that produced the file.

    Args:
        results (str): The ``.npz`` file of ``tools/test.py --out``.
        fpr (float): Target false-positive rate in (0, 1]. Defaults to 1e-3.
        set_name (str, optional): Test set in the file; may be omitted when
            the file holds one set.

    Returns:
        dict: ``threshold`` (float), ``tpr`` (float, the true-positive rate
        at that threshold), ``set`` (str) and ``fpr`` (float).

    Raises:
        FileNotFoundError: When ``results`` does not exist.
        ReIDUserError: When the file is not such a result file, or the set
            is missing, ambiguous or lacks scores or identities (raised by
            :func:`~mmreid_gs.evaluation.results_file.load_test_set`).
    """
    set_name, fields = load_test_set(
        results, set_name, fields=('scores', 'query_pids', 'gallery_pids'))
    scores, labels = pair_scores_and_labels(fields['scores'],
                                            fields['query_pids'],
                                            fields['gallery_pids'])
    rates = verification_rates(scores, labels, [fpr])
    name = format_fpr(float(fpr))
    return dict(threshold=rates[f'threshold@FPR={name}'],
                tpr=rates[f'TPR@FPR={name}'], set=set_name, fpr=float(fpr))

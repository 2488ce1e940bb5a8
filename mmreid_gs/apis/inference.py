"""Inference helpers: build a model from a config, extract feature maps of
images, and score query/gallery images with QAConv."""
from typing import List, Optional, Sequence, Union

import numpy as np
import torch
from mmengine.config import Config
from mmengine.dataset import Compose
from mmengine.registry import DefaultScope
from mmengine.runner import load_checkpoint

from mmreid_gs.registry import MODELS
from mmreid_gs.utils import register_all_modules

ImageLike = Union[str, np.ndarray]


def init_model(config: Union[str, Config],
               checkpoint: Optional[str] = None,
               device: str = 'cpu') -> torch.nn.Module:
    """Build a :class:`QAConvReID` from a config and load its weights.

    Args:
        config (str | Config): Config file or object.
        checkpoint (str, optional): Checkpoint file. Without it, the
            network keeps its initialisation.
        device (str): Device. Defaults to 'cpu'.

    Returns:
        nn.Module: The model in eval mode, with its test pipeline config as
        ``model.cfg``.
    """
    if isinstance(config, str):
        config = Config.fromfile(config)
    register_all_modules(init_default_scope=False)
    with DefaultScope.overwrite_default_scope('mmreid_gs'):
        model = MODELS.build(config.model)
    if checkpoint is not None:
        load_checkpoint(model, checkpoint, map_location='cpu')
    else:
        model.init_weights()
    model.cfg = config
    return model.to(device).eval()


def _test_pipeline(model) -> Compose:
    """The config's test pipeline without its image loader (images are
    loaded here, so that arrays work too)."""
    pipeline = model.cfg.get('test_pipeline')
    if pipeline is None:
        raise KeyError('The config has no `test_pipeline`: inference needs '
                       'it to resize and pack images.')
    pipeline = [
        dict(t) for t in pipeline
        if not str(t['type']).endswith('LoadImageFromFile')
    ]
    with DefaultScope.overwrite_default_scope('mmreid_gs'):
        return Compose(pipeline)


@torch.no_grad()
def extract_feature_maps(model,
                         images: Sequence[ImageLike],
                         batch_size: int = 64) -> torch.Tensor:
    """Feature maps of images (paths or BGR uint8 arrays).

    Args:
        model (nn.Module): A model from :func:`init_model`.
        images (Sequence[str | ndarray]): Image paths or HxWx3 BGR arrays.
        batch_size (int): Images per forward pass. Defaults to 64.

    Returns:
        Tensor: Normalised feature maps [N, c, h, w] on the CPU.
    """
    import mmcv
    pipeline = _test_pipeline(model)
    feats: List[torch.Tensor] = []
    for start in range(0, len(images), batch_size):
        batch = []
        for i, image in enumerate(images[start:start + batch_size]):
            if isinstance(image, str):
                img = mmcv.imread(image)
                if img is None:
                    raise FileNotFoundError(f'cannot read image {image}')
            else:
                img = np.asarray(image)
            batch.append(
                pipeline(
                    dict(img=img, img_shape=img.shape[:2],
                         ori_shape=img.shape[:2], gt_label=-1, cam_id=-1,
                         img_path=image if isinstance(image, str) else '',
                         sample_idx=start + i)))
        data = model.data_preprocessor(
            dict(inputs=[b['inputs'] for b in batch],
                 data_samples=[b['data_samples'] for b in batch]), False)
        feats.append(model.extract_feat(data['inputs']).float().cpu())
    return torch.cat(feats)


@torch.no_grad()
def match_images(model, query: Sequence[ImageLike],
                 gallery: Sequence[ImageLike]) -> torch.Tensor:
    """QAConv similarity logits of every query/gallery image pair.

    Args:
        model (nn.Module): A model from :func:`init_model`.
        query (Sequence[str | ndarray]): Query images.
        gallery (Sequence[str | ndarray]): Gallery images.

    Returns:
        Tensor: Scores [len(query), len(gallery)]; higher is more similar.
    """
    device = next(model.parameters()).device
    q = extract_feature_maps(model, query).to(device)
    g = extract_feature_maps(model, gallery).to(device)
    return model.match(q, g).cpu()

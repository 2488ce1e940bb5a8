"""The images :class:`~mmreid_gs.engine.hooks.GraphSamplerHook` builds a
class graph from: the choice of one image per class at an epoch
(:func:`choose_class_images`, seeded apart from the sampler), their loading
through the test pipeline (:class:`ClassImages`, with the dataset's
handling of undecodable images) and their feature maps
(:func:`extract_class_features`)."""
import contextlib
from typing import Callable, Dict, List, Optional, Sequence, Union

import numpy as np
import torch
from mmengine.dataset import pseudo_collate
from mmengine.runner import autocast
from torch.utils.data import DataLoader, Dataset

from mmreid_gs.utils.errors import ReIDUserError
from mmreid_gs.utils.progress import ProgressBar


class ClassImages(Dataset):
    """The chosen image of each class, loaded through a pipeline."""

    def __init__(self, dataset, indices: Sequence[int],
                 pipeline: Callable) -> None:
        self.dataset = dataset
        self.indices = list(indices)
        self.pipeline = pipeline

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> Dict:
        idx = int(self.indices[i])
        prepare = getattr(self.dataset, 'prepare_data_with', None)
        if prepare is not None:
            # undecodable images: a clear error or a replacement of the
            # same identity, as the dataset decides for training batches
            out = prepare(idx, self.pipeline)
        else:
            out = self.pipeline(dict(self.dataset.get_data_info(idx)))
        if out is None:
            info = self.dataset.get_data_info(idx)
            raise ReIDUserError(
                'GraphSamplerHook: the pipeline dropped the image '
                f"{info.get('img_path')} (dataset index {self.indices[i]}); "
                'use the test pipeline, without filtering transforms.')
        return out


@contextlib.contextmanager
def eval_mode(model: torch.nn.Module):
    """Every module of ``model`` in eval mode inside the block, each back in
    its own mode after it (a module kept in eval during training, such as
    ``norm_eval`` BatchNorm, stays so)."""
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for module, flag in flags:
            module.training = flag


def graph_seed(seed: int, epoch: int) -> int:
    """A seed for the hook's image choice, distinct from the sampler's
    ``seed + epoch`` stream."""
    return (int(seed) * 1000003 + int(epoch) * 7919 + 0x9E3779B1) % 2**63


def choose_class_images(class_indices: Sequence[Sequence[int]], seed: int,
                        epoch: int) -> np.ndarray:
    """One random dataset index per class for ``epoch``.

    Args:
        class_indices (Sequence[Sequence[int]]): The dataset indices of
            each class (a graph sampler's ``class_indices``).
        seed (int): The sampler's seed.
        epoch (int): The epoch (0-based).

    Returns:
        np.ndarray: int64 [C] dataset index of each class's image.
    """
    g = torch.Generator().manual_seed(graph_seed(seed, epoch))
    counts = torch.tensor([len(i) for i in class_indices])
    pos = (torch.rand(len(counts), generator=g, dtype=torch.float64) *
           counts).long().clamp(max=counts - 1).numpy()
    return np.array(
        [idx[p] for idx, p in zip(class_indices, pos)], dtype=np.int64)


def extract_class_features(model, dataset, indices: List[int],
                           pipeline: Callable, batch_size: int,
                           num_workers: int = 0, fp16: bool = False,
                           show: bool = False,
                           out_device: Optional[Union[str,
                                                      torch.device]] = None
                           ) -> torch.Tensor:
    """Feature maps [len(indices), c, h, w] of dataset images.

    Args:
        model: The (unwrapped) re-ID model, in the mode to extract in.
        dataset: The train dataset.
        indices (list[int]): Dataset indices of the images.
        pipeline (callable): Loads one image (the test pipeline).
        batch_size (int): Images per forward pass.
        num_workers (int): DataLoader workers. Defaults to 0.
        fp16 (bool): Extract under autocast; the features are returned
            in float32. Defaults to False.
        show (bool): Show a progress bar. Defaults to False.
        out_device (str | torch.device, optional): Where to return the
            features; None means the model's device. Defaults to None.

    Returns:
        torch.Tensor: float32, one row per index, on ``out_device``. Each
        batch's features leave the model's device as soon as they are
        extracted: the device holds one copy of the set at the end (none
        with ``out_device='cpu'``), not the batches and their
        concatenation.
    """
    loader = DataLoader(
        ClassImages(dataset, indices, pipeline),
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        collate_fn=pseudo_collate)
    bar = ProgressBar(len(indices)) if show else None
    feats = []
    with torch.no_grad():
        for batch in loader:
            data = model.data_preprocessor(batch, False)
            with autocast(enabled=fp16):
                out = model.extract_feat(data['inputs'])
            feats.append(out.float().cpu())
            if bar is not None:
                for _ in range(len(batch['inputs'])):
                    bar.update()
    if out_device is None:
        param = next(model.parameters(), None)
        out_device = param.device if param is not None else 'cpu'
    return torch.cat(feats).to(out_device)


def image_paths(dataset, indices: Sequence[int]) -> List[str]:
    """The ``img_path`` of each dataset index (``''`` where it has none)."""
    return [
        str(dataset.get_data_info(int(i)).get('img_path', ''))
        for i in indices
    ]

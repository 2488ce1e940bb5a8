"""Helpers of the API tests: a tiny QAConv config and generated images
(module name unique across the test folders, which have no __init__)."""
import os
import os.path as osp

import cv2
import numpy as np
from helpers import TEST_PIPELINE, config_header, model_config

#: The tiny config: ResNet-18-IBN with 8 base channels, 64x32 input, 4x2x16
#: maps (the header, test pipeline and model of the shared tiny config).
TINY_QACONV = config_header() + TEST_PIPELINE + model_config(channels=8)


def write_config(folder) -> str:
    """The tiny config (ResNet-18-IBN with 8 base channels, 64x32 input,
    4x2x16 maps) in ``folder``."""
    path = osp.join(str(folder), 'tiny_qaconv.py')
    with open(path, 'w') as f:
        f.write(TINY_QACONV)
    return path


def person(seed: int, size=(64, 32)) -> np.ndarray:
    """A generated BGR 'person crop': coloured horizontal bands and noise,
    different for every seed."""
    rng = np.random.default_rng(seed)
    h, w = size
    img = np.zeros((h, w, 3), np.uint8)
    edges = np.sort(rng.integers(1, h, 3))
    for top, bottom in zip([0, *edges], [*edges, h]):
        img[top:bottom] = rng.integers(0, 256, 3)
    noise = rng.integers(-20, 21, img.shape)
    return np.clip(img.astype(int) + noise, 0, 255).astype(np.uint8)


def write_gallery(folder, num: int = 6, ext: str = '.png') -> list:
    """``num`` generated images ``g{i}`` in ``folder``; returns the paths."""
    os.makedirs(str(folder), exist_ok=True)
    paths = []
    for i in range(num):
        path = osp.join(str(folder), f'g{i}{ext}')
        cv2.imwrite(path, person(i))
        paths.append(path)
    return paths

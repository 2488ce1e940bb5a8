"""The checkpoint layout of the public QAConv / TransMatcher code, read in
one place for the converters in ``tools/model_converters/``.

The public training scripts (``main.py`` / ``main_gs.py`` of
ShengcaiLiao/QAConv, ``projects/transmatcher/main.py``) save
``checkpoint.pth.tar`` as ``dict(model=..., criterion=..., optim=...,
epoch=...)``: ``model`` the feature network's state dict (``base.*`` for the
torchvision ResNet or IBN-Net, then the neck), ``criterion`` the loss
module's, which holds the matcher as ``matcher.*``. Models saved from
``nn.DataParallel`` carry ``module.`` prefixes; a flat dict holding every key
and a matcher saved on its own (no ``matcher.`` prefix) are accepted too.
What the keys map to is each converter's business; this module flattens the
variants, reads the backbone settings and writes the converted file.
"""
import os
import os.path as osp
import re
from collections import OrderedDict
from typing import Dict, Optional, Sequence

import numpy as np
import torch

# stage block counts (layer1..layer3) -> depth
DEPTHS = {
    ('basic', (2, 2, 2)): 18,
    ('basic', (3, 4, 6)): 34,
    ('bottleneck', (3, 4, 6)): 50,
    ('bottleneck', (3, 4, 23)): 101,
    ('bottleneck', (3, 8, 36)): 152,
}


def strip_module_prefix(key: str) -> str:
    """``key`` without its leading ``module.`` prefixes (DataParallel)."""
    while key.startswith('module.'):
        key = key[len('module.'):]
    return key


def is_state_dict(obj) -> bool:
    """Whether ``obj`` is a non-empty ``str -> Tensor`` dict."""
    return isinstance(obj, dict) and len(obj) > 0 and all(
        isinstance(k, str) and isinstance(v, torch.Tensor)
        for k, v in obj.items())


def merge_public_checkpoint(checkpoint: dict,
                            matcher_modules: Sequence[str]) -> OrderedDict:
    """Flatten the public checkpoint variants into one state dict.

    Accepts ``dict(model=..., criterion=...)`` (the public layout; a
    ``matcher`` entry is read too), ``dict(state_dict=...)`` and flat state
    dicts, with or without ``module.`` prefixes. Keys of ``criterion`` /
    ``matcher`` that start with one of ``matcher_modules`` (a matcher saved
    on its own) get the ``matcher.`` prefix.

    Args:
        checkpoint (dict): The loaded checkpoint.
        matcher_modules (Sequence[str]): Key prefixes of the matcher's own
            modules, e.g. ``('bn.', 'fc.', 'logit_bn.')``.

    Returns:
        OrderedDict: ``key -> tensor`` in the public naming, prefixes
        stripped.

    Raises:
        ValueError: When no tensors are found, a part is no dict or a key
            appears twice.
    """
    parts = []
    if 'model' in checkpoint or 'criterion' in checkpoint:
        for name in ('model', 'criterion', 'matcher'):
            part = checkpoint.get(name)
            if isinstance(part, dict) and 'state_dict' in part:
                part = part['state_dict']
            if part is not None:
                parts.append((name, part))
    elif isinstance(checkpoint.get('state_dict'), dict):
        parts.append(('model', checkpoint['state_dict']))
    else:
        parts.append(('model', checkpoint))

    merged = OrderedDict()
    prefixes = tuple(matcher_modules)
    for name, part in parts:
        if not isinstance(part, dict):
            raise ValueError(f'"{name}" is a {type(part).__name__}, not a '
                             'state dict')
        for key, value in part.items():
            if not isinstance(value, torch.Tensor):
                continue
            key = strip_module_prefix(key)
            if name in ('criterion', 'matcher') and key.startswith(prefixes):
                key = 'matcher.' + key
            if key in merged:
                raise ValueError(f'key "{key}" appears twice in the '
                                 'checkpoint')
            merged[key] = value
    if not merged:
        raise ValueError('no tensors found (expected "model"/"criterion" '
                         'state dicts or a flat state dict)')
    return merged


def infer_backbone_settings(converted: Dict[str, torch.Tensor]) -> dict:
    """Depth and IBN type of converted ``backbone.*`` weights.

    Args:
        converted (dict): Converted weights (``backbone.*`` keys).

    Returns:
        dict: ``depth`` (int or None) and ``ibn`` ('a', 'b' or None).
    """
    blocks, block_type = {}, 'basic'
    for key in converted:
        match = re.match(r'backbone\.layer([1-3])\.(\d+)\.(\w+)', key)
        if match:
            stage, index = int(match.group(1)), int(match.group(2))
            blocks[stage] = max(blocks.get(stage, 0), index + 1)
            if match.group(3) == 'conv3':
                block_type = 'bottleneck'
    counts = tuple(blocks.get(i, 0) for i in (1, 2, 3))
    if ('backbone.bn1.weight' in converted
            and 'backbone.bn1.running_mean' not in converted):
        ibn = 'b'
    elif any(re.search(r'\.bn1\.IN\.weight$', k) for k in converted):
        ibn = 'a'
    else:
        ibn = None
    return dict(depth=DEPTHS.get((block_type, counts)), ibn=ibn)


def save_converted(dst: str,
                   state_dict: Dict[str, torch.Tensor],
                   meta: dict,
                   source: Optional[dict] = None) -> None:
    """Write an MMEngine checkpoint ``dict(meta=..., state_dict=...)``.

    Args:
        dst (str): Output file; its folder is created.
        state_dict (dict): The converted weights.
        meta (dict): What the converter records (source, settings, ...).
        source (dict, optional): The public checkpoint: its ``epoch`` is
            recorded as ``meta['source_epoch']``.
    """
    meta = dict(meta)
    epoch = (source or {}).get('epoch')
    if isinstance(epoch, (int, np.integer)):
        meta['source_epoch'] = int(epoch)
    os.makedirs(osp.dirname(osp.abspath(dst)), exist_ok=True)
    torch.save(dict(meta=meta, state_dict=state_dict), dst)

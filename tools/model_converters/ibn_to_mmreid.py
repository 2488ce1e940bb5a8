"""Convert IBN-Net / torchvision ImageNet ResNet weights for mmreid_gs.

The IBN-Net release weights (``resnet50_ibn_b-9ca61e85.pth`` of
XingangPan/IBN-Net) and torchvision's ResNet weights are plain state dicts in
the torchvision naming (``conv1``, ``bn1``, ``layer1``..``layer4``, ``fc``;
IBN-b adds an affine ``InstanceNorm2d`` as the stem ``bn1`` and ``IN`` after
the residual sum of the last block of stages 1 and 2; IBN-a splits ``bn1`` of
the blocks into ``bn1.IN``/``bn1.BN``). Training checkpoints of IBN-Net's
``imagenet.py`` (``dict(state_dict=...)`` with ``module.`` prefixes) are
accepted too. mmpretrain's ``ResNet`` (and our ``ResNetIBN``) use the same
names, so the conversion drops the classifier ``fc`` and, by default,
``layer4`` (our backbone stops at layer3), and adds the ``backbone.`` prefix.

Usage::

    # a checkpoint for ``load_from`` (keys ``backbone.*``)
    python tools/model_converters/ibn_to_mmreid.py \
        resnet50_ibn_b-9ca61e85.pth checkpoints/resnet50_ibn_b_mmreid.pth
    # a pure backbone checkpoint for
    # backbone=dict(..., init_cfg=dict(type='Pretrained', checkpoint=...))
    python tools/model_converters/ibn_to_mmreid.py --backbone-only \
        resnet50_ibn_b-9ca61e85.pth checkpoints/resnet50_ibn_b_backbone.pth
"""
import argparse
import os
import os.path as osp
import re
from collections import OrderedDict

import torch

from mmreid_gs.engine.checkpoint import \
    load_weights_file as load_checkpoint_file

RESNET_PARTS = ('conv1.', 'bn1.', 'layer1.', 'layer2.', 'layer3.',
                'layer4.')


def _strip_module(key):
    while key.startswith('module.'):
        key = key[len('module.'):]
    return key


def convert_ibn(checkpoint,
                backbone_only=False,
                keep_layer4=False,
                source='<state dict>'):
    """Convert ImageNet ResNet / IBN-Net weights to mmreid_gs keys.

    Args:
        checkpoint (dict): A state dict, or a dict holding one under
            ``state_dict`` or ``model``.
        backbone_only (bool): Whether to leave out the ``backbone.`` prefix
            (a checkpoint for the backbone's ``init_cfg``). Defaults to False.
        keep_layer4 (bool): Whether to keep ``layer4`` (for a 4-stage
            backbone). Defaults to False.
        source (str): Name of the source in error messages.

    Returns:
        tuple: ``(converted, dropped, unmapped)``: the OrderedDict of
        tensors, the keys left out on purpose (``fc``, ``layer4``) and the
        unknown keys left out.

    Raises:
        ValueError: When the input holds no ResNet weights.
    """
    state = checkpoint
    for name in ('state_dict', 'model'):
        if isinstance(state.get(name), dict):
            state = state[name]
            break
    prefix = '' if backbone_only else 'backbone.'
    converted, dropped, unmapped = OrderedDict(), [], []
    for key, value in state.items():
        if not isinstance(value, torch.Tensor):
            continue
        key = _strip_module(key)
        if key.startswith(('base.', 'backbone.')):
            raise ValueError(
                f'{source} is not an ImageNet ResNet/IBN-Net state dict (key '
                f'"{key}"); convert public QAConv checkpoints with '
                'tools/model_converters/qaconv_to_mmreid.py')
        if key.startswith('fc.') or (key.startswith('layer4.')
                                     and not keep_layer4):
            dropped.append(key)
        elif key.startswith(RESNET_PARTS):
            converted[prefix + key] = value
        else:
            unmapped.append(key)
    if not any(k.startswith(prefix + 'layer1.') for k in converted):
        raise ValueError(
            f'{source} holds no ResNet weights (no "layer1.*" keys); found '
            f'keys such as {list(state)[:8]}')
    return converted, dropped, unmapped


def describe(converted, prefix=''):
    """Block counts of the stages and the IBN type of converted weights.

    Returns:
        dict: ``blocks`` (list of block counts per stage) and ``ibn``
        ('a', 'b' or None).
    """
    blocks = {}
    for key in converted:
        match = re.match(re.escape(prefix) + r'layer(\d)\.(\d+)\.', key)
        if match:
            stage, index = int(match.group(1)), int(match.group(2))
            blocks[stage] = max(blocks.get(stage, 0), index + 1)
    if (prefix + 'bn1.weight' in converted
            and prefix + 'bn1.running_mean' not in converted):
        ibn = 'b'
    elif any(k.endswith('.bn1.IN.weight') for k in converted):
        ibn = 'a'
    else:
        ibn = None
    return dict(blocks=[blocks[s] for s in sorted(blocks)], ibn=ibn)


def parse_args():
    parser = argparse.ArgumentParser(
        description='Convert IBN-Net / torchvision ImageNet ResNet weights '
        'into mmreid_gs keys.')
    parser.add_argument('src', help='ImageNet weights (.pth)')
    parser.add_argument('dst', help='output checkpoint (.pth)')
    parser.add_argument(
        '--backbone-only',
        action='store_true',
        help='no "backbone." prefix: a checkpoint for the backbone\'s '
        'init_cfg=dict(type="Pretrained", checkpoint=...)')
    parser.add_argument(
        '--keep-layer4',
        action='store_true',
        help='keep layer4 (dropped by default: QAConv uses layer3)')
    return parser.parse_args()


def main():
    args = parse_args()
    checkpoint = load_checkpoint_file(args.src)
    converted, dropped, unmapped = convert_ibn(
        checkpoint,
        backbone_only=args.backbone_only,
        keep_layer4=args.keep_layer4,
        source=args.src)
    prefix = '' if args.backbone_only else 'backbone.'
    info = describe(converted, prefix)
    print(f'Converted {len(converted)} tensors from {args.src}: '
          f'blocks per stage {info["blocks"]}, IBN type {info["ibn"]}')
    if dropped:
        print(f'Dropped {len(dropped)} keys (fc'
              f'{"" if args.keep_layer4 else " / layer4"}), e.g. '
              f'{dropped[:4]}')
    if unmapped:
        print(f'WARNING: {len(unmapped)} unmapped keys were left out: '
              f'{unmapped}')
    meta = dict(
        converted_from=args.src,
        converter='tools/model_converters/ibn_to_mmreid.py',
        backbone_only=args.backbone_only,
        blocks=info['blocks'],
        ibn=info['ibn'],
        dropped_keys=dropped,
        unmapped_keys=unmapped)
    os.makedirs(osp.dirname(osp.abspath(args.dst)), exist_ok=True)
    torch.save(dict(meta=meta, state_dict=converted), args.dst)
    print(f'Saved {args.dst}')


if __name__ == '__main__':
    main()

"""Convert a checkpoint of the public QAConv code into an mmreid_gs one.

The public code (``main.py`` / ``main_gs.py`` of ShengcaiLiao/QAConv) saves
``checkpoint.pth.tar`` as ``dict(model=..., criterion=..., optim=...,
epoch=...[, base_loss, final_epochs, lr_stepped])`` where

* ``model`` is the state dict of its ``resmap.ResNet``: ``base.*`` (the
  torchvision ResNet or IBN-Net: ``conv1``, ``bn1``, ``layer1``..``layer4``,
  ``fc``), ``neck_conv.weight`` and ``neck_bn.*``;
* ``criterion`` is the state dict of the loss module, which holds the QAConv
  matcher as ``matcher.bn.*``, ``matcher.fc.*`` and ``matcher.logit_bn.*``
  (``ClassMemoryLoss`` of QAConv 1.x adds ``class_memory``/``valid_class``).

Models saved from ``nn.DataParallel`` carry ``module.`` prefixes; a single
flat dict holding both the model and the matcher keys is accepted too.

Key mapping (our ``QAConvReID``):

* ``base.*``        -> ``backbone.*`` (``base.layer4.*`` and ``base.fc.*`` are
  dropped: our backbone stops at layer3)
* ``neck_conv.*``   -> ``neck.conv.*``
* ``neck_bn.*``     -> ``neck.bn.*``
* ``matcher.*``     -> ``head.*`` (``bn``, ``fc``, ``logit_bn``)

Usage::

    python tools/model_converters/qaconv_to_mmreid.py \
        checkpoint.pth.tar work_dirs/qaconv_public/converted.pth
    python tools/test.py configs/qaconv_gs_market.py \
        work_dirs/qaconv_public/converted.pth

The output is an MMEngine checkpoint ``dict(meta=..., state_dict=...)``; the
meta records the source and the model settings read from the weights (depth,
IBN type, neck channels, feature-map size ``hw``).
"""
import argparse
from collections import OrderedDict

from mmreid_gs.engine.checkpoint import \
    load_weights_file as load_checkpoint_file
from mmreid_gs.engine.public_checkpoint import (infer_backbone_settings,
                                                is_state_dict,
                                                merge_public_checkpoint,
                                                save_converted,
                                                strip_module_prefix)

MATCHER_MODULES = ('bn.', 'fc.', 'logit_bn.')
# parts of the public loss modules that are no part of our model
KNOWN_LOSS_STATE = ('class_memory', 'valid_class')


def merge_qaconv_checkpoint(checkpoint):
    """Flatten the public checkpoint variants into one state dict.

    Accepts ``dict(model=..., criterion=...)`` (the public layout),
    ``dict(state_dict=...)`` and flat state dicts, with or without
    ``module.`` prefixes. Criterion keys without the ``matcher.`` prefix
    (a matcher saved on its own) get it.

    Args:
        checkpoint (dict): The loaded checkpoint.

    Returns:
        OrderedDict: ``key -> tensor`` in the public naming (``base.*``,
        ``neck_conv.*``, ``neck_bn.*``, ``matcher.*``).

    Raises:
        ValueError: When no tensors are found.
    """
    return merge_public_checkpoint(checkpoint, MATCHER_MODULES)


def _convert(state):
    """Map the keys of a flat public state dict.

    Returns:
        tuple: ``(converted, dropped, unmapped)``.
    """
    converted, dropped, unmapped = OrderedDict(), [], []
    for key, value in state.items():
        key = strip_module_prefix(key)
        if key.startswith('base.'):
            rest = key[len('base.'):]
            if rest.startswith(('layer4.', 'fc.')):
                dropped.append(key)
            else:
                converted['backbone.' + rest] = value
        elif key.startswith('neck_conv.'):
            converted['neck.conv.' + key[len('neck_conv.'):]] = value
        elif key.startswith('neck_bn.'):
            converted['neck.bn.' + key[len('neck_bn.'):]] = value
        elif key.startswith('matcher.') and key[len('matcher.'):].startswith(
                MATCHER_MODULES):
            converted['head.' + key[len('matcher.'):]] = value
        elif key in KNOWN_LOSS_STATE:
            dropped.append(key)
        else:
            unmapped.append(key)
    return converted, dropped, unmapped


def convert_qaconv(state, source='<state dict>', strict=True):
    """Convert public QAConv weights to the keys of our ``QAConvReID``.

    Args:
        state (dict): A public checkpoint (``dict(model=..., criterion=...)``)
            or a flat state dict in the public naming (see the module
            docstring).
        source (str): Name of the source in error messages.
        strict (bool): Whether to require the backbone and the matcher
            weights. Defaults to True.

    Returns:
        OrderedDict: ``backbone.*``, ``neck.*`` and ``head.*`` tensors.

    Raises:
        ValueError: When expected weights are missing (``strict``).
    """
    converted, _, _ = convert_qaconv_with_report(state, source, strict)
    return converted


def convert_qaconv_with_report(state, source='<state dict>', strict=True):
    """Same as :func:`convert_qaconv` but also returns what was left out.

    Returns:
        tuple: ``(converted, dropped, unmapped)``; ``dropped`` lists the known
        keys left out on purpose (``layer4``, ``fc``, class memory),
        ``unmapped`` the unknown ones.
    """
    try:
        if not is_state_dict(state):
            state = merge_qaconv_checkpoint(state)
        converted, dropped, unmapped = _convert(state)
    except ValueError as err:
        raise ValueError(f'{source}: {err}') from err
    missing = []
    if not any(k.startswith('backbone.') for k in converted):
        missing.append('base.* (backbone)')
    if 'head.fc.weight' not in converted:
        missing.append('matcher.fc.weight (QAConv matcher, saved in '
                       '"criterion")')
    if strict and missing:
        raise ValueError(
            f'{source} lacks expected QAConv weights: {", ".join(missing)}; '
            f'found keys such as {list(state)[:8]}')
    return converted, dropped, unmapped


def infer_model_settings(converted):
    """Read the model settings from the converted weights.

    Args:
        converted (dict): Output of :func:`convert_qaconv`.

    Returns:
        dict: ``depth`` (int or None), ``ibn`` ('a', 'b' or None),
        ``neck_in_channels``/``neck_out_channels`` and ``hw`` (int or None).
    """
    settings = infer_backbone_settings(converted)
    if 'neck.conv.weight' in converted:
        out_ch, in_ch = converted['neck.conv.weight'].shape[:2]
        settings.update(neck_in_channels=int(in_ch),
                        neck_out_channels=int(out_ch))
    if 'head.fc.weight' in converted:
        settings['hw'] = int(converted['head.fc.weight'].shape[1])
    return settings


def parse_args():
    parser = argparse.ArgumentParser(
        description='Convert a public QAConv checkpoint (checkpoint.pth.tar) '
        'into an mmreid_gs QAConvReID checkpoint.')
    parser.add_argument('src', help='public QAConv checkpoint')
    parser.add_argument('dst', help='output MMEngine checkpoint (.pth)')
    parser.add_argument(
        '--allow-partial',
        action='store_true',
        help='write the output even when the backbone or the matcher '
        'weights are missing')
    return parser.parse_args()


def main():
    args = parse_args()
    checkpoint = load_checkpoint_file(args.src)
    converted, dropped, unmapped = convert_qaconv_with_report(
        checkpoint, source=args.src, strict=not args.allow_partial)
    settings = infer_model_settings(converted)
    print(f'Converted {len(converted)} tensors from {args.src}')
    print(f'Model settings read from the weights: {settings}')
    if dropped:
        print(f'Dropped {len(dropped)} keys not used by QAConvReID '
              f'(layer4 / fc / class memory), e.g. {dropped[:4]}')
    if unmapped:
        print(f'WARNING: {len(unmapped)} unmapped keys were left out: '
              f'{unmapped}')
    meta = dict(
        converted_from=args.src,
        converter='tools/model_converters/qaconv_to_mmreid.py',
        model_settings=settings,
        dropped_keys=dropped,
        unmapped_keys=unmapped)
    save_converted(args.dst, converted, meta, checkpoint)
    print(f'Saved {args.dst}')


if __name__ == '__main__':
    main()

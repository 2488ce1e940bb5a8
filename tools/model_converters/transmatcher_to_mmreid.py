"""Convert a checkpoint of the public TransMatcher code into an mmreid_gs one.

The public TransMatcher training script (``projects/transmatcher/main.py``
of ShengcaiLiao/QAConv, also ShengcaiLiao/TransMatcher) saves
``checkpoint.pth.tar`` as ``dict(model=..., criterion=..., optim=...,
epoch=...)`` where

* ``model`` is the state dict of its ``restranmap.ResNet``: ``base.*`` (the
  torchvision ResNet or IBN-Net), ``neck_conv.weight`` / ``neck_conv.bias``
  (3x3, with a bias, no BatchNorm) and ``encoder.layers.{i}.*`` (the
  ``num_trans_layers - 1`` ``nn.TransformerEncoderLayer``);
* ``criterion`` is the state dict of ``PairwiseMatchingLoss``, which holds
  the ``TransMatcher`` as ``matcher``: ``matcher.decoder.layers.{i}.*``
  (``score_embed``, ``fc1``, ``bn1``, ``fc2``, ``bn2``, ``fc3``, ``bn3``),
  ``matcher.decoder.norm.*`` and ``matcher.decoder_layer.*`` (the template
  layer the decoder layers were copied from; unused by the forward pass).

Models saved from ``nn.DataParallel`` carry ``module.`` prefixes; a single
flat dict holding all keys, and a matcher saved on its own (keys
``decoder.*``), are accepted too.

Key mapping (our ``TransMatcherReID``):

* ``base.*``              -> ``backbone.*`` (``base.layer4.*`` and
  ``base.fc.*`` are dropped: our backbone stops at layer3)
* ``neck_conv.*``         -> ``neck.conv.*``
* ``neck_bn.*``           -> ``neck.bn.*`` (not in the public code; for
  checkpoints of a neck with BatchNorm)
* ``encoder.layers.*``    -> ``neck.encoder.layers.*``
* ``matcher.decoder.*`` / ``decoder.*`` -> ``head.decoder.*``
* ``matcher.decoder_layer.*`` / ``decoder_layer.*`` -> dropped

Any other key is an error that lists them (``--allow-partial`` writes the
output anyway). The public neck has ``conv_bias=True, with_bn=False`` in
``TransMatcherNeck`` terms; the settings read from the weights (and the
neck / head config that loads the result) are printed and recorded in the
meta. The number of attention heads is not in the weights: the public
default (and the paper) is 1.

Usage::

    python tools/model_converters/transmatcher_to_mmreid.py \
        checkpoint.pth.tar work_dirs/transmatcher_public/converted.pth
"""
import argparse
import re
from collections import OrderedDict

from mmreid_gs.engine.checkpoint import \
    load_weights_file as load_checkpoint_file
from mmreid_gs.engine.public_checkpoint import (infer_backbone_settings,
                                                is_state_dict,
                                                merge_public_checkpoint,
                                                save_converted,
                                                strip_module_prefix)

# the matcher's own modules (a matcher saved without the ``matcher.`` prefix)
MATCHER_MODULES = ('decoder.', 'decoder_layer.')
# public key prefix -> ours
KEY_MAP = (
    ('neck_conv.', 'neck.conv.'),
    ('neck_bn.', 'neck.bn.'),
    ('encoder.layers.', 'neck.encoder.layers.'),
    ('matcher.decoder.', 'head.decoder.'),
    ('decoder.', 'head.decoder.'),
)
# known parts that our model does not have
DROPPED = ('base.layer4.', 'base.fc.', 'matcher.decoder_layer.',
           'decoder_layer.')


def merge_transmatcher_checkpoint(checkpoint):
    """Flatten the public checkpoint variants into one state dict (see
    :func:`mmreid_gs.engine.public_checkpoint.merge_public_checkpoint`).

    Returns:
        OrderedDict: ``key -> tensor`` in the public naming.
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
        if key.startswith(DROPPED):
            dropped.append(key)
        elif key.startswith('base.'):
            converted['backbone.' + key[len('base.'):]] = value
        else:
            for public, ours in KEY_MAP:
                if key.startswith(public):
                    converted[ours + key[len(public):]] = value
                    break
            else:
                unmapped.append(key)
    return converted, dropped, unmapped


def convert_transmatcher_with_report(state,
                                     source='<state dict>',
                                     strict=True):
    """Convert public TransMatcher weights to the keys of our
    ``TransMatcherReID``.

    Args:
        state (dict): A public checkpoint (``dict(model=..., criterion=...)``)
            or a flat state dict in the public naming (see the module
            docstring).
        source (str): Name of the source in error messages.
        strict (bool): Whether unknown keys and missing parts (backbone,
            neck, matcher) are errors. Defaults to True.

    Returns:
        tuple: ``(converted, dropped, unmapped)``: the ``backbone.*``,
        ``neck.*`` and ``head.*`` tensors, the known keys left out on
        purpose (``layer4``, ``fc``, the template ``decoder_layer``) and the
        unknown ones (empty when ``strict``).

    Raises:
        ValueError: On unknown keys or missing parts (``strict``).
    """
    try:
        if not is_state_dict(state):
            state = merge_transmatcher_checkpoint(state)
        converted, dropped, unmapped = _convert(state)
    except ValueError as err:
        raise ValueError(f'{source}: {err}') from err
    if strict and unmapped:
        raise ValueError(
            f'{source} holds {len(unmapped)} keys that are no part of a '
            f'public TransMatcher checkpoint: {unmapped} (known: base.*, '
            'neck_conv.*, neck_bn.*, encoder.layers.*, matcher.decoder.*, '
            'matcher.decoder_layer.*)')
    missing = []
    if not any(k.startswith('backbone.') for k in converted):
        missing.append('base.* (backbone)')
    if 'neck.conv.weight' not in converted:
        missing.append('neck_conv.weight (neck)')
    if not any(k.startswith('head.decoder.layers.') for k in converted):
        missing.append('matcher.decoder.layers.* (TransMatcher, saved in '
                       '"criterion")')
    if strict and missing:
        raise ValueError(
            f'{source} lacks expected TransMatcher weights: '
            f'{", ".join(missing)}; found keys such as {list(state)[:8]}')
    return converted, dropped, unmapped


def convert_transmatcher(state, source='<state dict>', strict=True):
    """Same as :func:`convert_transmatcher_with_report`, the converted
    weights only.

    Returns:
        OrderedDict: ``backbone.*``, ``neck.*`` and ``head.*`` tensors.
    """
    return convert_transmatcher_with_report(state, source, strict)[0]


def _count(converted, pattern):
    found = {
        int(m.group(1))
        for m in (re.match(pattern, k) for k in converted) if m
    }
    return max(found) + 1 if found else 0


def infer_model_settings(converted):
    """Read the model settings from the converted weights.

    Args:
        converted (dict): Output of :func:`convert_transmatcher`.

    Returns:
        dict: ``depth``, ``ibn`` (backbone), ``neck_in_channels``,
        ``d_model``, ``conv_bias``, ``with_bn``, ``num_layers`` (matching
        layers), ``num_encoder_layers``, ``encoder_dim_feedforward``,
        ``dim_feedforward`` (of the matcher's MLP) and ``hw`` (locations of
        the feature map); None where the weights do not tell.
    """
    settings = infer_backbone_settings(converted)
    conv = converted.get('neck.conv.weight')
    settings.update(
        neck_in_channels=None if conv is None else int(conv.shape[1]),
        d_model=None if conv is None else int(conv.shape[0]),
        conv_bias='neck.conv.bias' in converted,
        with_bn='neck.bn.weight' in converted,
        num_layers=_count(converted, r'head\.decoder\.layers\.(\d+)\.'),
        num_encoder_layers=_count(converted,
                                  r'neck\.encoder\.layers\.(\d+)\.'))
    linear1 = converted.get('neck.encoder.layers.0.linear1.weight')
    settings['encoder_dim_feedforward'] = (None if linear1 is None else int(
        linear1.shape[0]))
    fc2 = converted.get('head.decoder.layers.0.fc2.weight')
    settings['dim_feedforward'] = None if fc2 is None else int(fc2.shape[0])
    settings['hw'] = None if fc2 is None else int(fc2.shape[1])
    return settings


def model_config(settings):
    """The ``neck`` / ``head`` config entries that load the converted
    weights (the head's ``height`` x ``width`` must multiply to ``hw``; the
    public input 384x128 gives 24x8).

    Returns:
        dict: ``neck`` and ``head`` config dicts.
    """
    if settings['num_encoder_layers'] + 1 != settings['num_layers']:
        raise ValueError(
            f'{settings["num_encoder_layers"]} encoder layers for '
            f'{settings["num_layers"]} matching layers: TransMatcherNeck '
            'has num_layers - 1 encoder layers')
    neck = dict(
        type='TransMatcherNeck',
        in_channels=settings['neck_in_channels'],
        d_model=settings['d_model'],
        num_layers=settings['num_layers'],
        dim_feedforward=settings['encoder_dim_feedforward'] or 2048,
        conv_bias=settings['conv_bias'],
        with_bn=settings['with_bn'])
    head = dict(
        type='TransMatcherHead',
        d_model=settings['d_model'],
        num_layers=settings['num_layers'],
        dim_feedforward=settings['dim_feedforward'])
    return dict(neck=neck, head=head)


def parse_args():
    parser = argparse.ArgumentParser(
        description='Convert a public TransMatcher checkpoint '
        '(checkpoint.pth.tar) into an mmreid_gs TransMatcherReID checkpoint.')
    parser.add_argument('src', help='public TransMatcher checkpoint')
    parser.add_argument('dst', help='output MMEngine checkpoint (.pth)')
    parser.add_argument(
        '--allow-partial',
        action='store_true',
        help='write the output even with unknown keys or without the '
        'backbone, neck or matcher weights')
    return parser.parse_args()


def main():
    args = parse_args()
    checkpoint = load_checkpoint_file(args.src)
    converted, dropped, unmapped = convert_transmatcher_with_report(
        checkpoint, source=args.src, strict=not args.allow_partial)
    settings = infer_model_settings(converted)
    print(f'Converted {len(converted)} tensors from {args.src}')
    print(f'Model settings read from the weights: {settings}')
    try:
        config = model_config(settings)
    except (TypeError, ValueError) as err:  # partial or inconsistent
        config = None
        print(f'WARNING: no model config: {err}')
    else:
        print(f'Config that loads them (head height x width = '
              f'{settings["hw"]} locations; attention heads: 1): {config}')
    if dropped:
        print(f'Dropped {len(dropped)} keys not used by TransMatcherReID '
              f'(layer4 / fc / the template decoder_layer), e.g. '
              f'{dropped[:4]}')
    if unmapped:
        print(f'WARNING: {len(unmapped)} unmapped keys were left out: '
              f'{unmapped}')
    meta = dict(
        converted_from=args.src,
        converter='tools/model_converters/transmatcher_to_mmreid.py',
        model_settings=settings,
        model_config=config,
        dropped_keys=dropped,
        unmapped_keys=unmapped)
    save_converted(args.dst, converted, meta, checkpoint)
    print(f'Saved {args.dst}')


if __name__ == '__main__':
    main()

"""Export a re-ID model to two ONNX graphs and check them with onnxruntime.

    python tools/deployment/pytorch2onnx.py CONFIG CKPT|none --out-dir DIR
        [--shape H W] [--opset 18] [--no-check] [--tolerance 1e-4]

Writes ``DIR/feature_extractor.onnx`` (``images`` [N, 3, H, W] float32 BGR
pixel values 0..255, resized -> ``feats`` [N, c, h, w] L2-normalised
feature maps; N dynamic), ``DIR/matcher.onnx`` (``query`` [q, c, h, w],
``gallery`` [g, c, h, w] -> ``scores`` [q, g]; q and g dynamic) and
``DIR/export_info.json``. Then runs both graphs with onnxruntime on
generated inputs against PyTorch (the matcher against ``model.match``) and
prints the largest differences; above ``--tolerance`` it fails (exit 2).
``CKPT = none`` exports the network as initialised.
"""
import argparse
import contextlib
import io
import sys

from mmreid_gs.apis.deploy import (check_onnx, export_onnx,
                                   input_size_from_config)
from mmreid_gs.apis.inference import init_model
from mmreid_gs.cli import load_config, run_cli
from mmreid_gs.utils.errors import ConfigError


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Export the feature extractor and the matcher of a '
        're-ID model to ONNX')
    parser.add_argument('config', help='config file')
    parser.add_argument(
        'checkpoint', help='checkpoint file, or "none" for the initialised '
        'network')
    parser.add_argument('--out-dir', required=True, help='output folder')
    parser.add_argument(
        '--shape', type=int, nargs=2, metavar=('H', 'W'),
        help='input height and width (default: the Resize of the config\'s '
        'test pipeline)')
    parser.add_argument('--opset', type=int, default=18, help='ONNX opset')
    parser.add_argument(
        '--no-check', action='store_true',
        help='do not compare with onnxruntime (onnxruntime not needed)')
    parser.add_argument(
        '--tolerance', type=float, default=1e-4,
        help='largest allowed absolute difference of features and scores')
    parser.add_argument(
        '--verbose', action='store_true',
        help='show the output of the ONNX exporter')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    try:
        import onnx  # noqa: F401
    except ImportError:
        raise ConfigError('the export needs onnx (and onnxruntime for the '
                           'check): pip install -r requirements/optional.txt'
                           ) from None
    cfg = load_config(args.config)
    model = init_model(cfg, args.checkpoint, 'cpu')
    size = tuple(args.shape) if args.shape else input_size_from_config(cfg)
    quiet = contextlib.nullcontext() if args.verbose else \
        contextlib.redirect_stdout(io.StringIO())
    with quiet:
        paths = export_onnx(model, args.out_dir, size, opset=args.opset)
    print(f'feature extractor: {paths["feature_extractor"]}\n'
          f'matcher:           {paths["matcher"]}\n'
          f'input size:        {size[0]}x{size[1]} (H x W)')
    if args.no_check:
        return
    diffs = check_onnx(model, paths, size)
    print(f'onnxruntime vs PyTorch: features max |diff| '
          f'{diffs["feats_max_abs_diff"]:.3g}, scores max |diff| '
          f'{diffs["scores_max_abs_diff"]:.3g} (scores up to '
          f'{diffs["scores_max_abs"]:.3g})')
    worst = max(diffs['feats_max_abs_diff'], diffs['scores_max_abs_diff'])
    if not worst <= args.tolerance:
        raise RuntimeError(
            f'the ONNX graphs in {args.out_dir} differ from PyTorch by '
            f'{worst:.3g} > --tolerance {args.tolerance:g}')


if __name__ == '__main__':
    sys.exit(run_cli(main))

"""Rank a folder of person crops for a query image.

    python tools/demo/match_demo.py CONFIG CKPT|none QUERY_IMG GALLERY_DIR
        [--topk 10] [--out ranked.png] [--overwrite]
        [--threshold T | --results results.npz [--fpr 1e-3] [--set NAME]]
        [--device cpu|cuda] [--half] [--batch-size 64]

Prints the top-k gallery images with their scores (higher = more similar)
and, given a threshold, a same/different decision for each (same when the
score is greater than the threshold). ``--results`` takes the threshold
that ``tools/test.py CONFIG CKPT --out results.npz`` gives for a
false-positive rate ``--fpr`` on one of its test sets (the threshold the
metric's ``verification=True`` reports); it only fits the checkpoint that
wrote the file. Writes the ranked picture (query, then the top-k with their
scores; green frames: same, red: different, grey: no threshold given) to
``--out``, by default ``ranked_<query file name>.png`` in the current folder;
an existing picture is never replaced silently: the tool stops with one line
unless ``--overwrite`` is given.
"""
import argparse
import os.path as osp
import sys

from mmreid_gs.apis.inference import (ReIDInferencer, list_images, read_image,
                                      threshold_at_fpr)
from mmreid_gs.cli import load_config, run_cli
from mmreid_gs.utils.errors import ConfigError


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Rank a folder of person crops for a query image')
    parser.add_argument('config', help='config file')
    parser.add_argument(
        'checkpoint', help='checkpoint file, or "none" for the initialised '
        'network')
    parser.add_argument('query', help='query image')
    parser.add_argument('gallery', help='folder of gallery images')
    parser.add_argument('--topk', type=int, default=10,
                        help='how many gallery images to show')
    parser.add_argument(
        '--out', help='ranked picture (.png/.jpg); default: '
        'ranked_<query file name>.png in the current folder. An existing '
        'file stops the tool unless --overwrite')
    parser.add_argument('--overwrite', action='store_true',
                        help='replace the --out picture if it exists')
    decision = parser.add_mutually_exclusive_group()
    decision.add_argument(
        '--threshold', type=float,
        help='score above which a pair is the same person')
    decision.add_argument(
        '--results', help='.npz of tools/test.py --out: take the threshold '
        'at --fpr from its scores')
    parser.add_argument('--fpr', type=float, default=1e-3,
                        help='false-positive rate of the --results threshold')
    parser.add_argument('--set', dest='set_name',
                        help='test set of --results (if it has several)')
    parser.add_argument('--device', default='cpu', help='cpu, cuda, cuda:1')
    parser.add_argument(
        '--half', action='store_true',
        help='16-bit inference (float16 on CUDA, bfloat16 on the CPU)')
    parser.add_argument('--batch-size', type=int, default=64)
    return parser.parse_args(argv)


def draw_ranked(query, paths, scores, kinds, title, out):
    """Write the ranked picture with :class:`ReIDVisualizer`."""
    from mmreid_gs.visualization import ReIDVisualizer
    vis = ReIDVisualizer(name='match_demo')
    row = dict(query=query, gallery=list(paths), scores=list(scores),
               kinds=list(kinds), title=title)
    return vis.add_ranked_lists('match_demo', [row], out_file=out)


def default_out(query: str) -> str:
    """The picture's default name: ``ranked_<query stem>.png``."""
    return f'ranked_{osp.splitext(osp.basename(query))[0]}.png'


def main(argv=None):
    args = parse_args(argv)
    if args.topk <= 0:
        raise ConfigError(f'--topk must be positive, got {args.topk}')
    if args.out is None:
        args.out = default_out(args.query)
    if not args.out.lower().endswith(('.png', '.jpg', '.jpeg')):
        raise ConfigError(f'--out must be a .png or .jpg file: {args.out}')
    if osp.exists(args.out) and not args.overwrite:
        raise ConfigError(
            f'--out {args.out} exists; pass --overwrite to replace it, or '
            'another --out')
    if args.set_name is not None and args.results is None:
        raise ConfigError('--set needs --results')
    # bad input first, before the model is built
    read_image(args.query)
    gallery = list_images(args.gallery)
    for path in gallery:
        read_image(path)
    threshold, source = args.threshold, None
    if args.results is not None:
        found = threshold_at_fpr(args.results, args.fpr, args.set_name)
        threshold = found['threshold']
        source = (f'FPR {args.fpr:g} on {found["set"]} of {args.results}, '
                  f'TPR {found["tpr"]:.3f} there')
    elif threshold is not None:
        source = 'given'

    cfg = load_config(args.config)
    inferencer = ReIDInferencer(cfg, args.checkpoint, device=args.device,
                                half=args.half, batch_size=args.batch_size)
    result = inferencer.rank(args.query, gallery, topk=args.topk)

    print(f'query:     {args.query}')
    print(f'gallery:   {args.gallery} ({len(gallery)} images)')
    if threshold is None:
        print('threshold: none (give --threshold or --results for a '
              'same/different decision)')
        kinds = ['ignored'] * len(result.paths)
    else:
        print(f'threshold: {threshold:.4f} ({source})')
        kinds = ['match' if s > threshold else 'non-match'
                 for s in result.scores]
    print(f'{"rank":>4}  {"score":>9}  {"decision":<9} image')
    for rank, (path, score, kind) in enumerate(
            zip(result.paths, result.scores, kinds), 1):
        decision = {'match': 'same', 'non-match': 'different'}.get(kind, '-')
        print(f'{rank:>4}  {score:>9.4f}  {decision:<9} {path}')

    title = f'query {osp.basename(args.query)}: top {len(result.paths)} ' \
        f'of {len(gallery)}'
    if threshold is not None:
        title += f', threshold {threshold:.3f}'
    draw_ranked(args.query, result.paths, result.scores, kinds, title,
                args.out)
    print(f'ranked picture: {args.out}')


if __name__ == '__main__':
    sys.exit(run_cli(main))

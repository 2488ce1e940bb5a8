"""Draw QAConv's local correspondences of one image pair (the QAConv
paper's Fig. 2).

    python tools/visualization/vis_correspondence.py CONFIG CKPT|none \
        QUERY_IMG GALLERY_IMG --out FILE.png [--top N] [--height 256]

``none``: the network as initialised (as ``tools/test.py`` without a
checkpoint). Query left, gallery right; a line joins each of the ``--top``
strongest locations (of the 2 x h x w query and gallery locations, ranked by
their contribution to the pair's score: the head's fc weight times the
BatchNorm'd maximum similarity) to its best match on the other side, coloured
by that contribution. The pair's QAConv score is in the title; the exact
split of the score (``QAConvHead.pair_correspondence``) is printed.
"""
import argparse
import os.path as osp
import sys

from mmreid_gs.apis import extract_feature_maps, init_model
from mmreid_gs.cli import load_config, run_cli
from mmreid_gs.utils.errors import ConfigError
from mmreid_gs.visualization import tool_visualizer
from mmreid_gs.visualization.backends import VIS_BACKENDS


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Draw QAConv correspondences of an image pair')
    parser.add_argument('config', help='config file')
    parser.add_argument('checkpoint',
                        help='checkpoint, or `none` for the initialised '
                        'network')
    parser.add_argument('query', help='query image')
    parser.add_argument('gallery', help='gallery image')
    parser.add_argument('--out', required=True, help='output picture')
    parser.add_argument('--top', type=int, default=20,
                        help='correspondences drawn (default 20)')
    parser.add_argument('--height', type=int, default=256,
                        help='height of each drawn image (default 256)')
    parser.add_argument('--vis-backend', nargs='+', default=[],
                        choices=sorted(VIS_BACKENDS),
                        help='also send the picture to these backends')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.top < 1 or args.height < 8:
        raise ConfigError('--top must be >= 1 and --height >= 8')
    cfg = load_config(args.config)
    ckpt = None if args.checkpoint == 'none' else args.checkpoint
    if ckpt is not None and not osp.isfile(ckpt):
        raise ConfigError(f'checkpoint not found: {ckpt}')
    for path in (args.query, args.gallery):
        if not osp.isfile(path):
            raise ConfigError(f'image not found: {path}')
    model = init_model(cfg, ckpt)
    head = getattr(model, 'head', None)
    if not hasattr(head, 'pair_correspondence'):
        raise ConfigError(
            f'{type(head).__name__} has no local correspondences '
            '(pair_correspondence): this tool needs a QAConv head')
    feats = extract_feature_maps(model, [args.query, args.gallery])
    corr = head.pair_correspondence(feats[0], feats[1])
    vis = tool_visualizer('vis_correspondence', args.vis_backend,
                          osp.dirname(osp.abspath(args.out)), cfg)
    vis.add_correspondence('correspondence', args.query, args.gallery, corr,
                           tuple(feats.shape[2:]), top=args.top,
                           height=args.height, out_file=args.out)
    q_sum = float(corr['query_contrib'].sum())
    g_sum = float(corr['gallery_contrib'].sum())
    print(f'score {float(corr["score"]):.4f} = query locations {q_sum:.4f} '
          f'+ gallery locations {g_sum:.4f} + bias '
          f'{float(corr["bias"]):.4f}')
    print(args.out)


if __name__ == '__main__':
    sys.exit(run_cli(main))

"""Plot training / validation curves from MMEngine's scalar logs (the
mmpretrain convention).

    python tools/analysis_tools/analyze_logs.py plot_curve \
        work_dirs/RUN/TIMESTAMP/vis_data/scalars.json \
        --keys loss pair_acc synthetic_B_unseen/Rank-1 --out curve.png

One panel per key, against iterations for training scalars and epochs for
validation metrics and the Graph Sampler's ``graph/family_share``.
"""
import argparse
import sys

from mmreid_gs.cli import run_cli
from mmreid_gs.visualization.plots import load_scalars, plot_scalar_curves


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Analyse training logs')
    sub = parser.add_subparsers(dest='task', required=True)
    curve = sub.add_parser('plot_curve', help='plot scalars of a run')
    curve.add_argument('json_logs', nargs='+',
                       help='scalars.json file(s) of LocalVisBackend')
    curve.add_argument('--keys', nargs='+', default=['loss'],
                       help='scalars to plot (default: loss)')
    curve.add_argument('--title', help='figure title')
    curve.add_argument('--out', required=True, help='output picture')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    records = []
    for path in args.json_logs:
        records.extend(load_scalars(path))
    plot_scalar_curves(records, args.keys, args.out, args.title)
    print(args.out)


if __name__ == '__main__':
    sys.exit(run_cli(main))

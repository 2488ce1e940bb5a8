"""Curves of a test run: CMC per set, score histograms of positive and
negative pairs, ROC with the verification thresholds.

    python tools/test.py CONFIG CKPT --out results.npz
    python tools/analysis_tools/analyze_results.py results.npz --out-dir DIR \
        [--set NAME ...] [--max-rank 20]

Writes ``DIR/cmc.png`` (one curve per set, Market-1501 protocol) and
``DIR/pairs_<set>.png`` (histograms of the QAConv scores of same-identity
and different-identity query/gallery pairs with the thresholds at FPR
1e-2/1e-3/1e-4, and the ROC curve with those operating points), and prints
the numbers.
"""
import argparse
import os.path as osp
import sys

from mmengine.utils import ProgressBar

from mmreid_gs.cli import run_cli
from mmreid_gs.evaluation.functional import (evaluate_rank,
                                             pair_scores_and_labels)
from mmreid_gs.evaluation.results_file import load_test_results
from mmreid_gs.utils.errors import ConfigError
from mmreid_gs.visualization.plots import plot_cmc, plot_pair_scores


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Analyse re-ID results')
    parser.add_argument('results', help='.npz written by tools/test.py --out')
    parser.add_argument('--out-dir', required=True, help='output folder')
    parser.add_argument('--set', nargs='+', dest='sets',
                        help='test set name(s) (default: all)')
    parser.add_argument('--max-rank', type=int, default=20,
                        help='last rank of the CMC plot (default 20)')
    parser.add_argument('--fprs', type=float, nargs='+',
                        default=[1e-2, 1e-3, 1e-4],
                        help='verification false-positive rates')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.max_rank < 1:
        raise ConfigError('--max-rank must be >= 1')
    results = load_test_results(args.results, args.sets)
    curves = {}
    bar = ProgressBar(len(results))
    lines = []
    for name, f in results.items():
        out = evaluate_rank(-f['scores'], f['query_pids'], f['gallery_pids'],
                            f['query_camids'], f['gallery_camids'],
                            max_rank=args.max_rank)
        curves[name] = out['cmc']
        s, y = pair_scores_and_labels(f['scores'], f['query_pids'],
                                      f['gallery_pids'])
        path = osp.join(args.out_dir, f'pairs_{name}.png')
        rates = plot_pair_scores(s, y, path, args.fprs, title=name)
        lines.append(
            f'{name}: Rank-1 {100 * out["cmc"][0]:.1f}, mAP '
            f'{100 * out["mAP"]:.1f}; ' + ', '.join(
                f'{k} {100 * v:.1f}%' if k.startswith('TPR') else
                f'{k} {v:.3f}' for k, v in rates.items()))
        lines.append(path)
        bar.update()
    print()
    cmc_path = osp.join(args.out_dir, 'cmc.png')
    plot_cmc(curves, cmc_path, args.max_rank)
    print('\n'.join(lines + [cmc_path]))


if __name__ == '__main__':
    sys.exit(run_cli(main))

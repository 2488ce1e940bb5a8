"""Draw ranked lists: each query with its top-k gallery images.

    python tools/visualization/vis_rank_list.py CONFIG --results results.npz \
        --out-dir DIR [--set NAME] [--queries N | --query-ids I ...] \
        [--topk 10] [--worst] [--use scores|rerank|tlift]
    python tools/visualization/vis_rank_list.py CONFIG CKPT --out-dir DIR

``--results``: the file ``tools/test.py CONFIG CKPT --out results.npz``
writes (nothing is recomputed). Without it the scores are computed from CKPT
(or the initialised network when CKPT is omitted or ``none``) with the
config's test sets. Writes ``DIR/rank_list_<set>.png`` (one row per query;
``_<page>`` when there are more than ``--per-image`` queries): green frame =
same identity, red = another identity, grey = ignored by the protocol (same
identity and camera); the score under each image; AP and first-hit rank in
each row's title. ``--worst`` draws the queries with the lowest AP.
"""
import argparse
import os.path as osp
import sys

from mmengine.model import is_model_wrapper
from mmengine.utils import ProgressBar

from mmreid_gs.cli import build_runner, load_config, run_cli
from mmreid_gs.evaluation.results_file import (collect_test_results,
                                               load_test_results,
                                               ranking_scores)
from mmreid_gs.utils.errors import ConfigError
from mmreid_gs.visualization import (ranked_list_rows, select_queries,
                                     tool_visualizer)
from mmreid_gs.visualization.backends import VIS_BACKENDS


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Draw re-ID ranked lists')
    parser.add_argument('config', help='config file')
    parser.add_argument(
        'checkpoint', nargs='?', default=None,
        help='checkpoint to compute the scores with when --results is not '
        'given (omit or `none`: the initialised network)')
    parser.add_argument('--results',
                        help='.npz written by tools/test.py --out')
    parser.add_argument('--out-dir', required=True, help='output folder')
    parser.add_argument('--set', nargs='+', dest='sets',
                        help='test set name(s) (default: all)')
    group = parser.add_mutually_exclusive_group()
    group.add_argument('--queries', type=int, default=8,
                       help='number of queries per set (default 8)')
    group.add_argument('--query-ids', type=int, nargs='+',
                       help='query indices to draw')
    parser.add_argument('--topk', type=int, default=10,
                        help='gallery images per query (default 10)')
    parser.add_argument('--worst', action='store_true',
                        help='the queries with the lowest AP')
    parser.add_argument('--use', default='scores',
                        choices=['scores', 'rerank', 'tlift'],
                        help='rank by the QAConv scores (default), the '
                        're-ranked distances or the TLift scores')
    parser.add_argument('--per-image', type=int, default=10,
                        help='queries per picture (default 10)')
    parser.add_argument('--cell-size', type=int, nargs=2,
                        metavar=('H', 'W'),
                        help='size of each drawn image (default 128 64)')
    parser.add_argument('--vis-backend', nargs='+', default=[],
                        choices=sorted(VIS_BACKENDS),
                        help='also send the pictures to these visualizer '
                        'backends (files under --out-dir)')
    return parser.parse_args(argv)


def compute_results(cfg, checkpoint, work_dir, sets=None):
    """Scores of the config's test sets (all, or ``sets``), as
    ``tools/test.py --out`` saves them."""
    if cfg.get('test_cfg') is None:
        raise ConfigError('the config has no test_cfg: name the test sets '
                           'in test_cfg.test_sets, or pass --results.')
    if checkpoint is not None and not osp.isfile(checkpoint):
        raise ConfigError(f'checkpoint not found: {checkpoint}')
    cfg.load_from = checkpoint
    cfg.resume = False
    cfg.launcher = 'none'
    cfg.work_dir = work_dir
    cfg.test_cfg.keep_outputs = True
    if sets:
        known = dict(cfg.test_cfg.get('test_sets') or {})
        missing = [s for s in sets if s not in known]
        if missing:
            raise ConfigError(f'set {missing[0]!r} is not a test set of the '
                               f'config: {", ".join(known)}')
        cfg.test_cfg.test_sets = {s: known[s] for s in sets}
    runner = build_runner(cfg)
    if checkpoint is None:
        runner.logger.warning(
            'No checkpoint given: scores of the network as initialised.')
        model = runner.model.module if is_model_wrapper(
            runner.model) else runner.model
        model.init_weights()
    runner.test()
    return collect_test_results(runner.test_loop.outputs)


def main(argv=None):
    args = parse_args(argv)
    if args.topk < 1 or args.queries < 1 or args.per_image < 1:
        raise ConfigError('--topk, --queries and --per-image must be >= 1')
    cfg = load_config(args.config)
    ckpt = None if args.checkpoint in (None, 'none') else args.checkpoint
    if args.results is not None:
        results = load_test_results(args.results, args.sets)
    else:
        results = compute_results(cfg, ckpt, args.out_dir, args.sets)
    vis = tool_visualizer('vis_rank_list', args.vis_backend, args.out_dir,
                          cfg, args.cell_size)
    jobs = []
    for name, fields in results.items():
        scores = ranking_scores(fields, args.use)
        labels = (scores, fields['query_pids'], fields['gallery_pids'],
                  fields['query_camids'], fields['gallery_camids'])
        queries = select_queries(*labels, num=args.queries,
                                 worst=args.worst, query_ids=args.query_ids)
        pages = [queries[i:i + args.per_image]
                 for i in range(0, len(queries), args.per_image)]
        for p, page in enumerate(pages):
            suffix = f'_{p + 1}' if len(pages) > 1 else ''
            jobs.append((f'rank_list_{name}{suffix}', labels, fields,
                         page))
    bar = ProgressBar(len(jobs))
    written = []
    for name, labels, fields, page in jobs:
        rows = ranked_list_rows(*labels, fields['query_paths'],
                                fields['gallery_paths'], page,
                                topk=args.topk)
        out = osp.join(args.out_dir, f'{name}.png')
        vis.add_ranked_lists(name, rows, out_file=out)
        written.append(out)
        bar.update()
    print()
    for out in written:
        print(out)


if __name__ == '__main__':
    sys.exit(run_cli(main))

"""Evaluate a checkpoint on every test set named in a config.

    python tools/test.py configs/qaconv_gs_market.py work_dirs/.../epoch_15.pth
        [--out results.npz] [--rerank] [--tlift] [--shortlist N]
        [--cfg-options k=v ...]

Without a checkpoint the network is tested as initialised (e.g. the untrained
baseline of the demo). ``--shortlist N`` (``test_cfg.shortlist``) scores only
each query's N best gallery items by a pooled-map proxy with the exact matcher
and ranks the rest after them by the proxy (MSMT17-size galleries with QAConv);
N >= the gallery size gives the exact metrics.
"""
import argparse
import glob
import os.path as osp
import sys

from mmengine.dist import broadcast
from mmengine.model import is_model_wrapper

from mmreid_gs.cli import (add_runner_args, apply_runner_args, build_runner,
                           init_cpu_dist, load_config, run_cli, run_summary)
from mmreid_gs.evaluation.functional import check_refine, check_shortlist
from mmreid_gs.evaluation.results_file import save_test_results
from mmreid_gs.utils.errors import ConfigError


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Cross-dataset re-ID evaluation')
    parser.add_argument('config', help='test config file path')
    parser.add_argument(
        'checkpoint', nargs='?', default=None,
        help='checkpoint file (omit to test the initialised network)')
    parser.add_argument(
        '--out', help='save paths, ids, cameras and scores of every test set '
        'to this .npz file')
    parser.add_argument(
        '--rerank', action='store_true',
        help='also report k-reciprocal re-ranked metrics')
    parser.add_argument(
        '--tlift', action='store_true',
        help='also report TLift metrics on sets with timestamps')
    parser.add_argument(
        '--amp', action='store_true', help='extract and match under autocast')
    parser.add_argument(
        '--shortlist', type=int, metavar='N',
        help='shortlisted evaluation (test_cfg.shortlist): score each '
        "query's N best gallery items by the cosine of average-pooled maps "
        'with the exact matcher, rank the rest after them by that proxy; '
        'N >= the gallery size gives the exact metrics')
    parser.add_argument(
        '--shortlist-refine', type=int, metavar='M',
        help='with --shortlist N: the cosine proposes M > N gallery items '
        'per query and QAConv on 2x2-pooled maps keeps the N best of them '
        '(test_cfg.shortlist_refine; docs/benchmarks.md, "Shortlist '
        'proxies")')
    parser.add_argument(
        '--shortlist-recall', action='store_true',
        help='with --shortlist, also score every pair exactly (the full '
        "cost) and log the share of each query's exact top-1 / top-10 that "
        'its shortlist kept')
    add_runner_args(parser, 'override settings in the config')
    return parser.parse_args(argv)


def folder_message(config: str, folder: str) -> str:
    """The error for a folder passed as the checkpoint: it lists the
    checkpoints inside (newest first) and the command with the newest."""
    found = sorted(glob.glob(osp.join(glob.escape(folder), '*.pth')),
                   key=osp.getmtime, reverse=True)
    if not found:
        return (f'{folder} is a folder, not a checkpoint file, and holds no '
                'checkpoint (*.pth); pass the file, e.g. '
                'work_dirs/<config name>/epoch_N.pth.')
    names = ', '.join(osp.basename(p) for p in found[:8])
    more = f' and {len(found) - 8} more' if len(found) > 8 else ''
    return (f'{folder} is a folder, not a checkpoint file; the checkpoints '
            f'in it, newest first: {names}{more}. Pass one, e.g.: python '
            f'tools/test.py {config} {found[0]}')


def main(argv=None):
    args = parse_args(argv)
    cfg = load_config(args.config, args.cfg_options)
    apply_runner_args(cfg, args, args.config)
    if cfg.get('test_cfg') is None:
        raise ConfigError(f'{args.config} has no test_cfg: name the test '
                           'sets in test_cfg.test_sets.')
    if args.checkpoint is not None:
        if osp.isdir(args.checkpoint):
            raise ConfigError(folder_message(args.config, args.checkpoint))
        if not osp.isfile(args.checkpoint):
            raise ConfigError(f'checkpoint not found: {args.checkpoint} (no '
                              'such file)')
        cfg.load_from = args.checkpoint
    else:
        cfg.load_from = None
    cfg.resume = False
    if args.rerank:
        cfg.test_evaluator.rerank = True
    if args.tlift:
        cfg.test_evaluator.tlift = True
    if args.amp:
        cfg.test_cfg.fp16 = True
    if args.shortlist is not None:
        cfg.test_cfg.shortlist = check_shortlist(
            args.shortlist, 'test_cfg.shortlist (--shortlist)')
    # a config's (or --cfg-options') value fails here, before any work
    check_shortlist(cfg.test_cfg.get('shortlist'), 'test_cfg.shortlist')
    if args.shortlist_refine is not None:
        if cfg.test_cfg.get('shortlist') is None:
            raise ConfigError('--shortlist-refine needs --shortlist N (or '
                              'test_cfg.shortlist)')
        cfg.test_cfg.shortlist_refine = args.shortlist_refine
    check_refine(cfg.test_cfg.get('shortlist_refine'),
                 cfg.test_cfg.get('shortlist'),
                 'test_cfg.shortlist_refine (--shortlist-refine)')
    if args.shortlist_recall:
        if cfg.test_cfg.get('shortlist') is None:
            raise ConfigError('--shortlist-recall needs --shortlist N (or '
                              'test_cfg.shortlist)')
        cfg.test_cfg.shortlist_recall = True
    if args.out is not None:
        if not args.out.endswith('.npz'):
            raise ConfigError(f'--out must end with .npz: {args.out}')
        cfg.test_cfg.keep_outputs = True
    init_cpu_dist(cfg)
    runner = build_runner(cfg, mode='test')
    if args.checkpoint is None:
        runner.logger.warning(
            'No checkpoint given: testing the network as initialised.')
        # The model may be wrapped (DDP): initialise the module, then give
        # every rank rank 0's weights (as Runner.train() does).
        model = runner.model.module if is_model_wrapper(
            runner.model) else runner.model
        model.init_weights()
        for tensor in model.state_dict().values():
            broadcast(tensor, 0)
    metrics = runner.test()
    if runner.rank == 0:
        extra = {}
        if args.out is not None:
            save_test_results(runner.test_loop.outputs, args.out)
            runner.logger.info(f'Scores and labels saved to {args.out}')
            extra['scores (--out)'] = args.out
        print(run_summary(runner, metrics, extra), flush=True)


if __name__ == '__main__':
    sys.exit(run_cli(main))

"""Evaluate a checkpoint on every test set named in a config.

    python tools/test.py configs/qaconv_gs_market.py work_dirs/.../epoch_15.pth
        [--out results.npz] [--rerank] [--tlift] [--cfg-options k=v ...]

Without a checkpoint the network is tested as initialised (e.g. the untrained
baseline of the demo).
"""
import argparse
import os
import os.path as osp
import sys

from mmengine.config import DictAction
from mmengine.dist import broadcast
from mmengine.model import is_model_wrapper

from mmreid_gs.apis.launch import (build_runner, config_error, init_cpu_dist,
                                   load_config, run_cli,
                                   save_test_outputs)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Cross-dataset re-ID evaluation')
    parser.add_argument('config', help='test config file path')
    parser.add_argument(
        'checkpoint', nargs='?', default=None,
        help='checkpoint file (omit to test the initialised network)')
    parser.add_argument('--work-dir', help='the dir to save logs')
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
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override settings in the config')
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none',
        help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def main(argv=None):
    args = parse_args(argv)
    cfg = load_config(args.config, args.cfg_options)
    cfg.launcher = args.launcher
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(args.config))[0])
    if cfg.get('test_cfg') is None:
        raise config_error(f'{args.config} has no test_cfg: name the test '
                           'sets in test_cfg.test_sets.')
    if args.checkpoint is not None:
        if not osp.isfile(args.checkpoint):
            raise config_error(f'checkpoint not found: {args.checkpoint}')
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
    if args.out is not None:
        if not args.out.endswith('.npz'):
            raise config_error(f'--out must end with .npz: {args.out}')
        cfg.test_cfg.keep_outputs = True
    init_cpu_dist(cfg)
    runner = build_runner(cfg)
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
    runner.test()
    if args.out is not None and runner.rank == 0:
        save_test_outputs(runner.test_loop.outputs, args.out)
        runner.logger.info(f'Scores and labels saved to {args.out}')


if __name__ == '__main__':
    sys.exit(run_cli(main))

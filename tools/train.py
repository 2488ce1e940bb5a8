"""Train a QAConv-GS re-ID model.

    python tools/train.py configs/qaconv_gs_market.py [--work-dir DIR]
        [--resume [CKPT]] [--amp] [--auto-scale-lr] [--vis-backend ...]
        [--cfg-options k=v ...] [--launcher ...]
"""
import argparse
import os
import os.path as osp
import sys

import torch
from mmengine.config import Config

from mmreid_gs.cli import (add_runner_args, apply_runner_args, build_runner,
                           init_cpu_dist, last_metrics, load_config,
                           resolve_auto_resume, run_cli, run_summary)
from mmreid_gs.utils.errors import ConfigError


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Train a re-ID model')
    parser.add_argument('config', help='train config file path')
    parser.add_argument(
        '--resume',
        nargs='?',
        type=str,
        const='auto',
        help='resume from the given checkpoint, or, without a path, from '
        'the newest readable checkpoint of the work dir (an unreadable '
        'newer one, e.g. cut by a crash, is kept as NAME.unreadable and '
        'named in a warning)')
    parser.add_argument(
        '--amp', action='store_true',
        help='enable automatic mixed precision training')
    parser.add_argument(
        '--no-validate', action='store_true',
        help='do not evaluate during training')
    parser.add_argument(
        '--seed', type=int, default=None, help='random seed')
    parser.add_argument(
        '--auto-scale-lr', action='store_true',
        help='scale the learning rate by the total batch (processes x '
        'batch_size) over the config\'s auto_scale_lr.base_batch_size')
    add_runner_args(
        parser, 'override settings in the config, e.g. '
        'train_cfg.max_epochs=8 model.head.loss.type=HardTripletLoss')
    return parser.parse_args(argv)


def merge_args(cfg: Config, args) -> Config:
    apply_runner_args(cfg, args, args.config)
    if args.amp:
        if not torch.cuda.is_available():
            raise ConfigError(
                '--amp needs a GPU: MMEngine\'s AmpOptimWrapper trains on '
                'GPU, NPU, MLU or MUSA devices only, and none is available.')
        amp_types = {
            'OptimWrapper': 'AmpOptimWrapper',
            'SkipNonFiniteOptimWrapper': 'SkipNonFiniteAmpOptimWrapper'
        }
        current = cfg.optim_wrapper.get('type', 'OptimWrapper')
        if current not in amp_types and current not in amp_types.values():
            raise ConfigError(
                '--amp needs optim_wrapper.type to be one of '
                f'{sorted(amp_types)}, got {current}')
        cfg.optim_wrapper.type = amp_types.get(current, current)
        cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')
    if args.resume == 'auto':
        cfg.resume = True
        cfg.load_from = None
    elif args.resume is not None:
        if not osp.isfile(args.resume):
            raise ConfigError(f'--resume: checkpoint not found: '
                               f'{args.resume}')
        cfg.resume = True
        cfg.load_from = args.resume
    if args.no_validate:
        cfg.val_cfg = None
        cfg.val_dataloader = None
        cfg.val_evaluator = None
    if args.seed is not None:
        cfg.randomness = dict(cfg.get('randomness', {}), seed=args.seed)
    if args.auto_scale_lr:
        if 'base_batch_size' not in (cfg.get('auto_scale_lr') or {}):
            raise ConfigError(
                '--auto-scale-lr needs auto_scale_lr.base_batch_size in the '
                'config (the total batch its learning rate was set for).')
        cfg.auto_scale_lr.enable = True
    return cfg


def main(argv=None):
    args = parse_args(argv)
    cfg = load_config(args.config, args.cfg_options)
    cfg = merge_args(cfg, args)
    resume_warnings = []
    if args.resume == 'auto':
        resume_warnings = resolve_auto_resume(
            cfg, rank=int(os.environ.get('RANK', '0')))
    not_resumed = args.resume == 'auto' and not cfg.resume
    init_cpu_dist(cfg)
    runner = build_runner(cfg)
    for line in resume_warnings:
        runner.logger.warning(line)
    runner.train()
    if runner.rank == 0:
        extra = {'resumed': 'nothing (no checkpoint in the work dir; '
                 'trained from scratch)'} if not_resumed else None
        print(run_summary(runner, last_metrics(runner), extra), flush=True)


if __name__ == '__main__':
    sys.exit(run_cli(main))

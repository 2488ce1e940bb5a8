"""Multi-seed sampler / loss studies (paper Fig. 2-4) on any config.

    python tools/analysis_tools/sampler_study.py efficiency --quick
    python tools/analysis_tools/sampler_study.py batch \
        --config configs/qaconv_gs_demo.py --seeds 0 1 2

Studies: efficiency (class memory vs PK vs GS), batch (B and K), init (PK
warm-up epochs), clip (gradient clipping). Writes
``<work-dir>/results.csv``, ``results.json``, ``summary.md`` and
``<study>.png``; finished runs are skipped on a rerun, unfinished ones
resume from their last checkpoint.
"""
import argparse
import os.path as osp
import sys

from mmengine.config import DictAction

from mmreid_gs.apis.launch import run_cli
from mmreid_gs.apis.sampler_study import STUDIES, run_study


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Train the variants of a sampler study over seeds',
        epilog='studies: ' + '; '.join(
            f'{k}: {v["doc"]}' for k, v in STUDIES.items()))
    parser.add_argument('study', choices=sorted(STUDIES))
    parser.add_argument('--config', default='configs/qaconv_gs_demo.py',
                        help='base training config')
    parser.add_argument('--quick', action='store_true',
                        help='the quick preset (fewer seeds / epochs)')
    parser.add_argument('--seeds', type=int, nargs='+', default=None)
    parser.add_argument('--variants', nargs='+', default=None,
                        help='run only these variants')
    parser.add_argument('--epochs', type=int, default=None)
    parser.add_argument('--work-dir', default=None,
                        help='default: work_dirs/study_<study>[_quick]')
    parser.add_argument('--no-progress', action='store_true')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='overrides for every run')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    work_dir = args.work_dir or osp.join(
        'work_dirs', f'study_{args.study}' + ('_quick' if args.quick
                                              else ''))
    results = run_study(
        args.config, args.study, work_dir, quick=args.quick,
        seeds=args.seeds, variants=args.variants, epochs=args.epochs,
        options=args.cfg_options, progress=not args.no_progress)
    from mmreid_gs.apis.sampler_study import summary_table
    print(f'\n{args.study}: {len(results["runs"])} runs -> {work_dir}')
    print(summary_table(results))


if __name__ == '__main__':
    sys.exit(run_cli(main))

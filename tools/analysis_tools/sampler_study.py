"""Run, check and render the studies of ``configs/studies/``.

    python tools/analysis_tools/sampler_study.py scale --status
    python tools/analysis_tools/sampler_study.py scale --dry-run
    python tools/analysis_tools/sampler_study.py scale --commit
    python tools/analysis_tools/sampler_study.py scale --render
    python tools/analysis_tools/sampler_study.py efficiency --quick

A study is a declarative config (``configs/studies/<study>.py``: its base
training config, variants, presets of seeds, counts, budgets and warm-up);
the machinery is :mod:`mmreid_gs.studies`. Every finished run is one JSON
line of ``docs/studies/<study>/runs.jsonl`` (``--records`` to use another
file): runs already there are skipped, so a study started on one machine
continues on another; ``--commit`` commits that file after every run;
``--status`` lists the finished and missing runs of the chosen preset;
``--render`` writes ``summary.md`` and the plots next to it from the file
alone.
"""
import argparse
import os.path as osp
import sys

from mmengine.config import DictAction

from mmreid_gs.cli import run_cli
from mmreid_gs.studies import (load_records, load_study, records_path,
                               status_lines, study_names)
from mmreid_gs.studies.multisource import (multisource_summary_table,
                                           run_multisource_study)
from mmreid_gs.studies.render import render_study
from mmreid_gs.studies.scale import (plan_scale_runs, run_scale_study,
                                     scale_run_key, scale_summary_table)
from mmreid_gs.studies.variants import (plan_runs, run_study, summary_table,
                                        warmup_epochs)


def parse_args(argv=None):
    studies = study_names()
    parser = argparse.ArgumentParser(
        description='Train, check (--status) or render (--render) a study '
        'of configs/studies/',
        epilog='studies: ' + '; '.join(
            f"{k}: {load_study(k)['doc']}" for k in studies))
    parser.add_argument('study', choices=studies)
    parser.add_argument('--config', default=None,
                        help='base training config (default: the study '
                        "config's)")
    parser.add_argument('--preset', default=None,
                        help="a preset of the study config (default: 'full'"
                        ", or 'quick' with --quick)")
    parser.add_argument('--quick', action='store_true',
                        help='the quick preset')
    parser.add_argument('--seeds', type=int, nargs='+', default=None)
    parser.add_argument('--variants', nargs='+', default=None,
                        help='run only these variants')
    parser.add_argument('--epochs', type=int, default=None)
    parser.add_argument('--work-dir', default=None,
                        help='default: work_dirs/study_<study>[_quick]')
    parser.add_argument('--records', default=None,
                        help='the runs.jsonl (default: docs/studies/<study>/'
                        'runs.jsonl)')
    parser.add_argument('--no-records', action='store_true',
                        help='neither skip recorded runs nor record new ones')
    parser.add_argument('--commit', action='store_true',
                        help='git-commit the runs.jsonl after every finished '
                        'run (that file only)')
    parser.add_argument('--status', action='store_true',
                        help='list the finished and missing runs of the '
                        'preset (reads the runs.jsonl only)')
    parser.add_argument('--render', action='store_true',
                        help='write summary.md and the plots from the '
                        'runs.jsonl alone')
    parser.add_argument('--no-progress', action='store_true')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='overrides for every run')
    scale = parser.add_argument_group('scale study')
    scale.add_argument('--counts', type=int, nargs='+', default=None,
                       help="numbers of training identities (default: the "
                       "preset's)")
    scale.add_argument('--starts', nargs='+', default=None,
                       choices=['scratch', 'pretrained'])
    fixed = parser.add_argument_group('scale and multisource studies')
    fixed.add_argument('--batches-per-epoch', type=int, default=None,
                       help='fixed epoch length of every run')
    fixed.add_argument('--dry-run', action='store_true',
                       help='print the plan and its estimated time only '
                       '(reads and generates no data)')
    return parser.parse_args(argv)


def planned_keys(spec, args):
    """The record keys of the chosen preset's runs (for ``--status``)."""
    preset = args.preset or ('quick' if args.quick else 'full')
    if spec['kind'] == 'scale':
        runs, chosen = plan_scale_runs(
            seeds=args.seeds, variants=args.variants, counts=args.counts,
            starts=args.starts, preset=preset, study=spec['name'])
        return [scale_run_key(r, chosen, spec['name']) for r in runs]
    runs, chosen = plan_runs(spec['name'], seeds=args.seeds,
                             variants=args.variants, preset=preset)
    # without building the training set: match on what the config fixes
    return [dict(study=spec['name'], variant=name, seed=seed,
                 warmup_epochs=warmup_epochs(variant))
            for name, variant, seed in runs]


def status(spec, args, path) -> None:
    records = load_records(path)
    if spec['kind'] == 'scale':
        planned = planned_keys(spec, args)
    else:
        # the variants' iterations depend on the training set: a planned
        # run is done when a record has its variant and seed
        planned = []
        for p in planned_keys(spec, args):
            match = [r for r in records
                     if (r['variant'], r['seed']) == (p['variant'],
                                                      p['seed'])]
            base = match[0] if match else dict(
                start='-', num_ids=0, iterations=0,
                warmup_iterations=0)
            planned.append(dict(study=p['study'], variant=p['variant'],
                                seed=p['seed'], start=base['start'],
                                num_ids=base['num_ids'],
                                iterations=base['iterations'],
                                warmup_iterations=base['warmup_iterations']))
    print(f'records: {path}')
    print('\n'.join(status_lines(spec['name'], planned, records)))


def main(argv=None):
    args = parse_args(argv)
    spec = load_study(args.study)
    path = args.records or records_path(spec['name'])
    if args.status:
        return status(spec, args, path)
    if args.render:
        written = render_study(spec, load_records(path), osp.dirname(
            osp.abspath(path)))
        print('\n'.join(f'wrote {p}' for p in written))
        return
    records = None if args.no_records else path
    preset = args.preset or ('quick' if args.quick else 'full')
    work_dir = args.work_dir or osp.join(
        'work_dirs', f'study_{args.study}' + ('_quick' if preset == 'quick'
                                              and spec['kind'] != 'scale'
                                              else ''))
    common = dict(seeds=args.seeds, variants=args.variants,
                  epochs=args.epochs, options=args.cfg_options,
                  progress=not args.no_progress, preset=preset,
                  records=records, commit=args.commit)
    if spec['kind'] != 'scale' and (args.counts or args.starts):
        raise ValueError('sampler study: --counts and --starts are options '
                         'of the scale study')
    if spec['kind'] == 'multisource':
        results = run_multisource_study(
            args.config, work_dir, batches_per_epoch=args.batches_per_epoch,
            dry_run=args.dry_run, **common)
        if args.dry_run:
            print(f"\nmultisource: {len(results['plan'])} runs planned, "
                  f"{results['estimate']['iterations']} iterations each, "
                  f"about {results['estimate']['total'] / 3600:.1f} h "
                  '(estimated)')
        elif results['runs']:
            print(f'\nmultisource: {len(results["runs"])} runs -> {work_dir}')
            print(multisource_summary_table(results))
        return
    if spec['kind'] == 'scale':
        results = run_scale_study(
            args.config, work_dir, counts=args.counts, starts=args.starts,
            batches_per_epoch=args.batches_per_epoch, dry_run=args.dry_run,
            study=spec['name'], **common)
        if args.dry_run:
            print(f"\n{spec['name']}: {len(results['plan'])} runs planned, "
                  f"about {results['estimate']['total'] / 3600:.1f} h "
                  '(estimated)')
        elif results['runs']:
            print(f"\n{spec['name']}: {len(results['runs'])} runs -> "
                  f'{work_dir}')
            print(scale_summary_table(results))
        return
    if args.batches_per_epoch or args.dry_run:
        raise ValueError('sampler study: --batches-per-epoch and --dry-run '
                         'are options of the scale and multisource studies')
    results = run_study(args.config, args.study, work_dir, **common)
    if results['runs']:
        print(f'\n{args.study}: {len(results["runs"])} runs -> {work_dir}')
        print(summary_table(results))


if __name__ == '__main__':
    sys.exit(run_cli(main))

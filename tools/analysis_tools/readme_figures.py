"""Re-measure the demo figures the README quotes, and compare them with it.

    python tools/analysis_tools/readme_figures.py            # measure + check
    python tools/analysis_tools/readme_figures.py --write    # measure + update
    python tools/analysis_tools/readme_figures.py --quick    # seed 0 only
    python tools/analysis_tools/readme_figures.py --skip-global  # no global
    python tools/analysis_tools/readme_figures.py --skip-transmatcher

Run it before every release-like change (anything that may move a number:
models, data, augmentation, schedules, kernels, versions). It trains and tests
what a user runs from the README (``tools/train.py`` / ``tools/test.py`` in
subprocesses, each in its own work dir under ``--work-dir``):

- the QAConv demo with GS (``configs/qaconv_gs_demo.py``) and with random PK
  batches (``configs/qaconv_pk_demo.py``) for every seed (default 0, 1, 2),
- the untrained network, and the seed-0 GS checkpoint with ``--rerank`` and
  with ``--tlift``,
- the global-embedding demo (``configs/gs_r18_global_demo.py`` /
  ``configs/pk_r18_global_demo.py``) and its untrained network, seed 0,
- the TransMatcher demo (``configs/transmatcher_gs_demo.py``) and its
  untrained network, seed 0,

and times the seed-0 GS run from an empty ``data/`` to its test metrics. The
README's figures live between the markers ``<!-- readme_figures:begin -->``
and ``<!-- readme_figures:end -->``; this script writes that block (from
``docs/readme_figures.json``, which records the figures, the times, the
versions and the commit of every run), and checks a fresh measurement
against it: exit status 1 and a diff when any figure, as printed, differs.
Finished runs are kept and reused (``--fresh`` redoes them); each records
the commit it ran at, and the block names every commit its figures come
from.
"""
import argparse
import difflib
import glob
import json
import os
import os.path as osp
import shutil
import statistics
import subprocess
import sys
import time
from typing import Optional

import mmcv
import mmengine
import mmpretrain
import numpy as np
import torch

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
README = osp.join(REPO, 'README.md')
RECORD = osp.join(REPO, 'docs', 'readme_figures.json')
BEGIN, END = '<!-- readme_figures:begin -->', '<!-- readme_figures:end -->'
SETS = ('synthetic_A', 'synthetic_B_unseen')
GS, PK = 'configs/qaconv_gs_demo.py', 'configs/qaconv_pk_demo.py'
GLOBAL_GS, GLOBAL_PK = ('configs/gs_r18_global_demo.py',
                        'configs/pk_r18_global_demo.py')
TRANSMATCHER = 'configs/transmatcher_gs_demo.py'


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    parser.add_argument('--quick', action='store_true',
                        help='seed 0 only, no global-embedding runs (a '
                        'partial check: the README block is not written)')
    parser.add_argument('--skip-global', action='store_true',
                        help='no global-embedding runs (their rows leave '
                        'the block)')
    parser.add_argument('--skip-transmatcher', action='store_true',
                        help='no TransMatcher runs (their rows leave the '
                        'block)')
    parser.add_argument('--write', action='store_true',
                        help='write the measured figures into the README '
                        'and docs/readme_figures.json')
    parser.add_argument('--work-dir', default='work_dirs/readme_figures')
    parser.add_argument('--fresh', action='store_true',
                        help='redo finished runs (and regenerate data/)')
    return parser.parse_args(argv)


def versions() -> dict:
    commit = subprocess.run(['git', 'rev-parse', '--short', 'HEAD'],
                            cwd=REPO, capture_output=True, text=True)
    return dict(torch=torch.__version__, mmengine=mmengine.__version__,
                mmcv=mmcv.__version__, mmpretrain=mmpretrain.__version__,
                numpy=np.__version__, python=sys.version.split()[0],
                cpus=len(os.sched_getaffinity(0)),
                commit=commit.stdout.strip() or 'unknown')


def _last_metrics(work_dir: str) -> dict:
    """The last metrics line a run logged (``<stamp>/vis_data/*.json`` or
    ``<stamp>/<stamp>.json``), newest run first."""
    found = sorted(glob.glob(osp.join(work_dir, '*', 'vis_data', '*.json')) +
                   glob.glob(osp.join(work_dir, '*', '*.json')),
                   key=osp.getmtime, reverse=True)
    for path in found:
        if osp.basename(path) == 'scalars.json':
            continue
        with open(path) as f:
            lines = [json.loads(line) for line in f if line.strip()]
        for line in reversed(lines):
            if f'{SETS[0]}/Rank-1' in line:
                return line
    raise RuntimeError(f'no test metrics logged under {work_dir}')


def _recorded_commit() -> str:
    """The commit of docs/readme_figures.json ('unknown' without one)."""
    try:
        with open(RECORD) as f:
            return json.load(f)['versions']['commit']
    except (OSError, ValueError, KeyError):
        return 'unknown'


def run_tool(name: str, tool: str, args, work_dir: str, fresh: bool,
             note: Optional[dict] = None) -> dict:
    """Run ``tools/<tool>.py`` once (reused when done), return its metrics
    and wall time."""
    done = osp.join(work_dir, 'figures.json')
    if osp.isfile(done) and not fresh:
        with open(done) as f:
            out = json.load(f)
        # runs finished before runs recorded their commit: the commit of
        # the record they were written into
        out.setdefault('commit', _recorded_commit())
        return out
    if osp.isdir(work_dir):
        shutil.rmtree(work_dir)
    os.makedirs(work_dir)
    cmd = [sys.executable, osp.join('tools', f'{tool}.py'), *args,
           '--work-dir', work_dir]
    print(f'[{name}] {" ".join(cmd)}', flush=True)
    start = time.perf_counter()
    with open(osp.join(work_dir, 'console.log'), 'w') as log:
        proc = subprocess.run(cmd, cwd=REPO, stdout=log,
                              stderr=subprocess.STDOUT)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f'{name} failed (exit {proc.returncode}); see '
                           f'{osp.join(work_dir, "console.log")}')
    metrics = _last_metrics(work_dir)
    out = dict(note or {}, wall_s=wall, commit=versions()['commit'],
               metrics={
        k: v for k, v in metrics.items() if '/' in k
        and isinstance(v, (int, float))
    })
    with open(done, 'w') as f:
        json.dump(out, f, indent=1)
    return out


def measure(args) -> dict:
    root = osp.join(REPO, args.work_dir)
    seeds = [0] if args.quick else list(args.seeds)
    if 0 not in seeds:
        raise SystemExit('--seeds must include 0 (the README table)')
    runs = {}
    data = osp.join(REPO, 'data', 'synthetic_reid')
    if args.fresh and osp.isdir(data):
        shutil.rmtree(data)
    # first: the seed-0 GS demo, from an empty data/ with --fresh (timed)
    generated = not osp.isdir(data)
    for seed in seeds:
        for tag, cfg in (('gs', GS), ('pk', PK)):
            name = f'{tag}_seed{seed}'
            runs[name] = run_tool(name, 'train', [cfg, '--seed', str(seed)],
                                  osp.join(root, name), args.fresh,
                                  dict(from_empty_data=generated))
            generated = False
    ckpt = osp.join(root, 'gs_seed0', 'epoch_8.pth')
    runs['untrained'] = run_tool('untrained', 'test', [GS],
                                 osp.join(root, 'untrained'), args.fresh)
    for flag in ('rerank', 'tlift'):
        runs[f'gs_{flag}'] = run_tool(f'gs_{flag}', 'test',
                                      [GS, ckpt, f'--{flag}'],
                                      osp.join(root, f'gs_{flag}'),
                                      args.fresh)
    if not (args.quick or args.skip_global):
        for tag, cfg in (('global_gs', GLOBAL_GS), ('global_pk', GLOBAL_PK)):
            runs[tag] = run_tool(tag, 'train', [cfg, '--seed', '0'],
                                 osp.join(root, tag), args.fresh)
        runs['global_untrained'] = run_tool(
            'global_untrained', 'test', [GLOBAL_GS],
            osp.join(root, 'global_untrained'), args.fresh)
    if not (args.quick or args.skip_transmatcher):
        runs['tm_gs'] = run_tool('tm_gs', 'train',
                                 [TRANSMATCHER, '--seed', '0'],
                                 osp.join(root, 'tm_gs'), args.fresh)
        runs['tm_untrained'] = run_tool('tm_untrained', 'test',
                                        [TRANSMATCHER],
                                        osp.join(root, 'tm_untrained'),
                                        args.fresh)
    return dict(seeds=seeds, runs=runs, versions=versions(),
                date=time.strftime('%Y-%m-%d'))


def _pair(metrics: dict, name: str, suffix: str = '') -> str:
    r1 = 100 * metrics[f'{name}/Rank-1{suffix}']
    ap = 100 * metrics[f'{name}/mAP{suffix}']
    return f'{r1:.1f} / {ap:.1f}'


def _spread(runs: dict, tag: str, seeds, name: str) -> str:
    out = []
    for key in ('Rank-1', 'mAP'):
        vals = [100 * runs[f'{tag}_seed{s}']['metrics'][f'{name}/{key}']
                for s in seeds]
        sd = statistics.stdev(vals) if len(vals) > 1 else 0.
        out.append(f'{statistics.mean(vals):.1f} ± {sd:.1f}')
    return ' / '.join(out)


def render(record: dict) -> str:
    """The README block of a record."""
    runs, seeds, ver = record['runs'], record['seeds'], record['versions']
    m = {k: v['metrics'] for k, v in runs.items()}
    rows = [
        ('untrained (same network and seed, `python tools/test.py '
         'configs/qaconv_gs_demo.py`)', m['untrained'], ''),
        ('trained with GS (`configs/qaconv_gs_demo.py`)', m['gs_seed0'], ''),
        ('trained with random PK batches (`configs/qaconv_pk_demo.py`)',
         m['pk_seed0'], ''),
        ('GS model + k-reciprocal re-ranking (`--rerank`)', m['gs_rerank'],
         '_rerank'),
        ('GS model + TLift (`--tlift`)', m['gs_tlift'], '_tlift'),
    ]
    if 'global_gs' in m:
        rows += [
            ('global embedding, untrained (`python tools/test.py '
             'configs/gs_r18_global_demo.py`)', m['global_untrained'], ''),
            ('global embedding, GS (`configs/gs_r18_global_demo.py`)',
             m['global_gs'], ''),
            ('global embedding, PK (`configs/pk_r18_global_demo.py`)',
             m['global_pk'], ''),
        ]
    if 'tm_gs' in m:
        rows += [
            ('TransMatcher, untrained (`python tools/test.py '
             'configs/transmatcher_gs_demo.py`)', m['tm_untrained'], ''),
            ('TransMatcher trained with GS '
             '(`configs/transmatcher_gs_demo.py`)', m['tm_gs'], ''),
        ]
    lines = [
        BEGIN,
        '| network (seed 0) | synthetic A (seen style) Rank-1 / mAP | '
        'synthetic B (unseen style) Rank-1 / mAP |', '|---|---|---|'
    ]
    for label, metrics, suffix in rows:
        lines.append(f'| {label} | {_pair(metrics, SETS[0], suffix)} | '
                     f'{_pair(metrics, SETS[1], suffix)} |')
    if len(seeds) > 1:
        lines += [
            '', f'Over seeds {", ".join(map(str, seeds))} (mean ± standard '
            'deviation, Rank-1 / mAP, 8 epochs each):', '',
            '| sampler | synthetic A | synthetic B (unseen) |',
            '|---|---|---|'
        ]
        for tag, label in (('gs', 'GS (`configs/qaconv_gs_demo.py`)'),
                           ('pk', 'PK (`configs/qaconv_pk_demo.py`)')):
            lines.append(f'| {label} | {_spread(runs, tag, seeds, SETS[0])} '
                         f'| {_spread(runs, tag, seeds, SETS[1])} |')
    gs0 = runs['gs_seed0']['wall_s']
    lines += [
        '', f'Measured by `python tools/analysis_tools/readme_figures.py` on '
        f'{record["date"]} {commits_note(record)}: torch {ver["torch"]}, '
        f'mmengine {ver["mmengine"]}, mmcv {ver["mmcv"]}, mmpretrain '
        f'{ver["mmpretrain"]}, numpy {ver["numpy"]}, Python {ver["python"]}, '
        f'{ver["cpus"]} CPU cores, no GPU. The seed-0 GS demo (`python '
        f'tools/train.py configs/qaconv_gs_demo.py`: 8 epochs and the test '
        f'of both sets) took {gs0 // 60:.0f} min {gs0 % 60:.0f} s wall clock'
        f'{timing_note(runs["gs_seed0"])}.', END
    ]
    return '\n'.join(lines)


def commits_note(record: dict) -> str:
    """``at commit X``, or which rows came from which commit when finished
    runs of earlier commits were reused (runs of older records carry no
    commit: they are the record's own)."""
    by_commit = {}
    for name, run in record['runs'].items():
        by_commit.setdefault(run.get('commit', record['versions']['commit']),
                             []).append(name)
    if len(by_commit) == 1:
        return f'at commit {next(iter(by_commit))}'
    parts = [f'{commit} ({", ".join(sorted(names))})'
             for commit, names in sorted(by_commit.items())]
    return 'from runs at commits ' + '; '.join(parts)


def timing_note(run: dict) -> str:
    if run.get('from_empty_data'):
        return ', from an empty `data/` (generation included)'
    return ' (data/ already generated; generation adds its own time)'


def readme_block() -> str:
    with open(README) as f:
        text = f.read()
    if BEGIN not in text or END not in text:
        raise SystemExit(f'{README} has no {BEGIN} ... {END} block')
    return text[text.index(BEGIN):text.index(END) + len(END)]


def _figures_only(block: str) -> list:
    """The lines of a block that hold figures (the times and the versions
    line change from run to run and are reported, not compared)."""
    return [line for line in block.splitlines()
            if line.startswith('|')]


def main(argv=None):
    args = parse_args(argv)
    record = measure(args)
    fresh = render(record)
    print(fresh)
    if args.write:
        if args.quick:
            raise SystemExit('--write needs the full measurement (no '
                             '--quick)')
        with open(README) as f:
            text = f.read()
        old = readme_block()
        with open(README, 'w') as f:
            f.write(text.replace(old, fresh))
        with open(RECORD, 'w') as f:
            json.dump(record, f, indent=1)
        print(f'wrote {README} and {RECORD}')
        return 0
    have, got = _figures_only(readme_block()), _figures_only(fresh)
    if args.quick:  # only the rows a quick run measures
        got_labels = {line.split('|')[1] for line in got}
        have = [line for line in have if line.split('|')[1] in got_labels
                and 'Over seeds' not in line]
        got = [line for line in got if line.split('|')[1] in
               {h.split('|')[1] for h in have}]
    diff = list(difflib.unified_diff(have, got, 'README', 'measured now',
                                     lineterm=''))
    if diff:
        print('\nThe README figures do not match this run:')
        print('\n'.join(diff))
        return 1
    print('\nEvery figure of the README block matches this run.')
    return 0


if __name__ == '__main__':
    sys.exit(main())

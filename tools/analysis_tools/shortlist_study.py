"""How much a shortlist costs in accuracy: exact vs shortlisted evaluation
of a checkpoint on the test sets of a config.

    python tools/analysis_tools/shortlist_study.py configs/qaconv_gs_demo.py \\
        work_dirs/qaconv_gs_demo/epoch_8.pth
    python tools/analysis_tools/shortlist_study.py configs/qaconv_gs_demo.py \\
        none --shortlists 20 100 500          # the network as initialised

For every named set of ``test_cfg.test_sets`` the features are extracted
once, every pair is scored exactly (``model.match``, as ``tools/test.py``),
then each shortlist size N is evaluated as ``tools/test.py --shortlist N``
does (``ReIDTestLoop.score_shortlisted``: the N best gallery items by the
cosine of average-pooled maps scored exactly, the rest ranked after them by
that proxy). Printed per set: Rank-1 and mAP exact and shortlisted, their
differences, the recall of each query's exact top-1 and top-10 by its
shortlist (:func:`mmreid_gs.evaluation.functional.shortlist_recall`) and the
matching times. An N at least the gallery size is the exact evaluation
(marked ``= exact``). ``--refine-factors F ...`` adds, for every N, the
cascade of ``--shortlist N --shortlist-refine F*N`` (the cosine proposes
F x N items, QAConv on 2x2-pooled maps keeps the N best). One process.
"""
import argparse
import os.path as osp
import sys
import time

import numpy as np
from mmengine.model import is_model_wrapper

from mmreid_gs.cli import (apply_runner_args, build_runner, load_config,
                           run_cli)
from mmreid_gs.evaluation.functional import (check_shortlist, evaluate_rank,
                                             shortlist_recall)
from mmreid_gs.utils.errors import ConfigError

SHORTLISTS = (20, 100, 500)
RECALL_TOPK = (1, 10)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Exact vs shortlisted evaluation of a checkpoint')
    parser.add_argument('config', help='config file (its test_cfg.test_sets)')
    parser.add_argument('checkpoint',
                        help='checkpoint file, or `none`: the network as '
                        'initialised')
    parser.add_argument('--shortlists', type=int, nargs='+',
                        default=list(SHORTLISTS), metavar='N',
                        help=f'shortlist sizes (default: {SHORTLISTS})')
    parser.add_argument('--refine-factors', type=int, nargs='+', default=[],
                        metavar='F',
                        help='also evaluate each N as a cascade: the cosine '
                        'proposes F x N items, 2x2-pooled QAConv keeps N')
    parser.add_argument('--sets', nargs='+', metavar='NAME',
                        help='only these test sets (default: all)')
    parser.add_argument('--amp', action='store_true',
                        help='extract and match under autocast')
    parser.add_argument('--work-dir', help='the dir to save logs')
    from mmengine.config import DictAction
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override settings in the config')
    parser.set_defaults(launcher='none', local_rank=0)
    return parser.parse_args(argv)


def _rank(scores, ids) -> dict:
    return evaluate_rank(-np.asarray(scores, dtype=np.float32), *ids)


def study_set(loop, name: str, item: dict, shortlists,
              refine_factors=()) -> list:
    """Exact and shortlisted numbers of one named set.

    Returns:
        list[dict]: One row per evaluation (the exact one first): ``N``,
        ``rank1``, ``mAP``, ``recall@k``, ``seconds`` (matching), ``note``.
    """
    q_ds, q_feats = loop.extract(item['query'], f'{name}/query')
    g_ds, g_feats = loop.extract(item['gallery'], f'{name}/gallery')
    ids = (np.asarray(q_ds.get_gt_labels()), np.asarray(g_ds.get_gt_labels()),
           np.asarray(q_ds.get_cam_ids()), np.asarray(g_ds.get_cam_ids()))
    tic = time.perf_counter()
    exact = loop.score(q_feats, g_feats, f'{name} exact')
    t_exact = time.perf_counter() - tic
    res = _rank(exact, ids)
    rows = [dict(N='exact', rank1=float(res['cmc'][0]), mAP=res['mAP'],
                 seconds=t_exact, note='',
                 size=(len(q_ds), len(g_ds)))]
    runs = [(num, None) for num in shortlists] + [
        (num, f * num) for num in shortlists for f in refine_factors
        if f * num < g_feats.shape[0]]
    for num, refine in runs:
        if q_feats.dim() == 2:
            rows.append(dict(N=num, note='global vectors: exact'))
            continue
        if num >= g_feats.shape[0]:
            rows.append(dict(rows[0], N=num, note='= exact (N >= gallery)',
                             **{f'recall@{k}': 1.0 for k in RECALL_TOPK}))
            continue
        loop.shortlist_refine = refine
        tic = time.perf_counter()
        scores, shortlist = loop.score_shortlisted(q_feats, g_feats, num,
                                                   f'{name} N={num}')
        seconds = time.perf_counter() - tic
        loop.shortlist_refine = None
        res = _rank(scores, ids)
        row = dict(N=num, rank1=float(res['cmc'][0]), mAP=res['mAP'],
                   seconds=seconds, refine=refine,
                   note=f'cascade: cosine {refine} -> pooled {num}'
                   if refine else 'cosine')
        for k in RECALL_TOPK:
            row[f'recall@{k}'] = shortlist_recall(exact, shortlist, k)
        rows.append(row)
    return rows


def format_rows(name: str, rows: list) -> str:
    """The table of one set (percent; differences to the exact row)."""
    q, g = rows[0]['size']
    ref = rows[0]
    lines = [f'{name}: {q} queries x {g} gallery',
             f'{"N":>6}  {"Rank-1":>7} {"dR1":>6}  {"mAP":>7} {"dmAP":>6}  '
             f'{"rec@1":>6} {"rec@10":>6}  {"match s":>8}  note']
    for row in rows:
        if 'rank1' not in row:
            lines.append(f'{row["N"]:>6}  {row["note"]}')
            continue
        d1 = 100 * (row['rank1'] - ref['rank1'])
        dm = 100 * (row['mAP'] - ref['mAP'])
        rec = [f'{100 * row[f"recall@{k}"]:6.1f}' if f'recall@{k}' in row
               else f'{"-":>6}' for k in RECALL_TOPK]
        lines.append(
            f'{row["N"]:>6}  {100 * row["rank1"]:7.2f} {d1:+6.2f}  '
            f'{100 * row["mAP"]:7.2f} {dm:+6.2f}  {rec[0]} {rec[1]}  '
            f'{row["seconds"]:8.2f}  {row["note"]}')
    return '\n'.join(lines)


def _metrics(name: str, rows: list) -> dict:
    """The rows as logged metrics: ``<set>/Rank-1``, ``<set>/mAP`` (exact)
    and ``<set>/Rank-1_shortlist<N>``, ... ``<set>/recall@k_shortlist<N>``.
    """
    out = {}
    for row in rows:
        if 'rank1' not in row:
            continue
        suffix = '' if row['N'] == 'exact' else f'_shortlist{row["N"]}'
        if row.get('refine'):
            suffix += f'_refine{row["refine"]}'
        out[f'{name}/Rank-1{suffix}'] = row['rank1']
        out[f'{name}/mAP{suffix}'] = row['mAP']
        for k in RECALL_TOPK:
            if f'recall@{k}' in row:
                out[f'{name}/recall@{k}{suffix}'] = row[f'recall@{k}']
    return out


def main(argv=None):
    args = parse_args(argv)
    for num in args.shortlists:
        check_shortlist(num, '--shortlists')
    cfg = load_config(args.config, args.cfg_options)
    apply_runner_args(cfg, args, args.config)
    if cfg.get('test_cfg') is None:
        raise ConfigError(f'{args.config} has no test_cfg: name the test '
                          'sets in test_cfg.test_sets.')
    initialised = args.checkpoint.lower() == 'none'
    if not initialised and not osp.isfile(args.checkpoint):
        raise ConfigError(f'checkpoint not found: {args.checkpoint}')
    cfg.load_from = None if initialised else args.checkpoint
    cfg.resume = False
    cfg.test_cfg.shortlist = None
    cfg.test_cfg.keep_outputs = False
    if args.amp:
        cfg.test_cfg.fp16 = True
    runner = build_runner(cfg)
    loop = runner.test_loop
    sets = dict(loop.test_sets)
    if args.sets:
        unknown = [s for s in args.sets if s not in sets]
        if unknown:
            raise ConfigError(f'--sets: no test set {", ".join(unknown)} in '
                              f'{args.config} (it has {", ".join(sets)})')
        sets = {s: sets[s] for s in args.sets}
    runner.call_hook('before_run')
    runner.load_or_resume()
    if initialised:
        runner.logger.warning('checkpoint `none`: the network as '
                              'initialised.')
        model = runner.model.module if is_model_wrapper(
            runner.model) else runner.model
        model.init_weights()
    runner.model.eval()
    runner.call_hook('before_test')
    runner.call_hook('before_test_epoch')
    tables, metrics = [], {}
    for name, item in sets.items():
        rows = study_set(loop, name, item, args.shortlists,
                         args.refine_factors)
        tables.append(format_rows(name, rows))
        metrics.update(_metrics(name, rows))
    # the numbers in the work dir's JSON log too
    runner.call_hook('after_test_epoch', metrics=metrics)
    runner.call_hook('after_test')
    runner.call_hook('after_run')
    print('\n\n'.join(tables) + '\n(Rank-1, mAP, recall in %; dR1 / dmAP: '
          'shortlisted minus exact; rec@k: share of each query\'s exact '
          'top-k in its shortlist)', flush=True)


if __name__ == '__main__':
    sys.exit(run_cli(main))

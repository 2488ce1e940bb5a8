"""Time and peak memory of exact vs shortlisted QAConv evaluation at
Market-1501 and MSMT17 gallery sizes.

    python tools/analysis_tools/benchmark_shortlist.py                 # both
    python tools/analysis_tools/benchmark_shortlist.py --sizes market
    python tools/analysis_tools/benchmark_shortlist.py --sizes msmt \\
        --queries-limit 64
    python tools/analysis_tools/benchmark_shortlist.py --quick         # tiny

Generated maps at the paper's QAConv size (64 channels, 24x8 locations:
``configs/_base_/models/qaconv_r50_ibn.py`` at 384x128 input),
identity-structured (an identity centre plus 2.2 x Gaussian noise,
L2-normalised over the channels, about 20 images an identity) so that the
numbers are not degenerate; ``QAConvHead`` in eval mode with trained-looking
BatchNorm statistics. Measured side by side in one run, per size:

- **exact**: ``QAConvHead.match`` of query chunks of 256 against the whole
  gallery, as ``ReIDTestLoop.score``. Too slow at MSMT17 size on a few
  cores, so it runs on the first ``--queries-limit`` queries and its time is
  **extrapolated** linearly to all queries (matching is independent per
  query row); the table says so and from how many queries.
- **shortlist N** (default N = 100 and 500): what ``tools/test.py
  --shortlist N`` runs per chunk of 256 queries
  (:func:`mmreid_gs.evaluation.functional.shortlisted_scores`: pooled-map
  cosine proxy, ``topk``, ``QAConvHead.match_pairs`` on the gathered
  shortlists, combined scores) into one preallocated ``[q, g]`` matrix, for
  all queries unless ``--shortlist-queries-limit``.
- **shortlist N / M** (``--refine M ...``): the cascade of ``tools/test.py
  --shortlist N --shortlist-refine M``: the cosine proposes M items per
  query, QAConv on 2x2-pooled maps keeps the N best, the exact matcher
  scores those (the pooled gallery computed inside the timed stage).

Peak memory: resident memory above that before the stage, sampled every 2
ms, next to the size of the stage's own ``[q, g]`` output (it never holds a
``q x g x hw x hw`` tensor). On the queries the exact stage scored, the
shortlist's recall of the exact top-1 and top-10 and Rank-1 / mAP of both
(random cameras) are printed as well.
"""
import argparse
import time

import torch
import torch.nn.functional as F

from mmreid_gs.evaluation.functional import (evaluate_rank, proxy_features,
                                             shortlist_recall,
                                             shortlisted_scores)
from mmreid_gs.two_stage import pooled_proxy_features
from mmreid_gs.models.heads import QAConvHead
from mmreid_gs.utils.benchmark import PeakRSS, gemm_gflops

#: name -> (queries, gallery): the test splits of Market-1501 and MSMT17.
SIZES = dict(market=(3368, 15913), msmt=(11659, 82161))
#: --quick: the same layout, tiny.
QUICK_SIZES = dict(market=(48, 800), msmt=(64, 1500))
#: Queries the exact stage scores by default (then extrapolated).
EXACT_QUERIES = dict(market=256, msmt=64)
CHUNK = 256  # query rows per call, as ReIDTestLoop


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--sizes', nargs='+', choices=sorted(SIZES),
                        default=['market', 'msmt'])
    parser.add_argument('--shortlists', type=int, nargs='+', default=[100,
                                                                     500])
    parser.add_argument(
        '--queries-limit', type=int, default=None,
        help='queries the exact stage scores, its time extrapolated to all '
        f'(default: {EXACT_QUERIES}; --quick: a third of them)')
    parser.add_argument(
        '--shortlist-queries-limit', type=int, default=None,
        help='queries the shortlisted stages score (default: all), their '
        'time extrapolated likewise')
    parser.add_argument('--refine', type=int, nargs='+', default=[],
                        metavar='M',
                        help='also time each N as a cascade with M cosine '
                        'candidates narrowed by 2x2-pooled QAConv (M > N)')
    parser.add_argument('--channels', type=int, default=64)
    parser.add_argument('--height', type=int, default=24)
    parser.add_argument('--width', type=int, default=8)
    parser.add_argument('--threads', type=int, default=None)
    parser.add_argument('--amp', action='store_true',
                        help='match under autocast, as tools/test.py --amp '
                        '(bfloat16 on the CPU); the proxies stay float32')
    parser.add_argument('--quick', action='store_true',
                        help=f'tiny galleries {QUICK_SIZES}: checks that the '
                        'script runs')
    return parser.parse_args(argv)


def make_maps(num_query: int, num_gallery: int, c: int, h: int, w: int,
              seed: int = 0):
    """Identity-structured maps, ids and cameras (chunked: no second copy
    of the gallery)."""
    gen = torch.Generator().manual_seed(seed)
    num_ids = max(2, num_gallery // 20)
    centres = torch.randn(num_ids, c, h, w, generator=gen)
    g_pids = torch.randint(num_ids, (num_gallery, ), generator=gen)
    q_pids = g_pids[torch.randint(num_gallery, (num_query, ), generator=gen)]

    def maps(pids):
        out = torch.empty(len(pids), c, h, w)
        for i in range(0, len(pids), 4096):
            p = pids[i:i + 4096]
            x = centres[p] + 2.2 * torch.randn(len(p), c, h, w,
                                               generator=gen)
            out[i:i + 4096] = F.normalize(x, dim=1)
        return out

    gallery, query = maps(g_pids), maps(q_pids)
    g_cams = torch.randint(6, (num_gallery, ), generator=gen).numpy()
    q_cams = torch.randint(6, (num_query, ), generator=gen).numpy()
    return query, gallery, (q_pids.numpy(), g_pids.numpy(), q_cams, g_cams)


def exact_stage(head, query, gallery):
    out = torch.empty(query.shape[0], gallery.shape[0])
    for i in range(0, query.shape[0], CHUNK):
        out[i:i + CHUNK] = head.match(query[i:i + CHUNK], gallery)
    return out


def shortlist_stage(head, query, gallery, num, refine=None):
    out = torch.empty(query.shape[0], gallery.shape[0])
    idx = torch.empty(query.shape[0], min(num, gallery.shape[0]),
                      dtype=torch.long)
    gallery_proxy = proxy_features(gallery)
    pooled = pooled_proxy_features(gallery) if refine else None
    for i in range(0, query.shape[0], CHUNK):
        rows = slice(i, min(i + CHUNK, query.shape[0]))
        _, idx[rows] = shortlisted_scores(query[rows], gallery, num,
                                          head.match, head.match_pairs,
                                          gallery_proxy=gallery_proxy,
                                          out=out[rows], refine=refine,
                                          gallery_pooled=pooled)
    return out, idx


def _modes(args):
    """no_grad, and autocast with --amp (tools/test.py --amp)."""
    import contextlib
    stack = contextlib.ExitStack()
    stack.enter_context(torch.no_grad())
    if getattr(args, 'amp', False):
        stack.enter_context(torch.autocast('cpu', dtype=torch.bfloat16))
    return stack


def measure(fn):
    with PeakRSS() as mem:
        tic = time.perf_counter()
        result = fn()
        seconds = time.perf_counter() - tic
    return result, seconds, mem.peak / 2**20


def _rank(scores, ids, rows):
    q_pids, g_pids, q_cams, g_cams = ids
    res = evaluate_rank(-scores.numpy(), q_pids[:rows], g_pids,
                        q_cams[:rows], g_cams)
    return res['cmc'][0], res['mAP']


def run_size(name, num_query, num_gallery, args, exact_limit):
    c, h, w = args.channels, args.height, args.width
    query, gallery, ids = make_maps(num_query, num_gallery, c, h, w)
    head = QAConvHead(c, h, w).eval()
    with torch.no_grad():  # trained-looking BN statistics
        head.bn.running_mean.fill_(0.5)
        head.bn.running_var.fill_(0.04)
    maps_mb = (query.numel() + gallery.numel()) * 4 / 2**20
    print(f'\n{name}: {num_query:,} queries x {num_gallery:,} gallery maps '
          f'of {c}x{h}x{w} ({maps_mb:,.0f} MiB of maps)')
    rows = []
    limit = min(num_query, exact_limit)
    with _modes(args):
        exact, seconds, peak = measure(
            lambda: exact_stage(head, query[:limit], gallery))
    rows.append(dict(stage='exact', timed=limit, seconds=seconds, peak=peak,
                     out_mb=limit * num_gallery * 4 / 2**20,
                     pairs=limit * num_gallery,
                     metrics=_rank(exact, ids, limit)))
    s_limit = min(num_query, args.shortlist_queries_limit or num_query)
    runs = [(num, None) for num in args.shortlists] + [
        (num, m) for num in args.shortlists for m in args.refine
        if num < m < num_gallery]
    for num, refine in runs:
        with _modes(args):
            (scores, idx), seconds, peak = measure(
                lambda: shortlist_stage(head, query[:s_limit], gallery, num,
                                        refine))
        common = min(limit, s_limit)
        rows.append(dict(
            stage=f'shortlist {num}' + (f' / {refine}' if refine else ''),
            timed=s_limit, seconds=seconds,
            peak=peak, out_mb=s_limit * num_gallery * 4 / 2**20,
            pairs=s_limit * min(num, num_gallery),
            recall=(shortlist_recall(exact[:common], idx[:common], 1),
                    shortlist_recall(exact[:common], idx[:common], 10)),
            metrics=_rank(scores[:limit], ids, limit)
            if s_limit >= limit else None))
        del scores, idx
    print(f'{"stage":<20} {"queries":>8} {"time":>9} {"all queries":>13} '
          f'{"pairs/s":>13} {"peak MiB":>9} {"[q,g] MiB":>9} '
          f'{"rec@1":>6} {"rec@10":>6} {"R1 / mAP (first %d q)" % limit}')
    for row in rows:
        full = row['seconds'] * num_query / row['timed']
        extrapolated = row['timed'] < num_query
        full_txt = (f'{full:8.1f} s' if full < 120 else
                    f'{full / 60:6.1f} min') + (' *' if extrapolated else
                                                '  ')
        rec = row.get('recall')
        rec_txt = (f'{100 * rec[0]:6.1f} {100 * rec[1]:6.1f}' if rec else
                   f'{"-":>6} {"-":>6}')
        met = row['metrics']
        met_txt = f'{met[0]:.3f} / {met[1]:.3f}' if met else '-'
        print(f'{row["stage"]:<20} {row["timed"]:>8,} '
              f'{row["seconds"]:8.1f}s {full_txt:>13} '
              f'{row["pairs"] / row["seconds"]:13,.0f} {row["peak"]:9,.0f} '
              f'{row["out_mb"]:9,.0f} {rec_txt} {met_txt}')
    for row in rows:
        if row['timed'] < num_query:
            print(f'* {row["stage"]}: EXTRAPOLATED to {num_query:,} queries '
                  f'from {row["timed"]:,} timed queries')
    ex = rows[0]['seconds'] * num_query / rows[0]['timed']
    for row in rows[1:]:
        sl = row['seconds'] * num_query / row['timed']
        print(f'{row["stage"]}: {ex / sl:.1f}x faster than exact '
              f'(all-query times)')


def main(argv=None):
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    sizes = QUICK_SIZES if args.quick else SIZES
    print(f'{torch.get_num_threads()} threads; fp32 GEMM '
          f'{gemm_gflops():.0f} GFLOP/s; shortlists {args.shortlists}'
          + (f', cascades {args.refine}' if args.refine else '')
          + ('; matching under bfloat16 autocast' if args.amp else ''))
    for name in args.sizes:
        num_query, num_gallery = sizes[name]
        limit = args.queries_limit or (
            max(1, EXACT_QUERIES[name] // 3) if args.quick else
            EXACT_QUERIES[name])
        run_size(name, num_query, num_gallery, args, limit)


if __name__ == '__main__':
    main()

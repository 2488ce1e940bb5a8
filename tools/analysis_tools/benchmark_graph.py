"""Benchmark the class graph of the Graph Sampler: exact vs candidates.

For C classes with one 64x24x8 QAConv feature map each, compares the exact
graph (C^2 QAConv pairs) with the two-stage candidates mode (a cheap proxy
proposes N = 5/10/20% of C classes, QAConv re-scores only those) on time and
recall of the exact neighbours.

The features are random but structured like person maps: look-alike groups
of classes share part appearances (horizontal stripes with jittered
boundaries), every class mixes its group's parts with its own, plus noise;
so nearest classes are meaningful. The matcher is
``mmreid_gs.models.heads.QAConvHead`` (eval mode, fc weights perturbed to
look trained) when it can be imported, else a reference implementation of
the same formula in this script.

Both modes cost the same per class row, so by default the times are
measured on ``--rows`` random classes and scaled by C / rows (marked
``est``); recall is exact for those rows. ``--rows 0`` runs every row.
Times are wall-clock and process CPU time; the speed-up uses CPU time,
which is steadier on a shared machine.

Example::

    python tools/analysis_tools/benchmark_graph.py
    python tools/analysis_tools/benchmark_graph.py --classes 3000 --rows 0
    python tools/analysis_tools/benchmark_graph.py --with-8000
    python tools/analysis_tools/benchmark_graph.py --classes 3000 --amp \
        --fractions --proxies
"""
import argparse
import math
import time

import torch
import torch.nn.functional as F

from mmreid_gs.engine.graph import build_class_graph
from mmreid_gs.utils.benchmark import gemm_gflops


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--classes', type=int, nargs='+',
                        default=[500, 1000, 3000], help='numbers of classes C')
    parser.add_argument('--with-8000', action='store_true',
                        help='also run C = 8000')
    parser.add_argument('--fractions', type=float, nargs='*',
                        default=[0.05, 0.1, 0.2],
                        help='num_candidates as fractions of C')
    parser.add_argument('--proxies', nargs='*', default=['gap', 'pooled'],
                        help='first-stage proxies (candidate_fn names)')
    parser.add_argument('--num-neighbors', type=int, default=15,
                        help='neighbours per class (P - 1; paper: 64/4 - 1)')
    parser.add_argument('--rows', type=int, default=100,
                        help='class rows to time and score (0: all rows)')
    parser.add_argument('--shape', type=int, nargs=3, default=[64, 24, 8],
                        metavar=('C', 'H', 'W'), help='feature map shape')
    parser.add_argument('--threads', type=int, default=0,
                        help='torch threads (0: leave the default)')
    parser.add_argument('--repeats', type=int, default=1,
                        help='time every run this many times, keep the '
                        'fastest (steadier on a shared machine)')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument(
        '--amp',
        action='store_true',
        help='also build the exact graph under autocast (CPU: bfloat16, '
        'CUDA: float16), as GraphSamplerHook(fp16=True) does, and report '
        'its time and recall of the float32 neighbours')
    parser.add_argument('--reference', action='store_true',
                        help='use the reference matcher even if QAConvHead '
                        'is available')
    return parser.parse_args()


def make_features(num_classes, channels=64, height=24, width=8, seed=0,
                  parts=4, group=8, noise=0.6):
    """Structured random feature maps [C, c, h, w], L2-normalised."""
    g = torch.Generator().manual_seed(seed)
    num_groups = max(1, num_classes // group)
    grp = torch.randint(0, num_groups, (num_classes, ), generator=g)
    group_parts = F.normalize(
        torch.randn(num_groups, parts, channels, generator=g), dim=2)
    own_parts = F.normalize(
        torch.randn(num_classes, parts, channels, generator=g), dim=2)
    mix = torch.rand(num_classes, parts, 1, generator=g)
    part_vecs = F.normalize(
        1.5 * mix * group_parts[grp] + (1 - mix) * own_parts, dim=2)
    bounds = torch.linspace(0, height, parts + 1)[1:-1]
    jitter = torch.randint(-2, 3, (num_classes, parts - 1),
                           generator=g).float()
    rows = torch.arange(height).float()
    part_of_row = (rows[None, :, None] >=
                   bounds[None, None, :] + jitter[:, None, :]).sum(2)
    maps = torch.gather(part_vecs, 1,
                        part_of_row[:, :, None].expand(-1, -1, channels))
    maps = maps[:, :, None, :].expand(-1, -1, width, -1)
    maps = maps + noise * 3 / math.sqrt(channels) * torch.randn(
        num_classes, height, width, channels, generator=g)
    return F.normalize(maps.permute(0, 3, 1, 2).contiguous(), dim=1)


class ReferenceQAConv:
    """QAConv scores: fc(max over gallery locations) + fc(max over query
    locations) with one shared fc (the BN layers are monotone in eval mode
    and left out). Pairs are scored in chunks of bounded memory."""

    def __init__(self, height, width, seed=0, budget=2**20):
        g = torch.Generator().manual_seed(seed + 1)
        locs = height * width
        self.weight = (1 + 0.3 * torch.randn(locs, generator=g)) / locs
        self.budget = budget

    def __call__(self, q, gal):
        nq, c = q.shape[:2]
        ng = gal.shape[0]
        locs = q.shape[2] * q.shape[3]
        qm = q.flatten(2).transpose(1, 2).reshape(nq * locs, c)
        gm = gal.flatten(2).transpose(0, 1).reshape(c, ng * locs)
        w = self.weight.to(q)
        out = q.new_empty(nq, ng)
        bq = max(1, min(nq, int(math.sqrt(self.budget) / locs)))
        bg = max(1, self.budget // (bq * locs * locs))
        for i in range(0, nq, bq):
            qi = qm[i * locs:(i + bq) * locs]
            nb = qi.shape[0] // locs
            for j in range(0, ng, bg):
                gj = gm[:, j * locs:(j + bg) * locs]
                mb = gj.shape[1] // locs
                s = (qi @ gj).view(nb, locs, mb, locs)
                out[i:i + nb, j:j + mb] = (
                    s.amax(3).transpose(1, 2) @ w + s.amax(1) @ w)
        return out


def build_matcher(channels, height, width, seed, reference):
    if not reference:
        try:
            from mmreid_gs.models.heads import QAConvHead
            head = QAConvHead(num_features=channels, height=height,
                              width=width).eval()
            g = torch.Generator().manual_seed(seed + 1)
            with torch.no_grad():
                head.fc.weight.mul_(
                    1 + 0.3 * torch.randn(head.fc.weight.shape, generator=g))
            return head.match, 'QAConvHead.match'
        except Exception as err:  # noqa: BLE001 (fall back, say why)
            why = f'{type(err).__name__}: {err}'
            print(f'QAConvHead not usable ({why}); using the reference '
                  'matcher')
    return ReferenceQAConv(height, width, seed), 'reference QAConv'


def timed(repeats, scale, fn, *args, **kwargs):
    """Run ``fn`` ``repeats`` times; the result and the smallest wall and
    CPU times, multiplied by ``scale``."""
    walls, cpus = [], []
    for _ in range(max(1, repeats)):
        start, cpu = time.perf_counter(), time.process_time()
        out = fn(*args, **kwargs)
        walls.append(time.perf_counter() - start)
        cpus.append(time.process_time() - cpu)
    return out, min(walls) * scale, min(cpus) * scale


def recall(exact, approx):
    hits = sum(
        len(set(e.tolist()) & set(a.tolist())) for e, a in zip(exact, approx))
    return hits / max(1, exact.numel())


def main():
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    channels, height, width = args.shape
    matcher, name = build_matcher(channels, height, width, args.seed,
                                  args.reference)
    flop_per_pair = 2 * channels * (height * width)**2
    print(f'matcher: {name}; maps {channels}x{height}x{width}; '
          f'{torch.get_num_threads()} threads; num_neighbors '
          f'{args.num_neighbors}')
    print(f'fp32 GEMM 2048^3: {gemm_gflops(2048, 3):.1f} GFLOP/s')
    classes = list(args.classes) + ([8000] if args.with_8000 else [])
    header = (f"{'C':>5} {'N':>5} {'proxy':>7} {'exact s':>8} "
              f"{'cand s':>7} {'exact CPU':>8} {'cand CPU':>7} "
              f"{'speed-up':>8} {'recall':>6} {'cand rec':>8} "
              f"{'GFLOP/s':>7}")
    rows_out = []
    with torch.no_grad():
        for num_classes in classes:
            feats = make_features(num_classes, channels, height, width,
                                  args.seed)
            g = torch.Generator().manual_seed(args.seed + num_classes)
            num_rows = num_classes if args.rows <= 0 else min(
                args.rows, num_classes)
            rows = torch.randperm(num_classes, generator=g)[:num_rows]
            matcher(feats[:2], feats[:64])  # warm-up
            scale = num_classes / num_rows
            tag = '' if num_rows == num_classes else ' est'
            exact, t_exact, c_exact = timed(
                args.repeats, scale, build_class_graph, feats, matcher,
                args.num_neighbors, rows=rows)
            gflops = num_classes**2 * flop_per_pair / t_exact / 1e9
            print(f'C={num_classes}: exact {t_exact:.1f}s{tag} wall, '
                  f'{c_exact:.1f}s CPU ({num_classes**2 / 1e6:.2f}M pairs, '
                  f'{gflops:.1f} GFLOP/s wall); timed on {num_rows} rows',
                  flush=True)
            if args.amp:
                with torch.autocast(feats.device.type):
                    half, t_half, c_half = timed(
                        args.repeats, scale, build_class_graph, feats,
                        matcher, args.num_neighbors, rows=rows)
                print(f'C={num_classes}: exact under autocast '
                      f'{t_half:.1f}s{tag} wall, {c_half:.1f}s CPU = '
                      f'{c_exact / c_half:.2f}x less CPU time than float32; '
                      f'recall of the float32 neighbours '
                      f'{recall(exact, half):.3f}', flush=True)
            for frac in args.fractions:
                n = max(args.num_neighbors, math.ceil(frac * num_classes))
                for proxy in args.proxies:
                    (nbrs, cands), t_cand, c_cand = timed(
                        args.repeats, scale, build_class_graph, feats,
                        matcher, args.num_neighbors, n, rows=rows,
                        candidate_fn=proxy, return_candidates=True)
                    line = (f'{num_classes:>5} {n:>5} {proxy:>7} '
                            f'{t_exact:>8.1f} {t_cand:>7.1f} '
                            f'{c_exact:>8.1f} {c_cand:>7.1f} '
                            f'{c_exact / c_cand:>7.1f}x '
                            f'{recall(exact, nbrs):>6.3f} '
                            f'{recall(exact, cands):>8.3f} {gflops:>7.1f}')
                    rows_out.append(line)
                    print(line, flush=True)
    scaled = ' (measured on --rows rows, scaled to C)' if args.rows > 0 \
        else ''
    print(f'\nTimes in seconds{scaled}: wall and CPU; speed-up = exact CPU '
          '/ candidates CPU; recall = fraction of the exact neighbours found;'
          ' cand rec = fraction inside the first-stage candidates; GFLOP/s ='
          ' exact QAConv throughput (2*c*(h*w)^2 FLOP per pair, wall).')
    print(header)
    for line in rows_out:
        print(line)


if __name__ == '__main__':
    main()

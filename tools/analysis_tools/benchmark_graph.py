"""Benchmark the class graph of the Graph Sampler: exact vs candidates.

For C classes with one QAConv feature map each (64x8x4, the demo's maps at
128x64 input, and 64x24x8, the paper's at 384x128), compares the exact
graph (C^2 QAConv pairs) with the two-stage candidates mode (a cheap proxy
proposes N = 5/10/20% of C classes, QAConv re-scores only those) on time and
recall of the exact neighbours. The two-stage graph is always timed
(``build_class_graph(..., exact_fallback=False)``); its second stage runs
batched (``QAConvHead.match_pairs``: each class against its own
candidates) and, side by side unless ``--no-per-class``, as it did before
(one matcher call per class, ``per-class`` column). ``path`` is what
``build_class_graph`` chooses by default (``two-stage``, or ``exact`` where
its cost model does not predict the two-stage graph clearly cheaper:
``pred`` is the predicted two-stage / exact cost ratio), and ``chosen/ex``
the wall-time ratio of that path to the exact graph (1.00 for ``exact``).

``--rolled`` runs the recipe of an outside check, through the documented
call ``build_class_graph(feats, head.match, 15, num_candidates=300)`` (no
``pair_matcher``: the head's ``match_pairs`` is found from the bound
``match``): 3,000 classes of 32x6x4 maps, L2-normalised over channels,
families of 20 classes (a family mean plus 0.7 x Gaussian noise), each
class's map rolled by its own random spatial offset (a proxy that ignores
spatial shifts is what it tests). It times, side by side and under
``torch.no_grad()`` and ``torch.inference_mode()``: the exact graph, the
documented call, and the union second stage (a plain function matcher,
which has no pair scorer) with and without the exact fallback.

``--cosine C ...`` builds the exact graph of C global embeddings
(``--dim``-d, ``GlobalEmbeddingHead.match``: cosine similarity) over all
rows: time and peak resident memory above the features, next to the size
of the C x C score matrix that is never built.

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
    python tools/analysis_tools/benchmark_graph.py --classes --cosine \
        10000 100000
"""
import argparse
import math
import time

import torch
import torch.nn.functional as F

from mmreid_gs.engine.graph import (build_class_graph, candidate_classes,
                                    candidates_decision, two_stage_cost_ratio)
from mmreid_gs.utils.benchmark import PeakRSS, gemm_gflops


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--classes', type=int, nargs='*',
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
    parser.add_argument('--shapes', nargs='+', default=['64x8x4', '64x24x8'],
                        help='feature map shapes CxHxW')
    parser.add_argument('--cosine', type=int, nargs='*', default=[],
                        help='numbers of classes for the cosine matcher on '
                        'global embeddings (exact graph, all rows)')
    parser.add_argument('--dim', type=int, default=512,
                        help='embedding size for --cosine')
    parser.add_argument('--cosine-rows', type=int, default=0,
                        help='time --cosine on this many random rows (all '
                        'C columns) and scale by C / rows (0: all rows); '
                        'the peak memory is that of a full run (one block '
                        'of 256 rows x all columns at a time)')
    parser.add_argument('--rolled', action='store_true',
                        help='run the rolled-maps recipe through the '
                        'documented call (see the module docstring) and '
                        'nothing else')
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
    parser.add_argument('--no-per-class', action='store_true',
                        help='skip the former per-class second stage')
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
            return head.match, head.match_pairs, 'QAConvHead.match'
        except Exception as err:  # noqa: BLE001 (fall back, say why)
            why = f'{type(err).__name__}: {err}'
            print(f'QAConvHead not usable ({why}); using the reference '
                  'matcher')
    return ReferenceQAConv(height, width, seed), None, 'reference QAConv'


def per_class_candidates(feats, matcher, num_neighbors, num, rows, proxy):
    """The second stage as it was: one matcher call per class."""
    cands = candidate_classes(feats, num, proxy, rows)
    nbrs = torch.empty(len(rows), num_neighbors, dtype=torch.long)
    for r, row in enumerate(rows.tolist()):
        s = matcher(feats[row:row + 1], feats[cands[r]])[0]
        best = torch.sort(s, descending=True, stable=True).indices
        nbrs[r] = cands[r][best[:num_neighbors]]
    return nbrs


def run_cosine(class_counts, dim, num_neighbors, seed, num_rows=0):
    """Exact graph of C global embeddings with the cosine matcher."""
    from mmreid_gs.models.heads import GlobalEmbeddingHead
    head = GlobalEmbeddingHead(in_channels=dim).eval()
    rows_note = f'timed on {num_rows} rows, scaled to C' if num_rows > 0 \
        else 'all rows'
    print(f'\ncosine matcher (GlobalEmbeddingHead.match), {dim}-d '
          f'embeddings, {num_neighbors} neighbours, {rows_note}')
    print(f"{'C':>7} {'wall s':>8} {'CPU s':>8} {'GFLOP/s':>8} "
          f"{'features MiB':>12} {'peak extra MiB':>14} {'C x C MiB':>10}")
    for num_classes in class_counts:
        g = torch.Generator().manual_seed(seed + num_classes)
        centres = torch.randn(max(1, num_classes // 8), dim, generator=g)
        grp = torch.randint(0, centres.shape[0], (num_classes, ),
                            generator=g)
        feats = F.normalize(
            centres[grp] + torch.randn(num_classes, dim, generator=g), dim=1)
        build_class_graph(feats[:300], head.match, num_neighbors)  # warm-up
        rows = None
        scale = 1.
        if 0 < num_rows < num_classes:
            rows = torch.randperm(num_classes, generator=g)[:num_rows]
            scale = num_classes / num_rows
        with torch.no_grad(), PeakRSS() as mem:
            start, cpu = time.perf_counter(), time.process_time()
            nbrs = build_class_graph(feats, head.match, num_neighbors,
                                     rows=rows)
            wall = (time.perf_counter() - start) * scale
            cpu = (time.process_time() - cpu) * scale
        assert nbrs.shape[1] == num_neighbors
        flops = 2. * num_classes**2 * dim
        mib = 2.**20
        print(f'{num_classes:>7} {wall:>8.1f} {cpu:>8.1f} '
              f'{flops / wall / 1e9:>8.1f} '
              f'{feats.numel() * 4 / mib:>12.0f} {mem.peak / mib:>14.0f} '
              f'{num_classes**2 * 4 / mib:>10.0f}', flush=True)


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


def rolled_features(num_classes=3000, channels=32, height=6, width=4,
                    family=20, noise=0.7, seed=0):
    """The outside check's maps: families of look-alike classes, each class
    rolled by its own spatial offset, L2-normalised over channels."""
    g = torch.Generator().manual_seed(seed)
    means = torch.randn(math.ceil(num_classes / family), channels, height,
                        width, generator=g)
    x = means.repeat_interleave(family, 0)[:num_classes]
    x = x + noise * torch.randn(num_classes, channels, height, width,
                                generator=g)
    dh = torch.randint(0, height, (num_classes, ), generator=g)
    dw = torch.randint(0, width, (num_classes, ), generator=g)
    x = torch.stack([
        torch.roll(x[i], (int(dh[i]), int(dw[i])), (1, 2))
        for i in range(num_classes)
    ])
    return F.normalize(x, dim=1)


def run_rolled(args):
    """The rolled-maps recipe: exact vs the documented two-stage call vs
    the union second stage, in both grad-free modes, side by side."""
    from mmreid_gs.models.heads import QAConvHead
    feats = rolled_features(seed=args.seed)
    head = QAConvHead(32, 6, 4).eval()
    k, n = 15, 300

    def plain(q, g):  # a matcher without a pair scorer
        return head.match(q, g)

    variants = [
        ('exact', dict(matcher=head.match)),
        ('documented call (head.match, N=300)',
         dict(matcher=head.match, num_candidates=n)),
        ('union stage, exact fallback on',
         dict(matcher=plain, num_candidates=n)),
        ('union stage forced (exact_fallback=False)',
         dict(matcher=plain, num_candidates=n, exact_fallback=False)),
    ]
    print(f'\nrolled recipe: C={feats.shape[0]}, maps '
          f'{list(feats.shape[1:])}, {k} neighbours; wall s (best of '
          f'{max(1, args.repeats)}), speed = exact / variant, recall of the '
          'exact neighbours')
    for mode, ctx in (('no_grad', torch.no_grad),
                      ('inference_mode', torch.inference_mode)):
        with ctx():
            exact = None
            for name, kw in variants:
                kw = dict(kw)
                matcher = kw.pop('matcher')
                nbrs, wall, _ = timed(args.repeats, 1.0, build_class_graph,
                                      feats, matcher, k, **kw)
                if exact is None:
                    exact, t_exact = nbrs, wall
                print(f'{mode:>15} {name:<44} {wall:7.2f} s '
                      f'{t_exact / wall:5.2f}x  recall '
                      f'{recall(exact, nbrs):.3f}')


def recall(exact, approx):
    hits = sum(
        len(set(e.tolist()) & set(a.tolist())) for e, a in zip(exact, approx))
    return hits / max(1, exact.numel())


def main():
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f'fp32 GEMM 2048^3: {gemm_gflops(2048, 3):.1f} GFLOP/s; '
          f'{torch.get_num_threads()} threads')
    if args.rolled:
        run_rolled(args)
        return
    classes = list(args.classes) + ([8000] if args.with_8000 else [])
    header = (f"{'maps':>8} {'C':>5} {'N':>5} {'proxy':>7} {'exact s':>8} "
              f"{'cand s':>7} {'exact CPU':>9} {'cand CPU':>8} "
              f"{'speed-up':>8} {'per-class wall/CPU':>18} {'recall':>6} "
              f"{'cand rec':>8} {'GFLOP/s':>7} {'pred':>5} {'path':>9} "
              f"{'chosen/ex':>9}")
    rows_out = []
    with torch.no_grad():
        for shape in args.shapes:
            channels, height, width = (int(v) for v in shape.split('x'))
            rows_out += run_maps(args, classes, channels, height, width)
    if rows_out:
        scaled = ' (measured on --rows rows, scaled to C)' \
            if args.rows > 0 else ''
        print(f'\nTimes in seconds{scaled}: wall and CPU; speed-up = exact '
              'CPU / candidates CPU (build_class_graph, batched second '
              'stage, always two-stage); per-class '
              'wall/CPU = the former second stage, one matcher call per '
              'class (first stage included); '
              'recall = fraction of the exact neighbours found; cand rec = '
              'fraction inside the first-stage candidates; GFLOP/s = exact '
              'QAConv throughput (2*c*(h*w)^2 FLOP per pair, wall); pred = '
              'predicted two-stage / exact cost; path = what '
              'build_class_graph computes by default; chosen/ex = wall time '
              'of that path / exact wall time.')
        print(header)
        for line in rows_out:
            print(line)
    if args.cosine:
        run_cosine(args.cosine, args.dim, args.num_neighbors, args.seed,
                   args.cosine_rows)


def run_maps(args, classes, channels, height, width):
    """Exact vs two-stage graphs of QAConv maps of one shape."""
    matcher, pair_matcher, name = build_matcher(channels, height, width,
                                                args.seed, args.reference)
    flop_per_pair = 2 * channels * (height * width)**2
    tag_maps = f'{height}x{width}'
    print(f'\nmatcher: {name}; maps {channels}x{height}x{width}; '
          f'num_neighbors {args.num_neighbors}')
    lines = []
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
                    args.repeats, scale, build_class_graph, feats, matcher,
                    args.num_neighbors, rows=rows)
            print(f'C={num_classes}: exact under autocast '
                  f'{t_half:.1f}s{tag} wall, {c_half:.1f}s CPU = '
                  f'{c_exact / c_half:.2f}x less CPU time than float32; '
                  f'recall of the float32 neighbours '
                  f'{recall(exact, half):.3f}', flush=True)
        for frac in args.fractions:
            n = max(args.num_neighbors, math.ceil(frac * num_classes))
            for proxy in args.proxies:
                (nbrs, cands), t_cand, c_cand = timed(
                    args.repeats, scale, build_class_graph, feats, matcher,
                    args.num_neighbors, n, rows=rows, candidate_fn=proxy,
                    return_candidates=True, pair_matcher=pair_matcher,
                    exact_fallback=False)
                two_stage, _ = candidates_decision(feats, n, proxy)
                pred = two_stage_cost_ratio(feats.shape[1:], num_classes, n,
                                            proxy)
                path = 'two-stage' if two_stage else 'exact'
                chosen = t_cand / t_exact if two_stage else 1.
                old = '-'
                if not args.no_per_class:
                    _, t_old, c_old = timed(
                        1, scale, per_class_candidates, feats, matcher,
                        args.num_neighbors, n, rows, proxy)
                    old = f'{t_old:.1f}/{c_old:.1f}'
                line = (f'{tag_maps:>8} {num_classes:>5} {n:>5} '
                        f'{proxy:>7} {t_exact:>8.1f} {t_cand:>7.1f} '
                        f'{c_exact:>9.1f} {c_cand:>8.1f} '
                        f'{c_exact / c_cand:>7.1f}x {old:>18} '
                        f'{recall(exact, nbrs):>6.3f} '
                        f'{recall(exact, cands):>8.3f} {gflops:>7.1f} '
                        f'{pred:>5.2f} {path:>9} {chosen:>9.2f}')
                lines.append(line)
                print(line, flush=True)
    return lines


if __name__ == '__main__':
    main()

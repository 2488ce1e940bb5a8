"""Time and peak memory of a Market-1501-sized QAConv evaluation.

Scores every query against every gallery map with ``QAConvHead.match`` in
query chunks (as ``ReIDTestLoop`` does), then runs ``evaluate_rank``, and
reports the wall time of each stage and the peak resident memory beyond the
feature maps and the score matrix, which must not grow with q x g.

    # 3,368 x 15,913; then 10% of the queries, extrapolated
    python tools/analysis_tools/benchmark_evaluation.py
    python tools/analysis_tools/benchmark_evaluation.py --num-query 337
    python tools/analysis_tools/benchmark_evaluation.py --num-query 337 --amp

With fewer queries the full-size time is extrapolated linearly (matching is
q x g work in independent query rows).
"""
import argparse
import time

import torch

from mmreid_gs.evaluation.functional import evaluate_rank
from mmreid_gs.models.heads import QAConvHead
from mmreid_gs.utils.benchmark import PeakRSS


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--num-query', type=int, default=3368)
    parser.add_argument('--num-gallery', type=int, default=15913)
    parser.add_argument('--full-query', type=int, default=3368,
                        help='query count to extrapolate the time to')
    parser.add_argument('--channels', type=int, default=64)
    parser.add_argument('--height', type=int, default=24)
    parser.add_argument('--width', type=int, default=8)
    parser.add_argument('--chunk', type=int, default=256,
                        help='queries per match call (as ReIDTestLoop)')
    parser.add_argument('--threads', type=int, default=None)
    parser.add_argument('--device', default='cpu')
    parser.add_argument(
        '--amp',
        action='store_true',
        help='match under autocast (CPU: bfloat16, CUDA: float16), as '
        '`tools/test.py --amp` does')
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(0)
    c, h, w = args.channels, args.height, args.width
    num_ids = max(2, args.num_gallery // 20)
    # Identity-structured maps so that the metrics are not degenerate.
    centres = torch.randn(num_ids, c, h, w, generator=gen)

    def maps(n, pids):
        x = centres[pids] + 2.2 * torch.randn(n, c, h, w, generator=gen)
        return torch.nn.functional.normalize(x, dim=1)

    g_pids = torch.randint(num_ids, (args.num_gallery, ), generator=gen)
    q_pids = g_pids[torch.randint(args.num_gallery, (args.num_query, ),
                                  generator=gen)]
    gallery = maps(args.num_gallery, g_pids).to(args.device)
    query = maps(args.num_query, q_pids).to(args.device)
    g_cams = torch.randint(6, (args.num_gallery, ), generator=gen).numpy()
    q_cams = (torch.randint(6, (args.num_query, ), generator=gen).numpy())
    head = QAConvHead(c, h, w).to(args.device).eval()
    with torch.no_grad():  # trained-looking BN statistics
        head.bn.running_mean.fill_(0.5)
        head.bn.running_var.fill_(0.04)
    feat_mb = (query.numel() + gallery.numel()) * 4 / 2**20
    score_mb = args.num_query * args.num_gallery * 4 / 2**20

    with PeakRSS() as watch:
        tic = time.perf_counter()
        scores = torch.empty(args.num_query, args.num_gallery)
        with torch.no_grad():
            for i in range(0, args.num_query, args.chunk):
                with torch.autocast(
                        torch.device(args.device).type, enabled=args.amp):
                    scores[i:i + args.chunk] = head.match(
                        query[i:i + args.chunk], gallery).cpu()
        t_match = time.perf_counter() - tic
        tic = time.perf_counter()
        dist = scores.neg_().numpy()  # in place: no second q x g copy
        res = evaluate_rank(dist, q_pids.numpy(), g_pids.numpy(), q_cams,
                            g_cams)
        t_rank = time.perf_counter() - tic
    # resident MiB before matching, and the highest seen while it ran
    base = watch.base / 2**20
    peak = (watch.base + watch.peak) / 2**20

    pairs = args.num_query * args.num_gallery
    scale = args.full_query / args.num_query
    print(f'maps {c}x{h}x{w}; {args.num_query} queries x '
          f'{args.num_gallery} gallery = {pairs / 1e6:.1f} M pairs; '
          f'{torch.get_num_threads()} threads, {args.device}'
          f'{", autocast" if args.amp else ""}')
    print(f'matching: {t_match:.1f} s ({pairs / t_match:,.0f} pairs/s); '
          f'evaluate_rank: {t_rank:.2f} s; Rank-1 {res["cmc"][0]:.3f}, '
          f'mAP {res["mAP"]:.3f}')
    if scale != 1:
        print(f'extrapolated to {args.full_query} queries: matching '
              f'{t_match * scale / 60:.1f} min')
    print(f'memory: feature maps {feat_mb:.0f} MiB, score matrix '
          f'{score_mb:.0f} MiB; RSS before matching {base:.0f} MiB, peak '
          f'while matching and ranking {peak:.0f} MiB; extra beyond the '
          f'score matrix: {peak - base - score_mb:.0f} MiB')


if __name__ == '__main__':
    main()

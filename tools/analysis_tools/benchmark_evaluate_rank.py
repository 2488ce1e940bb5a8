"""Benchmark ``evaluate_rank`` against the classic per-query loop.

Both run in the same process on the same distance matrix; the script prints
their times, the ratio, whether the numbers agree, and the machine's fp32
GEMM throughput (torch.mm, or numpy matmul without torch) measured in the
same run, so the figures of different machines can be compared.

Examples::

    # Market-1501 size (3,368 queries x 15,913 gallery items)
    python tools/analysis_tools/benchmark_evaluate_rank.py
    # smaller, and with uniformly random distances (worst case: every
    # gallery item may precede the hardest positive)
    python tools/analysis_tools/benchmark_evaluate_rank.py \
        --num-query 500 --num-gallery 3000 --data random
"""
import argparse
import time

import numpy as np

from mmreid_gs.evaluation.functional import evaluate_rank
from mmreid_gs.utils.benchmark import gemm_gflops


def reference_evaluate_rank(distmat, q_pids, g_pids, q_camids, g_camids,
                            max_rank=50, kind='quicksort'):
    """Plain per-query loop over an argsorted distance matrix."""
    num_q, num_g = distmat.shape
    indices = np.argsort(distmat, axis=1, kind=kind)
    matches = (g_pids[indices] == q_pids[:, None]).astype(np.int32)
    all_cmc, all_ap, all_inp = [], [], []
    for i in range(num_q):
        order = indices[i]
        keep = ~((g_pids[order] == q_pids[i]) &
                 (g_camids[order] == q_camids[i]))
        raw = matches[i][keep]
        if not raw.any():
            continue
        hits = raw.cumsum()
        last = np.flatnonzero(raw)[-1]
        all_inp.append(hits[last] / (last + 1.0))
        cmc = np.minimum(hits, 1).astype(np.float64)
        if cmc.shape[0] < max_rank:
            cmc = np.concatenate(
                [cmc, np.full(max_rank - cmc.shape[0], cmc[-1])])
        all_cmc.append(cmc[:max_rank])
        precision = hits / np.arange(1, raw.shape[0] + 1)
        all_ap.append((precision * raw).sum() / raw.sum())
    if not all_cmc:
        raise ValueError('no valid query')
    return dict(
        cmc=np.mean(all_cmc, axis=0),
        mAP=float(np.mean(all_ap)),
        mINP=float(np.mean(all_inp)),
        num_valid_queries=len(all_cmc))


def make_data(num_query, num_gallery, data='features', num_ids=751,
              num_cams=6, seed=0):
    """Market-1501-like identities/cameras and a float32 distance matrix.

    ``features``: 1 - cosine similarity of noisy identity embeddings with a
    camera style offset (a moderately good model); ``random``: uniform
    distances (no structure).
    """
    rng = np.random.default_rng(seed)
    g_pids = rng.integers(0, num_ids, num_gallery)
    g_cams = rng.integers(0, num_cams, num_gallery)
    q_pids = rng.integers(0, num_ids, num_query)
    q_cams = rng.integers(0, num_cams, num_query)
    if data == 'random':
        dist = rng.random((num_query, num_gallery), dtype=np.float32)
        return dist, q_pids, g_pids, q_cams, g_cams
    dim = 128
    centers = rng.standard_normal((num_ids, dim))
    styles = rng.standard_normal((num_cams, dim))

    def embed(pids, cams):
        x = (centers[pids] + 0.6 * styles[cams] +
             1.4 * rng.standard_normal((pids.shape[0], dim)))
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    q = embed(q_pids, q_cams).astype(np.float32)
    g = embed(g_pids, g_cams).astype(np.float32)
    dist = 1.0 - q @ g.T
    return dist.astype(np.float32), q_pids, g_pids, q_cams, g_cams


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--num-query', type=int, default=3368)
    parser.add_argument('--num-gallery', type=int, default=15913)
    parser.add_argument('--data', choices=['features', 'random'],
                        default='features')
    parser.add_argument('--max-rank', type=int, default=50)
    parser.add_argument('--repeat', type=int, default=3,
                        help='runs of ours (best is reported)')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument(
        '--no-check-stable', dest='check_stable', action='store_false',
        help='skip the (untimed) equality check against the reference '
        'with a stable argsort')
    return parser.parse_args()


def main():
    args = parse_args()
    data = make_data(args.num_query, args.num_gallery, args.data,
                     seed=args.seed)
    gflops, lib = gemm_gflops(), 'torch.mm'
    print(f'machine fp32 GEMM: {gflops:.1f} GFLOP/s ({lib}, 1024^3)')
    print(f'data: {args.data}, {args.num_query} queries x '
          f'{args.num_gallery} gallery, float32')

    ours = None
    t_ours = []
    for _ in range(args.repeat):
        t = time.perf_counter()
        ours = evaluate_rank(*data, max_rank=args.max_rank)
        t_ours.append(time.perf_counter() - t)
    t = time.perf_counter()
    ref = reference_evaluate_rank(*data, max_rank=args.max_rank)
    t_ref = time.perf_counter() - t

    best = min(t_ours)
    print(f'reference per-query loop : {t_ref:8.3f} s')
    print(f'evaluate_rank (ours)     : {best:8.3f} s '
          f'(runs: {", ".join(f"{x:.3f}" for x in t_ours)})')
    print(f'speed-up                 : {t_ref / best:8.1f}x')
    print(f'Rank-1 {ours["cmc"][0]:.4f}  mAP {ours["mAP"]:.4f}  '
          f'mINP {ours["mINP"]:.4f}  valid queries '
          f'{ours["num_valid_queries"]}')
    print(f'max abs diff to the timed reference: {_diff(ours, ref):.3g} '
          '(its quicksort orders tied distances arbitrarily)')
    if args.check_stable:
        # ties broken by gallery index, as evaluate_rank does: must be equal
        stable = reference_evaluate_rank(*data, max_rank=args.max_rank,
                                         kind='stable')
        diff = _diff(ours, stable)
        same = diff == 0.0 and (ours['num_valid_queries'] ==
                                stable['num_valid_queries'])
        print(f'identical to the stable-argsort reference: {same} '
              f'(max abs diff {diff:.3g})')


def _diff(a, b):
    return max(
        float(np.abs(a['cmc'] - b['cmc']).max()), abs(a['mAP'] - b['mAP']),
        abs(a['mINP'] - b['mINP']))


if __name__ == '__main__':
    main()

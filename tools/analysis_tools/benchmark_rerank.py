"""Benchmark ``re_ranking`` against a plain dense implementation.

Both run in the same process on the same distance matrix; the script prints
their times, the ratio, the largest difference of their outputs, and the
machine's fp32 GEMM throughput (torch.mm, or numpy matmul without torch)
measured in the same run.

Examples::

    # 1,000 queries + 4,000 gallery items
    python tools/analysis_tools/benchmark_rerank.py
    python tools/analysis_tools/benchmark_rerank.py --num-query 200 \
        --num-gallery 800
"""
import argparse
import time

import numpy as np

from mmreid_gs.evaluation.functional import re_ranking
from mmreid_gs.utils.benchmark import gemm_gflops


def reference_re_ranking(distmat_all, num_query, k1=20, k2=6,
                         lambda_value=0.3):
    """Straightforward dense k-reciprocal re-ranking (same maths)."""
    dist = np.asarray(distmat_all, dtype=np.float32)
    col_max = dist.max(axis=0)
    col_max[col_max == 0] = 1
    original = np.transpose(dist / col_max)
    n = original.shape[0]
    V = np.zeros_like(original, dtype=np.float32)
    rank = np.argsort(original, axis=1, kind='stable')
    half = int(np.around(k1 / 2.)) + 1
    for i in range(n):
        fwd = rank[i, :k1 + 1]
        back = rank[fwd, :k1 + 1]
        recip = fwd[np.where(back == i)[0]]
        expansion = recip
        for cand in recip:
            c_fwd = rank[cand, :half]
            c_back = rank[c_fwd, :half]
            c_recip = c_fwd[np.where(c_back == cand)[0]]
            if len(np.intersect1d(c_recip, recip)) > 2. / 3 * len(c_recip):
                expansion = np.append(expansion, c_recip)
        expansion = np.unique(expansion)
        weight = np.exp(-original[i, expansion])
        V[i, expansion] = weight / np.sum(weight)
    original = original[:num_query]
    if k2 != 1:
        V_qe = np.zeros_like(V)
        for i in range(n):
            V_qe[i] = np.mean(V[rank[i, :k2]], axis=0)
        V = V_qe
    inv_index = [np.where(V[:, j] != 0)[0] for j in range(n)]
    jaccard = np.zeros_like(original, dtype=np.float32)
    for i in range(num_query):
        min_sum = np.zeros(n, dtype=np.float32)
        for t in np.where(V[i] != 0)[0]:
            rows = inv_index[t]
            min_sum[rows] += np.minimum(V[i, t], V[rows, t])
        jaccard[i] = 1 - min_sum / (2. - min_sum)
    final = jaccard * (1 - lambda_value) + original * lambda_value
    return final[:, num_query:]


def make_data(num_query, num_gallery, num_ids=500, seed=0):
    """Distances 1 - sigmoid(score) of noisy identity embeddings."""
    rng = np.random.default_rng(seed)
    n = num_query + num_gallery
    pids = rng.integers(0, num_ids, n)
    centers = rng.standard_normal((num_ids, 64))
    x = centers[pids] + 1.2 * rng.standard_normal((n, 64))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    score = 8.0 * (x @ x.T) - 4.0
    return (1.0 - 1.0 / (1.0 + np.exp(-score))).astype(np.float32)


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--num-query', type=int, default=1000)
    parser.add_argument('--num-gallery', type=int, default=4000)
    parser.add_argument('--k1', type=int, default=20)
    parser.add_argument('--k2', type=int, default=6)
    parser.add_argument('--lambda-value', type=float, default=0.3)
    parser.add_argument('--repeat', type=int, default=3,
                        help='runs of ours (best is reported)')
    parser.add_argument('--seed', type=int, default=0)
    return parser.parse_args()


def main():
    args = parse_args()
    dist = make_data(args.num_query, args.num_gallery, seed=args.seed)
    gflops, lib = gemm_gflops(), 'torch.mm'
    print(f'machine fp32 GEMM: {gflops:.1f} GFLOP/s ({lib}, 1024^3)')
    print(f'data: {args.num_query} + {args.num_gallery} items, '
          f'k1={args.k1} k2={args.k2} lambda={args.lambda_value}')
    kwargs = dict(k1=args.k1, k2=args.k2, lambda_value=args.lambda_value)
    t_ours = []
    for _ in range(args.repeat):
        t = time.perf_counter()
        ours = re_ranking(dist, args.num_query, **kwargs)
        t_ours.append(time.perf_counter() - t)
    t = time.perf_counter()
    ref = reference_re_ranking(dist, args.num_query, **kwargs)
    t_ref = time.perf_counter() - t
    best = min(t_ours)
    print(f'reference (dense)   : {t_ref:8.3f} s')
    print(f're_ranking (ours)   : {best:8.3f} s '
          f'(runs: {", ".join(f"{x:.3f}" for x in t_ours)})')
    print(f'speed-up            : {t_ref / best:8.1f}x')
    print(f'max abs difference  : {float(np.abs(ours - ref).max()):.3g}')


if __name__ == '__main__':
    main()

"""Benchmark the k-reciprocal Jaccard distance of unsupervised re-ID.

For each ``--num`` N, on generated L2-normalised embeddings (``N /
--per-id`` identities, ``--dim`` dimensions, Gaussian noise around each
identity's centre; the same generator seed every run), each measurement in
a child process of its own so that the memory peaks do not mix:

* ``jaccard_neighbors(EmbeddingDistance(x), k1, k2, max_distance=eps)``
  (the clustering path: no [N, N] matrix at all) and DBSCAN on its sparse
  graph: seconds, stored pairs, clusters, outliers, NMI against the
  generated identities, and the peak resident memory above the start;
* with N <= ``--dense-max``: the dense ``jaccard_distance`` of the ``2 - 2
  cos`` matrix (the contract function, ``[N, N]`` in and out);
* with ``--reference N``: the same Jaccard distance written as the public
  SpCL / Cluster Contrast code computes it (a dense ``V``, a Python loop
  over the rows for the expansion and another, through per-column lists of
  non-zero rows, for the sums of minima), timed beside ``jaccard_distance``
  on the same N, with the largest difference of the two matrices.

Example::

    OMP_NUM_THREADS=1 python tools/analysis_tools/benchmark_jaccard.py
    OMP_NUM_THREADS=1 python tools/analysis_tools/benchmark_jaccard.py \\
        --num 10000 50000 --reference 2000
    python tools/analysis_tools/benchmark_jaccard.py --quick
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--num', type=int, nargs='+', default=[10000, 50000],
                        help='numbers of images N (default 10000 50000)')
    parser.add_argument('--dim', type=int, default=128)
    parser.add_argument('--per-id', type=int, default=10,
                        help='images per generated identity (default 10)')
    parser.add_argument('--noise', type=float, default=1.5,
                        help='noise around an identity centre, relative '
                        'to the spread of the centres (default 1.5)')
    parser.add_argument('--k1', type=int, default=30)
    parser.add_argument('--k2', type=int, default=6)
    parser.add_argument('--eps', type=float, default=0.6)
    parser.add_argument('--min-samples', type=int, default=4)
    parser.add_argument('--dense-max', type=int, default=10000,
                        help='also time the dense jaccard_distance up to '
                        'this N (default 10000)')
    parser.add_argument('--reference', type=int, default=0,
                        help='N of the side-by-side run against the '
                        'SpCL-style dense loops (0: none)')
    parser.add_argument('--quick', action='store_true',
                        help='N = 1000 and 3000, reference at 500')
    parser.add_argument('--json', default=None, help='write the rows here')
    parser.add_argument('--child', default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.num, args.reference = [1000, 3000], 500
    return args


def embeddings(n: int, dim: int, per_id: int, noise: float):
    """L2-normalised [n, dim] float32 features and their identities."""
    rng = np.random.default_rng(0)
    ids = np.arange(n) // per_id
    centres = rng.standard_normal((ids.max() + 1, dim)).astype(np.float32)
    x = centres[ids] + noise * rng.standard_normal((n, dim)).astype(
        np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x, ids


def _rss_mb() -> float:
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith('VmRSS:'):
                return int(line.split()[1]) / 1024
    return float('nan')


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def spcl_style_jaccard(dist: np.ndarray, k1: int, k2: int) -> np.ndarray:
    """The Jaccard distance computed the way the public SpCL / Cluster
    Contrast code does it (dense V, Python loops); the reference of the
    side-by-side timing."""
    n = dist.shape[0]
    rank = np.argsort(dist, axis=1, kind='stable')[:, :k1]

    def reciprocal(i, k):
        fwd = rank[i, :k + 1]
        back = rank[fwd, :k + 1]
        return fwd[np.where(back == i)[0]]

    half = int(np.around(k1 / 2))
    sets = [reciprocal(i, k1) for i in range(n)]
    half_sets = [reciprocal(i, half) for i in range(n)]
    v = np.zeros((n, n), dtype=np.float32)
    for i in range(n):
        expanded = sets[i]
        for c in sets[i]:
            cand = half_sets[c]
            if len(np.intersect1d(cand, sets[i])) > 2 / 3 * len(cand):
                expanded = np.append(expanded, cand)
        expanded = np.unique(expanded)
        w = np.exp(-(dist[i, expanded] - dist[i, expanded].min()))
        v[i, expanded] = w / w.sum()
    if k2 != 1:
        v = np.stack([v[rank[i, :k2]].mean(axis=0) for i in range(n)])
    inv = [np.where(v[:, j] != 0)[0] for j in range(n)]
    out = np.zeros((n, n), dtype=np.float32)
    for i in range(n):
        m = np.zeros(n, dtype=np.float32)
        cols = np.where(v[i] != 0)[0]
        for j in cols:
            m[inv[j]] += np.minimum(v[i, j], v[inv[j], j])
        out[i] = 1 - m / (2 - m)
    out[out < 0] = 0
    return out


def run_child(task: dict) -> dict:
    """One measurement (in this process)."""
    from mmreid_gs.evaluation.functional import (EmbeddingDistance,
                                                 cluster_quality,
                                                 dbscan_pseudo_labels,
                                                 jaccard_distance,
                                                 jaccard_neighbors)
    from sklearn.cluster import DBSCAN  # noqa: F401 (imported untimed)
    x, ids = embeddings(task['n'], task['dim'], task['per_id'],
                        task['noise'])
    k1, k2 = task['k1'], task['k2']
    row = dict(task)
    if task['kind'] == 'sparse':
        base = _rss_mb()
        c0, t0 = time.process_time(), time.perf_counter()
        graph = jaccard_neighbors(EmbeddingDistance(x), k1, k2,
                                  max_distance=task['eps'])
        c1, t1 = time.process_time(), time.perf_counter()
        labels = dbscan_pseudo_labels(graph, task['eps'],
                                      task['min_samples'])
        t2 = time.perf_counter()
        quality = cluster_quality(labels, ids)
        row.update(jaccard_seconds=t1 - t0, jaccard_cpu_seconds=c1 - c0,
                   dbscan_seconds=t2 - t1,
                   stored_pairs=int(graph.nnz), peak_mb=_peak_mb() - base,
                   **quality)
    else:
        dist = np.maximum(2 - 2 * x @ x.T, 0).astype(np.float32)
        base = _rss_mb()
        c0, t0 = time.process_time(), time.perf_counter()
        ours = jaccard_distance(dist, k1, k2)
        row.update(jaccard_seconds=time.perf_counter() - t0,
                   jaccard_cpu_seconds=time.process_time() - c0,
                   peak_mb=_peak_mb() - base)
        if task['kind'] == 'reference':
            c0, t0 = time.process_time(), time.perf_counter()
            ref = spcl_style_jaccard(dist, k1, k2)
            row.update(reference_seconds=time.perf_counter() - t0,
                       reference_cpu_seconds=time.process_time() - c0,
                       max_abs_diff=float(np.abs(ref - ours).max()))
    return row


def measure(task: dict) -> dict:
    """Run one measurement in a child process and return its row."""
    env = dict(os.environ)
    out = subprocess.run(
        [sys.executable, os.path.abspath(__file__), '--child',
         json.dumps(task)],
        env=env, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None):
    args = parse_args(argv)
    if args.child:
        print(json.dumps(run_child(json.loads(args.child))))
        return None
    common = dict(dim=args.dim, per_id=args.per_id, noise=args.noise,
                  k1=args.k1, k2=args.k2, eps=args.eps,
                  min_samples=args.min_samples)
    rows = []
    print(f'k1={args.k1} k2={args.k2} eps={args.eps} min_samples='
          f'{args.min_samples}; {args.dim}-d embeddings, {args.per_id} '
          f'images per identity; OMP_NUM_THREADS='
          f"{os.environ.get('OMP_NUM_THREADS', 'unset')}")
    for n in args.num:
        row = measure(dict(common, n=n, kind='sparse'))
        rows.append(row)
        print(f'N={n}: jaccard_neighbors {row["jaccard_seconds"]:.1f} s '
              f'({row["jaccard_cpu_seconds"]:.1f} s CPU), '
              f'DBSCAN {row["dbscan_seconds"]:.1f} s, '
              f'{row["stored_pairs"]:,} pairs within eps, peak memory '
              f'+{row["peak_mb"]:.0f} MB; {row["num_clusters"]} clusters, '
              f'{row["num_outliers"]} outliers, NMI {row["nmi"]:.3f}')
        if n <= args.dense_max:
            row = measure(dict(common, n=n, kind='dense'))
            rows.append(row)
            print(f'N={n}: jaccard_distance (dense in and out) '
                  f'{row["jaccard_seconds"]:.1f} s '
                  f'({row["jaccard_cpu_seconds"]:.1f} s CPU), peak memory '
                  f'+{row["peak_mb"]:.0f} MB')
    if args.reference:
        row = measure(dict(common, n=args.reference, kind='reference'))
        rows.append(row)
        print(f'N={args.reference}: jaccard_distance '
              f'{row["jaccard_seconds"]:.2f} s '
              f'({row["jaccard_cpu_seconds"]:.2f} s CPU) vs SpCL-style '
              f'dense loops {row["reference_seconds"]:.2f} s '
              f'({row["reference_cpu_seconds"]:.2f} s CPU; x'
              f'{row["reference_cpu_seconds"] / row["jaccard_cpu_seconds"]:.1f}'
              ' in CPU time); '
              f'largest difference {row["max_abs_diff"]:.1e}')
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(rows, f, indent=1)
    return rows


if __name__ == '__main__':
    main()

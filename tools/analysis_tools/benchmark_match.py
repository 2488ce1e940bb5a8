"""Benchmark QAConv matching: the public einsum formula vs QAConvHead.match.

Prints, from one run on random unit-norm feature maps:

* pairs/s of the public QAConv formula (a plain reference written below:
  ``einsum('pcs,gcr->pgrs')`` on blocks of ``--ref-prob-batch`` queries x
  ``--ref-gal-batch`` gallery items, max over both location axes, cat,
  BatchNorm1d, Linear, sum, BatchNorm1d), on the first ``--ref-gallery``
  gallery items (it is a rate; the full gallery would only take longer);
* pairs/s of ``QAConvHead.match`` on the full query x gallery problem and
  the ratio of the two rates;
* the largest difference between the two score matrices on the common part;
* the fp32 GEMM GFLOP/s of ``torch.mm`` measured in the same run (in
  interleaved rounds with the above): on the shape of one matching block
  ``(q_blk*hw, c) @ (c, g_blk*hw)``, on a large shape with the same inner
  size c, and (CPU, several threads) on the block shape run by one
  single-threaded product per thread at once; the best figure is the
  reference for the matching GFLOP/s (2*q*g*hw*hw*c flops), printed as a
  percentage of it.

Example::

    python tools/analysis_tools/benchmark_match.py
    python tools/analysis_tools/benchmark_match.py --num-query 64 \\
        --num-gallery 512 --threads 2
    python tools/analysis_tools/benchmark_match.py --device cuda --amp
"""
import argparse
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial

import torch

from mmreid_gs.models.heads import QAConvHead, qaconv_kernels
from mmreid_gs.testing import PublicQAConv, random_maps


def parse_args():
    parser = argparse.ArgumentParser(
        description='Benchmark QAConv matching (public formula vs ours)')
    parser.add_argument('--num-query', type=int, default=256)
    parser.add_argument('--num-gallery', type=int, default=2048)
    parser.add_argument('--channels', type=int, default=64)
    parser.add_argument('--height', type=int, default=24)
    parser.add_argument('--width', type=int, default=8)
    parser.add_argument(
        '--ref-gallery',
        type=int,
        default=256,
        help='gallery items scored by the (slow) reference')
    parser.add_argument(
        '--ref-blocks',
        default='128x128,4096x4,32x2',
        help='comma-separated query x gallery block settings of the '
        'reference, each timed and compared: 128x128 is the QAConv-GS '
        'evaluator (test_prob_batch x test_gal_batch), 4096x4 the QAConv 1.x '
        'pairwise_distance, 32x2 about the fastest we found for the einsum '
        'here')
    parser.add_argument(
        '--memory-budget-mb', type=float, default=256,
        help='QAConvHead memory_budget_mb')
    parser.add_argument('--prob-batch', type=int, default=None,
                        help='override of the head\'s queries per block')
    parser.add_argument('--gal-batch', type=int, default=None,
                        help='override of the head\'s gallery per block')
    parser.add_argument('--threads', type=int, default=None,
                        help='torch.set_num_threads (default: torch\'s)')
    parser.add_argument(
        '--repeat',
        type=int,
        default=3,
        help='interleaved timed rounds of all measurements (the fastest '
        'round of each kept)')
    parser.add_argument(
        '--chunk-queries',
        type=int,
        default=32,
        help='queries per call of our head (the reference is called per '
        'query block of its own)')
    parser.add_argument(
        '--device',
        default='cuda' if torch.cuda.is_available() else 'cpu',
        help='cpu or cuda (default: cuda when available)')
    parser.add_argument(
        '--amp',
        action='store_true',
        help='also time our head under autocast (CUDA: float16; CPU: '
        'bfloat16, fast with AMX); the reference stays float32')
    parser.add_argument('--seed', type=int, default=0)
    return parser.parse_args()


def timed(fn, device):
    """Wall time of one call of ``fn``."""
    if device.type == 'cuda':
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    fn()
    if device.type == 'cuda':
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def gemm_runner(m, k, n, device, min_flops=1e10, workers=1):
    """A function running fp32 ``torch.mm`` (m, k) @ (k, n) a few times,
    and its flop count.

    With ``workers > 1`` (CPU), as many Python threads each run
    single-threaded products on their own operands at the same time (the
    way ``QAConvHead.match`` spreads its blocks over the threads).
    """
    gen = torch.Generator(device='cpu').manual_seed(1)
    operands = [(torch.randn(m, k, generator=gen).to(device),
                 torch.randn(k, n, generator=gen).to(device),
                 torch.empty(m, n, device=device)) for _ in range(workers)]
    calls = max(1, int(min_flops // (2 * m * k * n * workers)))

    def loop(a, b, out):
        for _ in range(calls):
            torch.mm(a, b, out=out)

    if workers == 1:
        return lambda: loop(*operands[0]), 2. * m * k * n * calls

    def run():
        threads = torch.get_num_threads()
        try:
            with ThreadPoolExecutor(
                    workers, initializer=torch.set_num_threads,
                    initargs=(1, )) as pool:
                for f in [pool.submit(loop, *ops) for ops in operands]:
                    f.result()
        finally:
            torch.set_num_threads(threads)

    return run, 2. * m * k * n * calls * workers


def main():
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    c, h, w = args.channels, args.height, args.width
    hw = h * w
    gen = torch.Generator(device='cpu').manual_seed(args.seed)
    query = random_maps(args.num_query, c, h, w, gen).to(device)
    gallery = random_maps(args.num_gallery, c, h, w, gen).to(device)
    ref = PublicQAConv(c, h, w).randomise_(gen).to(device).eval()
    head = QAConvHead(
        c,
        h,
        w,
        memory_budget_mb=args.memory_budget_mb,
        prob_batch_size=args.prob_batch,
        gal_batch_size=args.gal_batch)
    head.load_state_dict(ref.state_dict(), strict=False)
    head = head.to(device).eval()

    n_ref = min(args.ref_gallery, args.num_gallery)
    gal_ref = gallery[:n_ref]
    ref_blocks = parse_blocks(args.ref_blocks)
    per_call = max(1, min(args.chunk_queries, args.num_query))
    q_blk, g_blk = head.block_sizes(per_call, args.num_gallery,
                                    torch.float32, device, args.prob_batch,
                                    args.gal_batch)
    amp_dtype = torch.float16 if device.type == 'cuda' else torch.bfloat16
    amp_blocks = head.block_sizes(per_call, args.num_gallery, amp_dtype,
                                  device, args.prob_batch, args.gal_batch)
    big = 16 * hw
    threads = torch.get_num_threads()
    gemm_shapes = dict(
        block=(q_blk * hw, c, g_blk * hw, 1),
        large=(big, c, big, 1))
    if device.type == 'cpu' and threads > 1:
        gemm_shapes['block_per_thread'] = (q_blk * hw, c, g_blk * hw,
                                           threads)
    gemms = {
        name: gemm_runner(m, k, n, device, workers=workers)
        for name, (m, k, n, workers) in gemm_shapes.items()
    }
    variants = ['ours'] + (['amp'] if args.amp else [])
    scores = {('ref', b): torch.empty(args.num_query, n_ref, device=device)
              for b in ref_blocks}
    scores.update({
        v: torch.empty(args.num_query, args.num_gallery, device=device)
        for v in variants
    })

    def run_ref(blocks, lo, hi):
        # the public loop: query blocks, each against all gallery blocks
        scores['ref', blocks][lo:hi] = ref.match(query[lo:hi], gal_ref,
                                                 *blocks)

    def run_head(variant, lo, hi):
        with torch.autocast(device.type, dtype=amp_dtype,
                            enabled=variant == 'amp'):
            scores[variant][lo:hi] = head.match(query[lo:hi], gallery)

    # Interleaved rounds of everything; a measurement's time is its fastest
    # round (the sum of its calls in that round). The reference is called
    # per query block of its own, as the public loop runs.
    runs = {}
    for blocks in ref_blocks:
        for lo, hi in query_chunks(args.num_query, blocks[0]):
            runs['ref', blocks, lo] = partial(run_ref, blocks, lo, hi)
    for variant in variants:
        for lo, hi in query_chunks(args.num_query, args.chunk_queries):
            runs[variant, lo] = partial(run_head, variant, lo, hi)
    runs.update({name: fn for name, (fn, _) in gemms.items()})
    times = {name: [] for name in runs}
    with torch.no_grad():
        for fn, _ in gemms.values():  # warm-up
            fn()
        head.match(query[:2], gallery[:8])
        ref.match(query[:2], gal_ref[:8], 2, 8)
        for _ in range(args.repeat):
            for name, fn in runs.items():
                times[name].append(timed(fn, device))

    def total(*key):
        calls = [t for name, t in times.items()
                 if name[:len(key)] == key and len(name) == len(key) + 1]
        return min(map(sum, zip(*calls)))

    gemm_rates = {
        name: flops / min(times[name]) / 1e9
        for name, (_, flops) in gemms.items()
    }
    gemm_ref = max(gemm_rates.values())
    pairs = {
        v: args.num_query * args.num_gallery / total(v)
        for v in variants
    }
    flops = 2. * args.num_query * args.num_gallery * hw * hw * c
    print(f'device: {device} threads: {torch.get_num_threads()} '
          f'maps: {c}x{h}x{w} queries: {args.num_query} '
          f'gallery: {args.num_gallery} (reference: {n_ref}) '
          f'fastest of {args.repeat} rounds')
    print(f'QAConvHead.match      : {pairs["ours"]:12.0f} pairs/s '
          f'({q_blk}x{g_blk} blocks, {total("ours"):.2f} s)')
    for blocks in ref_blocks:
        t_ref = total('ref', blocks)
        rate = args.num_query * n_ref / t_ref
        diff = (scores['ours'][:, :n_ref] -
                scores['ref', blocks]).abs().max().item()
        print(f'public einsum formula : {rate:12.0f} pairs/s '
              f'({blocks[0]}x{blocks[1]} blocks, {t_ref:.2f} s) -> '
              f'ours {pairs["ours"] / rate:.2f} x, max |score diff| '
              f'{diff:.2e}')
    labels = dict(
        block=f'[{q_blk * hw}x{c}]@[{c}x{g_blk * hw}] (a block)',
        large=f'[{big}x{c}]@[{c}x{big}]',
        block_per_thread=f'[{q_blk * hw}x{c}]@[{c}x{g_blk * hw}] x '
        f'{threads} threads, 1 intra-op thread each')
    for name, rate in gemm_rates.items():
        print(f'fp32 GEMM (torch.mm)  : {rate:12.1f} GFLOP/s '
              f'{labels[name]}')
    ours_gflops = flops / total('ours') / 1e9
    print(f'matching              : {ours_gflops:12.1f} GFLOP/s = '
          f'{100 * ours_gflops / gemm_ref:.1f} % of the best fp32 GEMM '
          f'({gemm_ref:.1f} GFLOP/s)')
    if device.type == 'cpu':
        print_block_breakdown(q_blk, g_blk, c, hw, torch.float32)
        if args.amp:
            print_block_breakdown(*amp_blocks, c, hw, amp_dtype)
    if args.amp:
        diff = (scores['amp'] - scores['ours']).abs().max().item()
        spread = scores['ours'].abs().max().item()
        print(f'autocast {str(amp_dtype)[6:]:13s}: {pairs["amp"]:12.0f} '
              f'pairs/s ({amp_blocks[0]}x{amp_blocks[1]} blocks) = '
              f'{pairs["amp"] / pairs["ours"]:.2f} x float32 ours; max '
              f'|score diff| to float32 {diff:.2e} (scores up to '
              f'{spread:.1f})')


def print_block_breakdown(q_blk, g_blk, c, hw, dtype, calls=200):
    """Time, on one thread (as each worker of the head runs), the GEMM of
    one similarity block and its two max reductions, taken on the floats and
    on their bits viewed as integers (what the head does on the CPU)."""
    bits = qaconv_kernels._max_bits_dtype(dtype, torch.device('cpu'))
    gen = torch.Generator().manual_seed(2)
    a = torch.randn(q_blk * hw, c, generator=gen).to(dtype)
    b = torch.randn(c, g_blk * hw, generator=gen).to(dtype)
    sim = torch.empty(q_blk * hw, g_blk * hw, dtype=dtype)
    ops = {}
    for name, view in (('float', sim), ('integer', sim.view(bits))):
        s4 = view.view(q_blk, hw, g_blk, hw)
        m_g = s4.new_empty(q_blk, hw, g_blk)
        m_q = s4.new_empty(q_blk, g_blk, hw)
        ops[name] = partial(lambda s4, m_g, m_q: (
            torch.amax(s4, dim=3, out=m_g), torch.amax(s4, dim=1, out=m_q)),
            s4, m_g, m_q)
    ops['gemm'] = lambda: torch.mm(a, b, out=sim)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        us = {}
        for name, fn in ops.items():
            fn()
            us[name] = min(
                timed(lambda: [fn() for _ in range(calls)],
                      torch.device('cpu')) for _ in range(3)) / calls * 1e6
    finally:
        torch.set_num_threads(threads)
    print(f'{str(dtype)[6:]} block {q_blk}x{g_blk}, 1 thread : GEMM '
          f'{us["gemm"]:.0f} us; both max reductions on floats '
          f'{us["float"]:.0f} us ({100 * us["float"] / us["gemm"]:.0f}% of '
          f'the GEMM), on {str(bits)[6:]} bits {us["integer"]:.0f} us '
          f'({100 * us["integer"] / us["gemm"]:.0f}%)')


def parse_blocks(text):
    """``'128x128,32x4'`` -> ``[(128, 128), (32, 4)]``."""
    blocks = []
    for item in text.split(','):
        try:
            p, g = (int(v) for v in item.lower().split('x'))
        except ValueError:
            raise SystemExit(f'--ref-blocks: expected PxG items such as '
                             f'128x128, got {item!r}')
        if p < 1 or g < 1:
            raise SystemExit(f'--ref-blocks: block sizes must be positive, '
                             f'got {item!r}')
        blocks.append((p, g))
    return blocks


def query_chunks(num_query, size):
    """``[lo, hi)`` ranges of at most ``size`` queries."""
    size = max(1, min(size, num_query))
    return [(i, min(i + size, num_query)) for i in range(0, num_query, size)]


if __name__ == '__main__':
    main()

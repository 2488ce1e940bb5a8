"""Parts of the GPU self-check (``tools/analysis_tools/gpu_check.sh``).

    python tools/analysis_tools/gpu_check.py market [--device cuda]
        [--num-query 3368] [--num-gallery 15913] [--dtype float16]
        [--ref-blocks 128x128] [--ref-queries N] [--json FILE]
    python tools/analysis_tools/gpu_check.py summary RESULTS.tsv

``market``: a Market-1501-sized QAConv matching (3,368 queries x 15,913
gallery maps of 64x24x8 by default) timed in one run for
``QAConvHead.match`` under autocast (``--dtype``, float16 by default) and
for the public evaluator's formula (``einsum('pcs,gcr->pgrs')`` in the
QAConv-GS evaluator's 128 x 128 blocks) under the same autocast, on the
same maps; prints both times, their ratio and the largest score
difference. ``--ref-queries N`` times the reference on the first N queries
only and scales its time to all queries (said in the output).

``summary``: prints the table of a tab-separated file of
``step<TAB>status<TAB>figure<TAB>seconds`` lines that ``gpu_check.sh``
writes.
"""
import argparse
import json
import sys
import time


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='GPU self-check parts')
    sub = parser.add_subparsers(dest='command', required=True)
    market = sub.add_parser('market', help='Market-1501-sized matching')
    market.add_argument('--device', default='cuda')
    market.add_argument('--num-query', type=int, default=3368)
    market.add_argument('--num-gallery', type=int, default=15913)
    market.add_argument('--channels', type=int, default=64)
    market.add_argument('--height', type=int, default=24)
    market.add_argument('--width', type=int, default=8)
    market.add_argument('--dtype', default='float16',
                        choices=['float16', 'bfloat16', 'float32'],
                        help='autocast dtype of both (float32: no autocast)')
    market.add_argument('--ref-blocks', default='128x128',
                        help='query x gallery blocks of the reference')
    market.add_argument('--ref-queries', type=int, default=None,
                        help='time the reference on this many queries only '
                        '(scaled to all); default: all')
    market.add_argument('--chunk-queries', type=int, default=512,
                        help='queries per QAConvHead.match call')
    market.add_argument('--json', help='also write the figures here')
    market.add_argument('--seed', type=int, default=0)
    summary = sub.add_parser('summary', help='print the summary table')
    summary.add_argument('results', help='TSV written by gpu_check.sh')
    return parser.parse_args(argv)


def _sync(device):
    import torch
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def market(args) -> dict:
    """Time the Market-sized matching; returns the figures."""
    import torch

    from mmreid_gs.models.heads import QAConvHead
    from mmreid_gs.testing import PublicQAConv, random_maps

    device = torch.device(args.device)
    if device.type == 'cuda' and not torch.cuda.is_available():
        raise SystemExit('gpu_check.py market: CUDA is not available')
    q_blk, g_blk = (int(x) for x in args.ref_blocks.lower().split('x'))
    c, h, w = args.channels, args.height, args.width
    gen = torch.Generator().manual_seed(args.seed)
    query = random_maps(args.num_query, c, h, w, gen).to(device)
    gallery = random_maps(args.num_gallery, c, h, w, gen).to(device)
    ref = PublicQAConv(c, h, w).randomise_(gen).to(device).eval()
    head = QAConvHead(c, h, w)
    head.load_state_dict(ref.state_dict(), strict=False)
    head = head.to(device).eval()
    dtype = getattr(torch, args.dtype)
    amp = dict(device_type=device.type, dtype=dtype,
               enabled=dtype != torch.float32)
    n_ref = min(args.ref_queries or args.num_query, args.num_query)

    def ours():
        out = torch.empty(args.num_query, args.num_gallery, device=device)
        with torch.autocast(**amp):
            for i in range(0, args.num_query, args.chunk_queries):
                out[i:i + args.chunk_queries] = head.match(
                    query[i:i + args.chunk_queries], gallery)
        return out

    def reference():
        with torch.autocast(**amp):
            return ref.match(query[:n_ref], gallery, q_blk, g_blk)

    figures = {}
    with torch.no_grad():
        head.match(query[:2], gallery[:8])  # warm-up (kernels, cuBLAS)
        with torch.autocast(**amp):
            ref.match(query[:2], gallery[:8], 2, 8)
        results = {}
        for name, fn in (('ours', ours), ('reference', reference)):
            _sync(device)
            start = time.perf_counter()
            results[name] = fn()
            _sync(device)
            figures[f'{name}_s'] = time.perf_counter() - start
    scale = args.num_query / n_ref
    figures['reference_s_all'] = figures['reference_s'] * scale
    diff = (results['ours'][:n_ref].float() -
            results['reference'].float()).abs().max().item()
    figures.update(
        num_query=args.num_query, num_gallery=args.num_gallery,
        maps=f'{c}x{h}x{w}', dtype=args.dtype, device=str(device),
        ref_blocks=f'{q_blk}x{g_blk}', ref_queries=n_ref,
        speedup=figures['reference_s_all'] / figures['ours_s'],
        max_abs_diff=diff,
        max_abs_score=results['ours'].abs().max().item())
    scaled = '' if n_ref == args.num_query else \
        f' (timed on {n_ref} queries, scaled x{scale:.2f})'
    print(f'Market-sized matching {args.num_query} x {args.num_gallery} '
          f'maps {c}x{h}x{w}, {args.dtype} autocast, {device}:')
    ref_label = f'public einsum {args.ref_blocks}'
    print(f'  {"QAConvHead.match":<26s}: {figures["ours_s"]:9.2f} s')
    print(f'  {ref_label:<26s}: {figures["reference_s_all"]:9.2f} s{scaled}')
    print(f'  {"ratio":<26s}: {figures["speedup"]:9.2f} x; max '
          f'|score diff| {diff:.3g} (scores up to '
          f'{figures["max_abs_score"]:.3g})')
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(figures, f, indent=2)
    return figures


def summary(path: str) -> str:
    """The summary table of a ``gpu_check.sh`` results file.

    Args:
        path (str): Lines ``step<TAB>status<TAB>figure<TAB>seconds``.

    Returns:
        str: The table (also printed).
    """
    rows = []
    with open(path) as f:
        for number, line in enumerate(f, 1):
            line = line.rstrip('\n')
            if not line.strip():
                continue
            parts = line.split('\t')
            if len(parts) != 4:
                raise SystemExit(f'{path}:{number}: expected 4 tab-separated '
                                 f'fields, got {len(parts)}: {line!r}')
            rows.append(parts)
    header = ('step', 'status', 'result', 'seconds')
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(4)]
    lines = ['  '.join(h.ljust(wd) for h, wd in zip(header, widths)),
             '  '.join('-' * wd for wd in widths)]
    lines += ['  '.join(str(v).ljust(wd) for v, wd in zip(r, widths))
              for r in rows]
    failed = [r[0] for r in rows if r[1] == 'FAIL']
    lines.append(f'{len(rows)} steps, {len(failed)} failed'
                 + (f': {", ".join(failed)}' if failed else ''))
    text = '\n'.join(lines)
    print(text)
    return text


def main(argv=None):
    args = parse_args(argv)
    if args.command == 'market':
        market(args)
    else:
        summary(args.results)


if __name__ == '__main__':
    sys.exit(main())

"""Parts of the GPU self-check (``tools/analysis_tools/gpu_check.sh``).

    python tools/analysis_tools/gpu_check.py market [--device cuda]
        [--num-query 3368] [--num-gallery 15913] [--dtype float16]
        [--ref-blocks 128x128] [--ref-queries N] [--json FILE]
    python tools/analysis_tools/gpu_check.py graph [--device cuda]
    python tools/analysis_tools/gpu_check.py shortlist
        [--head qaconv|transmatcher] [--device cuda] [--num-query 11659]
        [--num-gallery 82161] [--num 100]
    python tools/analysis_tools/gpu_check.py tm-fp16 [--device cuda]
        [--scale 1] [--tol 0.02]
    python tools/analysis_tools/gpu_check.py train CONFIG
        [--graph exact|pairs|union] [--amp] [--iters 20] [--work-dir DIR]
    python tools/analysis_tools/gpu_check.py summary RESULTS.tsv

``market``: a Market-1501-sized QAConv matching (3,368 queries x 15,913
gallery maps of 64x24x8 by default) timed in one run for
``QAConvHead.match`` under autocast (``--dtype``, float16 by default) and
for the public evaluator's formula (``einsum('pcs,gcr->pgrs')`` in the
QAConv-GS evaluator's 128 x 128 blocks) under the same autocast, on the
same maps; prints both times, their ratio and the largest score
difference. ``--ref-queries N`` times the reference on the first N queries
only and scales its time to all queries (said in the output).

``graph``: the class graph (``build_class_graph``) of random QAConv and
TransMatcher maps on the device against the same graph on the CPU, exact,
two-stage with the pair scorer and two-stage through the union second stage
(no pair scorer), with the ``'gap'`` and ``'pooled'`` proxies; fails when
the neighbours of a mode agree on less than 99% of the entries.

``shortlist``: an MSMT17-size shortlisted test (11,659 x 82,161 random maps
of 64x24x8 for QAConv, 1536x24x8 for TransMatcher; the gallery is reduced,
and said so, when the host's free memory cannot hold the features) through
the loop's accelerator path: the features in host memory, scored on the
device by ``shortlisted_scores(..., device=...)``; prints the time, the peak
device memory and the prediction of ``matching_device_bytes``; fails when
the peak exceeds 1.25x the prediction plus 1 GiB, or when 16 queries'
shortlisted scores differ from ``match_pairs`` on the device by more than
``1e-3`` of the largest score.

``tm-fp16``: ``TransMatcherHead.match`` (paper size, d_model 512, 3
layers, 24x8 maps) under float16 autocast against float32 on random maps
(times ``--scale``); fails on a non-finite score or a difference above
``--tol`` of the largest float32 score.

``train``: one Graph Sampler epoch (``--iters`` batches, graph from the
first epoch) of a config, then its validation; ``--graph exact`` (no
candidates), ``pairs`` (two-stage graph forced, ``model.match_pairs``) or
``union`` (two-stage graph forced, the union second stage); ``--amp`` as
``tools/train.py --amp``. Fails when the graph did not take the chosen path,
a step was skipped for a non-finite loss, or a validation metric is missing;
prints the peak device memory and the loss scaler's skipped steps.

``summary``: prints the table of a tab-separated file of
``step<TAB>status<TAB>figure<TAB>seconds`` lines that ``gpu_check.sh``
writes.
"""
import argparse
import json
import os
import os.path as osp
import sys
import time

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
if REPO not in sys.path:
    sys.path.insert(0, REPO)


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
    graph = sub.add_parser('graph', help='class graph on the device vs CPU')
    graph.add_argument('--device', default='cuda')
    graph.add_argument('--num-classes', type=int, default=600)
    graph.add_argument('--num-candidates', type=int, default=40)
    graph.add_argument('--small', action='store_true',
                       help='tiny maps (8x4x2, TransMatcher 3x16) for tests')
    short = sub.add_parser('shortlist', help='MSMT17-size shortlisted test')
    short.add_argument('--head', choices=['qaconv', 'transmatcher'],
                       default='qaconv')
    short.add_argument('--device', default='cuda')
    short.add_argument('--num-query', type=int, default=11659)
    short.add_argument('--num-gallery', type=int, default=82161)
    short.add_argument('--num', type=int, default=100)
    short.add_argument('--small', action='store_true',
                       help='tiny maps for tests')
    short.add_argument('--json', help='also write the figures here')
    tm = sub.add_parser('tm-fp16', help='TransMatcher float16 vs float32')
    tm.add_argument('--device', default='cuda')
    tm.add_argument('--dtype', default='float16',
                    choices=['float16', 'bfloat16'])
    tm.add_argument('--num-query', type=int, default=64)
    tm.add_argument('--num-gallery', type=int, default=512)
    tm.add_argument('--scale', type=float, default=1.0)
    tm.add_argument('--tol', type=float, default=0.02)
    tm.add_argument('--small', action='store_true',
                    help='tiny maps for tests')
    train = sub.add_parser('train', help='a GS epoch and a validation')
    train.add_argument('config')
    train.add_argument('--graph', choices=['exact', 'pairs', 'union'],
                       default='exact')
    train.add_argument('--amp', action='store_true')
    train.add_argument('--iters', type=int, default=20)
    train.add_argument('--num-candidates', type=int, default=20)
    train.add_argument('--work-dir', default='work_dirs/gpu_check/train')
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


def _agreement(a, b) -> float:
    """Share of the entries of two neighbour tables that are equal."""
    return float((a == b).float().mean()) if a.numel() else 1.0


def graph(args) -> dict:
    """Class graphs on the device against the CPU; returns the agreements.
    """
    import torch

    from mmreid_gs.engine.graph import build_class_graph
    from mmreid_gs.models.heads import QAConvHead, TransMatcherHead
    from mmreid_gs.testing import random_maps

    device = _device(args.device)
    gen = torch.Generator().manual_seed(0)
    if args.small:
        qaconv, tm = (8, 4, 2), (3 * 16, 4, 2)
        heads = dict(qaconv=QAConvHead(8, 4, 2),
                     transmatcher=TransMatcherHead(4, 2, d_model=16,
                                                   dim_feedforward=32))
    else:
        qaconv, tm = (64, 24, 8), (1536, 24, 8)
        heads = dict(qaconv=QAConvHead(64, 24, 8),
                     transmatcher=TransMatcherHead(24, 8))
    shapes = dict(qaconv=qaconv, transmatcher=tm)
    num_classes, n = args.num_classes, args.num_candidates
    k = 7
    figures, worst = {}, 1.0
    for name, head in heads.items():
        head.eval()
        # TransMatcher pairs cost ~25x QAConv's: a third of the classes
        num_classes = args.num_classes if name == 'qaconv' else max(
            2 * n, args.num_classes // 3)
        feats = random_maps(num_classes, *shapes[name], gen)
        for mode in ('exact', 'pairs-gap', 'pairs-pooled', 'union-gap'):
            options = dict(num_neighbors=k, exact_fallback=False)
            if mode != 'exact':
                options.update(num_candidates=n,
                               candidate_fn=mode.split('-')[1])
            out = {}
            for where in ('cpu', device):
                h = head.to(where)
                # the union stage: a plain function, no pair scorer found
                matcher = h.match if mode.startswith('pairs') or \
                    mode == 'exact' else (lambda q, g, h=h: h.match(q, g))
                with torch.no_grad():
                    out[str(where)] = build_class_graph(
                        feats.to(where), matcher, **options)
            agree = _agreement(out['cpu'], out[str(device)])
            figures[f'{name}/{mode}'] = agree
            worst = min(worst, agree)
            print(f'  {name:<12s} {mode:<13s}: {agree:.4f} of the '
                  f'{num_classes} x {k} neighbours equal on {device} and '
                  'the CPU')
    print(f'class graph, {n} candidates: worst agreement {worst:.4f}')
    if worst < 0.99:
        raise SystemExit(f'graph: agreement {worst:.4f} < 0.99')
    return figures


def _device(name: str):
    import torch
    device = torch.device(name)
    if device.type == 'cuda' and not torch.cuda.is_available():
        raise SystemExit('gpu_check.py: CUDA is not available')
    return device


def _host_maps(num: int, shape, seed: int, pool: int = 4096):
    """Distinct L2-normalised maps [num, *shape] in host memory, fast:
    ``pool`` random maps, copied block after block, each block rolled by
    one more channel (a different map, the same norm per location); no
    second copy of a large set."""
    import torch
    import torch.nn.functional as F
    out = torch.empty((num, ) + tuple(shape))
    gen = torch.Generator().manual_seed(seed)
    base = F.normalize(torch.randn((min(pool, num), ) + tuple(shape),
                                   generator=gen), dim=1)
    for k, i in enumerate(range(0, num, base.shape[0])):
        n = min(base.shape[0], num - i)
        out[i:i + n] = torch.roll(base[:n], shifts=k, dims=1)
    return out


def _free_host_bytes() -> int:
    try:
        return os.sysconf('SC_AVPHYS_PAGES') * os.sysconf('SC_PAGE_SIZE')
    except (ValueError, OSError, AttributeError):
        return 2**62


def shortlist(args) -> dict:
    """The MSMT17-size shortlisted test on the device; returns figures."""
    import torch

    from mmreid_gs.engine.runners.reid_test_loop import \
        matching_device_bytes
    from mmreid_gs.evaluation.functional.shortlist import shortlisted_scores
    from mmreid_gs.models.heads import QAConvHead, TransMatcherHead

    device = _device(args.device)
    if args.head == 'qaconv':
        shape = (8, 4, 2) if args.small else (64, 24, 8)
        head = QAConvHead(*shape)
    else:
        shape = (3 * 16, 4, 2) if args.small else (1536, 24, 8)
        head = TransMatcherHead(4, 2, d_model=16, dim_feedforward=32) \
            if args.small else TransMatcherHead(24, 8)
    head = head.to(device).eval()
    item = 4
    for v in shape:
        item *= v
    nq, ng = args.num_query, args.num_gallery
    note = ''
    free = _free_host_bytes()
    if 1.2 * (nq + ng) * item > free:
        ng_fit = max(args.num, int(free / 1.2 / item) - nq)
        note = (f'; gallery reduced from {ng} to {ng_fit} maps to fit the '
                f'free host memory ({free / 2**30:.0f} GiB)')
        ng = ng_fit
    query = _host_maps(nq, shape, 1)
    gallery = _host_maps(ng, shape, 2)
    predicted = matching_device_bytes(nq, ng, shape, args.num,
                                      head.memory_budget_mb)['peak']
    if device.type == 'cuda':
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
    start = time.perf_counter()
    with torch.no_grad():
        # the loop's call: the [q, g] scores are written to host memory
        scores, idx = shortlisted_scores(query, gallery, args.num,
                                         head.match, head.match_pairs,
                                         out=torch.empty(nq, ng),
                                         device=device)
    if device.type == 'cuda':
        torch.cuda.synchronize(device)
        peak = torch.cuda.max_memory_allocated(device) - base
    else:
        peak = 0
    seconds = time.perf_counter() - start
    # 16 queries' shortlisted entries against match_pairs on the device
    rows = torch.linspace(0, nq - 1, min(16, nq)).long()
    with torch.no_grad():
        ref = head.match_pairs(query[rows].to(device),
                               gallery[idx[rows]].to(device)).float().cpu()
    got = scores[rows].gather(1, idx[rows])
    diff = float((got - ref).abs().max())
    top = float(ref.abs().max())
    figures = dict(head=args.head, num_query=nq, num_gallery=ng,
                   num=args.num, maps='x'.join(map(str, shape)),
                   seconds=seconds, peak_bytes=peak,
                   predicted_bytes=predicted, max_abs_diff=diff,
                   max_abs_score=top, device=str(device))
    print(f'shortlisted {args.head} test {nq} x {ng} maps '
          f'{figures["maps"]}, N={args.num}, on {device}: {seconds:.1f} s, '
          f'peak device memory {peak / 2**30:.2f} GiB (predicted '
          f'{predicted / 2**30:.2f} GiB), max |diff| {diff:.3g} of '
          f'{top:.3g}{note}')
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(figures, f, indent=2)
    if not torch.isfinite(scores).all():
        raise SystemExit('shortlist: non-finite scores')
    if diff > 1e-3 * max(1.0, top):
        raise SystemExit(f'shortlist: shortlisted scores differ from '
                         f'match_pairs by {diff:.3g}')
    if peak > 1.25 * predicted + 2**30:
        raise SystemExit(f'shortlist: peak device memory {peak} B exceeds '
                         f'the prediction {predicted} B (x1.25 + 1 GiB)')
    return figures


def tm_fp16(args) -> dict:
    """TransMatcher under float16 autocast against float32."""
    import torch

    from mmreid_gs.models.heads import TransMatcherHead

    device = _device(args.device)
    gen = torch.Generator().manual_seed(0)
    if args.small:
        head, shape = TransMatcherHead(4, 2, d_model=16,
                                       dim_feedforward=32), (48, 4, 2)
    else:
        head, shape = TransMatcherHead(24, 8), (1536, 24, 8)
    head = head.to(device).eval()
    query = (args.scale * torch.randn((args.num_query, ) + shape,
                                      generator=gen)).to(device)
    gallery = (args.scale * torch.randn((args.num_gallery, ) + shape,
                                        generator=gen)).to(device)
    dtype = getattr(torch, args.dtype)
    with torch.no_grad():
        ref = head.match(query, gallery).float()
        with torch.autocast(device.type, dtype=dtype):
            low = head.match(query, gallery).float()
    finite = bool(torch.isfinite(low).all())
    diff = float((low - ref).abs().max()) if finite else float('inf')
    top = float(ref.abs().max())
    print(f'TransMatcherHead.match {args.num_query} x {args.num_gallery} '
          f'maps {"x".join(map(str, shape))} x{args.scale:g}, {args.dtype} '
          f'autocast vs float32 on {device}: max |diff| {diff:.3g} of '
          f'{top:.3g} (tolerance {args.tol:g} of it), finite: {finite}')
    if not finite or diff > args.tol * max(top, 1e-6):
        raise SystemExit('tm-fp16: the autocast scores are not finite or '
                         'differ beyond the tolerance')
    return dict(max_abs_diff=diff, max_abs_score=top, finite=finite)


def train(args) -> dict:
    """One Graph Sampler epoch and a validation of a config."""
    from mmengine.config import Config

    import mmreid_gs.engine.graph.build as graph_build
    import mmreid_gs.engine.graph.candidates as graph_candidates
    from mmreid_gs.utils import register_all_modules

    register_all_modules()
    cfg = Config.fromfile(args.config)
    cfg.work_dir = args.work_dir
    cfg.train_cfg.max_epochs = 1
    cfg.train_cfg.val_interval = 1
    cfg.train_dataloader.sampler.batches_per_epoch = args.iters
    hooks = [h for h in cfg.get('custom_hooks', [])
             if h.get('type') == 'GraphSamplerHook']
    if not hooks:
        raise SystemExit(f'train: {args.config} has no GraphSamplerHook')
    hooks[0].pk_epochs = 0
    hooks[0].num_candidates = None if args.graph == 'exact' else \
        args.num_candidates
    cfg.default_hooks.setdefault('checkpoint', {})
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook',
                                        interval=10**6)
    if args.amp:
        kinds = {'OptimWrapper': 'AmpOptimWrapper',
                 'SkipNonFiniteOptimWrapper': 'SkipNonFiniteAmpOptimWrapper'}
        kind = cfg.optim_wrapper.get('type', 'OptimWrapper')
        cfg.optim_wrapper.type = kinds.get(kind, kind)
        cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')
    calls = []
    rescore = graph_build._rescore_candidates

    def counting(*a, **kw):
        calls.append(kw.get('pair_matcher', a[4] if len(a) > 4 else None))
        return rescore(*a, **kw)

    patches = [(graph_build, '_rescore_candidates', counting)]
    if args.graph != 'exact':
        # the cost model would keep the exact graph at these sizes
        patches += [(graph_candidates, 'MAX_CANDIDATE_FRACTION', 1.0),
                    (graph_candidates, 'MIN_TWO_STAGE_SPEEDUP', 0.0)]
    if args.graph == 'union':
        patches.append((graph_build, 'resolve_pair_matcher',
                        lambda m, p=None: None))
    saved = [(mod, name, getattr(mod, name)) for mod, name, _ in patches]
    for mod, name, value in patches:
        setattr(mod, name, value)
    try:
        return _train(cfg, args, calls)
    finally:
        for mod, name, value in saved:
            setattr(mod, name, value)


def _train(cfg, args, calls) -> dict:
    import torch
    from mmengine.hooks import Hook
    from mmengine.runner import Runner

    runner = Runner.from_cfg(cfg)
    scales = []

    class ScaleHook(Hook):
        """Records the AMP loss scale after every step (the optimizer
        wrapper is built by ``runner.train()``)."""
        priority = 'LOWEST'

        def after_train_iter(self, runner, batch_idx, data_batch=None,
                             outputs=None):
            scaler = getattr(runner.optim_wrapper, 'loss_scaler', None)
            if scaler is not None:
                scales.append(float(scaler.get_scale()))

    runner.register_hook(ScaleHook())
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    runner.train()
    seconds = time.perf_counter() - start
    wrapper = runner.optim_wrapper
    if not hasattr(wrapper, 'num_skipped_steps'):
        raise SystemExit(f'train: the optimizer wrapper '
                         f'{type(wrapper).__name__} does not count skipped '
                         'steps (use SkipNonFiniteOptimWrapper)')
    skipped = int(wrapper.num_skipped_steps)
    scaler_skips = sum(b < a for a, b in zip(scales, scales[1:]))
    metrics = runner.message_hub.log_scalars
    val = sorted(k for k in metrics if k.startswith('val/')
                 and k.endswith('mAP'))
    peak = torch.cuda.max_memory_allocated() if torch.cuda.is_available() \
        else 0
    mode = 'exact' if not calls else (
        'union' if all(c is None for c in calls) else 'pairs')
    figures = dict(graph=args.graph, graph_path=mode, seconds=seconds,
                   skipped_steps=skipped, loss_scaler_skips=scaler_skips,
                   val_metrics=val, peak_bytes=peak)
    print(f'GS epoch of {args.iters} batches ({args.graph} graph: '
          f'{mode}), validation {", ".join(val) or "none"}; '
          f'{seconds:.1f} s; skipped steps {skipped}, loss-scaler skips '
          f'{scaler_skips}; peak device memory {peak / 2**30:.2f} GiB')
    if mode != args.graph:
        raise SystemExit(f'train: the graph took the {mode} path, not '
                         f'{args.graph}')
    if skipped:
        raise SystemExit(f'train: {skipped} steps skipped (non-finite loss)')
    if not val:
        raise SystemExit('train: the validation logged no mAP')
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
    commands = {'market': market, 'graph': graph, 'shortlist': shortlist,
                'tm-fp16': tm_fp16, 'train': train}
    if args.command == 'summary':
        summary(args.results)
    else:
        commands[args.command](args)


if __name__ == '__main__':
    sys.exit(main())

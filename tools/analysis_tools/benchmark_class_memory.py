"""The cost side of the paper's Table 1: QAConv's class memory against the
Graph Sampler with the pairwise loss, as the number of identities grows.

For every identity count C, side by side in one process (the two losses
timed in interleaved rounds, same threads, same random batches):

- ``memory``: a training iteration (forward, loss, backward, clipping, SGD
  step) of the model of ``configs/qaconv_cm_demo.py`` with
  ``ClassMemoryLoss(num_classes=C)``: every sample of the batch is scored
  against all C memory classes, so the iteration grows with C;
- ``pairwise``: the same iteration of the model of
  ``configs/qaconv_pk_demo.py`` (pairwise BCE loss over the B x B pairs of
  the batch; GS and PK batches cost the same), independent of C;
- ``graph``: what the Graph Sampler adds per epoch: the feature maps of one
  image per class (eval mode; timed on one batch and scaled to C images,
  image loading not counted) and ``build_class_graph`` on C random maps of
  the demo's map size, exact and two-stage (``--num-candidates``); both
  timed on ``--graph-rows`` rows and scaled by C / rows (each row costs the
  same).

Per paper-defined epoch (C batches, as in the paper: one batch per class)
the seconds are **extrapolated** from the seconds per iteration: memory
``C x s/it``, GS ``C x s/it + features + graph``. Inputs are random
tensors of the demo's shape (B = 32 of 128x64, 8x4 maps); nothing
converges, only the cost is measured. Memory rows are filled with random
maps and marked valid (the cost does not depend on it).

    python tools/analysis_tools/benchmark_class_memory.py
    python tools/analysis_tools/benchmark_class_memory.py \\
        --counts 200 1000 2000 4000 8000 --iters 30 --out cost.json
    # a smoke test
    python tools/analysis_tools/benchmark_class_memory.py --counts 16 32 \\
        --iters 2 --warmup 1 --graph-rows 8
"""
import argparse
import copy
import json
import statistics
import time

import torch
import torch.nn.functional as F
from mmengine.config import Config

from mmreid_gs.engine.graph import build_class_graph
from mmreid_gs.registry import MODELS
from mmreid_gs.structures import DataSample
from mmreid_gs.utils import register_all_modules


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--counts', type=int, nargs='+',
                        default=[200, 1000, 2000, 4000, 8000],
                        help='identity counts C')
    parser.add_argument('--iters', type=int, default=30,
                        help='timed iterations per loss and count')
    parser.add_argument('--warmup', type=int, default=3)
    parser.add_argument('--rounds', type=int, default=2,
                        help='the two losses are timed in this many '
                        'interleaved rounds')
    parser.add_argument('--memory-config', default='configs/qaconv_cm_demo.py')
    parser.add_argument('--pairwise-config',
                        default='configs/qaconv_pk_demo.py')
    parser.add_argument('--num-candidates', type=float, default=0.05,
                        help='two-stage graph: candidates per class, a count '
                        'or a fraction of C in (0, 1)')
    parser.add_argument('--graph-rows', type=int, default=500,
                        help='rows of the class graph timed (scaled to C); '
                        '0 = all')
    parser.add_argument('--threads', type=int, default=None)
    parser.add_argument('--device', default=None,
                        help='cpu or cuda (default: cuda when available)')
    parser.add_argument('--out', default=None, help='write the rows as JSON')
    return parser.parse_args(argv)


def build_model(config: str, num_classes=None, device='cpu'):
    """The model of a demo config; with ``num_classes`` its class memory
    holds that many classes, filled with random maps and marked valid.

    Returns:
        tuple: ``(model, cfg)``.
    """
    cfg = Config.fromfile(config)
    model_cfg = copy.deepcopy(cfg.model)
    if num_classes is not None:
        model_cfg.head.loss.num_classes = int(num_classes)
    model = MODELS.build(model_cfg).to(device)
    memory = getattr(model.head, 'loss_module', None)
    if num_classes is not None:
        with torch.no_grad():
            maps = torch.randn_like(memory.class_memory)
            memory.class_memory.copy_(F.normalize(maps, dim=1))
            memory.valid_class.fill_(1.)
    return model, cfg


def step_fn(model, clip: float = 512.):
    """One SGD step of the model's training path (the demo's optimiser:
    lr 0.01, momentum 0.9, nesterov, weight decay 5e-4, clipping)."""
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optim = torch.optim.SGD(params, lr=0.01, momentum=0.9, nesterov=True,
                            weight_decay=5e-4)

    def step(x, labels):
        samples = [DataSample().set_gt_label(int(v)) for v in labels]
        loss = model.loss(x, samples)['loss']
        optim.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, clip)
        optim.step()
    return step


def pk_batches(n, num_classes, batch_size, num_instances, shape, device,
               seed=0):
    """``n`` random batches: P distinct classes x K images of ``shape``."""
    g = torch.Generator().manual_seed(seed)
    p = batch_size // num_instances
    out = []
    for _ in range(n):
        classes = torch.randperm(num_classes, generator=g)[:p]
        labels = classes.repeat_interleave(num_instances)
        x = torch.randn((batch_size, ) + tuple(shape), generator=g)
        out.append((x.to(device), labels.to(device)))
    return out


def _sync(device):
    if str(device).startswith('cuda'):
        torch.cuda.synchronize()


def time_steps(step, batches, warmup, device):
    times = []
    for i, (x, y) in enumerate(batches):
        _sync(device)
        start = time.perf_counter()
        step(x, y)
        _sync(device)
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return times


def graph_seconds(model, num_classes, num_neighbors, num_candidates, rows,
                  device, shape, feat_batch=128):
    """Seconds of the Graph Sampler's work per epoch at C classes.

    Returns:
        dict: ``features`` (C images in eval mode, scaled from one batch),
        ``exact`` and ``two_stage`` (``build_class_graph`` on C random maps,
        scaled from ``rows`` rows), ``rows`` timed.
    """
    model.eval()
    x = torch.randn((min(feat_batch, num_classes), ) + tuple(shape),
                    device=device)
    with torch.no_grad():
        model.extract_feat(x[:2])  # warm-up
        _sync(device)
        start = time.perf_counter()
        feats = model.extract_feat(x)
        _sync(device)
        per_image = (time.perf_counter() - start) / x.shape[0]
    c, h, w = feats.shape[1:]
    maps = F.normalize(torch.randn(num_classes, c, h, w, device=device),
                       dim=1)
    rows = num_classes if rows <= 0 else min(int(rows), num_classes)
    picked = torch.randperm(num_classes)[:rows]
    out = dict(features=per_image * num_classes, rows=rows)
    with torch.no_grad():
        for key, cand in (('exact', None), ('two_stage', num_candidates)):
            _sync(device)
            start = time.perf_counter()
            build_class_graph(maps, model.match, num_neighbors, cand,
                              rows=picked, exact_fallback=False,
                              pair_matcher=getattr(model, 'match_pairs',
                                                   None))
            _sync(device)
            out[key] = (time.perf_counter() - start) * num_classes / rows
    model.train()
    return out


def _candidates(value):
    return int(value) if value >= 1 else float(value)


def main(argv=None):
    args = parse_args(argv)
    cand = _candidates(args.num_candidates)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = args.device or ('cuda' if torch.cuda.is_available() else 'cpu')
    register_all_modules()
    torch.manual_seed(0)
    pair_model, cfg = build_model(args.pairwise_config, device=device)
    loader = cfg.train_dataloader
    batch_size = loader.batch_size
    num_instances = loader.sampler.num_instances
    height, width = cfg.img_height, cfg.img_width
    shape = (3, height, width)
    k = batch_size // num_instances - 1
    print(f'device={device} threads={torch.get_num_threads()} B={batch_size}'
          f' K={num_instances} input={height}x{width}, {args.iters} timed '
          f'iterations x {args.rounds} rounds per loss and count; per-epoch '
          'seconds are extrapolated (C iterations x s/it, + the graph for '
          'GS)')
    rows = []
    for count in args.counts:
        if count < k + 1:
            raise ValueError(f'benchmark_class_memory: {count} identities '
                             f'are fewer than P = {k + 1} classes a batch')
        mem_model, _ = build_model(args.memory_config, count, device)
        steps = dict(memory=step_fn(mem_model), pairwise=step_fn(pair_model))
        times = {name: [] for name in steps}
        for r in range(args.rounds):
            batches = pk_batches(args.warmup + args.iters, count, batch_size,
                                 num_instances, shape, device, seed=r)
            for name, step in steps.items():
                times[name] += time_steps(step, batches, args.warmup,
                                          device)
        med = {name: statistics.median(v) for name, v in times.items()}
        graph = graph_seconds(pair_model, count, k, cand, args.graph_rows,
                              device, shape)
        row = dict(
            num_ids=count, memory_s_per_iter=med['memory'],
            pairwise_s_per_iter=med['pairwise'],
            memory_s_per_epoch=count * med['memory'],
            gs_s_per_epoch_exact=(count * med['pairwise']
                                  + graph['features'] + graph['exact']),
            gs_s_per_epoch_two_stage=(count * med['pairwise']
                                      + graph['features']
                                      + graph['two_stage']),
            graph_features_s=graph['features'],
            graph_exact_s=graph['exact'],
            graph_two_stage_s=graph['two_stage'],
            graph_rows_timed=graph['rows'],
            num_candidates=cand)
        rows.append(row)
        del mem_model, steps
    print('\n| identities C | class memory s/it | GS + pairwise s/it | ratio '
          '| class memory s/epoch* | GS s/epoch* (exact / two-stage graph) '
          '| graph: features / exact / two-stage s* |')
    print('|---|---|---|---|---|---|---|')
    for r in rows:
        print(f"| {r['num_ids']} | {r['memory_s_per_iter']:.3f} | "
              f"{r['pairwise_s_per_iter']:.3f} | "
              f"{r['memory_s_per_iter'] / r['pairwise_s_per_iter']:.1f}x | "
              f"{r['memory_s_per_epoch']:.0f} | "
              f"{r['gs_s_per_epoch_exact']:.0f} / "
              f"{r['gs_s_per_epoch_two_stage']:.0f} | "
              f"{r['graph_features_s']:.1f} / {r['graph_exact_s']:.1f} / "
              f"{r['graph_two_stage_s']:.1f} |")
    print('\n* extrapolated: an epoch of C batches from the median s/it; the '
          'graph from one feature batch and the timed rows (image loading '
          f'not counted); two-stage: num_candidates={cand}')
    if args.out:
        with open(args.out, 'w') as f:
            json.dump(dict(device=device, threads=torch.get_num_threads(),
                           batch_size=batch_size,
                           num_instances=num_instances,
                           iters=args.iters, rounds=args.rounds, rows=rows),
                      f, indent=1)


if __name__ == '__main__':
    main()

"""Seconds per training epoch as the number of identities grows: class
memory (QAConv 1.x) vs random PK vs the Graph Sampler.

The paper's headline (Liao & Shao, CVPR 2022, Table 1 / Section 5.4): the
class memory baseline scores every batch against the memory of all C
classes, so its iterations slow down with C, while PK and GS batches cost
the same at any C; GS adds a class graph before each epoch (C maps
extracted, C x C QAConv scores).

Per C (default 200, 1,000, 4,000, 8,000 synthetic identities; random
tensors, the network of ``--config``), a few timed iterations each:

- ``t_pk``: one pairwise-loss iteration (forward, the head's B x B loss,
  backward, clip, SGD step); independent of C, timed once.
- ``t_cm(C)``: the same iteration with ``ClassMemoryLoss`` over a full
  memory of C classes (timed at every C).
- ``t_graph(C) = C / b * t_extract(b) + C * t_row(C)``: the class graph:
  feature extraction of one image per class in batches of b = 128, plus
  the exact QAConv scores of C classes against C, timed on ``--rows`` rows
  and scaled by C / rows.

Our samplers give every epoch ``C`` batches (``GraphSampler`` with or
without a graph), so::

    PK epoch = C * t_pk
    GS epoch = C * t_pk + t_graph(C)
    CM epoch = C * t_cm(C)

    python tools/analysis_tools/benchmark_training.py
    python tools/analysis_tools/benchmark_training.py --device cuda \
        --config configs/qaconv_gs_market.py
"""
import argparse
import copy
import statistics
import time

import torch
import torch.nn as nn


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--config', default='configs/qaconv_gs_demo.py')
    parser.add_argument('--classes', type=int, nargs='+',
                        default=[200, 1000, 4000, 8000])
    parser.add_argument('--iters', type=int, default=3,
                        help='timed iterations per measurement')
    parser.add_argument('--rows', type=int, default=64,
                        help='class rows timed for the graph scores')
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--cpu-time', action='store_true',
                        help='CPU seconds of the process with 1 thread '
                        '(robust on a shared machine)')
    return parser.parse_args(argv)


def _sync(device):
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


CLOCK = time.perf_counter


def timed(fn, iters, device, warmup=1):
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(iters):
        t0 = CLOCK()
        fn()
        _sync(device)
        times.append(CLOCK() - t0)
    return statistics.median(times)


def main(argv=None):
    global CLOCK
    args = parse_args(argv)
    if args.cpu_time:
        CLOCK = time.process_time
        torch.set_num_threads(1)
    from mmpretrain.structures import DataSample

    from mmreid_gs.cli import load_config
    from mmreid_gs.models.losses import ClassMemoryLoss
    from mmreid_gs.registry import MODELS
    from mmreid_gs.utils import register_all_modules
    register_all_modules()
    device = torch.device(args.device)
    cfg = load_config(args.config)
    b = int(cfg.train_dataloader.batch_size)
    k = int(cfg.train_dataloader.sampler.get('num_instances', 4))
    head = cfg.model.head
    c, h, w = head.num_features, head.height, head.width
    in_h, in_w = 16 * h, 16 * w
    torch.manual_seed(0)
    model = MODELS.build(copy.deepcopy(cfg.model)).to(device).train()
    params = [p for p in model.parameters() if p.requires_grad]
    optim = torch.optim.SGD(params, lr=1e-3, momentum=0.9, nesterov=True)
    x = torch.randn(b, 3, in_h, in_w, device=device)
    labels = torch.arange(b // k).repeat_interleave(k)
    samples = [DataSample().set_gt_label(int(v)) for v in labels]

    def step():
        loss = model.loss(x, samples)['loss']
        optim.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(params, 512)
        optim.step()

    print(f'{args.config}: B={b} K={k} input {in_h}x{in_w}, maps '
          f'{c}x{h}x{w}, device {device}, '
          f'{torch.get_num_threads()} threads')
    t_pk = timed(step, max(args.iters, 5), device, warmup=3)
    # feature extraction for the graph: batches of 128 in eval mode
    model.eval()
    xb = torch.randn(128, 3, in_h, in_w, device=device)
    with torch.no_grad():
        t_extract = timed(lambda: model.extract_feat(xb), args.iters,
                          device) / 128
    model.train()
    rows = []
    pk_loss = model.head.loss_module
    for num_classes in args.classes:
        # class memory: a full memory of C classes
        cm = ClassMemoryLoss(num_classes, c, h, w).to(device)
        with torch.no_grad():
            cm.class_memory.copy_(nn.functional.normalize(
                torch.randn_like(cm.class_memory), dim=1))
            cm.valid_class.fill_(1.)
        model.head.loss_module = cm
        cm_labels = torch.randint(0, num_classes, (b // k, )) \
            .repeat_interleave(k)
        cm_samples = [DataSample().set_gt_label(int(v)) for v in cm_labels]

        def cm_step():
            loss = model.loss(x, cm_samples)['loss']
            optim.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(params, 512)
            optim.step()
        # warm-up once (the first C): the large memories cost seconds/iter
        t_cm = timed(cm_step, args.iters, device, warmup=int(not rows))
        model.head.loss_module = pk_loss
        del cm
        # graph scores: rows x C classes in eval mode, scaled by C / rows
        model.eval()
        r = min(args.rows, num_classes)
        feats = nn.functional.normalize(
            torch.randn(num_classes, c, h, w, device=device), dim=1)
        with torch.no_grad():
            t_rows = timed(lambda: model.match(feats[:r], feats), 1, device)
        model.train()
        t_graph = num_classes * t_extract + t_rows * num_classes / r
        rows.append(dict(C=num_classes, t_cm=t_cm, t_graph=t_graph,
                         cm=num_classes * t_cm))
    # again after the C loop (caches and allocator warm): the smaller one
    t_pk = min(t_pk, timed(step, max(args.iters, 5), device, warmup=0))
    print(f'{"CPU" if args.cpu_time else "wall"} seconds\n'
          f't_pk = {t_pk:.3f} s/iter (any C); feature extraction '
          f'{t_extract * 1e3:.2f} ms/image\n'
          'PK epoch = C * t_pk; GS epoch = C * t_pk + t_graph(C); '
          'CM epoch = C * t_cm(C)\n')
    print(f'{"C":>6} {"t_cm s/it":>10} {"graph s":>9} {"PK s/ep":>9} '
          f'{"GS s/ep":>9} {"CM s/ep":>10} {"CM/GS":>6}')
    for r in rows:
        r['pk'] = r['C'] * t_pk
        r['gs'] = r['pk'] + r['t_graph']
        print(f'{r["C"]:>6} {r["t_cm"]:>10.3f} {r["t_graph"]:>9.1f} '
              f'{r["pk"]:>9.0f} {r["gs"]:>9.0f} {r["cm"]:>10.0f} '
              f'{r["cm"] / r["gs"]:>6.2f}')


if __name__ == '__main__':
    main()

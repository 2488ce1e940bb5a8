"""Time one training iteration: ours vs the public QAConv trainer's loop.

Settings of the demo family at full width: ResNet-18 to layer3 (64 base
channels, 256 output channels), 3x3 conv neck to 64 channels + BN + L2 norm,
128x64 input (8x4 maps), B = 32 (8 identities x 4 images), pairwise BCE
loss, SGD (momentum 0.9, nesterov), gradient-norm clipping at 512.

Measured side by side in one run (median seconds per iteration after
warm-up, same thread count):

1. ``public``: the public QAConv trainer's loop shape on in-memory batches
   (no data loading): forward of a torchvision ResNet-18 to layer3 and the
   neck, the QAConv pairwise loss over the batch written as the public
   formula (einsum of all B x B x hw x hw location similarities, maxima,
   BatchNorm, fc, BatchNorm, BCE summed per row and averaged), backward,
   clip, SGD step.
2. ``public+ibn``: the same loop with our ResNet-18-IBN-b backbone (the cost
   of IBN).
3. ``ours-step``: our model (``QAConvReID`` built from the config, the
   head's training path) in the same hand-written loop on the same batches:
   ``model.loss`` -> backward -> clip -> step.
4. ``ours-runner``: the MMEngine Runner of ``configs/qaconv_pk_demo.py`` at
   full width: data loading of the synthetic benchmark with the demo's
   augmentations (2 workers), data preprocessor, ``train_step`` through the
   optim wrapper, hooks, logging; the wall time between consecutive
   iterations (data loading included) and MMEngine's ``data_time``.

5. ``public+loading``: the public loop fed by the public trainer's kind of
   data loading: a torch ``DataLoader`` (the runner's worker count) over
   the same training images, PIL decoding and the public code's torchvision
   augmentations at the demo's settings (bicubic resize, pad 4 + random
   crop, flip, rotation up to 5 degrees, colour jitter, a white occlusion
   square on half of the images, ``ToTensor``), random PK batches; the wall
   time between consecutive iterations, like ``ours-runner``.

The acceptance figure is ``ours-runner / public`` (target <= 1.1); with
workers on the same cores as the training (wall time on a small machine)
``ours-runner / public+loading`` compares like with like: both loops load
and augment their images.

``--cpu-time`` measures CPU seconds of the process instead of wall time,
with one intra-op thread and ``num_workers=0`` (data loading in the main
process, so its cost is counted): the work per iteration, which stays
meaningful on a machine shared with other jobs (wall times there are not),
and can run under ``nice``.

    python tools/analysis_tools/benchmark_train_iter.py [--iters 20]
    nice -n 19 python tools/analysis_tools/benchmark_train_iter.py --cpu-time
"""
import argparse
import copy
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

B, K, H, W = 32, 4, 128, 64


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--iters', type=int, default=20,
                        help='timed iterations per variant')
    parser.add_argument('--warmup', type=int, default=4)
    parser.add_argument('--rounds', type=int, default=2,
                        help='the loop variants are timed in this many '
                        'interleaved rounds')
    parser.add_argument('--config', default='configs/qaconv_pk_demo.py')
    parser.add_argument('--threads', type=int, default=None)
    parser.add_argument('--cpu-time', action='store_true',
                        help='process CPU time, 1 thread, num_workers=0')
    return parser.parse_args(argv)


class PublicNeck(nn.Module):
    """3x3 conv + BN + L2 norm over channels (the public QAConv neck)."""

    def __init__(self, cin, cout=64):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, padding=1)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x):
        return F.normalize(self.bn(self.conv(x)), dim=1)


class PublicQAConvPairLoss(nn.Module):
    """The public QAConv pairwise loss over a batch (one formula, all pairs
    at once, as the public ``PairwiseMatchingLoss`` with its matcher)."""

    def __init__(self, hw):
        super().__init__()
        self.bn = nn.BatchNorm1d(1)
        self.fc = nn.Linear(hw, 1)
        self.logit_bn = nn.BatchNorm1d(1)
        nn.init.constant_(self.fc.weight, 1. / hw)

    def forward(self, feats, labels):
        b, c, h, w = feats.shape
        hw = h * w
        x = feats.flatten(2)
        score = torch.einsum('qcm,gcn->qgmn', x, x)  # [B, B, hw, hw]
        score = torch.cat((score.max(dim=3)[0], score.max(dim=2)[0]),
                          dim=-1)
        score = self.bn(score.view(-1, 1, hw)).view(-1, hw)
        score = self.fc(score).view(-1, 2).sum(dim=1, keepdim=True)
        score = self.logit_bn(score).view(b, b)
        target = (labels[:, None] == labels[None]).float()
        loss = F.binary_cross_entropy_with_logits(
            score, target, reduction='none').sum(dim=1)
        return loss.mean()


def torchvision_r18_layer3():
    import torchvision
    net = torchvision.models.resnet18()
    return nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool,
                         net.layer1, net.layer2, net.layer3)


def make_batches(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(B // K).repeat_interleave(K)
    return [(torch.randn(B, 3, H, W, generator=g), labels)
            for _ in range(n)]


CLOCK = time.perf_counter


def time_loop(step, batches, warmup):
    times = []
    for i, (x, y) in enumerate(batches):
        t0 = CLOCK()
        step(x, y)
        if i >= warmup:
            times.append(CLOCK() - t0)
    return times


def public_step_fn(backbone, neck):
    loss_fn = PublicQAConvPairLoss(hw=(H // 16) * (W // 16))
    model = nn.ModuleList([backbone, neck, loss_fn]).train()
    params = [p for p in model.parameters() if p.requires_grad]
    optim = torch.optim.SGD(params, lr=0.01, momentum=0.9, nesterov=True,
                            weight_decay=5e-4)

    def step(x, y):
        feats = neck(backbone(x))
        loss = loss_fn(feats, y)
        optim.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(params, 512)
        optim.step()
    return step


def ours_step_fn(model):
    from mmpretrain.structures import DataSample
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optim = torch.optim.SGD(params, lr=0.01, momentum=0.9, nesterov=True,
                            weight_decay=5e-4)

    def step(x, y):
        samples = [DataSample().set_gt_label(int(v)) for v in y]
        losses = model.loss(x, samples)
        optim.zero_grad()
        losses['loss'].backward()
        nn.utils.clip_grad_norm_(params, 512)
        optim.step()
    return step


class _Occlusion:
    """A white square of side up to 0.8 of the shorter side, on half of
    the images (the public code's random occlusion at the demo's
    probability)."""

    def __call__(self, img):
        import random

        from PIL import ImageDraw
        if random.random() >= 0.5:
            return img
        w, h = img.size
        side = int(random.uniform(0, 0.8) * min(w, h))
        if side < 1:
            return img
        x, y = random.randint(0, w - side), random.randint(0, h - side)
        img = img.copy()
        ImageDraw.Draw(img).rectangle([x, y, x + side - 1, y + side - 1],
                                      fill=(255, 255, 255))
        return img


class _PublicImages(torch.utils.data.Dataset):
    """(image, label) of image files, PIL + torchvision augmentations."""

    def __init__(self, paths, labels):
        import torchvision.transforms as T
        self.paths, self.labels = paths, labels
        self.transform = T.Compose([
            T.Resize((H, W), interpolation=T.InterpolationMode.BICUBIC),
            T.Pad(4),
            T.RandomCrop((H, W)),
            T.RandomHorizontalFlip(0.5),
            T.RandomRotation(5),
            T.ColorJitter(brightness=(0.5, 2.0), contrast=(0.5, 2.0),
                          saturation=(0.5, 2.0), hue=(-0.1, 0.1)),
            _Occlusion(),
            T.ToTensor(),
        ])

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        from PIL import Image
        with Image.open(self.paths[i]) as img:
            img = img.convert('RGB')
        return self.transform(img), self.labels[i]


def _pk_batches(labels, num_batches, seed=0):
    """Index lists of random PK batches (B // K classes x K images)."""
    import numpy as np
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels)
    by_class = {c: np.flatnonzero(labels == c) for c in np.unique(labels)}
    classes = np.array(sorted(by_class))
    for _ in range(num_batches):
        batch = []
        for c in rng.choice(classes, B // K, replace=False):
            idx = by_class[c]
            batch += rng.choice(idx, K, replace=len(idx) < K).tolist()
        yield batch


def public_loading_times(config, backbone, neck, iters, warmup, workers):
    """Per-iteration wall times of the public loop fed by a DataLoader."""
    from mmreid_gs.cli import load_config
    from mmreid_gs.registry import DATASETS
    cfg = load_config(config)
    data = DATASETS.build(copy.deepcopy(cfg.train_dataloader.dataset))
    infos = [data.get_data_info(i) for i in range(len(data))]
    labels = [int(d['gt_label']) for d in infos]
    dataset = _PublicImages([d['img_path'] for d in infos], labels)
    loader = torch.utils.data.DataLoader(
        dataset, batch_sampler=list(_pk_batches(labels, warmup + iters + 1)),
        num_workers=workers, persistent_workers=workers > 0)
    step = public_step_fn(backbone, neck)
    stamps = []
    for x, y in loader:
        step(x, y)
        stamps.append(CLOCK())
    return [b - a for a, b in zip(stamps[warmup:], stamps[warmup + 1:])]


def full_width(cfg):
    """The demo config at full width (ResNet-18: 64 base channels)."""
    cfg.model.backbone.base_channels = 64
    cfg.model.neck.in_channels = 256
    return cfg


def runner_times(config, iters, warmup, workers=None):
    """Per-iteration wall times of the MMEngine Runner (data included)."""
    from mmengine.hooks import Hook

    from mmreid_gs.cli import build_runner, load_config
    cfg = full_width(load_config(config))
    cfg.work_dir = f'/tmp/benchmark_train_iter_{time.time_ns()}'
    cfg.train_cfg.max_epochs = 1
    cfg.train_cfg.val_interval = 100
    cfg.val_dataloader = cfg.val_cfg = cfg.val_evaluator = None
    cfg.custom_hooks = []
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=100)
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=1000)
    cfg.log_level = 'WARNING'
    if workers is not None:
        cfg.train_dataloader.num_workers = workers
        cfg.train_dataloader.persistent_workers = workers > 0
    runner = build_runner(cfg)
    stamps, data_times = [], []

    class _Stop(Exception):
        pass

    class StampHook(Hook):
        priority = 'LOWEST'

        def after_train_iter(self, runner, batch_idx, data_batch=None,
                             outputs=None):
            stamps.append(CLOCK())
            data_times.append(
                runner.message_hub.get_scalar('train/data_time').current())
            if len(stamps) > warmup + iters:
                raise _Stop

    runner.register_hook(StampHook())
    try:
        runner.train()
    except _Stop:
        pass
    wall = [b - a for a, b in zip(stamps[warmup:], stamps[warmup + 1:])]
    return wall, data_times[warmup + 1:]


def main(argv=None):
    global CLOCK
    args = parse_args(argv)
    if args.cpu_time:
        CLOCK = time.process_time
        args.threads = 1
    if args.threads:
        torch.set_num_threads(args.threads)
    from mmreid_gs.cli import load_config, size_dataloader_workers
    from mmreid_gs.registry import MODELS
    from mmreid_gs.utils import register_all_modules
    register_all_modules()
    cfg = full_width(load_config(args.config))
    torch.manual_seed(0)
    ours = MODELS.build(copy.deepcopy(cfg.model))
    ibn_backbone = MODELS.build(copy.deepcopy(cfg.model.backbone))

    class IBNLayer3(nn.Module):
        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, x):
            return self.net(x)[-1]

    steps = {
        'public': public_step_fn(torchvision_r18_layer3(), PublicNeck(256)),
        'public+ibn': public_step_fn(IBNLayer3(ibn_backbone),
                                     PublicNeck(256)),
        'ours-step': ours_step_fn(ours),
    }
    times = {k: [] for k in steps}
    n = args.warmup + args.iters
    print(f'{"CPU" if args.cpu_time else "wall"} seconds, '
          f'threads={torch.get_num_threads()} B={B} K={K} input={H}x{W} '
          f'ResNet-18 to layer3 (64 base channels), {args.iters} timed '
          f'iterations x {args.rounds} rounds per loop variant')
    for r in range(args.rounds):
        batches = make_batches(n, seed=r)
        for name, step in steps.items():
            times[name] += time_loop(step, batches, args.warmup)
    wall, data = runner_times(args.config, args.iters * args.rounds,
                              args.warmup, 0 if args.cpu_time else None)
    times['ours-runner'] = wall
    # the runner's workers: the config's, fitted to the machine
    size_dataloader_workers(cfg)
    workers = 0 if args.cpu_time else cfg.train_dataloader.num_workers
    times['public+loading'] = public_loading_times(
        args.config, torchvision_r18_layer3(), PublicNeck(256),
        args.iters * args.rounds, args.warmup, workers)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f'\n{"variant":<13}{"s/iter (median)":>17}{"min":>8}{"max":>8}'
          f'{"x public":>10}')
    for k, v in times.items():
        print(f'{k:<13}{med[k]:>17.3f}{min(v):>8.3f}{max(v):>8.3f}'
              f'{med[k] / med["public"]:>10.2f}')
    print(f'\nours-runner: MMEngine data_time median '
          f'{statistics.median(data):.4f} s/iter')
    print('breakdown of ours-runner / public = '
          f'{med["ours-runner"] / med["public"]:.2f}: IBN '
          f'{med["public+ibn"] / med["public"]:.2f}x, our model + head '
          f'training path vs public loss on the IBN backbone '
          f'{med["ours-step"] / med["public+ibn"]:.2f}x, MMEngine loop + '
          f'data loading {med["ours-runner"] / med["ours-step"]:.2f}x')
    print('ours-runner / public+loading (both loops load and augment their '
          f'images, {workers} workers): '
          f'{med["ours-runner"] / med["public+loading"]:.2f}')


if __name__ == '__main__':
    main()

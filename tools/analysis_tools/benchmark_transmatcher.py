"""Benchmark TransMatcher matching: the public einsum formula vs
TransMatcherHead.match.

Prints, from one run on random feature maps ``[n, L*d, h, w]`` (the
TransMatcher neck's output: no L2 norm) and a randomised matcher whose
BatchNorm statistics come from these maps:

* pairs/s of ``TransMatcherHead.match`` in eval mode under
  ``torch.no_grad()`` and under ``torch.inference_mode()`` on the full
  query x gallery problem;
* pairs/s of the public formula (``mmreid_gs.testing.PublicTransMatcher``:
  per layer ``fc1``, one ``einsum('q t d, k s d -> q k s t')`` times
  ``sigmoid(score_embed)``, both maxima, BatchNorm / MLP layers, as the
  public ``TransMatcher``), called as the public evaluation does
  (``make_kernel`` of a query block, then a gallery block) on blocks of
  ``--ref-blocks`` queries x gallery items under ``torch.inference_mode()``,
  on the first ``--ref-gallery`` gallery items (a rate; the whole gallery
  would only take longer);
* pairs/s of ``TransMatcherHead.match_pairs`` in its index form (each
  query against its own list of ``--list-size`` gallery items drawn at
  random, what the two-stage class graph and the shortlisted test call)
  under ``torch.inference_mode()``, and its largest difference to
  ``match``'s scores of the same pairs;
* the ratio of the rates, the largest difference of the two score
  matrices on the common part, and the peak memory of each measurement
  above what was allocated before it (CUDA: ``max_memory_allocated``; CPU:
  the peak resident set size, reset through ``/proc/self/clear_refs`` where
  Linux allows it).

``--memory`` instead measures one training step of the matcher (the B x B
pair scores, the pairwise loss and the backward pass to the maps and the
matcher's parameters) for batch sizes ``--memory-batches``: ours
(``TransMatcherHead.loss``) against the public formula
(``PublicTransMatcher``'s ``make_kernel(x)``, ``forward(x)`` then the same
``PairwiseMatchingLoss``), each in a child process of its own so that the
peaks do not mix: the peak memory above the start of the step (CPU: peak
resident set size; CUDA: ``max_memory_allocated``) and its time.

Example::

    python tools/analysis_tools/benchmark_transmatcher.py --quick
    python tools/analysis_tools/benchmark_transmatcher.py   # paper sizes
    python tools/analysis_tools/benchmark_transmatcher.py --device cuda \\
        --num-query 256 --num-gallery 4096 --amp
    python tools/analysis_tools/benchmark_transmatcher.py --memory \\
        --memory-batches 8,16,32,64
"""
import argparse
import json
import os
import subprocess
import sys
import time

import torch

from mmreid_gs.models.heads import TransMatcherHead
from mmreid_gs.models.losses import PairwiseMatchingLoss
from mmreid_gs.testing import PublicTransMatcher

QUICK = dict(num_query=8, num_gallery=24, height=6, width=4, d_model=16,
             num_layers=2, dim_feedforward=32, ref_gallery=24,
             ref_blocks='4x8', repeat=1, memory_batches='4,8')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Benchmark TransMatcher matching (public formula vs '
        'TransMatcherHead.match)')
    parser.add_argument('--num-query', type=int, default=64)
    parser.add_argument('--num-gallery', type=int, default=512)
    parser.add_argument('--height', type=int, default=24)
    parser.add_argument('--width', type=int, default=8)
    parser.add_argument('--d-model', type=int, default=512)
    parser.add_argument('--num-layers', type=int, default=3)
    parser.add_argument('--dim-feedforward', type=int, default=2048)
    parser.add_argument(
        '--ref-gallery', type=int, default=128,
        help='gallery items scored by the (slow) reference')
    parser.add_argument(
        '--ref-blocks', default='16x32',
        help='queries x gallery items per call of the reference (one '
        'einsum of q*g*hw*hw values per layer: 16x32 at 24x8 maps is 75 MB)')
    parser.add_argument('--memory-budget-mb', type=float, default=256,
                        help='TransMatcherHead memory_budget_mb')
    parser.add_argument('--threads', type=int, default=None,
                        help='torch.set_num_threads (default: torch\'s)')
    parser.add_argument(
        '--repeat', type=int, default=3,
        help='interleaved timed rounds (the fastest round of each kept)')
    parser.add_argument(
        '--device', default='cuda' if torch.cuda.is_available() else 'cpu',
        help='cpu or cuda (default: cuda when available)')
    parser.add_argument(
        '--amp', action='store_true',
        help='also time our head under autocast (CUDA: float16, CPU: '
        'bfloat16); the reference stays float32')
    parser.add_argument(
        '--list-size', type=int, default=None,
        help='gallery items per query for match_pairs (default: '
        'the gallery size, the same number of pairs as match)')
    parser.add_argument(
        '--memory', action='store_true',
        help='measure the peak memory of one training step, ours vs the '
        'public formula, each in a child process (see the docstring)')
    parser.add_argument(
        '--memory-batches', default='8,16,32,64',
        help='batch sizes of --memory (comma-separated)')
    parser.add_argument(
        '--memory-timeout', type=float, default=1800,
        help='seconds a --memory child may run before it is stopped')
    parser.add_argument('--memory-child', choices=['ours', 'public'],
                        default=None, help=argparse.SUPPRESS)
    parser.add_argument('--batch', type=int, default=64,
                        help=argparse.SUPPRESS)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument(
        '--quick', action='store_true',
        help=f'tiny sizes to check that the script runs: {QUICK}')
    args = parser.parse_args(argv)
    if args.quick:
        for key, value in QUICK.items():
            setattr(args, key, value)
    try:
        args.ref_blocks = tuple(
            int(v) for v in args.ref_blocks.lower().split('x'))
        assert len(args.ref_blocks) == 2 and min(args.ref_blocks) > 0
    except (ValueError, AssertionError):
        parser.error(f'--ref-blocks: expected QxG such as 16x32, got '
                     f'{args.ref_blocks!r}')
    return args


class PeakMemory:
    """Peak memory of a measurement above the memory in use before it."""

    def __init__(self, device: torch.device):
        self.device = device

    @staticmethod
    def _status(field):
        with open('/proc/self/status') as f:
            for line in f:
                if line.startswith(field + ':'):
                    return int(line.split()[1]) * 1024
        return None

    def __enter__(self):
        self.peak = None
        if self.device.type == 'cuda':
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.start = torch.cuda.memory_allocated(self.device)
            return self
        try:
            with open('/proc/self/clear_refs', 'w') as f:
                f.write('5')  # reset the peak resident set size
            self.start = self._status('VmRSS')
        except OSError:
            self.start = None
        return self

    def __exit__(self, *exc):
        if self.device.type == 'cuda':
            torch.cuda.synchronize(self.device)
            self.peak = (torch.cuda.max_memory_allocated(self.device) -
                         self.start)
        elif self.start is not None:
            self.peak = self._status('VmHWM') - self.start
        return False


def timed(fn, device):
    """Wall time of one call of ``fn`` and the peak memory above the start
    (bytes, None when unknown)."""
    with PeakMemory(device) as memory:
        start = time.perf_counter()
        fn()
        if device.type == 'cuda':
            torch.cuda.synchronize(device)
        seconds = time.perf_counter() - start
    return seconds, memory.peak


def reference_scores(ref, query, gallery, blocks, out):
    """The public evaluation loop: ``make_kernel`` of a query block, then
    each gallery block (channels-last maps)."""
    q_blk, g_blk = blocks
    with torch.inference_mode():
        for i in range(0, query.size(0), q_blk):
            ref.make_kernel(query[i:i + q_blk])
            for k in range(0, gallery.size(0), g_blk):
                out[i:i + q_blk, k:k + g_blk] = ref(gallery[k:k + g_blk])


def megabytes(n):
    return 'n/a' if n is None else f'{n / 2**20:.1f} MiB'


def memory_child(args, device):
    """One training step of ``args.memory_child`` at batch ``args.batch``
    (run in a process of its own); prints one JSON line."""
    h, w, d, n_layers = args.height, args.width, args.d_model, args.num_layers
    gen = torch.Generator(device='cpu').manual_seed(args.seed)
    x = torch.randn(args.batch, n_layers * d, h, w, generator=gen)
    labels = torch.arange(args.batch) // 4  # K = 4 images an identity
    torch.manual_seed(args.seed)  # the same matcher in both children
    model = PublicTransMatcher(h * w, d, n_layers, args.dim_feedforward)
    if args.memory_child == 'ours':
        head = TransMatcherHead(h, w, d, n_layers, args.dim_feedforward,
                                memory_budget_mb=args.memory_budget_mb)
        head.load_state_dict(model.state_dict(), strict=False)
        model = head
    else:
        x = x.permute(0, 2, 3, 1).contiguous()  # public: channels last
        criterion = PairwiseMatchingLoss()
    model, x = model.to(device).train(), x.to(device).requires_grad_()
    labels = labels.to(device)

    def step():
        if args.memory_child == 'ours':
            loss = model.loss(x, labels)['loss']
        else:
            model.make_kernel(x)
            loss = criterion(model(x), labels)[0]
        loss.backward()
        return loss

    seconds, peak = timed(step, device)
    print(json.dumps(dict(impl=args.memory_child, batch=args.batch,
                          seconds=seconds, peak=peak,
                          grad_norm=float(x.grad.norm()))))


def memory_table(args, device):
    """``--memory``: each implementation and batch size in a child process;
    prints a table."""
    batches = [int(b) for b in str(args.memory_batches).split(',')]
    script = os.path.abspath(__file__)
    common = [
        '--height', str(args.height), '--width', str(args.width),
        '--d-model', str(args.d_model), '--num-layers',
        str(args.num_layers), '--dim-feedforward',
        str(args.dim_feedforward), '--memory-budget-mb',
        str(args.memory_budget_mb), '--device', str(device), '--seed',
        str(args.seed)
    ]
    if args.threads:
        common += ['--threads', str(args.threads)]
    threads = args.threads or torch.get_num_threads()
    print(f'device: {device} threads: {threads} maps: {args.num_layers}x'
          f'{args.d_model}x{args.height}x{args.width} (L x d_model x h x '
          f'w) dim_feedforward: '
          f'{args.dim_feedforward}; one training step (B x B pair scores, '
          'pairwise loss, backward), each in a child process')
    print(f'{"batch":>5s} | {"impl":6s} | {"peak above start":>16s} | '
          f'{"seconds":>8s}')
    results = {}
    for batch in batches:
        for impl in ('ours', 'public'):
            cmd = [sys.executable, script, '--memory-child', impl,
                   '--batch', str(batch)] + common
            try:
                proc = subprocess.run(cmd, capture_output=True, text=True,
                                      timeout=args.memory_timeout)
            except subprocess.TimeoutExpired:
                print(f'{batch:5d} | {impl:6s} | {"timed out":>16s} | '
                      f'>{args.memory_timeout:.0f}')
                continue
            lines = [ln for ln in proc.stdout.splitlines()
                     if ln.startswith('{')]
            if proc.returncode != 0 or not lines:
                tail = (proc.stderr or proc.stdout).strip().splitlines()
                why = tail[-1] if tail else f'exit {proc.returncode}'
                print(f'{batch:5d} | {impl:6s} | failed: {why}')
                continue
            res = json.loads(lines[-1])
            results[batch, impl] = res
            print(f'{batch:5d} | {impl:6s} | {megabytes(res["peak"]):>16s} '
                  f'| {res["seconds"]:8.2f}', flush=True)
        if (batch, 'ours') in results and (batch, 'public') in results:
            a, b = results[batch, 'ours'], results[batch, 'public']
            if a['peak'] and b['peak']:
                print(f'{batch:5d} | ratio  | public / ours = '
                      f'{b["peak"] / a["peak"]:.1f}x; |grad| ours '
                      f'{a["grad_norm"]:.4g}, public {b["grad_norm"]:.4g}')


def main(argv=None):
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if args.memory_child:
        return memory_child(args, device)
    if args.memory:
        return memory_table(args, device)
    h, w, d, n_layers = args.height, args.width, args.d_model, args.num_layers
    hw, c = h * w, args.num_layers * args.d_model
    gen = torch.Generator(device='cpu').manual_seed(args.seed)
    query = torch.randn(args.num_query, c, h, w, generator=gen)
    gallery = torch.randn(args.num_gallery, c, h, w, generator=gen)
    ref = PublicTransMatcher(hw, d, n_layers, args.dim_feedforward)
    calib = torch.cat([query[:8], gallery[:8]]).permute(0, 2, 3, 1)
    ref.randomise_(gen, calib).eval()
    head = TransMatcherHead(h, w, d, n_layers, args.dim_feedforward,
                            memory_budget_mb=args.memory_budget_mb)
    head.load_state_dict(ref.state_dict(), strict=False)
    head, ref = head.to(device).eval(), ref.to(device)
    query, gallery = query.to(device), gallery.to(device)
    n_ref = min(args.ref_gallery, args.num_gallery)
    query_last = query.permute(0, 2, 3, 1).contiguous()
    gal_last = gallery[:n_ref].permute(0, 2, 3, 1).contiguous()
    amp_dtype = torch.float16 if device.type == 'cuda' else torch.bfloat16

    scores = {}

    def ours(mode):
        context = dict(no_grad=torch.no_grad,
                       inference_mode=torch.inference_mode,
                       amp=torch.inference_mode)[mode]
        with context(), torch.autocast(device.type, dtype=amp_dtype,
                                       enabled=mode == 'amp'):
            scores[mode] = head.match(query, gallery)

    def public():
        scores['public'] = torch.empty(args.num_query, n_ref, device=device)
        reference_scores(ref, query_last, gal_last, args.ref_blocks,
                         scores['public'])

    list_size = args.list_size or args.num_gallery
    index = torch.randint(args.num_gallery, (args.num_query, list_size),
                          generator=gen).to(device)

    def pairs_index():
        with torch.inference_mode():
            scores['match_pairs'] = head.match_pairs(query, gallery,
                                                     index=index)

    runs = dict(no_grad=lambda: ours('no_grad'),
                inference_mode=lambda: ours('inference_mode'),
                match_pairs=pairs_index,
                public=public)
    if args.amp:
        runs['amp'] = lambda: ours('amp')
    with torch.no_grad():  # warm-up
        head.match(query[:2], gallery[:4])
        head.match_pairs(query[:2], gallery, index=index[:2, :4])
        ref.make_kernel(query_last[:2])
        ref(gal_last[:4])
    times = {name: [] for name in runs}
    peaks = {name: None for name in runs}
    for _ in range(args.repeat):
        for name, fn in runs.items():
            seconds, peak = timed(fn, device)
            times[name].append(seconds)
            if peak is not None:
                peaks[name] = max(peaks[name] or 0, peak)

    counts = dict(public=n_ref, match_pairs=list_size)
    pairs = {
        name: counts.get(name, args.num_gallery) * args.num_query /
        min(times[name])
        for name in runs
    }
    diff = (scores['no_grad'][:, :n_ref] - scores['public']).abs().max()
    print(f'device: {device} threads: {torch.get_num_threads()} maps: '
          f'{n_layers}x{d}x{h}x{w} (L x d_model x h x w) dim_feedforward: '
          f'{args.dim_feedforward} queries: {args.num_query} gallery: '
          f'{args.num_gallery} (reference: {n_ref}, blocks '
          f'{args.ref_blocks[0]}x{args.ref_blocks[1]}) fastest of '
          f'{args.repeat} rounds')
    for name, label in (('no_grad', 'TransMatcherHead.match, no_grad'),
                        ('inference_mode',
                         'TransMatcherHead.match, inference_mode'),
                        ('amp', f'TransMatcherHead.match, autocast '
                         f'{str(amp_dtype)[6:]}'),
                        ('match_pairs', 'TransMatcherHead.match_pairs, '
                         'inference_mode'),
                        ('public', 'public einsum formula, inference_mode')):
        if name not in runs:
            continue
        ratio = pairs[name] / pairs['public']
        print(f'{label:44s}: {pairs[name]:12.0f} pairs/s '
              f'({min(times[name]):8.3f} s, {ratio:6.2f}x the public '
              f'formula), peak memory {megabytes(peaks[name])}')
    print(f'max |ours - public| on the common {args.num_query}x{n_ref} '
          f'pairs: {diff:.3g} (score std {scores["public"].std():.3g})')
    pairs_diff = (scores['match_pairs'] -
                  scores['no_grad'].gather(1, index)).abs().max()
    print(f'max |match_pairs - match| on its {args.num_query}x{list_size} '
          f'pairs (index form, lists of random gallery items): '
          f'{pairs_diff:.3g}')
    if args.amp:
        amp_diff = (scores['amp'] - scores['no_grad']).abs().max()
        print(f'max |autocast - float32|: {amp_diff:.3g}')


if __name__ == '__main__':
    main()

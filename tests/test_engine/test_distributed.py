"""Distributed training and testing on CPU: 2 processes, gloo, torchrun.

``tools/dist_train.sh`` trains the tiny benchmark of ``test_runner_e2e.py``
(1 PK warm-up epoch, then one Graph Sampler epoch) with 2 processes. A test
hook, imported by both ranks through ``custom_imports``, writes what each
rank sees per epoch (its graph, the indices and labels of its batches, its
parameters), so the test can check that

- every rank uses the same graph (the one saved by the GraphSamplerHook);
- the ranks take whole, different batches, and over the two ranks every
  class is the centre (first class) of exactly one batch per epoch;
- graph epochs hold ``[c] + graph[c]`` with K distinct images each;
- DDP keeps the parameters equal on both ranks.

``tools/dist_test.sh`` with 2 processes then gives the same scores and
metrics as ``tools/test.py`` with 1 process on the same checkpoint.
"""
import glob
import json
import os
import os.path as osp
import socket
import subprocess
import sys
import weakref

import numpy as np
import pytest
import torch.distributed as torch_dist
from helpers import REPO

from mmreid_gs.engine.graph import graph_dump_path, load_graph_dump
from mmreid_gs.evaluation.results_file import load_test_results

WORLD_SIZE = 2
NUM_CLASSES = 12
BATCH_SIZE, NUM_INSTANCES = 16, 4
P = BATCH_SIZE // NUM_INSTANCES

pytestmark = pytest.mark.skipif(
    not (torch_dist.is_available() and torch_dist.is_gloo_available()),
    reason='torch.distributed with the gloo backend is not available')

# The tiny benchmark of test_runner_e2e.py (12 train ids, 2 epochs, graph
# saved), plus a hook, imported by both ranks, that dumps what every rank
# sees; small test batches. 5 test ids in B: 5 queries and 15 gallery
# images, so that the 2-process test pads its shards and splits the query
# rows unevenly.
DIST = dict(
    hooks=[dict(type='DistDumpHook')], test_batch_size=4,
    extra="custom_imports = dict(imports=['dist_dump_hook'], "
    'allow_failed_imports=False)\n')

DUMP_HOOK = '''
"""Test hook: write what this rank sees in every training epoch."""
import os.path as osp

import numpy as np
import torch
from mmengine.dist import get_dist_info
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from mmreid_gs.registry import HOOKS


def _module(runner):
    model = runner.model
    return model.module if is_model_wrapper(model) else model


def _flat(tensors):
    return torch.cat(
        [t.detach().reshape(-1).double() for t in tensors]).numpy()


@HOOKS.register_module()
class DistDumpHook(Hook):
    priority = 'LOWEST'  # after GraphSamplerHook has set the graph

    def before_train_epoch(self, runner):
        self.graph = runner.train_dataloader.sampler.graph
        # the buffers (BN running statistics) the graph was built with
        self.graph_buffers = _flat(_module(runner).buffers())
        self.indices, self.labels = [], []

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None):
        samples = data_batch['data_samples']
        self.indices.append([int(s.metainfo['sample_idx']) for s in samples])
        self.labels.append([int(s.gt_label) for s in samples])

    def after_train_epoch(self, runner):
        rank, world_size = get_dist_info()
        model = _module(runner)
        np.savez(
            osp.join(runner.work_dir,
                     f'rank{rank}_epoch{runner.epoch + 1}.npz'),
            has_graph=self.graph is not None,
            graph=np.zeros((0, 0), np.int64) if self.graph is None
            else self.graph,
            indices=np.asarray(self.indices, dtype=np.int64),
            labels=np.asarray(self.labels, dtype=np.int64),
            params=_flat(model.parameters()),
            buffers=_flat(model.buffers()),
            graph_buffers=self.graph_buffers,
            world_size=world_size,
            wrapper=type(runner.model).__name__,
            wrapped=is_model_wrapper(runner.model))
'''


def _free_port():
    """A TCP port nobody listens on now (fixed ports collide with other
    jobs on a shared machine or with sockets still closing)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def _env(extra_path=None):
    env = dict(os.environ)
    env['PORT'] = str(_free_port())
    env['OMP_NUM_THREADS'] = '1'
    env.pop('MMREID_GS_DEBUG', None)
    paths = [p for p in (extra_path, REPO, env.get('PYTHONPATH')) if p]
    env['PYTHONPATH'] = os.pathsep.join(paths)
    return env


def _run(cmd, env, timeout, log):
    """Run a command, keep its output in ``log``, fail with its tail."""
    try:
        proc = subprocess.run(
            cmd, cwd=REPO, env=env, timeout=timeout,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    except subprocess.TimeoutExpired as err:
        out = err.stdout or ''
        if isinstance(out, bytes):
            out = out.decode(errors='replace')
        pytest.fail(f'{" ".join(cmd)} timed out after {timeout}s:\n'
                    f'{out[-4000:]}')
    with open(log, 'w') as f:
        f.write(proc.stdout)
    assert proc.returncode == 0, (
        f'{" ".join(cmd)} exited with {proc.returncode}:\n'
        f'{proc.stdout[-6000:]}')
    return proc.stdout


@pytest.fixture(scope='module')
def setup(make_tiny_config, tmp_path_factory):
    folder = tmp_path_factory.mktemp('dist')
    (folder / 'dist_dump_hook.py').write_text(DUMP_HOOK)
    return make_tiny_config(folder, 'tiny_dist.py', b_test_ids=5,
                            **DIST), folder


def dist_train(config, folder):
    """``tools/dist_train.sh`` with 2 processes into ``folder/train`` (the
    dump hook imported from ``folder``); returns the work dir."""
    work_dir = str(folder / 'train')
    _run([
        'bash', 'tools/dist_train.sh', config,
        str(WORLD_SIZE), '--work-dir', work_dir
    ], _env(str(folder)), 300, str(folder / 'train.log'))
    return work_dir


@pytest.fixture(scope='module')
def dist_trained(setup):
    config, folder = setup
    return config, folder, dist_train(config, folder)


def _dumps(work_dir, epoch):
    dumps = [
        np.load(osp.join(work_dir, f'rank{r}_epoch{epoch}.npz'))
        for r in range(WORLD_SIZE)
    ]
    for d in dumps:
        assert int(d['world_size']) == WORLD_SIZE
        assert bool(d['wrapped']), str(d['wrapper'])
    return dumps


def _check_epoch_batches(dumps, graph=None):
    """Whole batches split across ranks, every class a centre once."""
    per_rank = -(-NUM_CLASSES // WORLD_SIZE)
    centres, rows = [], []
    for d in dumps:
        indices, labels = d['indices'], d['labels']
        assert indices.shape == labels.shape == (per_rank, BATCH_SIZE)
        for idx, lab in zip(indices, labels):
            blocks = lab.reshape(P, NUM_INSTANCES)
            # Every block of K is one class; a batch has P distinct classes.
            assert (blocks == blocks[:, :1]).all(), lab
            classes = blocks[:, 0]
            assert len(set(classes.tolist())) == P, lab
            # The classes have 4 train images: K distinct images each.
            for block in idx.reshape(P, NUM_INSTANCES):
                assert len(set(block.tolist())) == NUM_INSTANCES, idx
            if graph is not None:
                np.testing.assert_array_equal(classes[1:], graph[classes[0]])
            centres.append(int(classes[0]))
            rows.append(tuple(idx.tolist()))
    # C = 12 is a multiple of 2: no padding, every class the centre of
    # exactly one batch over both ranks, and no batch on both ranks.
    assert sorted(centres) == list(range(NUM_CLASSES))
    rank_rows = [set(rows[r * per_rank:(r + 1) * per_rank])
                 for r in range(WORLD_SIZE)]
    assert not rank_rows[0] & rank_rows[1]


def test_dist_train_same_graph_and_disjoint_batches(dist_trained):
    _, _, work_dir = dist_trained
    assert osp.isfile(osp.join(work_dir, 'epoch_2.pth'))
    assert not osp.exists(graph_dump_path(work_dir, 1))
    saved = load_graph_dump(graph_dump_path(work_dir, 2))['neighbors']
    assert saved.shape == (NUM_CLASSES, P - 1)

    # Epoch 1: PK warm-up, no graph on any rank.
    pk = _dumps(work_dir, 1)
    assert not any(bool(d['has_graph']) for d in pk)
    _check_epoch_batches(pk)

    # Epoch 2: the same graph on both ranks, equal to the saved one.
    gs = _dumps(work_dir, 2)
    assert all(bool(d['has_graph']) for d in gs)
    for d in gs:
        np.testing.assert_array_equal(d['graph'], saved)
    _check_epoch_batches(gs, graph=saved)

    # DDP: the parameters are the same on both ranks after every epoch.
    for dumps in (pk, gs):
        np.testing.assert_array_equal(dumps[0]['params'], dumps[1]['params'])


def _logged_metrics(work_dir):
    """The test metrics written by the LoggerHook (one run per dir)."""
    files = glob.glob(osp.join(work_dir, '*', '*.json')) + glob.glob(
        osp.join(work_dir, '*', 'vis_data', '2*.json'))
    assert len(files) == 1, files
    with open(files[0]) as f:
        records = [json.loads(line) for line in f if line.strip()]
    metrics = {}
    for r in records:
        metrics.update({k: v for k, v in r.items() if '/' in k})
    assert metrics, records
    return metrics


def test_dist_graph_is_built_by_one_model(dist_trained):
    """Every rank's share of the graph comes from the same model."""
    _, _, work_dir = dist_trained
    gs = _dumps(work_dir, 2)
    np.testing.assert_array_equal(gs[0]['graph_buffers'],
                                  gs[1]['graph_buffers'])


# the initialised network (18 s) is benchmark-marked (`pytest -m
# benchmark`): the CPU suite stays under its 10-minute limit
@pytest.mark.parametrize('checkpoint', [
    pytest.param('epoch_2.pth', id='trained'),
    pytest.param(None, id='initialised', marks=pytest.mark.benchmark)
])
def test_dist_test_equals_single_process(dist_trained, checkpoint):
    """2-process test == 1-process test, for a checkpoint and for the
    initialised network (``""`` as the checkpoint of dist_test.sh)."""
    config, folder, work_dir = dist_trained
    tag = 'ckpt' if checkpoint else 'init'
    ckpt = osp.join(work_dir, checkpoint) if checkpoint else ''
    env = _env(str(folder))
    dist_out = str(folder / f'dist_scores_{tag}.npz')
    _run([
        'bash', 'tools/dist_test.sh', config, ckpt,
        str(WORLD_SIZE), '--work-dir',
        str(folder / f'test_dist_{tag}'), '--out', dist_out
    ], env, 240, str(folder / f'test_dist_{tag}.log'))
    single_out = str(folder / f'single_scores_{tag}.npz')
    _run([sys.executable, 'tools/test.py', config] + ([ckpt] if ckpt else [])
         + ['--work-dir',
            str(folder / f'test_single_{tag}'), '--out', single_out],
         env, 240, str(folder / f'test_single_{tag}.log'))

    dist = load_test_results(dist_out)
    assert dist['synthetic_A']['scores'].shape == (6, 18)
    assert dist['synthetic_B_unseen']['scores'].shape == (5, 15)
    assert_same_results(dist, load_test_results(single_out))

    single_metrics = _logged_metrics(str(folder / f'test_single_{tag}'))
    for name in ('synthetic_A', 'synthetic_B_unseen'):
        for key in ('Rank-1', 'mAP', 'mINP'):
            assert f'{name}/{key}' in single_metrics
    where = [f'test_dist_{tag}']
    if checkpoint == 'epoch_2.pth':
        # The validation at the end of the 2-process training (each rank
        # has trained its own BN running statistics; the loop evaluates
        # rank 0's, which the checkpoint holds).
        where.append('train')
    for name in where:
        metrics = _logged_metrics(str(folder / name))
        assert metrics.keys() == single_metrics.keys(), name
        for key, value in single_metrics.items():
            assert abs(metrics[key] - value) <= 1e-6, (
                name, key, metrics[key], value)


def assert_same_results(dist, single):
    """Two results files (``load_test_results``) hold the same sets and
    fields, floats within 1e-5, everything else equal."""
    assert dist.keys() == single.keys()
    for name, fields in single.items():
        assert dist[name].keys() == fields.keys(), name
        for field, value in fields.items():
            key = f'{name}/{field}'
            if value.dtype.kind in 'fc':
                assert dist[name][field].shape == value.shape, key
                np.testing.assert_allclose(
                    dist[name][field], value, rtol=0, atol=1e-5, err_msg=key)
            else:
                np.testing.assert_array_equal(dist[name][field], value, key)


def _native_threads():
    return len(os.listdir('/proc/self/task'))


@pytest.mark.skipif(not osp.isdir('/proc/self/task'),
                    reason='counts native threads through /proc')
@pytest.mark.parametrize('fails', [False, True], ids=['ok', 'error'])
def test_run_cli_frees_process_group(fails):
    """``run_cli`` destroys and frees a process group that ``main`` left
    initialised and still referenced from a reference cycle (as the Runner
    holds it through DDP), on success and on a user error alike: gloo's
    worker threads are joined before the interpreter exits (left to
    finalisation, they can abort the process after the work is done)."""
    import torch
    from torch.nn.parallel import DistributedDataParallel

    from mmreid_gs.cli import run_cli
    from mmreid_gs.utils import ReIDUserError

    # start the intra-op thread pools first: only gloo's threads may differ
    (torch.randn(256, 256) @ torch.randn(256, 256)).add_(1).sum()
    before = _native_threads()

    group = []

    def main(argv):
        torch_dist.init_process_group(
            'gloo', init_method=f'tcp://127.0.0.1:{_free_port()}',
            rank=0, world_size=1)
        holder = {'model': DistributedDataParallel(torch.nn.Linear(2, 2))}
        holder['self'] = holder  # a cycle, like the Runner's
        out = [torch.zeros(3)]
        torch_dist.all_gather(out, torch.ones(3))
        group.append(weakref.ref(torch_dist.group.WORLD))
        assert _native_threads() > before
        if fails:  # a user error: one line, exit code 2
            raise ReIDUserError('bad value')

    try:
        assert run_cli(main, []) == (2 if fails else 0)
        assert not torch_dist.is_initialized()
        assert group[0]() is None
        assert _native_threads() == before
    finally:
        if torch_dist.is_initialized():
            torch_dist.destroy_process_group()

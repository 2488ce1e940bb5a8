"""The test loop's device memory (issue 31, items 2 and 5), on the CPU:
the peak-memory arithmetic by hand, the accelerator paths (gallery moved in
blocks, shortlisted items staged from host memory) against the CPU paths,
and the metrics of a distributed test computed by rank 0 alone and sent to
the other ranks as numbers through a gloo group."""
import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from helpers import LOOP_MODELS, LOOP_PIPELINE, dist_init_method, feature_maps
from mmengine.evaluator import Evaluator
from mmengine.runner import Runner

import mmreid_gs.engine.runners.reid_test_loop as loop_module
from mmreid_gs.engine.runners import ReIDTestLoop
from mmreid_gs.evaluation.functional import shortlist as sl
from mmreid_gs.evaluation.functional import shortlisted_scores
from mmreid_gs.evaluation.metrics import ReIDMetric
from mmreid_gs.testing import (FakeAccelerator, accelerator_code_paths,
                               is_fake)
from mmreid_gs.utils import register_all_modules
from mmreid_gs.utils.errors import ReIDUserError

register_all_modules()
GiB, MiB = 2**30, 2**20


def test_matching_device_bytes_by_hand():
    m = loop_module.matching_device_bytes
    # MSMT17 size, TransMatcher maps 1536x24x8, exact: 1,179,648 B a map;
    # 4 GiB // that = 3,640 gallery maps a block; 256 queries a chunk
    out = m(11659, 82161, (1536, 24, 8))
    assert out['gallery_block'] == 3640 * 1179648 == 4293918720
    assert out['query_chunk'] == 256 * 1179648 == 301989888
    assert out['scores'] == 256 * 3640 * 4 == 3727360
    assert out['matcher'] == 2 * 256 * MiB
    assert out['peak'] == 4293918720 + 301989888 + 3727360 + 536870912 \
        == 5136506880  # 4.78 GiB
    # MSMT17 size, QAConv maps 64x24x8 (49,152 B), shortlist of 100:
    # proxy blocks of 64 MiB // (4 * 82161) = 204 query rows; the whole
    # gallery (4.04 GB < 4 GiB) in one block; 512 MiB // 49,152 = 10,922
    # queries a block
    out = m(11659, 82161, (64, 24, 8), shortlist=100)
    assert out['proxy'] == 82161 * 64 * 4 == 21033216
    assert out['gallery_block'] == 82161 * 49152 == 4038377472
    assert out['query_block'] == 10922 * 49152 == 536838144
    assert out['proxy_rows'] == 204 * 49152
    assert out['proxy_block'] == 204 * 82161 * 4 == 67043376
    assert out['topk'] == 204 * 100 * 12
    assert out['lists'] == 11659 * 100 * 9 and out['exact'] == 11659 * 400
    assert out['block_lists'] == 10922 * 100 * 32
    assert out['gathered'] == 64 * MiB and out['matcher'] == 512 * MiB
    assert out['phase_proxy'] == 4038377472 + 21033216
    assert out['phase_match'] == (21033216 + 10493100 + 4663600 +
                                  4038377472 + 536838144 + 34950400 +
                                  67108864 + 536870912) == out['peak']
    # TransMatcher: one list of 100 maps (118 MB) is more than 64 MiB
    assert m(100, 1000, (1536, 24, 8), shortlist=100)['gathered'] == \
        100 * 1179648
    # two ranks gather 256 MiB chunks: this rank's and both gathered
    assert m(10, 20, (4, 2, 2), world_size=2)['gather'] == 3 * 256 * MiB


def test_host_buffer_and_gallery_blocks():
    buf = loop_module.host_buffer((3, 2), torch.float32,
                                  torch.device('cuda'))
    assert buf.device.type == 'cpu' and not buf.any()
    assert loop_module.gallery_block_rows(torch.zeros(10, 4, 2, 2),
                                          block_bytes=3 * 64) == 3
    assert loop_module.gallery_block_rows(torch.zeros(10, 4, 2, 2),
                                          block_bytes=1) == 1


@pytest.fixture(scope='module')
def loop(tmp_path_factory):
    torch.manual_seed(0)
    runner = Runner(
        model=LOOP_MODELS['qaconv'],
        work_dir=str(tmp_path_factory.mktemp('loop_devices')),
        test_dataloader=dict(batch_size=4, num_workers=0),
        test_cfg=dict(type='ReIDTestLoop', test_sets=dict(unused=dict(
            query=dict(type='SyntheticReID'),
            gallery=dict(type='SyntheticReID'))), pipeline=LOOP_PIPELINE,
                      progress=False),
        test_evaluator=dict(type='ReIDMetric'),
        default_hooks=dict(timer=None, logger=None, checkpoint=None),
        default_scope='mmreid_gs')
    runner.model.eval()
    return runner.test_loop


def test_accelerator_paths_give_the_cpu_scores(loop, monkeypatch):
    """Exact and shortlisted scores with the accelerator paths (gallery
    blocks of 3 maps; shortlists by gallery blocks of 3 maps) equal the CPU
    paths'."""
    query, gallery = feature_maps(7, 16, 2, 1, seed=1), feature_maps(
        11, 16, 2, 1, seed=2)
    exact = loop.score(query, gallery, 'q x g')
    scores, idx = loop.score_shortlisted(query, gallery, 4, 'q x g')
    monkeypatch.setattr(loop_module, 'DEVICE_GALLERY_BYTES', 3 * 16 * 4)
    monkeypatch.setattr(sl, 'DEVICE_GALLERY_BYTES', 3 * 16 * 4)
    with accelerator_code_paths(), torch.inference_mode():
        exact_acc = loop.score(query, gallery, 'q x g')
        scores_acc, idx_acc = loop.score_shortlisted(query, gallery, 4,
                                                     'q x g')
    assert exact.shape == (7, 11)
    assert torch.allclose(exact_acc, exact, rtol=0, atol=1e-5)
    assert torch.equal(idx_acc, idx)
    assert torch.allclose(scores_acc, scores, rtol=0, atol=1e-5)
    # the shortlisted entries are the exact scores
    assert torch.allclose(scores.gather(1, idx), exact.gather(1, idx),
                          atol=1e-5)


def _max_match(q, g):
    """Parameter-free QAConv-like matcher (any device)."""
    s = torch.einsum('acl,bcm->ablm', q.flatten(2), g.flatten(2))
    return s.amax(3).mean(2) + s.amax(2).mean(2)


def _max_pairs(q, g):
    """Its pair form: ``q`` [n, ...] against its own list ``g`` [n, m, ...].
    """
    s = torch.einsum('acl,abcm->ablm', q.flatten(2), g.flatten(3))
    return s.amax(3).mean(2) + s.amax(2).mean(2)


@pytest.mark.parametrize('pairs,refine', [(None, None), (_max_pairs, None),
                                          (_max_pairs, 12)])
@pytest.mark.parametrize('queries_on', ['gpu', 'host'])
def test_shortlist_with_the_features_in_host_memory(pairs, refine,
                                                     queries_on,
                                                     monkeypatch):
    """Scored on a (fake) GPU, the gallery in host memory (and the queries
    too, or on the GPU): the gallery moves in blocks of 6 maps, the queries
    in blocks of 4, and the scores equal those of an all-CPU run (the
    cascade's too)."""
    query, gallery = feature_maps(9, 8, 2, 2, seed=3), feature_maps(
        20, 8, 2, 2, seed=4)
    ref, ref_idx = shortlisted_scores(query, gallery, 5, _max_match, pairs,
                                      refine=refine)
    monkeypatch.setattr(sl, 'DEVICE_GALLERY_BYTES', 6 * 8 * 4 * 4)
    monkeypatch.setattr(sl, 'DEVICE_QUERY_BYTES', 4 * 8 * 4 * 4)
    out = torch.full((9, 20), float('nan'))
    with FakeAccelerator():
        q = query.to('cuda') if queries_on == 'gpu' else query
        scores, idx = shortlisted_scores(q, gallery, 5, _max_match, pairs,
                                         out=out, device='cuda',
                                         refine=refine)
        assert scores is out and not is_fake(idx)
        alone, _ = shortlisted_scores(q, gallery, 5, _max_match, pairs,
                                      device='cuda', refine=refine)
        assert is_fake(alone)
    assert torch.equal(idx, ref_idx)
    assert torch.allclose(out, ref, rtol=0, atol=1e-6)
    assert torch.allclose(alone, ref, rtol=0, atol=1e-6)


# ------------------------------------------------------------ distributed
WORLD_SIZE = 2


def _sample(name='set'):
    rng = np.random.default_rng(0)
    return dict(name=name, scores=rng.standard_normal((4, 6)).astype('f4'),
                scores_qq=rng.standard_normal((4, 4)).astype('f4'),
                scores_gg=rng.standard_normal((6, 6)).astype('f4'),
                query_pids=np.array([0, 1, 2, 0]),
                gallery_pids=np.array([0, 1, 2, 0, 1, 2]),
                query_camids=np.zeros(4, int),
                gallery_camids=np.ones(6, int))


def _evaluator():
    return Evaluator([ReIDMetric(rerank=dict(k1=2, k2=1))])


def _bare_loop():
    loop = ReIDTestLoop.__new__(ReIDTestLoop)
    loop.evaluator = _evaluator()
    return loop


def _worker(rank, init_method, out):
    import torch.distributed as dist

    from mmreid_gs.cli import shutdown_dist
    from mmreid_gs.utils.dist import all_gather_rows
    dist.init_process_group('gloo', init_method=init_method, rank=rank,
                            world_size=WORLD_SIZE)
    groups = []
    real = dist.broadcast_object_list

    def spy(objs, src=0, group=None, device=None):
        groups.append(group)
        return real(objs, src=src, group=group, device=device)

    dist.broadcast_object_list = spy
    try:
        # chunked gather of two tensors with uneven rows (3 and 1)
        n = 3 if rank == 0 else 1
        feats = torch.arange(n * 4, dtype=torch.float32).reshape(n, 2, 2) \
            + 100 * rank
        labels = torch.arange(n) + 10 * rank
        f, lab = all_gather_rows(feats, labels, chunk_bytes=16)
        out[f'gather{rank}'] = (f.tolist(), lab.tolist())
        loop = _bare_loop()
        metrics, arrays = loop._evaluate(_sample())
        out[f'metrics{rank}'] = (metrics, sorted(arrays))
        bad = _sample() if rank else dict(_sample(), scores=None)
        try:
            loop._evaluate(bad)
        except (KeyError, ReIDUserError) as err:
            out[f'error{rank}'] = f'{type(err).__name__}: {err}'
        out[f'groups{rank}'] = [
            g is not None and g != dist.group.WORLD for g in groups]
    finally:
        dist.broadcast_object_list = real
        shutdown_dist()


def test_distributed_metrics_from_rank0(tmp_path):
    with mp.Manager() as manager:
        out = manager.dict()
        mp.spawn(_worker, args=(dist_init_method(tmp_path), out),
                 nprocs=WORLD_SIZE)
        out = dict(out)
    feats = torch.arange(12, dtype=torch.float32).reshape(3, 2, 2).tolist()
    feats.append((torch.arange(4.).reshape(2, 2) + 100).tolist())
    for rank in range(WORLD_SIZE):
        assert out[f'gather{rank}'] == (feats, [0, 1, 2, 10])
    single, single_arrays = _bare_loop()._evaluate(_sample())
    assert 'set/mAP' in single and 'set/mAP_rerank' in single
    m0, arrays0 = out['metrics0']
    m1, arrays1 = out['metrics1']
    assert m0 == m1 == single
    # the [q, g] arrays stay on rank 0
    assert arrays0 == sorted(single_arrays) == ['distmat_rerank']
    assert arrays1 == []
    # rank 0's error is raised on both ranks
    assert out['error0'].startswith('KeyError')
    assert out['error1'].startswith('ReIDUserError: rank 0 failed')
    assert 'lacks' in out['error1']
    # every object broadcast went through the separate (gloo) group
    assert out['groups0'] and all(out['groups0'] + out['groups1'])

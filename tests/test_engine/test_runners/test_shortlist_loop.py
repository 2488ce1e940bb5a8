"""ReIDTestLoop with ``shortlist=N``: a real Runner (nothing trained) on a
tiny generated benchmark (5 queries x 15 gallery images), and the loop's
shortlisted scoring split over 2 CPU processes."""
import logging
import types

import numpy as np
import pytest
import torch
import torch.distributed as torch_dist
import torch.multiprocessing as mp
from helpers import (LOOP_MODELS, LOOP_PIPELINE, dist_init_method,
                     experiment_name, feature_maps, loop_test_sets)
from mmengine.runner import Runner

from mmreid_gs.engine.runners import ReIDTestLoop, ReIDValLoop
from mmreid_gs.evaluation.functional import proxy_features, shortlist_recall
from mmreid_gs.models.heads import QAConvHead
from mmreid_gs.utils import register_all_modules
from mmreid_gs.utils.errors import ConfigError

register_all_modules()

PIPELINE = LOOP_PIPELINE
MODELS = LOOP_MODELS
RERANK = dict(type='ReIDMetric', rerank=dict(k1=3, k2=2))
LOADER = dict(batch_size=4, num_workers=0)


@pytest.fixture(scope='module')
def data_root(tmp_path_factory):
    return str(tmp_path_factory.mktemp('shortlist') / 'A')


_sets = loop_test_sets


def _runner(kind, data_root, work_dir):
    torch.manual_seed(0)
    runner = Runner(
        model=MODELS[kind],
        work_dir=work_dir,
        test_dataloader=dict(LOADER),
        test_cfg=dict(type='ReIDTestLoop', test_sets=_sets(data_root),
                      pipeline=PIPELINE, progress=False),
        test_evaluator=dict(type='ReIDMetric'),
        default_hooks=dict(timer=None, logger=None, checkpoint=None),
        default_scope='mmreid_gs', experiment_name=experiment_name())
    runner.model.eval()
    return runner


@pytest.fixture(scope='module')
def runners(data_root, tmp_path_factory):
    return {
        kind: _runner(kind, data_root, str(tmp_path_factory.mktemp(kind)))
        for kind in MODELS
    }


def _loop(runner, data_root, evaluator=RERANK, **kwargs):
    return ReIDTestLoop(runner, dict(LOADER), dict(evaluator),
                        test_sets=_sets(data_root), pipeline=PIPELINE,
                        progress=False, keep_outputs=True, **kwargs)


@pytest.fixture(scope='module')
def exact(runners, data_root):
    """Exact evaluation (re-ranking on) of each model: metrics, outputs."""
    out = {}
    for kind, runner in runners.items():
        loop = _loop(runner, data_root)
        out[kind] = (loop.run(), loop.outputs['synthetic'])
    return out


class _Records(logging.Handler):

    def __init__(self):
        super().__init__(logging.INFO)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def _run_logged(loop, runner):
    records = _Records()
    runner.logger.addHandler(records)
    try:
        metrics = loop.run()
    finally:
        runner.logger.removeHandler(records)
    return metrics, records.messages


@pytest.mark.parametrize('num', [15, 1000])
def test_shortlist_of_the_gallery_size_is_the_exact_evaluation(
        runners, data_root, exact, num):
    """N >= g: the same metrics to the last digit (re-ranking included) and
    the same score matrices, bit for bit."""
    runner = runners['qaconv']
    loop = _loop(runner, data_root, shortlist=num)
    metrics, messages = _run_logged(loop, runner)
    ref_metrics, ref = exact['qaconv']
    assert metrics == ref_metrics
    assert any('every pair is scored exactly' in m for m in messages)
    out = loop.outputs['synthetic']
    for key in ('scores', 'scores_qq', 'scores_gg', 'distmat_rerank'):
        assert np.array_equal(np.asarray(out[key]), np.asarray(ref[key])), key
    assert 'shortlist' not in out


def test_shortlist_below_the_gallery_size(runners, data_root, exact):
    """N < g: every row's shortlisted entries are the exact scores and come
    first, the rest follow in proxy order; re-ranking runs on the
    shortlisted q x g, q x q and g x g matrices."""
    runner = runners['qaconv']
    loop = _loop(runner, data_root, shortlist=4)
    metrics = loop.run()
    assert set(metrics) == set(exact['qaconv'][0])
    out, ref = loop.outputs['synthetic'], exact['qaconv'][1]
    scores, shortlist = out['scores'], out['shortlist']
    assert scores.shape == (5, 15) and shortlist.shape == (5, 4)
    item = loop.test_sets['synthetic']
    _, q_feats = loop.extract(item['query'], 'q')
    _, g_feats = loop.extract(item['gallery'], 'g')
    proxy = proxy_features(q_feats) @ proxy_features(g_feats).t()
    for i in range(5):
        idx = shortlist[i]
        torch.testing.assert_close(scores[i, idx], ref['scores'][i, idx],
                                   rtol=1e-5, atol=1e-5)
        rest = torch.ones(15, dtype=torch.bool)
        rest[idx] = False
        assert scores[i, idx].min() > scores[i, rest].max()
        order = torch.argsort(proxy[i, rest], descending=True)
        assert (scores[i, rest][order].diff() <= 0).all()
        assert proxy[i, idx].min() >= proxy[i, rest].max()
    # the self-score blocks follow the same rule (4 < 5 queries, < 15)
    for key, feats in (('scores_qq', q_feats), ('scores_gg', g_feats)):
        short, _ = loop.score_shortlisted(feats, feats, 4, key)
        torch.testing.assert_close(out[key], short, rtol=0, atol=0)
        assert not torch.equal(out[key], ref[key])
    assert np.isfinite(out['distmat_rerank']).all()


def test_global_vectors_are_evaluated_exactly(runners, data_root, exact):
    runner = runners['global_embedding']
    loop = _loop(runner, data_root, shortlist=4)
    metrics, messages = _run_logged(loop, runner)
    assert metrics == exact['global_embedding'][0]
    assert any('global vectors' in m and 'evaluated exactly' in m
               for m in messages)


def test_recall_is_logged_only_when_asked(runners, data_root, exact):
    runner = runners['qaconv']
    _, messages = _run_logged(_loop(runner, data_root, shortlist=4), runner)
    assert not any('recall' in m for m in messages)
    loop = _loop(runner, data_root, evaluator=dict(type='ReIDMetric'),
                 shortlist=4, shortlist_recall=True)
    _, messages = _run_logged(loop, runner)
    out = loop.outputs['synthetic']
    ref = exact['qaconv'][1]['scores']
    r1 = shortlist_recall(ref, out['shortlist'], 1)
    r10 = shortlist_recall(ref, out['shortlist'], 10)
    line, = [m for m in messages if 'recall' in m]
    assert f'top-1 {r1:.4f}' in line and f'top-10 {r10:.4f}' in line


def test_bad_shortlists_are_config_errors(runners, data_root):
    runner = runners['qaconv']
    for bad in (0, -2, 1.5, 'all', True):
        with pytest.raises(ConfigError) as err:
            _loop(runner, data_root, shortlist=bad)
        assert 'test_cfg.shortlist' in str(err.value)
        assert repr(bad) in str(err.value)
    with pytest.raises(ConfigError, match='val_cfg.shortlist'):
        ReIDValLoop(runner, dict(LOADER), dict(type='ReIDMetric'),
                    test_sets=_sets(data_root), pipeline=PIPELINE,
                    shortlist=0)
    with pytest.raises(ConfigError, match='test_cfg.shortlist_recall'):
        _loop(runner, data_root, shortlist=3, shortlist_recall=[0])


def test_shortlisted_scoring_under_inference_mode(runners, data_root):
    runner = runners['qaconv']
    loop = _loop(runner, data_root, shortlist=4)
    q, g = feature_maps(7, 16, 2, 1, seed=3), feature_maps(20, 16, 2, 1)
    ref = loop.score_shortlisted(q, g, 4, 'q x g')
    with torch.inference_mode():
        out = loop.score_shortlisted(q, g, 4, 'q x g')
    assert torch.equal(out[0], ref[0]) and torch.equal(out[1], ref[1])


# ----------------------------------------------------------- distributed
WORLD_SIZE = 2


class _PairModel(torch.nn.Module):
    """The matcher contract around a QAConv head (features are maps)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.head = QAConvHead(16, 4, 2).eval()
        with torch.no_grad():
            self.head.bn.running_mean.fill_(0.5)
            self.head.bn.running_var.fill_(0.04)

    def extract_feat(self, x):
        return x

    def match(self, q, g):
        return self.head.match(q, g)

    @property
    def match_pairs(self):
        return self.head.match_pairs


def _bare_loop(use_pairs=True):
    """A loop without a Runner: what ``score_shortlisted`` uses."""
    model = _PairModel()
    if not use_pairs:
        model.head.match_pairs = None
    loop = ReIDTestLoop.__new__(ReIDTestLoop)
    loop._runner = types.SimpleNamespace(model=model)
    loop.fp16, loop.progress = False, False
    loop.shortlist_refine = None
    return loop


def _inputs():
    # 9 queries: the ranks take 5 and 4 rows
    return feature_maps(9, 16, 4, 2, seed=5), feature_maps(30, 16, 4, 2)


def _worker(rank, init_method, out):
    from mmreid_gs.cli import shutdown_dist
    torch.set_num_threads(1)
    torch_dist.init_process_group(
        'gloo', init_method=init_method, rank=rank, world_size=WORLD_SIZE)
    try:
        q, g = _inputs()
        res = {}
        for pairs in (True, False):
            with torch.inference_mode():
                s, idx = _bare_loop(pairs).score_shortlisted(q, g, 6, 'x')
            res[pairs] = (s.numpy().copy(), idx.numpy().copy())
        out[rank] = res
    finally:
        shutdown_dist()


@pytest.mark.skipif(
    not (torch_dist.is_available() and torch_dist.is_gloo_available()),
    reason='torch.distributed with the gloo backend is not available')
def test_distributed_shortlist_equals_single_process(tmp_path):
    q, g = _inputs()
    single = {pairs: _bare_loop(pairs).score_shortlisted(q, g, 6, 'x')
              for pairs in (True, False)}
    with mp.Manager() as manager:
        out = manager.dict()
        mp.spawn(_worker, args=(dist_init_method(tmp_path), out),
                 nprocs=WORLD_SIZE)
        out = dict(out)
    for rank in range(WORLD_SIZE):
        for pairs, (scores, idx) in single.items():
            got_scores, got_idx = out[rank][pairs]
            np.testing.assert_array_equal(got_idx, idx.numpy())
            np.testing.assert_allclose(got_scores, scores.numpy(), rtol=0,
                                       atol=1e-6)

"""ReIDTestLoop / ReIDValLoop on their own: a real Runner (nothing trained)
on a tiny generated benchmark, the loop's steps called one by one."""
import logging

import numpy as np
import pytest
import torch
from helpers import (LOOP_MODELS, LOOP_PIPELINE, experiment_name,
                     loop_test_sets)
from mmengine.dataset import Compose, pseudo_collate
from mmengine.evaluator import Evaluator
from mmengine.logging import MMLogger
from mmengine.runner import Runner

from mmreid_gs.engine.runners import ReIDTestLoop, ReIDValLoop
from mmreid_gs.evaluation import ReIDMetric
from mmreid_gs.evaluation.functional import evaluate_rank
from mmreid_gs.registry import METRICS as METRIC_REGISTRY
from mmreid_gs.utils import register_all_modules

register_all_modules()


@METRIC_REGISTRY.register_module(force=True)
class CountingReIDMetric(ReIDMetric):
    """ReIDMetric that records the calls the Evaluator makes on it."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.calls = []

    def process(self, data_batch, data_samples):
        self.calls.append(('process', [s['name'] for s in data_samples]))
        super().process(data_batch, data_samples)

    def compute_metrics(self, results):
        self.calls.append(('compute_metrics', [r['name'] for r in results]))
        return super().compute_metrics(results)

PIPELINE = LOOP_PIPELINE
MODELS = LOOP_MODELS


@pytest.fixture(scope='module')
def data_root(tmp_path_factory):
    return str(tmp_path_factory.mktemp('loop') / 'A')


_sets = loop_test_sets


@pytest.fixture(scope='module', params=sorted(MODELS))
def runner(request, data_root, tmp_path_factory):
    torch.manual_seed(0)
    runner = Runner(
        model=MODELS[request.param],
        work_dir=str(tmp_path_factory.mktemp(request.param)),
        test_dataloader=dict(batch_size=3, num_workers=0),
        test_cfg=dict(type='ReIDTestLoop', test_sets=_sets(data_root),
                      pipeline=PIPELINE, progress=False, keep_outputs=True),
        test_evaluator=dict(type='ReIDMetric'),
        # the steps are called alone: no hooks that expect a whole epoch
        default_hooks=dict(timer=None, logger=None, checkpoint=None),
        default_scope='mmreid_gs', experiment_name=experiment_name())
    runner.model.eval()
    return runner


def _reference_feats(model, dataset):
    """Every image of ``dataset`` through the pipeline and the model in one
    batch, in dataset order."""
    pipeline = Compose(PIPELINE)
    batch = pseudo_collate([
        pipeline(dict(dataset.get_data_info(i))) for i in range(len(dataset))
    ])
    with torch.no_grad():
        data = model.data_preprocessor(batch, False)
        return model.extract_feat(data['inputs'])


@pytest.fixture(scope='module')
def extracted(runner):
    loop = runner.test_loop
    item = loop.test_sets['synthetic']
    return (loop.extract(item['query'], 'synthetic/query'),
            loop.extract(item['gallery'], 'synthetic/gallery'))


def test_extract_gives_dataset_order(runner, extracted):
    assert isinstance(runner.test_loop, ReIDTestLoop)
    dataset, feats = extracted[0]
    assert len(dataset) > 3  # more than one batch, the last one partial
    assert feats.dtype == torch.float32 and feats.device.type == 'cpu'
    ref = _reference_feats(runner.model, dataset)
    assert feats.shape == ref.shape
    torch.testing.assert_close(feats, ref, rtol=1e-4, atol=1e-5)


def test_score_is_model_match(runner, extracted):
    (_, q), (_, g) = extracted
    with torch.no_grad():
        ref = runner.model.match(q, g).float()
    for mode in (torch.no_grad, torch.inference_mode):
        with mode():
            scores = runner.test_loop.score(q, g, 'q x g')
        assert scores.shape == (len(q), len(g))
        torch.testing.assert_close(scores, ref, rtol=1e-4, atol=1e-5)


def test_run_metrics_equal_evaluate_rank_of_the_scores(runner):
    loop = runner.test_loop
    metrics = loop.run()
    out = loop.outputs['synthetic']
    # the dict handed to the metric: scores, ids, cameras, paths, times
    q_ds = runner.build_dataloader(
        dict(batch_size=1, dataset=loop.test_sets['synthetic']['query'],
             sampler=dict(type='DefaultSampler', shuffle=False))).dataset
    np.testing.assert_array_equal(out['query_pids'], q_ds.get_gt_labels())
    np.testing.assert_array_equal(out['query_camids'], q_ds.get_cam_ids())
    np.testing.assert_array_equal(out['query_times'], q_ds.get_timestamps())
    assert out['query_paths'] == [
        q_ds.get_data_info(i)['img_path'] for i in range(len(q_ds))
    ]
    scores = np.asarray(out['scores'])
    assert scores.shape == (len(out['query_pids']), len(out['gallery_pids']))
    ref = evaluate_rank(-scores, out['query_pids'], out['gallery_pids'],
                        out['query_camids'], out['gallery_camids'])
    assert metrics['synthetic/Rank-1'] == pytest.approx(ref['cmc'][0])
    assert metrics['synthetic/mAP'] == pytest.approx(ref['mAP'])
    assert metrics['synthetic/mINP'] == pytest.approx(ref['mINP'])


class _Records(logging.Handler):

    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def test_loop_reaches_the_metric_through_the_evaluator(runner, data_root,
                                                       monkeypatch):
    """process / evaluate(1) of the Evaluator once per named set, in set
    order; the numbers are returned, the metric's arrays kept in outputs."""
    sets = _sets(data_root)
    sets['second'] = sets['synthetic']
    records = _Records()
    logger = MMLogger.get_current_instance()
    logger.addHandler(records)
    try:
        loop = ReIDTestLoop(
            runner, dict(batch_size=4, num_workers=0),
            dict(type='CountingReIDMetric', rerank=dict(k1=3, k2=2)),
            test_sets=sets, pipeline=PIPELINE, progress=False,
            keep_outputs=True)
        assert isinstance(loop.evaluator, Evaluator)
        metric, = loop.evaluator.metrics
        sizes = []
        evaluate = loop.evaluator.evaluate

        def counted(size):
            sizes.append(size)
            return evaluate(size)

        monkeypatch.setattr(loop.evaluator, 'evaluate', counted)
        metrics = loop.run()
    finally:
        logger.removeHandler(records)
    # MMEngine warns neither about the prefix nor about empty results
    assert records.messages == []
    assert sizes == [1, 1]
    assert metric.calls == [('process', ['synthetic']),
                            ('compute_metrics', ['synthetic']),
                            ('process', ['second']),
                            ('compute_metrics', ['second'])]
    assert metric.results == []  # cleared by evaluate
    # the loop returns the numbers only, named as the metric names them
    assert set(metrics) == {
        f'{name}/{key}{suffix}'
        for name in ('synthetic', 'second')
        for key in ('Rank-1', 'Rank-5', 'Rank-10', 'mAP', 'mINP')
        for suffix in ('', '_rerank')
    }
    assert all(isinstance(v, float) for v in metrics.values())
    # ... and keeps its own scores plus the metric's arrays per set
    for name in ('synthetic', 'second'):
        out = loop.outputs[name]
        scores = np.asarray(out['scores'])
        np.testing.assert_array_equal(out['distmat'], -scores)
        assert out['distmat_rerank'].shape == scores.shape
        assert out['scores_qq'].shape == (len(scores), len(scores))
        ref = evaluate_rank(out['distmat_rerank'], out['query_pids'],
                            out['gallery_pids'], out['query_camids'],
                            out['gallery_camids'])
        assert metrics[f'{name}/mAP_rerank'] == ref['mAP']


def test_val_loop_calls_the_val_hooks(runner):
    calls = []

    class Recorder:
        priority = 'NORMAL'

        def __getattr__(self, name):
            return lambda *args, **kwargs: calls.append(name)

    loop = ReIDValLoop(runner, dict(batch_size=4, num_workers=0),
                       dict(type='ReIDMetric'),
                       test_sets=loop_sets(runner), pipeline=PIPELINE)
    assert loop.progress is False
    runner._hooks, hooks = [Recorder()], runner._hooks
    try:
        metrics = loop.run()
    finally:
        runner._hooks = hooks
    assert set(metrics) >= {'synthetic/Rank-1', 'synthetic/mAP'}
    assert calls[:2] == ['before_val', 'before_val_epoch']
    assert calls[-2:] == ['after_val_epoch', 'after_val']
    assert 'before_val_iter' in calls and 'before_test_iter' not in calls


def loop_sets(runner):
    return [dict(name=name, **item)
            for name, item in runner.test_loop.test_sets.items()]


def test_bad_test_sets_are_clear_errors(runner, data_root):
    sets = _sets(data_root)
    loader = dict(batch_size=4)
    evaluator = dict(type='ReIDMetric')

    def build(test_sets, pipeline=PIPELINE, dataloader=loader):
        return ReIDTestLoop(runner, dataloader, evaluator,
                            test_sets=test_sets, pipeline=pipeline)

    with pytest.raises(ValueError, match='test_sets is empty'):
        build({})
    with pytest.raises(KeyError, match='test_sets.synthetic has no '
                       '`gallery`'):
        build(dict(synthetic=dict(query=sets['synthetic']['query'])))
    with pytest.raises(KeyError, match=r'test_sets\[0\] needs a `name`'):
        build([sets['synthetic']])
    with pytest.raises(KeyError, match='no pipeline'):
        build(sets, pipeline=None)
    with pytest.raises(TypeError, match='must be a dict'):
        build(sets, dataloader=object())
    # the list form names the sets; the pipeline fills splits without one
    loop = build([dict(name='x', **sets['synthetic'])])
    assert list(loop.test_sets) == ['x']
    assert loop.test_sets['x']['gallery']['pipeline'] == PIPELINE
    # the caller's configs are not modified
    assert 'pipeline' not in sets['synthetic']['query']

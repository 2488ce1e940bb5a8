import os.path as osp

import cv2
import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from helpers import dist_init_method
from mmengine.logging import MMLogger
from mmengine.model import BaseModel, ImgDataPreprocessor
from torch.utils.data import DataLoader

from mmreid_gs.datasets.samplers import GraphSampler
import mmreid_gs.engine.graph.rerank as graph_rerank
from mmreid_gs.engine.graph import (GRAPH_FIELDS, class_graph_from_scores,
                                    graph_dump_path, load_graph_dump)
from mmreid_gs.engine.hooks.graph_sampler_hook import GraphSamplerHook

NUM_CLASSES = 10
COUNTS = [2, 3, 1, 4, 2, 3, 2, 1, 3, 2]
BATCH, K = 8, 2  # P = 4 classes per batch, 3 neighbours


class ImageDataset:
    """Tiny in-memory train split: one solid colour per class (PNG)."""

    def __init__(self, root, colours, counts=COUNTS):
        self.data_list = []
        for c, n in enumerate(counts):
            for j in range(n):
                path = osp.join(root, f'{c:02d}_{j}.png')
                if not osp.exists(path):
                    img = np.empty((16, 8, 3), np.uint8)
                    img[:] = colours[c]
                    cv2.imwrite(path, img)
                self.data_list.append(dict(img_path=path, gt_label=c,
                                           cam_id=j % 2))

    def __len__(self):
        return len(self.data_list)

    def get_gt_labels(self):
        return np.array([d['gt_label'] for d in self.data_list])

    def get_data_info(self, i):
        return dict(self.data_list[i], sample_idx=i)


def pack(results):
    """Stand-in for PackReIDInputs: HWC uint8 -> CHW tensor."""
    img = np.ascontiguousarray(results['img'].transpose(2, 0, 1))
    return dict(inputs=torch.from_numpy(img), data_samples=None)


PIPELINE = [dict(type='LoadImageFromFile'), pack]


class Backbone(nn.Module):
    """Keeps its BN in eval mode in train(), like norm_eval=True."""

    def __init__(self):
        super().__init__()
        self.bn = nn.BatchNorm2d(3)

    def train(self, mode=True):
        super().train(mode)
        self.bn.eval()
        return self


class Head(nn.Module):

    def __init__(self):
        super().__init__()
        self.calls = []  # (autocast on, query dtype) of every call

    def match(self, q, g):
        assert not self.training and not torch.is_grad_enabled()
        self.calls.append((torch.is_autocast_enabled('cpu'), q.dtype))
        return -torch.cdist(q.flatten(1), g.flatten(1))**2


class TinyReID(BaseModel):
    """Features: the image average-pooled to 2x1 (so the colour)."""

    def __init__(self):
        super().__init__(data_preprocessor=ImgDataPreprocessor(
            mean=[0, 0, 0], std=[255, 255, 255]))
        self.backbone = Backbone()
        self.head = Head()
        self.modes_seen = []
        self.autocast_seen = []

    def extract_feat(self, inputs):
        self.modes_seen.append(
            [m.training for m in self.modules()])
        self.autocast_seen.append(torch.is_autocast_enabled('cpu'))
        assert not torch.is_grad_enabled()
        return F.adaptive_avg_pool2d(inputs, (2, 1))

    def match(self, q, g):
        return self.head.match(q, g)

    def forward(self, inputs, data_samples=None, mode='tensor'):
        return self.extract_feat(inputs)


class FakeRunner:

    def __init__(self, work_dir, dataset, sampler=None, epoch=0,
                 batch_size=BATCH):
        self.work_dir = str(work_dir)
        self.model = TinyReID()
        self.model.train()
        if sampler is None:
            sampler = GraphSampler(dataset, BATCH, K, seed=7)
        self.train_dataloader = DataLoader(dataset, batch_size=batch_size,
                                           sampler=sampler)
        self.epoch = epoch
        self.logger = MMLogger.get_instance('test_graph_sampler_hook')


def make_colours():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(NUM_CLASSES, 3))


def expected_graph(colours, num_classes=NUM_CLASSES):
    col = torch.tensor(colours[:num_classes], dtype=torch.float64) / 255
    return class_graph_from_scores(-torch.cdist(col, col), 3)


@pytest.fixture(scope='module')
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp('imgs')
    colours = make_colours()
    return ImageDataset(str(root), colours), colours


def test_pk_epochs_then_graph(data, tmp_path):
    dataset, colours = data
    runner = FakeRunner(tmp_path, dataset)
    sampler = runner.train_dataloader.sampler
    hook = GraphSamplerHook(PIPELINE, pk_epochs=1, batch_size=3)
    hook.before_train(runner)
    hook.before_train_epoch(runner)
    assert sampler.graph is None  # PK warm-up epoch
    runner.epoch = 1
    hook.before_train_epoch(runner)
    assert np.array_equal(sampler.graph, expected_graph(colours).numpy())
    info = hook.last_info
    assert info['epoch'] == 1 and info['total_time'] >= info['scoring_time']
    # every batch: a centre and its graph neighbours
    sampler.set_epoch(1)
    for batch in np.array(list(sampler)).reshape(-1, BATCH):
        cls = sampler.labels[batch][::K]
        assert np.array_equal(cls[1:], sampler.graph[cls[0]])


@pytest.mark.parametrize('fp16', [False, True])
def test_fp16_extracts_and_scores_under_autocast(data, tmp_path, fp16):
    dataset, colours = data
    runner = FakeRunner(tmp_path, dataset, epoch=1)
    GraphSamplerHook(PIPELINE, batch_size=4, fp16=fp16).before_train_epoch(
        runner)
    model = runner.model
    assert model.autocast_seen and set(model.autocast_seen) == {fp16}
    # float32 features between extraction and scoring, autocast in scoring
    assert model.head.calls and set(model.head.calls) == {(fp16,
                                                           torch.float32)}
    sampler = runner.train_dataloader.sampler
    assert np.array_equal(sampler.graph, expected_graph(colours).numpy())


def test_train_flags_restored_and_eval_inside(data, tmp_path):
    dataset, _ = data
    runner = FakeRunner(tmp_path, dataset, epoch=1)
    model = runner.model
    before = [m.training for m in model.modules()]
    assert before[0] and not model.backbone.bn.training
    GraphSamplerHook(PIPELINE, batch_size=4).before_train_epoch(runner)
    assert [m.training for m in model.modules()] == before
    assert model.modes_seen and all(not any(f) for f in model.modes_seen)
    model.eval()
    GraphSamplerHook(PIPELINE).before_train_epoch(runner)
    assert not any(m.training for m in model.modules())


def test_image_choice_and_save_graph(data, tmp_path):
    dataset, _ = data
    runner = FakeRunner(tmp_path, dataset, epoch=2)
    sampler = runner.train_dataloader.sampler
    hook = GraphSamplerHook(PIPELINE, save_graph=True)
    a = hook.choose_images(sampler, 2)
    assert np.array_equal(a, hook.choose_images(sampler, 2))
    assert np.array_equal(sampler.labels[a], np.arange(NUM_CLASSES))
    choices = {tuple(hook.choose_images(sampler, e)) for e in range(8)}
    assert len(choices) > 1  # a new random image per class each epoch
    hook.before_train_epoch(runner)
    saved = load_graph_dump(graph_dump_path(str(tmp_path), 3),
                            fields=GRAPH_FIELDS)
    assert np.array_equal(saved['neighbors'], sampler.graph)
    assert np.array_equal(saved['class_ids'], np.arange(NUM_CLASSES))
    assert np.array_equal(saved['sample_indices'], a)
    assert list(saved['img_paths']) == [
        dataset.data_list[i]['img_path'] for i in a
    ]


def test_errors(data, tmp_path):
    dataset, _ = data
    runner = FakeRunner(tmp_path, dataset, epoch=1)
    runner.train_dataloader = DataLoader(dataset, batch_size=BATCH)
    hook = GraphSamplerHook(PIPELINE)
    with pytest.raises(TypeError, match='train_dataloader.sampler.type'):
        hook.before_train_epoch(runner)
    runner = FakeRunner(tmp_path, dataset, batch_size=4)
    with pytest.raises(ValueError, match=r'train_dataloader.batch_size \(4\)'):
        hook.before_train(runner)
    with pytest.raises(ValueError, match='pipeline'):
        GraphSamplerHook([])


def test_candidates_and_rerank_paths(data, tmp_path, monkeypatch):
    dataset, colours = data
    expected = expected_graph(colours).numpy()
    runner = FakeRunner(tmp_path, dataset, epoch=1)
    sampler = runner.train_dataloader.sampler
    calls = []

    def proxy(q, g):
        calls.append(len(q))
        return runner.model.head.match(q, g)

    # 5 candidates of 10 classes would fall back to the exact graph (more
    # than MAX_CANDIDATE_FRACTION of C); allow them to test the path
    monkeypatch.setattr(
        'mmreid_gs.engine.graph.candidates.MAX_CANDIDATE_FRACTION', 1.)
    GraphSamplerHook(PIPELINE, num_candidates=5,
                     candidate_fn=proxy).before_train_epoch(runner)
    assert calls and np.array_equal(sampler.graph, expected)

    def fake_re_ranking(distmat_all, num_query, k1=20, k2=6,
                        lambda_value=0.3):
        assert distmat_all.shape == (2 * NUM_CLASSES, 2 * NUM_CLASSES)
        assert num_query == NUM_CLASSES and (k1, k2) == (5, 2)
        assert distmat_all.min() >= 0 and distmat_all.max() <= 1
        return distmat_all[:num_query, num_query:]

    monkeypatch.setattr(graph_rerank, 're_ranking', fake_re_ranking)
    sampler.set_graph(None)
    GraphSamplerHook(PIPELINE, rerank=True, k1=5, k2=2).before_train_epoch(
        runner)
    assert np.array_equal(sampler.graph, expected)


def test_rerank_with_real_re_ranking(data, tmp_path):
    dataset, _ = data
    runner = FakeRunner(tmp_path, dataset, epoch=1)
    GraphSamplerHook(PIPELINE, rerank=True, k1=4, k2=2).before_train_epoch(
        runner)
    graph = runner.train_dataloader.sampler.graph
    assert graph.shape == (NUM_CLASSES, 3)
    assert not (graph == np.arange(NUM_CLASSES)[:, None]).any()


def test_checkpoint_resume_continues_identically(data, tmp_path):
    dataset, _ = data
    # uninterrupted run: epochs 0..2
    runner = FakeRunner(tmp_path, dataset)
    sampler = runner.train_dataloader.sampler
    hook = GraphSamplerHook(PIPELINE)
    lists, checkpoint = [], {}
    for epoch in range(3):
        runner.epoch = epoch
        sampler.set_epoch(epoch)  # DistSamplerSeedHook runs first
        hook.before_train_epoch(runner)
        lists.append(list(sampler))
        if epoch == 1:
            hook.before_save_checkpoint(runner, checkpoint)
            checkpoint['meta'] = dict(epoch=2)
    state = checkpoint['graph_sampler']
    assert state['epoch'] == 1 and state['graph'].shape == (NUM_CLASSES, 3)

    # resumed run: a fresh sampler (another seed) loads the state
    resumed = FakeRunner(tmp_path, dataset,
                         sampler=GraphSampler(dataset, BATCH, K, seed=1),
                         epoch=2)
    hook2 = GraphSamplerHook(PIPELINE)
    hook2.after_load_checkpoint(resumed, checkpoint)
    resumed.train_dataloader.sampler.set_epoch(2)
    hook2.before_train_epoch(resumed)
    assert list(resumed.train_dataloader.sampler) == lists[2]

    # load_from (weights only, epoch 0): the state is not applied
    fresh = FakeRunner(tmp_path, dataset,
                       sampler=GraphSampler(dataset, BATCH, K, seed=1))
    hook3 = GraphSamplerHook(PIPELINE)
    hook3.after_load_checkpoint(fresh, checkpoint)
    hook3.before_train_epoch(fresh)
    assert fresh.train_dataloader.sampler.seed == 1


def _ddp_worker(rank, world_size, init_method, root, out_dir, num_classes):
    import torch.distributed as dist

    from mmreid_gs.cli import shutdown_dist
    dist.init_process_group('gloo', init_method=init_method,
                            rank=rank, world_size=world_size)
    try:
        torch.set_num_threads(1)
        dataset = ImageDataset(root, make_colours(), COUNTS[:num_classes])
        runner = FakeRunner(out_dir, dataset, epoch=1)
        sampler = runner.train_dataloader.sampler
        assert sampler.world_size == world_size and sampler.rank == rank
        graph_rerank.re_ranking = lambda d, nq, **kw: d[:nq, nq:]
        for rerank in (False, True):
            sampler.set_graph(None)
            hook = GraphSamplerHook(PIPELINE, batch_size=2, rerank=rerank)
            hook.before_train_epoch(runner)
            np.save(osp.join(out_dir, f'graph_{rerank}_{rank}.npy'),
                    sampler.graph)
    finally:
        shutdown_dist()  # freed and joined before the child exits


def test_distributed_ranks_build_the_same_graph(data, tmp_path):
    """Two gloo processes; 9 classes so the shares (5, 4) need padding."""
    import torch.multiprocessing as mp
    dataset, colours = data
    root = osp.dirname(dataset.data_list[0]['img_path'])
    world_size, num_classes = 2, 9
    mp.spawn(_ddp_worker,
             args=(world_size, dist_init_method(tmp_path), root,
                   str(tmp_path), num_classes),
             nprocs=world_size)
    expected = expected_graph(colours, num_classes).numpy()
    for rerank in (False, True):
        for rank in range(world_size):
            graph = np.load(osp.join(tmp_path, f'graph_{rerank}_{rank}.npy'))
            assert np.array_equal(graph, expected), (rerank, rank)


# ---------------------------------------------- pooled multi-source data
SOURCES = np.array([0, 1, 0, 1, 1, 0, 1, 0, 1, 0])  # 5 classes each


class SourceImageDataset(ImageDataset):
    """The tiny split with a source per class, as PooledReIDDataset gives
    it (``class_source``, ``source_names``)."""

    def __init__(self, root, colours, counts=COUNTS, sources=SOURCES):
        super().__init__(root, colours, counts)
        self.class_source = np.asarray(sources[:len(counts)])
        self.source_names = ('a', 'b')


class ScalarLog:
    """Stand-in visualizer: the scalars added."""

    def __init__(self):
        self.scalars = {}

    def add_scalars(self, scalars, step=None):
        self.scalars.update(scalars)


def test_within_source_keeps_neighbours_in_their_source(data, tmp_path):
    _, colours = data
    dataset = SourceImageDataset(osp.dirname(data[0].data_list[0]['img_path']),
                                 colours)
    runner = FakeRunner(tmp_path, dataset, epoch=1)
    runner.visualizer = ScalarLog()
    sampler = runner.train_dataloader.sampler
    # by default the graph spans the sources; the log says how often a
    # neighbour comes from the other source
    hook = GraphSamplerHook(PIPELINE, batch_size=4)
    hook.before_train_epoch(runner)
    spanning = expected_graph(colours).numpy()
    assert np.array_equal(sampler.graph, spanning)
    cross = (SOURCES[spanning] != SOURCES[:, None]).mean()
    assert cross > 0
    assert hook.last_info['cross_source_share'] == pytest.approx(cross)
    assert runner.visualizer.scalars['graph/cross_source_share'] == \
        pytest.approx(cross)
    # 5 of the other source among 9 others
    assert runner.visualizer.scalars[
        'graph/cross_source_share_random'] == pytest.approx(5 / 9)

    hook = GraphSamplerHook(PIPELINE, batch_size=4, within_source=True,
                            save_graph=True)
    hook.before_train(runner)
    hook.before_train_epoch(runner)
    col = torch.tensor(colours, dtype=torch.float64) / 255
    within = class_graph_from_scores(-torch.cdist(col, col), 3,
                                     groups=SOURCES).numpy()
    assert np.array_equal(sampler.graph, within)
    assert (SOURCES[sampler.graph] == SOURCES[:, None]).all()
    assert hook.last_info['cross_source_share'] == 0
    saved = load_graph_dump(graph_dump_path(str(tmp_path), 2),
                            fields=('label_sources', ))
    assert np.array_equal(saved['label_sources'], SOURCES)
    # the re-ranked graph stays within the sources too
    sampler.set_graph(None)
    GraphSamplerHook(PIPELINE, rerank=True, k1=4, k2=2,
                     within_source=True).before_train_epoch(runner)
    assert (SOURCES[sampler.graph] == SOURCES[:, None]).all()


def test_within_source_errors(data, tmp_path):
    dataset, colours = data
    runner = FakeRunner(tmp_path, dataset, epoch=1)
    hook = GraphSamplerHook(PIPELINE, within_source=True)
    with pytest.raises(ValueError, match='within_source=True.*class_source'):
        hook.before_train(runner)
    # 3 classes in source 'b', a batch has P = 4 (a class and 3 neighbours)
    small = SourceImageDataset(
        osp.dirname(dataset.data_list[0]['img_path']), colours,
        sources=np.array([0, 0, 0, 1, 0, 1, 0, 1, 0, 0]))
    runner = FakeRunner(tmp_path, small, epoch=1)
    with pytest.raises(ValueError, match="source 'b' has 3 classes, fewer "
                       'than the 4'):
        hook.before_train_epoch(runner)


def _ddp_sources_worker(rank, world_size, init_method, root, out_dir,
                        num_classes):
    import torch.distributed as dist

    from mmreid_gs.cli import shutdown_dist
    dist.init_process_group('gloo', init_method=init_method,
                            rank=rank, world_size=world_size)
    try:
        torch.set_num_threads(1)
        dataset = SourceImageDataset(root, make_colours(),
                                     COUNTS[:num_classes])
        runner = FakeRunner(out_dir, dataset, epoch=1)
        sampler = runner.train_dataloader.sampler
        for cands in (None, 5):
            sampler.set_graph(None)
            GraphSamplerHook(PIPELINE, batch_size=2, within_source=True,
                             num_candidates=cands).before_train_epoch(runner)
            np.save(osp.join(out_dir, f'graph_{cands}_{rank}.npy'),
                    sampler.graph)
    finally:
        shutdown_dist()


def test_distributed_ranks_build_the_same_graph_within_sources(
        data, tmp_path):
    """Two gloo processes, 9 classes in 2 sources (5 + 4): every rank sets
    the single-process graph within the sources (exact, and with
    candidates: the exact fallback of tiny features)."""
    import torch.multiprocessing as mp
    dataset, colours = data
    root = osp.dirname(dataset.data_list[0]['img_path'])
    world_size, num_classes = 2, 9
    mp.spawn(_ddp_sources_worker,
             args=(world_size, dist_init_method(tmp_path), root,
                   str(tmp_path), num_classes),
             nprocs=world_size)
    col = torch.tensor(colours[:num_classes], dtype=torch.float64) / 255
    expected = class_graph_from_scores(-torch.cdist(col, col), 3,
                                       groups=SOURCES[:num_classes]).numpy()
    for cands in (None, 5):
        for rank in range(world_size):
            graph = np.load(osp.join(tmp_path, f'graph_{cands}_{rank}.npy'))
            assert np.array_equal(graph, expected), (cands, rank)


class _Scalars:

    def __init__(self):
        self.logged = []

    def add_scalars(self, values, step=None):
        self.logged.append((dict(values), step))


def test_check_recall_logs_the_two_stage_graphs_share_of_exact_once(
        data, tmp_path, monkeypatch):
    """check_recall=True: on the first two-stage build the exact graph is
    built too; graph/recall is the share of its neighbour slots that the
    two-stage graph holds (1 with the exact scores as proxy, lower with a
    proxy that proposes the farthest classes), logged once per run."""
    dataset, colours = data
    expected = expected_graph(colours).numpy()
    monkeypatch.setattr(
        'mmreid_gs.engine.graph.candidates.MAX_CANDIDATE_FRACTION', 1.)
    # tiny features: the cost model would choose the exact graph
    monkeypatch.setattr('mmreid_gs.engine.graph.build.candidates_decision',
                        lambda features, n, candidate_fn: (n is not None, ''))
    monkeypatch.setattr('mmreid_gs.engine.graph.build.union_decision',
                        lambda *args: (True, ''))
    for sign in (1., -1.):
        runner = FakeRunner(tmp_path, dataset, epoch=1)
        runner.visualizer = _Scalars()
        sampler = runner.train_dataloader.sampler

        def proxy(q, g, sign=sign):
            return sign * runner.model.head.match(q, g)

        hook = GraphSamplerHook(PIPELINE, num_candidates=5,
                                candidate_fn=proxy, check_recall=True)
        hook.before_train_epoch(runner)
        found = sum(len(set(a) & set(b))
                    for a, b in zip(sampler.graph.tolist(), expected.tolist()))
        recall = [v for v, _ in runner.visualizer.logged
                  if 'graph/recall' in v]
        assert len(recall) == 1
        assert recall[0]['graph/recall'] == pytest.approx(
            found / expected.size)
        assert recall[0]['graph/exact_seconds'] > 0
        if sign > 0:
            assert recall[0]['graph/recall'] == 1.
        else:
            assert recall[0]['graph/recall'] < 0.5
        runner.epoch = 2
        hook.before_train_epoch(runner)  # the next build: not again
        assert len([v for v, _ in runner.visualizer.logged
                    if 'graph/recall' in v]) == 1

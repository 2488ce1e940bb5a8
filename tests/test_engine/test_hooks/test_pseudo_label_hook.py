"""PseudoLabelHook on a tiny in-memory split: 6 identities of 4 solid
colour images; the tiny model's feature is the colour, so clustering
recovers the identities exactly."""
import os.path as osp
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from helpers import dist_init_method
from mmengine.logging import MessageHub, MMLogger
from mmengine.model import BaseModel, ImgDataPreprocessor
from torch.utils.data import DataLoader

from mmreid_gs.datasets import UnlabeledReIDDataset
from mmreid_gs.datasets.samplers import GraphSampler
from mmreid_gs.engine.hooks import PseudoLabelHook
from mmreid_gs.utils.errors import ConfigError, ReIDUserError

IDS, PER_ID = 6, 4
N = IDS * PER_ID
HOOK_ARGS = dict(batch_size=10, k1=4, k2=2, eps=0.6, min_samples=4)


class Source:
    """Images of IDS colours (PER_ID each, slightly different), with their
    true identities as labels."""

    def __init__(self, root):
        rng = np.random.default_rng(0)
        colours = rng.integers(30, 220, size=(IDS, 3))
        self.infos = []
        for i in range(N):
            path = osp.join(root, f'{i:02d}.png')
            if not osp.exists(path):
                img = np.empty((8, 4, 3), np.uint8)
                img[:] = colours[i % IDS] + (i // IDS)
                cv2.imwrite(path, img)
            self.infos.append(dict(img_path=path, gt_label=i % IDS,
                                   cam_id=i % 2))

    def __len__(self):
        return len(self.infos)

    def get_data_info(self, i):
        return dict(self.infos[i])


def pack(results):
    img = np.ascontiguousarray(results['img'].transpose(2, 0, 1))
    return dict(inputs=torch.from_numpy(img), data_samples=None)


PIPELINE = [dict(type='LoadImageFromFile'), pack]


class TinyReID(BaseModel):

    def __init__(self):
        super().__init__(data_preprocessor=ImgDataPreprocessor(
            mean=[0, 0, 0], std=[255, 255, 255]))
        self.bn = nn.BatchNorm1d(3)

    def extract_feat(self, inputs):
        assert not self.training
        return F.adaptive_avg_pool2d(inputs, 1).flatten(1)

    def match(self, q, g):
        return 4 - 100 * torch.cdist(q, g)**2

    def forward(self, inputs, data_samples=None, mode='tensor'):
        return self.extract_feat(inputs)


class ScalarLog:

    def __init__(self):
        self.scalars = {}

    def add_scalars(self, scalars, step=None):
        self.scalars.update({k: (v, step) for k, v in scalars.items()})


def make_runner(root, epoch=0, sampler_kwargs=None):
    dataset = UnlabeledReIDDataset(dataset=Source(root))
    kwargs = dict(batch_size=8, num_instances=2, seed=0,
                  batches_per_epoch=5)
    kwargs.update(sampler_kwargs or {})
    sampler = GraphSampler(dataset, **kwargs)
    model = TinyReID()
    model.train()
    return SimpleNamespace(
        model=model, epoch=epoch,
        train_dataloader=DataLoader(dataset, batch_size=8, sampler=sampler),
        logger=MMLogger.get_instance('test_pseudo_label_hook'),
        message_hub=MessageHub.get_instance('test_pseudo_label_hook'),
        visualizer=ScalarLog())


def assert_identities(labels):
    """One class per true identity (i % IDS), any numbering."""
    labels = np.asarray(labels).reshape(PER_ID, IDS)
    assert (labels == labels[0]).all()
    assert sorted(labels[0].tolist()) == list(range(IDS))


@pytest.fixture()
def root(tmp_path_factory):
    return str(tmp_path_factory.mktemp('imgs'))


@pytest.mark.parametrize('inference', [False, True])
def test_clusters_become_the_labels(root, inference):
    runner = make_runner(root)
    hook = PseudoLabelHook(PIPELINE, **HOOK_ARGS)
    hook.before_train(runner)
    if inference:
        with torch.inference_mode():
            hook.before_train_epoch(runner)
    else:
        hook.before_train_epoch(runner)
    dataset = runner.train_dataloader.dataset
    sampler = runner.train_dataloader.sampler
    assert_identities(dataset.get_gt_labels())
    assert sampler.num_classes == IDS and sampler.graph is None
    assert len(sampler) == 40  # 5 batches of 8, as before
    assert runner.model.training  # modes restored
    info = hook.last_info
    assert info['num_clusters'] == IDS and info['num_outliers'] == 0
    assert info['nmi'] == pytest.approx(1) and info['ari'] == 1
    assert info['purity'] == 1
    assert runner.message_hub.get_scalar(
        'pseudo_label/num_clusters').current() == IDS
    assert runner.visualizer.scalars['pseudo_label/nmi'] == (
        pytest.approx(1), 1)
    # every batch: K=2 images of P=4 pseudo-classes
    labels = dataset.get_gt_labels()
    for b in np.asarray(list(sampler)).reshape(5, 8):
        assert np.bincount(labels[b]).max() == 2


@pytest.mark.parametrize('inference', [False, True])
def test_distances_blockwise_on_the_host(inference):
    model = TinyReID().eval()
    feats = torch.rand(23, 3)
    rows = [4, 0, 22, 7, 9, 11, 3]
    hook = PseudoLabelHook(PIPELINE, block_size=3)
    if inference:
        with torch.inference_mode():
            dist = hook.distances(model, feats, rows)
    else:
        dist = hook.distances(model, feats, rows)
    expected = 1 - torch.sigmoid(model.match(feats[rows], feats))
    assert dist.dtype == torch.float32 and dist.device.type == 'cpu'
    assert dist.shape == (len(rows), 23)
    torch.testing.assert_close(dist, expected)
    assert hook.distances(model, feats, []).shape == (0, 23)


def test_bad_clustering_keeps_labels_or_stops(root, monkeypatch):
    runner = make_runner(root)
    hook = PseudoLabelHook(PIPELINE, **HOOK_ARGS)
    monkeypatch.setattr(hook, 'cluster',
                        lambda runner, dataset: np.full(N, -1))
    with pytest.raises(ReIDUserError,
                       match=r'0 clusters and 24 outliers.*eps \(e\.g\. '
                       r'0\.70\).*no previous labels'):
        hook.before_train_epoch(runner)
    good = np.arange(N) % IDS
    monkeypatch.setattr(hook, 'cluster', lambda runner, dataset: good)
    hook.before_train_epoch(runner)
    # 3 clusters < P = 4 classes per batch: previous labels kept
    three = np.where(np.arange(N) < 12, np.arange(N) % 3, -1)
    monkeypatch.setattr(hook, 'cluster', lambda runner, dataset: three)
    runner.epoch = 1
    hook.before_train_epoch(runner)
    np.testing.assert_array_equal(
        runner.train_dataloader.dataset.get_gt_labels(), good)
    # with each outlier a class of its own, the same clustering is usable
    hook.keep_outliers = True
    hook.before_train_epoch(runner)
    labels = runner.train_dataloader.dataset.get_gt_labels()
    assert labels[:12].tolist() == three[:12].tolist()
    assert labels[12:].tolist() == list(range(3, 15))


def test_resume_restores_or_reclusters(root, monkeypatch):
    runner = make_runner(root)
    hook = PseudoLabelHook(PIPELINE, interval=2, **HOOK_ARGS)
    hook.before_train_epoch(runner)
    labels = runner.train_dataloader.dataset.get_gt_labels()
    checkpoint = dict(meta=dict(epoch=1), graph_sampler={'x': 1})
    hook.before_save_checkpoint(runner, checkpoint)
    assert checkpoint['pseudo_labels'].tolist() == labels.tolist()

    # resumed in epoch 1 (no clustering): the saved labels, no clustering
    fresh = make_runner(root, epoch=1)
    hook2 = PseudoLabelHook(PIPELINE, interval=2, **HOOK_ARGS)

    def no_cluster(runner, dataset):
        raise AssertionError('clustered')

    monkeypatch.setattr(hook2, 'cluster', no_cluster)
    hook2.after_load_checkpoint(fresh, checkpoint)
    assert 'graph_sampler' in checkpoint  # kept for GraphSamplerHook
    hook2.before_train_epoch(fresh)
    np.testing.assert_array_equal(
        fresh.train_dataloader.dataset.get_gt_labels(), labels)
    assert fresh.train_dataloader.sampler.num_classes == IDS

    # resumed in epoch 2 (a clustering epoch): clusters, drops the state
    checkpoint['meta']['epoch'] = 2
    again = make_runner(root, epoch=2)
    hook3 = PseudoLabelHook(PIPELINE, interval=2, **HOOK_ARGS)
    hook3.after_load_checkpoint(again, checkpoint)
    assert 'graph_sampler' not in checkpoint
    hook3.before_train_epoch(again)
    assert hook3.last_info['epoch'] == 2


def test_config_errors(root, tmp_path):
    with pytest.raises(ConfigError, match='eps'):
        PseudoLabelHook(PIPELINE, eps=1.0)
    with pytest.raises(ConfigError, match='interval'):
        PseudoLabelHook(PIPELINE, interval=0)
    hook = PseudoLabelHook(PIPELINE)
    runner = make_runner(root, sampler_kwargs=dict(batches_per_epoch=None))
    with pytest.raises(ConfigError, match='batches_per_epoch'):
        hook.before_train(runner)
    runner.train_dataloader = DataLoader(Source(root), batch_size=2)
    with pytest.raises(ConfigError, match='UnlabeledReIDDataset'):
        hook.before_train(runner)
    hook = PseudoLabelHook(PIPELINE, load_from_hint='python train.py a.py')
    missing = SimpleNamespace(_load_from=str(tmp_path / 'epoch_8.pth'))
    with pytest.raises(ConfigError, match=r'epoch_8\.pth.*python train\.py'):
        hook.before_run(missing)


def _ddp_worker(rank, world_size, init_method, root, out_dir):
    import torch.distributed as dist

    from mmreid_gs.cli import shutdown_dist
    dist.init_process_group('gloo', init_method=init_method, rank=rank,
                            world_size=world_size)
    try:
        torch.set_num_threads(1)
        runner = make_runner(root)
        hook = PseudoLabelHook(PIPELINE, **HOOK_ARGS)
        hook.before_train_epoch(runner)
        np.save(osp.join(out_dir, f'labels_{rank}.npy'),
                runner.train_dataloader.dataset.get_gt_labels())
    finally:
        shutdown_dist()


def test_distributed_ranks_get_the_same_labels(root, tmp_path):
    import torch.multiprocessing as mp
    Source(root)  # images written once
    mp.spawn(_ddp_worker, args=(2, dist_init_method(tmp_path), root,
                                str(tmp_path)), nprocs=2)
    l0 = np.load(osp.join(tmp_path, 'labels_0.npy'))
    l1 = np.load(osp.join(tmp_path, 'labels_1.npy'))
    np.testing.assert_array_equal(l0, l1)
    assert_identities(l0)

"""A real Runner on the tiny generated benchmark with DepthFirstGraphSampler:
GraphSamplerHook builds a graph of the sampler's num_neighbors columns (not
P - 1) and the sampler walks it; the graph can be rebuilt under
torch.inference_mode()."""
import numpy as np
import pytest
import torch

from mmreid_gs.datasets.samplers import DepthFirstGraphSampler
from mmreid_gs.engine.graph import graph_dump_path, load_graph_dump
from mmreid_gs.cli import build_runner, load_config

NUM_NEIGHBORS = 5  # P - 1 = 16 / 4 - 1 = 3


@pytest.fixture(scope='module')
def run(make_tiny_config, tmp_path_factory):
    folder = tmp_path_factory.mktemp('dfgs')
    work_dir = str(folder / 'run')
    extra = (f'work_dir = {work_dir!r}\n'
             "train_dataloader['sampler'].update(\n"
             "    type='DepthFirstGraphSampler', "
             f'num_neighbors={NUM_NEIGHBORS})\n')
    # 1 PK epoch then 1 DFGS epoch, no validation
    path = make_tiny_config(folder, test_sets=dict(tiny_A='a'), augment=(),
                            val_interval=100, extra=extra)
    runner = build_runner(load_config(path))
    runner.train()
    return runner, work_dir


def test_hook_builds_num_neighbors_columns_and_the_sampler_walks_them(run):
    runner, work_dir = run
    sampler = runner.train_dataloader.sampler
    assert type(sampler) is DepthFirstGraphSampler
    # 12 ids of 4 images (2 cameras x 2): one chunk an id a round, 3 batches
    assert len(sampler) == 3 * 16
    neighbors = load_graph_dump(graph_dump_path(work_dir, 2))['neighbors']
    assert neighbors.shape == (12, NUM_NEIGHBORS)
    assert (neighbors != np.arange(12)[:, None]).all()
    assert np.array_equal(sampler.graph, neighbors)
    # the epoch-2 batches (the same indices again: same epoch and graph)
    batches = np.array(list(sampler)).reshape(-1, 16)
    labels = sampler.labels[batches].reshape(3, 4, 4)
    assert (labels == labels[..., :1]).all()  # K images an id
    classes = labels[..., 0]
    assert sorted(classes.ravel().tolist()) == list(range(12))
    cams = sampler.cam_ids[batches].reshape(3, 4, 4)
    assert (np.sort(cams, axis=2) == [0, 0, 1, 1]).all()  # 2 per camera
    for b, row in enumerate(classes):
        outside = [j for j in range(1, 4)
                   if not np.isin(row[j], neighbors[row[:j]]).any()]
        assert len(outside) == sampler.restarts[b]


def test_graph_rebuilt_under_inference_mode(run):
    runner, _ = run
    sampler = runner.train_dataloader.sampler
    hook = [h for h in runner.hooks
            if type(h).__name__ == 'GraphSamplerHook'][0]
    runner.train_loop._epoch = 1  # rebuild the graph of epoch 2
    plain = hook.update_graph(runner, sampler).numpy()
    with torch.inference_mode():
        nbrs = hook.update_graph(runner, sampler)
    assert nbrs.shape == (12, NUM_NEIGHBORS)
    # the trained model now: the same images, the same graph either way
    assert np.array_equal(sampler.graph, plain)
    sampler.set_epoch(2)
    assert len(list(sampler)) == len(sampler)

"""End to end, multi-source: the real train tool and Runner on two tiny
generated camera-style domains pooled into one training set
(``PooledReIDDataset``: 12 + 12 identities), 1 PK warm-up epoch then one
Graph Sampler epoch whose class graph keeps every class's neighbours within
its source (``GraphSamplerHook(within_source=True)``), validated on two
named sets."""
import os.path as osp

import numpy as np
import pytest
from helpers import load_tool, read_scalars

from mmreid_gs.engine.graph import graph_dump_path, load_graph_dump

POOLED = """
train_dataloader['dataset'] = dict(
    _delete_=True, type='PooledReIDDataset',
    datasets=[dict(domain_a, split='train'), dict(domain_b, split='train')],
    names=['synthetic_A', 'synthetic_B'], pipeline=train_pipeline)
"""


@pytest.fixture(scope='module')
def trained(make_tiny_config, tmp_path_factory):
    folder = tmp_path_factory.mktemp('e2e_multisource')
    config = make_tiny_config(folder, 'tiny_multisource.py',
                              graph_hook=dict(within_source=True),
                              extra=POOLED)
    work_dir = str(folder / 'run')
    train = load_tool('tools/train.py')
    assert train.run_cli(train.main, [config, '--work-dir', work_dir]) == 0
    return work_dir


def test_pooled_training_with_a_graph_within_sources(trained):
    work_dir = trained
    assert osp.isfile(osp.join(work_dir, 'epoch_2.pth'))
    dump = load_graph_dump(graph_dump_path(work_dir, 2),
                           fields=('neighbors', 'label_sources',
                                   'label_families'))
    sources = dump['label_sources']
    np.testing.assert_array_equal(sources, [0] * 12 + [1] * 12)
    nbrs = dump['neighbors']
    assert nbrs.shape == (24, 3)  # C = 12 + 12, P - 1 = 16 / 4 - 1
    assert (sources[nbrs] == sources[:, None]).all()
    # families of the two domains offset apart
    fams = dump['label_families']
    assert (fams >= 0).all() and not set(fams[:12]) & set(fams[12:])
    records = read_scalars(work_dir)
    cross = [r for r in records if 'graph/cross_source_share' in r]
    assert len(cross) == 1 and cross[0]['step'] == 2
    assert cross[0]['graph/cross_source_share'] == 0
    assert 0 < cross[0]['graph/cross_source_share_random'] < 1
    # the look-alike share of the batches, both epochs (families known)
    shares = [r for r in records if 'train/batch_lookalike_share' in r]
    assert [r['step'] for r in shares] == [1, 2]
    val = [r for r in records if 'synthetic_A/Rank-1' in r]
    assert len(val) == 1 and 0 <= val[0]['synthetic_B_unseen/mAP'] <= 1

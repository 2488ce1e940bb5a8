"""The studies' machinery (mmreid_gs.studies) on a tiny generated benchmark:
2 variants x 1 seed x 1 epoch write their records, CSV / JSON / plot, and a
rerun skips them; every study config loads."""
import csv
import json
import os.path as osp

import numpy as np
import pytest
from helpers import CONFIGS

from mmreid_gs.studies import load_records, load_study, study_names
from mmreid_gs.studies.specs import config_path
from mmreid_gs.studies.run_logs import converged
from mmreid_gs.studies.variants import (apply_variant, family_share,
                                        plan_runs, run_study)
from mmreid_gs.utils.errors import ConfigError


# slow (about 28 s; the tiny scale study covers the same machinery): a
# benchmark-marked run (`pytest -m benchmark`) keeps the CPU suite under its
# 10-minute limit
@pytest.mark.benchmark
def test_study_writes_results_and_skips_finished_runs(make_tiny_config,
                                                      tmp_path):
    # 8 training ids (B = 8 = 4 x 2), an 8-channel network, domain A only
    config = make_tiny_config(
        tmp_path, channels=8, train_ids=8, test_ids=4, batch_size=8,
        num_instances=2, augment=(), test_sets=dict(synthetic_A='a'),
        log_interval=None)
    out = str(tmp_path / 'study')
    records = str(tmp_path / 'runs.jsonl')
    kwargs = dict(quick=True, seeds=[0], epochs=1, progress=False,
                  variants=['class_memory', 'gs'], records=records)
    results = run_study(config, 'efficiency', out, **kwargs)
    # one record per run, with the contract's fields
    recs = load_records(records)
    assert sorted((r['variant'], r['seed']) for r in recs) == [
        ('class_memory', 0), ('gs', 0)]
    for r in recs:
        assert r['study'] == 'efficiency' and r['start'] == 'scratch'
        assert r['num_ids'] == 8 and r['iterations'] == 8  # 1 x C batches
        assert r['warmup_iterations'] == (8 if r['variant'] == 'gs' else 0)
        assert set(r['metrics']) >= {'A/Rank-1', 'A/mAP'}
        assert 0 <= r['metrics']['A/mAP'] <= 100
        point, = r['curve']
        assert point['iteration'] == 8 and point['metrics'] == r['metrics']
        assert point['seconds'] > 0 and r['train_seconds'] >= point[
            'seconds'] * 0.99
        assert r['date'] and 'commit' in r
    assert sorted((r['variant'], r['seed']) for r in results['runs']) == [
        ('class_memory', 0), ('gs', 0)]
    assert [r['converged'] for r in results['runs']] == [True] * 2
    with open(osp.join(out, 'results.csv')) as f:
        rows = list(csv.DictReader(f))
    got = {(r['variant'], r['seed'], r['epoch'], r['set'], r['metric'])
           for r in rows}
    for v in ('class_memory', 'gs'):
        for s in ('0', ):
            for m in ('Rank-1', 'mAP'):
                assert (v, s, '1', 'synthetic_A', m) in got
            assert (v, s, '1', 'train', 'loss') in got
    for r in rows:
        if r['metric'] in ('Rank-1', 'mAP'):
            assert 0. <= float(r['value']) <= 1.
    assert osp.getsize(osp.join(out, 'efficiency.png')) > 1000
    with open(osp.join(out, 'results.json')) as f:
        assert json.load(f)['study'] == 'efficiency'
    assert '| class_memory | 1 |' in open(osp.join(out, 'summary.md')).read()
    # rerun: every run is skipped (no new log folder), same rows
    stamp = osp.getmtime(osp.join(out, 'gs', 'seed0', 'done.json'))
    again = run_study(config, 'efficiency', out, **kwargs)
    assert again['rows'] == results['rows']
    assert osp.getmtime(osp.join(out, 'gs', 'seed0', 'done.json')) == stamp
    assert len(open(records).read().splitlines()) == 2  # not recorded twice
    # another machine: no run dirs, the records alone skip every run
    other = run_study(config, 'efficiency', str(tmp_path / 'other'),
                      **kwargs)
    assert other['runs'] == [] and not osp.exists(
        osp.join(str(tmp_path / 'other'), 'gs', 'seed0'))


def test_family_share_hand_computed(tmp_path):
    path = str(tmp_path / 'epoch_2.npz')
    # families: 0 0 0 1 1 2; two neighbours per class
    fams = np.array([0, 0, 0, 1, 1, 2])
    nbrs = np.array([[1, 3], [2, 0], [0, 1], [4, 0], [3, 5], [0, 1]])
    np.savez(path, class_ids=np.arange(6), neighbors=nbrs)
    share = family_share(path, fams)
    same = [1, 2, 2, 1, 1, 0]
    assert share['share'] == pytest.approx(sum(same) / 12)
    # others in the family, capped at 2 slots: 2 2 2 1 1 0
    assert share['best'] == pytest.approx(8 / 12)
    assert share['random'] == pytest.approx((2 * 3 + 1 * 2) / 5 / 6)


def test_variants_and_errors():
    from mmengine.config import Config
    cfg = Config.fromfile(osp.join(CONFIGS, 'qaconv_gs_demo.py'))
    apply_variant(cfg, dict(sampler='pk', loss='class_memory', clip=None,
                            batch_size=16, num_instances=2), 200)
    assert cfg.model.head.loss.type == 'ClassMemoryLoss'
    assert cfg.model.head.loss.num_classes == 200
    assert not [h for h in cfg.custom_hooks
                if h.type == 'GraphSamplerHook']
    assert cfg.optim_wrapper.clip_grad is None
    assert cfg.train_dataloader.sampler.num_instances == 2
    apply_variant(cfg, dict(sampler='gs', pk_epochs=4), 200)
    hook, = [h for h in cfg.custom_hooks if h.type == 'GraphSamplerHook']
    assert hook.pk_epochs == 4 and hook.save_graph
    runs, preset = plan_runs('efficiency', quick=True)
    assert len(preset['seeds']) >= 3 and len(runs) == 3 * len(
        preset['seeds'])
    with pytest.raises(ConfigError, match="no study 'nope'"):
        plan_runs('nope', quick=True)
    with pytest.raises(ValueError, match='no variant'):
        plan_runs('clip', quick=True, variants=['clip7'])
    with pytest.raises(ValueError, match="'pk', 'gs' or 'dfgs'"):
        apply_variant(cfg, dict(sampler='random'), 10)
    apply_variant(cfg, dict(sampler='dfgs', pk_epochs=1, num_neighbors=5),
                  200)
    assert cfg.train_dataloader.sampler.type == 'DepthFirstGraphSampler'
    assert cfg.train_dataloader.sampler.num_neighbors == 5
    hook, = [h for h in cfg.custom_hooks if h.type == 'GraphSamplerHook']
    assert hook.pk_epochs == 1


def _rows(losses, maps=None):
    rows = [dict(epoch=e + 1, set='train', metric='loss', value=v)
            for e, v in enumerate(losses)]
    for e, pair in enumerate(maps or []):
        rows += [dict(epoch=e + 1, set=name, metric='mAP', value=v)
                 for name, v in zip(('seen', 'unseen'), pair)]
        rows.append(dict(epoch=e + 1, set='graph', metric='mAP', value=0.))
    return rows


def test_converged_from_validation_not_from_the_gs_loss():
    # measured GS run of the init study (pk0, seed 0): the loss rises after
    # epoch 1 while the mAP climbs from 0.41 to 0.57: converged
    assert converged(_rows([7.16, 7.58, 6.89, 6.41],
                           [(0.409, 0.3), (0.463, 0.3), (0.541, 0.3),
                            (0.569, 0.34)]))
    # mean mAP of the sets: (0.30 + 0.20) / 2 = 0.25 -> 0.27 is < 1.1x
    assert not converged(_rows([5, 4], [(0.30, 0.20), (0.31, 0.23)]))
    assert converged(_rows([5, 4], [(0.30, 0.20), (0.31, 0.25)]))
    assert converged(_rows([5, 4], [(0.30, 0.20), (0.31, 0.23)],),
                     min_gain=0.05)
    # a non-finite loss never converges, whatever the metrics
    assert not converged(_rows([5, float('nan'), 4],
                               [(0.1, 0.1), (0.2, 0.2), (0.5, 0.5)]))
    assert not converged(_rows([5, float('inf')]))
    # one epoch: finite losses; no rows at all: not converged
    assert converged(_rows([5.0], [(0.1, 0.1)])) and converged(_rows([5.0]))
    assert not converged([])
    # without validation: the loss must fall below 0.9x its first value
    assert converged(_rows([5.0, 4.4])) and not converged(_rows([5.0, 4.6]))


def test_transmatcher_study_plans_its_own_config():
    """The transmatcher study runs PK vs GS on the TransMatcher demo by
    default; an explicit --config still wins."""
    from mmengine.config import Config
    spec = load_study('transmatcher')
    assert config_path(spec).endswith('configs/transmatcher_gs_demo.py')
    assert load_study('efficiency')['config'] == 'configs/qaconv_gs_demo.py'
    runs, preset = plan_runs('transmatcher', quick=False)
    assert sorted({name for name, _, _ in runs}) == ['gs', 'pk']
    assert len(runs) == 2 * len(preset['seeds']) and preset['epochs'] == 8
    cfg = Config.fromfile(osp.join(CONFIGS, 'transmatcher_gs_demo.py'))
    apply_variant(cfg, spec['variants']['gs'], 200)
    assert cfg.model.head.type == 'TransMatcherHead'
    hook, = [h for h in cfg.custom_hooks if h.type == 'GraphSamplerHook']
    assert hook.pk_epochs == 1
    apply_variant(cfg, spec['variants']['pk'], 200)
    assert not [h for h in cfg.custom_hooks
                if h.type == 'GraphSamplerHook']


def test_every_study_config_loads_and_plans():
    """Each study is a config of configs/studies/ with the fields the
    machinery reads; a broken one is a clear error naming the file."""
    names = study_names()
    assert {'efficiency', 'transmatcher', 'batch', 'init', 'clip', 'scale',
            'multisource'} <= set(names)
    for name in names:
        spec = load_study(name)
        assert osp.isfile(config_path(spec)), name
        assert {'quick', 'full'} <= set(spec['presets'])
        for preset in spec['presets'].values():
            assert preset['seeds'], name


def test_a_broken_study_config_names_its_file(tmp_path):
    path = tmp_path / 'broken.py'
    path.write_text("kind = 'variants'\ndoc = 'x'\nconfig = 'c.py'\n"
                    "variants = dict(pk=dict(sampler='pk'))\n")
    with pytest.raises(ConfigError, match=r"broken.py: a study config must "
                       r"set 'presets'"):
        load_study(str(path))

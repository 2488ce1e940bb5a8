"""The scale study (configs/studies/scale.py, mmreid_gs.studies.scale): its
plan and run configs (no training), one tiny study (a few iterations of
64x32 images) that records its runs, writes its results and plot and skips
its runs on a rerun, and --status / --render from a committed-style
runs.jsonl alone."""
import csv
import json
import math
import os
import os.path as osp

import pytest
from helpers import CONFIGS, load_tool, write_tiny_config
from mmengine.config import Config

import mmreid_gs.studies.scale as study
from mmreid_gs.studies import load_records
from mmreid_gs.studies.variants import plan_runs

DEMO = osp.join(CONFIGS, 'qaconv_gs_demo.py')


def test_quick_plan_is_variants_x_counts_x_starts_x_seeds():
    runs, preset = study.plan_scale_runs(quick=True)
    assert len(preset['seeds']) >= 3 and max(preset['counts']) >= 2000
    assert len(preset['counts']) >= 3
    keys = {(r['variant'], r['num_ids'], r['start'], r['seed'])
            for r in runs}
    assert len(runs) == len(keys) == 2 * len(preset['counts']) * 2 * len(
        preset['seeds'])
    assert keys == {(v, n, s, k) for v in ('pk', 'gs')
                    for n in preset['counts']
                    for s in ('scratch', 'pretrained')
                    for k in preset['seeds']}
    # seed-major: the first seed's runs come first
    first = [r['seed'] for r in runs[:len(runs) // len(preset['seeds'])]]
    assert set(first) == {preset['seeds'][0]}
    assert runs[0]['name'] == f"scratch/n{preset['counts'][0]}/pk"
    full_runs, full = study.plan_scale_runs(quick=False)
    assert max(full['counts']) >= 8000 and len(full_runs) == 2 * len(
        full['counts']) * len(full['seeds'])
    # the 8,000-identity runs of the first seed come first
    assert [r['num_ids'] for r in full_runs[:2]] == [8000, 8000]
    some, _ = study.plan_scale_runs(True, seeds=[5], variants=['gs'],
                                    counts=[300], starts=['pretrained'])
    assert [(r['variant'], r['num_ids'], r['start'], r['seed'])
            for r in some] == [('gs', 300, 'pretrained', 5)]
    with pytest.raises(ValueError, match="no variant.*'rand'"):
        study.plan_scale_runs(True, variants=['rand'])
    with pytest.raises(ValueError, match="no start.*'imagenet'"):
        study.plan_scale_runs(True, starts=['imagenet'])
    with pytest.raises(ValueError, match=r'>= 1.*\[0\]'):
        study.plan_scale_runs(True, counts=[0])
    with pytest.raises(ValueError, match='plan_scale_runs'):
        plan_runs('scale', quick=True)


def _run(runs, **match):
    return next(r for r in runs if all(r[k] == v for k, v in match.items()))


def test_run_configs_set_ids_epoch_length_and_load_from():
    base = Config.fromfile(DEMO)
    runs, preset = study.plan_scale_runs(quick=False)
    root = base.train_dataloader.dataset.data_root
    gs = study.scale_run_config(
        base, _run(runs, variant='gs', num_ids=8000, start='pretrained'),
        preset, 'pre.pth')
    ds = gs.train_dataloader.dataset
    assert ds.num_train_ids == 8000 and ds.data_root == root + '_n8000'
    assert 'seed' not in ds  # the config's generation seed (default 0)
    assert gs.train_dataloader.sampler.batches_per_epoch == \
        preset['batches_per_epoch']
    assert gs.train_cfg.max_epochs == preset['epochs']
    assert gs.train_cfg.val_interval == 1  # validated every epoch
    assert preset['counts'] == (8000, 1000, 2000, 4000)
    assert preset['starts'] == ('pretrained', )
    quick_runs, quick = study.plan_scale_runs(quick=True)
    assert study.scale_run_config(
        base, _run(quick_runs, start='scratch'), quick
    ).train_cfg.val_interval == quick['epochs']  # quick: at the end only
    assert gs.load_from == 'pre.pth'
    hook, = [h for h in gs.custom_hooks if h.type == 'GraphSamplerHook']
    assert hook.pk_epochs == 1 and hook.num_candidates == 0.05
    # the test sets stay the config's (the same test identities)
    assert gs.val_cfg.test_sets == base.val_cfg.test_sets
    pk = study.scale_run_config(
        base, _run(quick_runs, variant='pk', num_ids=200, start='scratch'),
        quick)
    assert pk.load_from is None
    assert not [h for h in pk.custom_hooks if h.type == 'GraphSamplerHook']
    # the config's own count: the config's own folder
    assert pk.train_dataloader.dataset.data_root == root
    small = study.scale_run_config(
        base, _run(runs, variant='gs', num_ids=2000), preset, 'pre.pth')
    hook, = [h for h in small.custom_hooks if h.type == 'GraphSamplerHook']
    assert hook.get('num_candidates') is None  # exact below 4000 classes
    with pytest.raises(ValueError, match='pretrained checkpoint'):
        study.scale_run_config(base, _run(runs, start='pretrained'), preset)
    # the time preset: a training wall-clock budget, the class memory
    time_runs, timed = study.plan_scale_runs(preset='time')
    cm = study.scale_run_config(base, _run(time_runs, variant='cm'), timed,
                                'pre.pth')
    assert cm.model.head.loss.type == 'ClassMemoryLoss'
    assert cm.model.head.loss.num_classes == 8000
    clock, = [h for h in cm.custom_hooks if h.type == 'WallClockHook']
    assert clock.max_train_seconds == timed['max_train_seconds'] > 0
    pre = study.pretrain_config(base, preset)
    pds = pre.train_dataloader.dataset
    assert pds.seed == preset['pretrain']['seed'] != 0
    assert pds.num_train_ids == preset['pretrain']['num_ids']
    assert pds.data_root not in (root, ds.data_root)
    assert not [h for h in pre.custom_hooks
                if h.type == 'GraphSamplerHook']
    assert pre.train_cfg.max_epochs == preset['pretrain']['epochs']


def test_started_runs_resume_new_ones_load_the_pretrained_weights(
        tmp_path, monkeypatch):
    seen = []
    monkeypatch.setattr(study, '_train_run',
                        lambda cfg, done, meta: seen.append(cfg))
    base = Config.fromfile(DEMO)
    runs, preset = study.plan_scale_runs(quick=True)
    run = _run(runs, start='pretrained')
    fresh, started = str(tmp_path / 'fresh'), str(tmp_path / 'started')
    os.makedirs(started)
    with open(osp.join(started, 'last_checkpoint'), 'w') as f:
        f.write(osp.join(started, 'epoch_2.pth'))
    for run_dir in (fresh, started):
        cfg = study.scale_run_config(base, run, preset, 'pre.pth')
        study._train_scale_run(cfg, run_dir, 0, 'x', {})
    assert (seen[0].resume, seen[0].load_from) == (False, 'pre.pth')
    assert (seen[1].resume, seen[1].load_from) == (True, None)


def test_estimate_counts_every_part():
    base = Config.fromfile(DEMO)
    runs, preset = study.plan_scale_runs(quick=True)
    est = study.estimate_scale_seconds(base, runs, preset)
    iters = preset['epochs'] * preset['batches_per_epoch']
    pre = preset['pretrain']
    assert est['train'] == pytest.approx(
        (len(runs) * iters + pre['epochs'] * pre['batches_per_epoch'])
        * study.SCALE_COSTS['sec_per_iter'])
    assert est['graphs'] > 0 and est['data'] > 0
    assert est['total'] == pytest.approx(
        est['train'] + est['graphs'] + est['data'] + est['overhead'])
    scratch = [r for r in runs if r['start'] == 'scratch']
    assert study.estimate_scale_seconds(base, scratch, preset)['train'] == \
        pytest.approx(len(scratch) * iters * study.SCALE_COSTS['sec_per_iter'])


def test_estimate_class_memory_cap_and_dfgs_graphs():
    base = Config.fromfile(DEMO)
    c = study.SCALE_COSTS
    # the class memory at 8,000 classes: slower iterations, stopped after
    # the first epoch past the training wall-clock budget
    runs, preset = study.plan_scale_runs(preset='time')
    cm = [r for r in runs if r['variant'] == 'cm']
    per_iter = c['sec_per_iter'] + 8000 * c['memory_seconds_per_class']
    epoch = preset['batches_per_epoch'] * per_iter
    est = study.estimate_scale_seconds(base, cm, preset)
    pre = preset['pretrain']
    assert est['train'] == pytest.approx(
        math.ceil(preset['max_train_seconds'] / epoch) * epoch
        + pre['epochs'] * pre['batches_per_epoch'] * c['sec_per_iter'])
    assert est['graphs'] == 0
    # DFGS builds a class graph every epoch after its warm-up, as GS
    runs, preset = study.plan_scale_runs(preset='dfgs', counts=[8000],
                                         seeds=[0])
    assert study.estimate_scale_seconds(base, runs, preset)['graphs'] > 0


def test_tiny_scale_study_writes_results_and_skips_finished_runs(tmp_path):
    # 12 training identities in the config; the study trains GS (1 PK
    # epoch, then one graph epoch) on 8 (its own data folder) from a network
    # pretrained on 8 other people: 2 tiny runs (the scratch start is the
    # same run without load_from, checked by
    # test_run_configs_set_ids_epoch_length_and_load_from)
    config = write_tiny_config(tmp_path, augment=(), test_ids=4,
                               channels=8, log_interval=None,
                               test_sets=dict(synthetic_A='a'))
    out = str(tmp_path / 'scale')
    kwargs = dict(quick=True, seeds=[0], counts=[8], variants=['gs'],
                  starts=['pretrained'], epochs=2, batches_per_epoch=1,
                  progress=False,
                  preset_overrides=dict(pretrain=dict(
                      num_ids=8, epochs=1, batches_per_epoch=1,
                      milestones=())))
    records = str(tmp_path / 'runs.jsonl')
    kwargs['records'] = records
    results = study.run_scale_study(config, out, **kwargs)
    assert sorted((r['variant'], r['start']) for r in results['runs']) == [
        ('gs', 'pretrained'), ('pretrain', 'pretrain')]
    assert osp.isdir(str(tmp_path / 'data' / 'A_n8'))
    assert osp.isdir(str(tmp_path / 'data' / 'A_pretrain_seed1000_n8'))
    assert osp.isfile(osp.join(out, 'pretrain_n8_seed1000_1x1',
                               'epoch_1.pth'))
    recs = sorted(load_records(records), key=lambda r: r['start'])
    assert [(r['variant'], r['start'], r['num_ids'], r['iterations'],
             r['warmup_iterations']) for r in recs] == [
        ('gs', 'pretrained', 8, 2, 1)]
    for r in recs:
        assert r['study'] == 'scale' and r['preset'] == 'quick'
        assert r['graph_builds'] == 1 and r['graph_seconds'] > 0
        assert 0 <= r['batch_lookalike_share'] <= 1
        assert [c['iteration'] for c in r['curve']] == [2]
    with open(osp.join(out, 'results.csv')) as f:
        rows = list(csv.DictReader(f))
    got = {(r['variant'], r['start'], r['num_ids'], r['epoch'], r['set'],
            r['metric']) for r in rows}
    for start in ('pretrained', ):
        for m in ('Rank-1', 'mAP'):
            assert ('gs', start, '8', '2', 'synthetic_A', m) in got
        for epoch in ('1', '2'):  # the PK warm-up and the GS epoch
            assert ('gs', start, '8', epoch, 'train',
                    'batch_lookalike_share') in got
        # the graph of epoch 2 and the time it took
        assert ('gs', start, '8', '2', 'graph', 'build_seconds') in got
    assert ('pretrain', 'pretrain', '8', '1', 'synthetic_A', 'mAP') in got
    summary = open(osp.join(out, 'summary.md')).read()
    assert '| 8 | pretrained | gs |' in summary
    assert osp.getsize(osp.join(out, 'scale.png')) > 1000
    with open(osp.join(out, 'results.json')) as f:
        assert json.load(f)['study'] == 'scale'
    # rerun: every run is skipped, same rows
    done = osp.join(out, 'quick', 'pretrained', 'n8', 'gs', 'seed0',
                    'done.json')
    stamp = osp.getmtime(done)
    again = study.run_scale_study(config, out, **kwargs)
    assert again['rows'] == results['rows']
    assert osp.getmtime(done) == stamp
    assert len(load_records(records)) == 1


def test_summary_share_over_the_gs_epochs():
    """The table's batch_lookalike_share: mean over the epochs after the PK
    warm-up (the same epochs for PK runs), the all-epoch mean in brackets,
    the random-PK expectation after it; metrics of the last epoch."""
    rows = []
    for seed, gs_share in ((0, (0.1, 0.5, 0.7)), (1, (0.1, 0.3, 0.5))):
        for epoch, share in enumerate(gs_share, 1):
            key = dict(variant='gs', start='scratch', num_ids=200, seed=seed,
                       epoch=epoch)
            rows += [dict(key, set='train', metric='batch_lookalike_share',
                          value=share),
                     dict(key, set='train',
                          metric='batch_lookalike_share_random', value=0.1)]
        rows += [dict(variant='gs', start='scratch', num_ids=200, seed=seed,
                      epoch=3, set='synthetic_A', metric=m, value=v)
                 for m, v in (('Rank-1', 0.5 + 0.1 * seed), ('mAP', 0.4))]
    results = dict(rows=rows, runs=[
        dict(variant='gs', start='scratch', num_ids=200, seed=s, seconds=60.)
        for s in (0, 1)])
    table = study.scale_summary_table(results)
    line = [r for r in table.splitlines() if r.startswith('| 200 |')][0]
    # GS epochs: seed 0 mean 0.6, seed 1 mean 0.4 -> 0.500 ± 0.100; all
    # epochs: (0.433 + 0.3) / 2 = 0.367
    assert '| 0.500 ± 0.100 (0.367); random 0.100 |' in line
    assert '| 55.0 ± 5.0 / 40.0 ± 0.0 | 2 | 1.0 |' in line

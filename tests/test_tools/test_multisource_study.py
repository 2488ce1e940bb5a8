"""The multisource study (configs/studies/multisource.py; PK vs GS
vs GS within source on synthetic A + B -> C): its plan, run configs and
dry-run estimate, the summary table of a hand-made results dict, and a
study whose training is replaced by fake logs (no data is read or
generated) that writes its results and skips its finished runs on a
rerun."""
import csv
import json
import os
import os.path as osp

import pytest
from helpers import CONFIGS
from mmengine.config import Config

import mmreid_gs.studies.multisource as study
from mmreid_gs.studies import load_records, load_study
from mmreid_gs.studies.variants import apply_variant, plan_runs
MULTI = osp.join(CONFIGS, 'qaconv_gs_multisource_demo.py')
SETS = ('synthetic_C_unseen', 'synthetic_A', 'synthetic_B')


def _gs_hooks(cfg):
    return [h for h in cfg.custom_hooks if h.type == 'GraphSamplerHook']


def test_plan_is_variants_x_seeds_with_each_variants_overrides():
    runs, preset = plan_runs('multisource', quick=True)
    assert preset['seeds'] == (0, 1, 2)
    assert [(n, s) for n, _, s in runs] == [
        (n, s) for s in (0, 1, 2) for n in ('pk', 'gs', 'gs_within')]
    base = Config.fromfile(MULTI)
    quick = study.multisource_preset(base, preset)
    assert (quick['epochs'], quick['batches_per_epoch'],
            quick['milestones']) == (4, 100, (3, ))
    # the full preset is the config's length: 8 epochs x 200 batches
    full_runs, full = plan_runs('multisource', quick=False)
    assert len(full_runs) == 9 and len(full['seeds']) >= 3
    full = study.multisource_preset(base, full)
    assert (full['epochs'], full['batches_per_epoch'],
            full['milestones']) == (8, 200, (6, ))
    short = study.multisource_preset(base, dict(full, epochs=None,
                                                milestones=None),
                                     epochs=5, batches_per_epoch=7)
    assert (short['epochs'], short['batches_per_epoch'],
            short['milestones']) == (5, 7, ())
    cfgs = {n: study.multisource_run_config(base, v, quick)
            for n, v, _ in runs}
    assert cfgs['pk'].custom_hooks == []
    gs, = _gs_hooks(cfgs['gs'])
    assert gs.pk_epochs == 1 and not gs.get('within_source', False)
    within, = _gs_hooks(cfgs['gs_within'])
    assert within.pk_epochs == 1 and within.within_source is True
    for cfg in cfgs.values():
        assert cfg.train_dataloader.sampler.batches_per_epoch == 100
        assert cfg.train_cfg.max_epochs == cfg.train_cfg.val_interval == 4
        assert [s.milestones for s in cfg.param_scheduler
                if s.type == 'MultiStepLR'] == [[3]]
        assert cfg.train_dataloader.dataset.type == 'PooledReIDDataset'
        assert list(cfg.val_cfg.test_sets) == list(SETS)
    some, _ = plan_runs('multisource', True, seeds=[7],
                              variants=['gs_within'])
    assert [(n, s) for n, _, s in some] == [('gs_within', 7)]
    with pytest.raises(ValueError, match="no variant.*'gs_across'"):
        plan_runs('multisource', True, variants=['gs_across'])
    with pytest.raises(ValueError, match='within_source'):
        apply_variant(Config.fromfile(MULTI),
                            dict(sampler='pk', within_source=True), 400)
    with pytest.raises(ValueError, match='pooled training set'):
        study.multisource_run_config(
            Config.fromfile(osp.join(CONFIGS, 'qaconv_gs_demo.py')),
            load_study('multisource')['variants']['gs_within'], quick)


def test_dry_run_plans_and_estimates_without_a_folder(tmp_path):
    out = str(tmp_path / 'multi')
    plan = study.run_multisource_study(MULTI, out, quick=True, dry_run=True,
                                       progress=False)
    assert not osp.exists(out)
    assert len(plan['plan']) == 9
    est = plan['estimate']
    costs = study.SCALE_COSTS
    assert est['iterations'] == 400 and est['classes'] == 400
    assert est['train'] == pytest.approx(9 * 400 * costs['sec_per_iter'])
    # 6 GS runs x 3 graph epochs of 400 classes
    assert est['graphs'] == pytest.approx(6 * 3 * (
        400 * costs['extract_per_image'] + 400**2 * costs['pair_seconds']))
    assert est['total'] == pytest.approx(
        est['train'] + est['graphs'] + est['data'] + est['overhead'])
    hooks = {p['variant']: p['hooks'] for p in plan['plan']}
    assert hooks['pk'].startswith('custom_hooks=[]')
    assert 'within_source=True' in hooks['gs_within']
    assert 'within_source=False' in hooks['gs']


def _row(variant, seed, epoch, set_, metric, value):
    return dict(variant=variant, seed=seed, epoch=epoch, set=set_,
                metric=metric, value=value)


def test_summary_table_from_a_hand_made_results_dict():
    rows = []
    # gs: look-alike shares of epochs 1 (PK warm-up), 2, 3
    for seed, shares, cross, r1 in ((0, (0.2, 0.3, 0.5), (0.4, 0.6), 0.6),
                                    (1, (0.2, 0.5, 0.5), (0.3, 0.3), 0.7)):
        for e, v in enumerate(shares, 1):
            rows.append(_row('gs', seed, e, 'train', 'batch_lookalike_share',
                             v))
            rows.append(_row('gs', seed, e, 'train',
                             'batch_lookalike_share_random', 0.25))
        for e, v in enumerate(cross, 2):
            rows.append(_row('gs', seed, e, 'graph', 'cross_source_share',
                             v))
            rows.append(_row('gs', seed, e, 'graph',
                             'cross_source_share_random', 0.501))
        rows.append(_row('gs', seed, 1, 'synthetic_C_unseen', 'Rank-1',
                         0.1))  # not the last epoch: ignored
        for s in SETS:
            rows.append(_row('gs', seed, 3, s, 'Rank-1', r1))
            rows.append(_row('gs', seed, 3, s, 'mAP', r1 / 2))
    for seed in (0, 1):
        for e in (1, 2, 3):
            rows.append(_row('pk', seed, e, 'train', 'batch_lookalike_share',
                             0.25))
        for s in SETS:
            rows.append(_row('pk', seed, 3, s, 'Rank-1', 0.5))
            rows.append(_row('pk', seed, 3, s, 'mAP', 0.2 + 0.1 * seed))
    results = dict(study='multisource', rows=rows, runs=[
        dict(variant='gs', seed=0, seconds=120., converged=True),
        dict(variant='gs', seed=1, seconds=180., converged=True),
        dict(variant='pk', seed=0, seconds=60., converged=True),
        dict(variant='pk', seed=1, seconds=60., converged=True)])
    lines = study.multisource_summary_table(results).splitlines()
    assert lines[0] == (
        '| variant | batch_lookalike_share | cross_source_share (random) | '
        'synthetic_C_unseen Rank-1 / mAP | synthetic_A Rank-1 / mAP | '
        'synthetic_B Rank-1 / mAP | seeds | train min/run |')
    # the study's variant order; GS epochs: seed 0 (0.3 + 0.5) / 2 = 0.4,
    # seed 1 0.5; all epochs 1/3 and 0.4; cross source 0.5 and 0.3
    assert lines[2] == ('| pk | 0.250 ± 0.000 (all epochs 0.250) | - | '
                        + ' | '.join(['50.0 ± 0.0 / 25.0 ± 5.0'] * 3)
                        + ' | 2 | 1.0 |')
    assert lines[3] == ('| gs | 0.450 ± 0.050 (all epochs 0.367) | '
                        '0.400 ± 0.100 (random 0.501) | '
                        + ' | '.join(['65.0 ± 5.0 / 32.5 ± 2.5'] * 3)
                        + ' | 2 | 2.5 |')
    assert 'random PK batches would give 0.250' in lines[-1]
    values = study.multisource_run_values(results)
    assert values[('gs', 0)]['lookalike_gs'] == pytest.approx(0.4)
    assert values[('gs', 1)]['cross_source'] == pytest.approx(0.3)
    assert values[('gs', 0)]['synthetic_C_unseen/Rank-1'] == 0.6
    assert 'cross_source' not in values[('pk', 0)]


def _fake_training(calls):
    """A ``_train_run`` that writes the scalars a run would log (no data,
    no network) and its ``done.json``."""

    def train(cfg, done, meta):
        calls.append((meta['variant'], meta['seed'], cfg))
        epochs = cfg.train_cfg.max_epochs
        gs = [h for h in cfg.custom_hooks if h.type == 'GraphSamplerHook']
        within = bool(gs and gs[0].get('within_source', False))
        folder = osp.join(cfg.work_dir, '20240101_000000', 'vis_data')
        os.makedirs(folder, exist_ok=True)
        seed = meta['seed']
        lines = []
        for e in range(1, epochs + 1):
            lines.append(dict(loss=5. - e, epoch=e, iter=e, step=e))
            share = 0.2 if not gs or e == 1 else 0.4 + 0.1 * seed
            lines.append({'train/batch_lookalike_share': share,
                          'train/batch_lookalike_share_random': 0.2,
                          'step': e})
            if gs and e > 1:
                lines.append({'graph/cross_source_share':
                              0. if within else 0.45,
                              'graph/cross_source_share_random': 0.5,
                              'graph/build_seconds': 1., 'step': e})
        score = 0.3 + 0.1 * bool(gs) + 0.05 * within + 0.01 * seed
        lines.append(dict({f'{s}/{m}': score for s in SETS
                           for m in ('Rank-1', 'mAP')}, step=epochs))
        with open(osp.join(folder, 'scalars.json'), 'w') as f:
            f.write('\n'.join(json.dumps(line) for line in lines) + '\n')
        with open(done, 'w') as f:
            json.dump(dict(meta, seconds=90.), f)

    return train


def test_study_writes_results_and_skips_finished_runs(tmp_path,
                                                      monkeypatch):
    calls = []
    monkeypatch.setattr(study, '_train_run', _fake_training(calls))
    out = str(tmp_path / 'multi')
    kwargs = dict(quick=True, seeds=[0, 1], progress=False)
    records = str(tmp_path / 'runs.jsonl')
    results = study.run_multisource_study(MULTI, out, records=records,
                                          **kwargs)
    recs = {(r['variant'], r['seed']): r for r in load_records(records)}
    assert sorted(recs) == [(v, s) for v in ('gs', 'gs_within', 'pk')
                            for s in (0, 1)]
    # 400 iterations (4 x 100), the GS warm-up one epoch of 100; the
    # share over the epochs after it: seed 1's GS epochs 0.5
    assert recs[('gs', 1)]['iterations'] == 400
    assert recs[('gs', 1)]['warmup_iterations'] == 100
    assert recs[('pk', 1)]['warmup_iterations'] == 0
    assert recs[('gs', 1)]['batch_lookalike_share'] == pytest.approx(0.5)
    assert recs[('gs', 1)]['graph_seconds'] == pytest.approx(3.)
    assert recs[('pk', 0)]['metrics']['C/mAP'] == pytest.approx(30.)
    assert sorted((v, s) for v, s, _ in calls) == [
        (v, s) for v in ('gs', 'gs_within', 'pk') for s in (0, 1)]
    for variant, seed, cfg in calls:
        assert cfg.work_dir == osp.join(out, variant, f'seed{seed}')
        assert cfg.randomness.seed == seed and cfg.resume
    per_run = {(r['variant'], r['seed']): r for r in results['per_run']}
    assert per_run[('gs', 1)]['lookalike_gs'] == pytest.approx(0.5)
    assert per_run[('gs', 1)]['lookalike_all'] == pytest.approx(
        (0.2 + 3 * 0.5) / 4)
    assert per_run[('gs_within', 0)]['cross_source'] == 0.
    assert per_run[('gs', 0)]['cross_source_random'] == 0.5
    assert per_run[('pk', 0)]['synthetic_C_unseen/mAP'] == \
        pytest.approx(0.3)
    assert results['preset']['batches_per_epoch'] == 100
    with open(osp.join(out, 'results.csv')) as f:
        got = {(r['variant'], r['seed'], r['epoch'], r['set'], r['metric'])
               for r in csv.DictReader(f)}
    assert ('gs_within', '1', '4', 'synthetic_C_unseen', 'Rank-1') in got
    assert ('gs', '0', '2', 'graph', 'cross_source_share') in got
    with open(osp.join(out, 'results.json')) as f:
        assert json.load(f)['study'] == 'multisource'
    summary = open(osp.join(out, 'summary.md')).read()
    assert '| gs_within | 0.450 ± 0.050 (all epochs ' in summary
    assert '0.000 ± 0.000 (random 0.500)' in summary
    assert osp.getsize(osp.join(out, 'multisource.png')) > 1000
    # rerun: all skipped
    calls.clear()
    again = study.run_multisource_study(MULTI, out, **kwargs)
    assert calls == [] and again['rows'] == results['rows']
    # an unfinished run is trained again, the others are kept
    os.remove(osp.join(out, 'pk', 'seed1', 'done.json'))
    study.run_multisource_study(MULTI, out, **kwargs)
    assert [(v, s) for v, s, _ in calls] == [('pk', 1)]

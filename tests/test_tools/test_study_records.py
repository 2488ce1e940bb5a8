"""Study records (docs/studies/<study>/runs.jsonl): the file format, and
``sampler_study.py STUDY --status`` / ``--render`` from a committed-style
file alone (no work dir, no training); the time-to-accuracy and plateau
rules against hand-computed numbers."""
import json
import math
import os.path as osp

import pytest
from helpers import load_tool

from mmreid_gs.studies import (append_record, load_records, missing_runs,
                               record_key)
from mmreid_gs.studies.specs import load_study
from mmreid_gs.studies.render import (plateau_change, summary_table,
                                      time_cohort, time_to_accuracy)

tool = load_tool('tools/analysis_tools/sampler_study.py')
#: the full preset's budget (configs/studies/scale.py): epochs x 400
EPOCHS = load_study('scale')['presets']['full']['epochs']
ITERS = 400 * EPOCHS


def _record(variant, num_ids, seed, a_r1, b_r1, share=0.1, preset='full',
            curve=None, seconds=600.):
    warm = 400 if variant == 'gs' else 0
    curve = curve or [
        dict(epoch=e, iteration=400 * e, seconds=seconds * e / EPOCHS,
             metrics={'A/Rank-1': a_r1 - (EPOCHS - e), 'A/mAP': a_r1 - 10,
                      'B/Rank-1': b_r1 - (EPOCHS - e), 'B/mAP': b_r1 - 10})
        for e in range(1, EPOCHS + 1)]
    return dict(study='scale', variant=variant, start='pretrained',
                num_ids=num_ids, seed=seed, iterations=ITERS,
                warmup_iterations=warm, metrics=curve[-1]['metrics'],
                curve=curve, batch_lookalike_share=share,
                batch_lookalike_share_random=0.01, train_seconds=seconds,
                graph_seconds=30. if variant == 'gs' else 0.,
                commit='abc123', date='2026-12-07T12:00:00+00:00',
                preset=preset)


def _write(path, records):
    for r in records:
        append_record(str(path), r)


def test_records_round_trip_skip_and_clear_errors(tmp_path):
    path = tmp_path / 'runs.jsonl'
    first = _record('pk', 8000, 0, 60., 40.)
    _write(path, [first, _record('gs', 8000, 0, 62., 41.)])
    # the same run again (e.g. recorded on two machines): the later wins
    _write(path, [dict(first, metrics={'A/Rank-1': 61.})])
    recs = load_records(str(path))
    assert len(recs) == 2
    pk, = [r for r in recs if r['variant'] == 'pk']
    assert pk['metrics'] == {'A/Rank-1': 61.}
    planned = [dict(study='scale', variant=v, start='pretrained',
                    num_ids=8000, seed=s, iterations=ITERS,
                    warmup_iterations=400 if v == 'gs' else 0)
               for s in (0, 1) for v in ('pk', 'gs')]
    assert [(p['variant'], p['seed']) for p in missing_runs(
        planned, recs)] == [('pk', 1), ('gs', 1)]
    # another warm-up is another run
    assert record_key(dict(planned[1], warmup_iterations=1200)) != \
        record_key(planned[1])
    # a run stopped at a wall-clock budget (the time preset) is another
    # run than the same settings trained to the end
    capped = dict(planned[0], max_train_seconds=1800)
    assert record_key(capped) != record_key(planned[0])
    assert [p['variant'] for p in missing_runs([capped], recs)] == ['pk']
    assert record_key(dict(planned[0], max_train_seconds=None)) == \
        record_key(planned[0])
    with open(path, 'a') as f:
        f.write('{"study": "scale"}\n')
    with pytest.raises(ValueError, match=r'runs.jsonl, line 4: the record '
                       r"lacks \['variant'"):
        load_records(str(path))
    with pytest.raises(ValueError, match='lacks'):
        append_record(str(tmp_path / 'x.jsonl'), dict(study='scale'))


def test_status_and_render_from_the_file_alone(tmp_path, capsys):
    path = tmp_path / 'runs.jsonl'
    recs = []
    for seed, (pk, gs) in enumerate(((60., 63.), (62., 64.), (61., 65.))):
        recs += [_record('pk', 8000, seed, pk, 40., 0.01),
                 _record('gs', 8000, seed, gs, 42., 0.3)]
    recs += [_record('pk', 1000, 0, 70., 50.)]
    _write(path, recs)
    tool.main(['scale', '--status', '--records', str(path)])
    out = capsys.readouterr().out
    assert 'scale: 7 of 24 planned runs finished, 17 missing' in out
    assert 'missing  gs             pretrained n=1000   seed=0' in out
    tool.main(['scale', '--render', '--records', str(path)])
    summary = open(tmp_path / 'summary.md').read()
    # pk at 8,000: A Rank-1 60, 62, 61 -> 61.0 ± 1.0 (sample sd); gs 64.0
    # ± 1.0; mAP = Rank-1 - 10
    row = [line for line in summary.splitlines()
           if line.startswith('| 8,000 | pretrained | - | pk |')][0]
    assert '| 61.0 ± 1.0 / 51.0 ± 1.0 | 40.0 ± 0.0 / 30.0 ± 0.0 | 3 | ' \
        f'{ITERS:,} | 10.0 |' in row
    row = [line for line in summary.splitlines()
           if line.startswith('| 8,000 | pretrained | 400 | gs |')][0]
    assert '| 0.300 ± 0.000 (0.010) | 64.0 ± 1.0 / 54.0 ± 1.0 |' in row
    for name in ('curves_rank1.png', 'curves_map.png'):
        assert osp.getsize(tmp_path / name) > 5000


def test_time_to_accuracy_hand_computed(tmp_path):
    def curve(points):
        return [dict(epoch=i + 1, iteration=400 * (i + 1), seconds=t,
                     metrics={'A/Rank-1': a})
                for i, (t, a) in enumerate(points)]

    recs = [
        _record('gs', 8000, 0, 0, 0, preset='time',
                curve=curve([(100, 50.), (200, 90.), (300, 100.)])),
        _record('pk', 8000, 0, 0, 0, preset='time',
                curve=curve([(100, 80.), (200, 94.), (300, 96.)])),
        _record('cm', 8000, 0, 0, 0, preset='time',
                curve=curve([(400, 60.), (800, 89.)])),
    ]
    res = time_to_accuracy(recs)
    assert res['best'] == {'A': 100.}
    got = {(r['variant'], r['fraction']): r['seconds'] for r in res['rows']}
    # 90% of 100 = 90: gs at 200 s, pk at 200 s (94), cm never (89)
    # 95% = 95: gs at 300 s, pk at 300 s (96), cm never
    assert got == {('gs', 0.9): 200, ('gs', 0.95): 300, ('pk', 0.9): 200,
                   ('pk', 0.95): 300, ('cm', 0.9): None, ('cm', 0.95): None}
    path = tmp_path / 'runs.jsonl'
    _write(path, recs)
    tool.main(['scale', '--render', '--records', str(path)])
    summary = open(tmp_path / 'summary.md').read()
    assert '## Time to accuracy' in summary
    assert '| cm | never | never | 89.0 |' in summary  # one run: no sd
    assert osp.getsize(tmp_path / 'time_to_accuracy.png') > 5000


def test_time_cohort_cuts_uncapped_runs_at_the_budget(tmp_path):
    def curve(points):
        return [dict(epoch=i + 1, iteration=400 * (i + 1), seconds=t,
                     metrics={'A/Rank-1': a})
                for i, (t, a) in enumerate(points)]

    cm = dict(_record('cm', 8000, 0, 0, 0, preset='time',
                      curve=curve([(700, 60.), (1400, 80.), (2100, 85.)])),
              max_train_seconds=1800)
    # full-preset runs of the same setting: cut after the first point at
    # or past 1,800 s (the epoch a capped run stops after)
    pk = _record('pk', 8000, 0, 0, 0, curve=curve(
        [(600, 70.), (1200, 75.), (1800, 78.), (2400, 90.)]))
    gs = _record('gs', 8000, 1, 0, 0, curve=curve(
        [(900, 72.), (1790, 88.), (2300, 95.), (2900, 99.)]))
    other = _record('pk', 4000, 0, 0, 0)  # another setting: left out
    cohort = time_cohort([cm, pk, gs, other])
    got = {(r['variant'], r['seed']): r for r in cohort}
    assert set(got) == {('cm', 0), ('pk', 0), ('gs', 1)}
    assert got[('cm', 0)] is cm
    cut = {k: [c['seconds'] for c in r['curve']] for k, r in got.items()}
    assert cut[('pk', 0)] == [600, 1200, 1800]
    assert cut[('gs', 1)] == [900, 1790, 2300]
    assert got[('gs', 1)]['metrics'] == {'A/Rank-1': 95.}
    assert got[('gs', 1)]['train_seconds'] == 2300
    assert pk['curve'][-1]['seconds'] == 2400  # the record itself is intact
    # best = 95 (gs, cut): 90% = 85.5 -> gs at 1790 s, pk never, cm never
    res = time_to_accuracy(cohort)
    assert res['best'] == {'A': 95.}
    secs = {(r['variant'], r['fraction']): r['seconds'] for r in res['rows']}
    assert secs[('gs', 0.9)] == 1790 and secs[('gs', 0.95)] == 2300
    assert secs[('pk', 0.9)] is None and secs[('cm', 0.9)] is None
    assert time_cohort([pk, gs]) == []  # no time preset run: no cohort
    path = tmp_path / 'runs.jsonl'
    _write(path, [cm, pk, gs, other])
    tool.main(['scale', '--render', '--records', str(path)])
    summary = open(tmp_path / 'summary.md').read()
    assert 'pk, gs: the runs of the main table at the same setting' in summary
    assert 'capped at 30 training minutes' in summary


def test_plateau_change_over_the_last_quarter():
    rec = _record('pk', 8000, 0, 60., 40.)
    # last quarter of the iterations: from epoch ceil(3/4 x EPOCHS) on
    # (e.g. 12-16 of 16), A Rank-1 rising by 1 an epoch to 60 -> moved
    # EPOCHS - that epoch points
    first = math.ceil(0.75 * EPOCHS)
    assert plateau_change(rec) == pytest.approx(EPOCHS - first)
    flat = dict(rec, curve=[dict(c, metrics={'A/Rank-1': 60.})
                            for c in rec['curve']])
    assert plateau_change(flat) == 0.
    assert plateau_change(dict(rec, curve=rec['curve'][:1])) is None


def test_summary_table_orders_settings_and_samplers():
    recs = [_record('gs', 1000, 0, 70., 50.), _record('pk', 1000, 0, 69.,
                                                      49.),
            _record('pk', 8000, 0, 60., 40.)]
    lines = summary_table(recs, ['pk', 'gs']).splitlines()[2:]
    assert [line.split(' | ')[0] + '|' + line.split(' | ')[3]
            for line in lines] == ['| 1,000|pk', '| 1,000|gs', '| 8,000|pk']
    assert json.loads(json.dumps(recs))  # records are plain JSON


def test_pseudo_label_table_means_over_seeds():
    from mmreid_gs.studies.render import pseudo_label_table
    recs = [dict(variant='gs', seed=s, pseudo_labels=[
        dict(epoch=1, num_clusters=30 + 2 * s, num_outliers=200, nmi=0.6 +
             0.1 * s, ari=0.04, purity=0.2)]) for s in (0, 1)]
    table = pseudo_label_table(recs)
    # clusters 30, 32 -> 31 ± 1 (sample sd 1.41 -> '1'); NMI 0.6, 0.7 ->
    # 0.650 ± 0.071
    assert '| gs | 1 | 31 ± 1 | 200 ± 0 | 0.650 ± 0.071 | 0.040 ± 0.000 |' \
        in table
    assert pseudo_label_table([dict(variant='pk', seed=0)]) == ''


def test_paired_difference_table_pairs_seeds():
    from mmreid_gs.studies.render import paired_difference_table
    recs = [_record('pk', 8000, 0, 60., 40.), _record('gs', 8000, 0, 63.,
                                                      39.),
            _record('pk', 8000, 1, 62., 41.), _record('gs', 8000, 1, 63.,
                                                      44.),
            # seed 2 has no PK run: left out of the pairs
            _record('gs', 8000, 2, 90., 90.)]
    lines = paired_difference_table(recs, 'pk', ['pk', 'gs']).splitlines()
    assert len(lines) == 3
    cells = lines[2].strip('| ').split(' | ')
    # A Rank-1: +3, +1 -> +2.0 ± 1.4, ahead on both; A mAP the same (the
    # record's mAP is Rank-1 - 10); B Rank-1: -1, +3 -> +1.0 ± 2.8, ahead
    # on one
    assert cells[:5] == ['8,000', 'pretrained', f'{ITERS:,}', 'gs', '2']
    assert cells[5:] == ['+2.0 ± 1.4 (2 of 2)', '+2.0 ± 1.4 (2 of 2)',
                         '+1.0 ± 2.8 (1 of 2)', '+1.0 ± 2.8 (1 of 2)']
    # no sampler shares a seed with the baseline: no table
    assert paired_difference_table(recs[1:2], 'pk') == ''

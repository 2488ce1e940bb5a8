"""``tools/test.py CONFIG --shortlist N`` on the tiny generated benchmark
(the network as initialised): N >= the gallery gives the exact metrics and
scores bit for bit, a smaller N the shortlisted evaluation, a bad N one
clear line."""
import glob
import json
import os.path as osp

import numpy as np
import pytest
from helpers import load_tool

from mmreid_gs.evaluation.results_file import load_test_results

SETS = ('synthetic_A', 'synthetic_B_unseen')


@pytest.fixture(scope='module')
def config(make_tiny_config, tmp_path_factory):
    folder = tmp_path_factory.mktemp('shortlist_tool')
    return make_tiny_config(folder, 'tiny_shortlist.py', graph_hook=False)


def _metrics(work_dir):
    """The test metrics of the one run in ``work_dir`` (its JSON log)."""
    files = glob.glob(osp.join(work_dir, '*', 'vis_data', '2*.json')) or \
        glob.glob(osp.join(work_dir, '*', '*.json'))
    assert len(files) == 1, files
    metrics = {}
    with open(files[0]) as f:
        for line in f:
            if line.strip():
                metrics.update({k: v for k, v in json.loads(line).items()
                                if '/' in k})
    assert metrics
    return metrics


def _test(config, tmp_path, tag, *options):
    test = load_tool('tools/test.py')
    work_dir = str(tmp_path / tag)
    out = str(tmp_path / f'{tag}.npz')
    code = test.run_cli(test.main, [config, '--work-dir', work_dir, '--out',
                                    out, '--rerank', *options])
    assert code == 0
    return _metrics(work_dir), load_test_results(out)


@pytest.fixture(scope='module')
def exact_run(config, tmp_path_factory):
    """The exact evaluation's metrics and results file."""
    return _test(config, tmp_path_factory.mktemp('exact'), 'exact')


def _check_shortlisted(results, exact, num):
    """Every set: N shortlisted entries a query, equal to the exact scores
    and ranked before every other entry."""
    for name in SETS:
        scores, idx = results[name]['scores'], results[name]['shortlist']
        assert idx.shape == (scores.shape[0], num)
        kept = np.take_along_axis(scores, idx, axis=1)
        np.testing.assert_allclose(
            kept, np.take_along_axis(exact[name]['scores'], idx, axis=1),
            rtol=1e-5, atol=1e-5)
        rest = np.ones_like(scores, dtype=bool)
        np.put_along_axis(rest, idx, False, axis=1)
        for i in range(scores.shape[0]):
            assert kept[i].min() > scores[i][rest[i]].max()


def test_shortlist_through_the_test_tool(config, exact_run, tmp_path):
    exact_metrics, exact = exact_run
    assert exact['synthetic_A']['scores'].shape == (6, 18)
    # N >= every gallery: the exact evaluation, to the last digit
    metrics, results = _test(config, tmp_path, 'full', '--shortlist', '18')
    assert metrics == exact_metrics
    for name in SETS:
        assert results[name].keys() == exact[name].keys()
        for field, value in exact[name].items():
            np.testing.assert_array_equal(results[name][field], value,
                                          f'{name}/{field}')
    # N < the gallery: shortlisted (the results file says which entries)
    metrics, results = _test(config, tmp_path, 'short', '--shortlist', '5',
                             '--shortlist-recall')
    assert metrics.keys() == exact_metrics.keys()
    _check_shortlisted(results, exact, 5)
    logs = glob.glob(osp.join(str(tmp_path / 'short'), '*', '*.log'))
    text = open(logs[0]).read()
    assert 'shortlist of 5: recall of the exact top-1' in text


@pytest.mark.parametrize('options, bad', [
    (['--shortlist', '0'], '0'),
    (['--cfg-options', 'test_cfg.shortlist=-4'], '-4'),
    (['--cfg-options', 'test_cfg.shortlist=many'], "'many'"),
])
def test_bad_shortlist_is_one_line(config, tmp_path, capsys, options, bad):
    test = load_tool('tools/test.py')
    code = test.run_cli(test.main, [config, '--work-dir',
                                    str(tmp_path / 'bad'), *options])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith('error (ConfigError): test_cfg.shortlist')
    assert f'got {bad}' in err


def test_recall_needs_a_shortlist(config, tmp_path, capsys):
    test = load_tool('tools/test.py')
    code = test.run_cli(test.main, [config, '--work-dir',
                                    str(tmp_path / 'r'), '--shortlist-recall'])
    assert code == 2
    assert '--shortlist-recall needs --shortlist N' in capsys.readouterr().err


def test_cascade_through_the_test_tool(config, exact_run, tmp_path):
    """--shortlist 4 --shortlist-refine 12: the shortlisted entries are
    exact and rank first."""
    _, results = _test(config, tmp_path, 'cascade', '--shortlist', '4',
                       '--shortlist-refine', '12')
    _check_shortlisted(results, exact_run[1], 4)


@pytest.mark.parametrize('options, message', [
    (['--shortlist-refine', '12'],
     '--shortlist-refine needs --shortlist N'),
    (['--shortlist', '5', '--shortlist-refine', '5'],
     'test_cfg.shortlist_refine (--shortlist-refine)=5 must be larger than '
     'the shortlist N=5'),
    (['--shortlist', '5', '--cfg-options', 'test_cfg.shortlist_refine=0'],
     'test_cfg.shortlist_refine (--shortlist-refine) must be None'),
])
def test_bad_refine_is_one_line(config, tmp_path, capsys, options, message):
    test = load_tool('tools/test.py')
    code = test.run_cli(test.main, [config, '--work-dir',
                                    str(tmp_path / 'bad'), *options])
    assert code == 2
    assert message in capsys.readouterr().err


def test_shortlist_study_smoke(config, tmp_path, capsys):
    study = load_tool('tools/analysis_tools/shortlist_study.py')
    code = study.run_cli(study.main, [
        config, 'none', '--shortlists', '4', '18', '--sets', 'synthetic_A',
        '--refine-factors', '3', '--work-dir', str(tmp_path / 'study')
    ])
    out = capsys.readouterr().out
    assert code == 0
    table = out[out.index('synthetic_A: 6 queries x 18 gallery'):]
    lines = table.splitlines()
    exact, short, full = lines[2].split(), lines[3].split(), lines[4].split()
    assert exact[0] == 'exact' and short[0] == '4' and full[0] == '18'
    # N >= the gallery: the exact numbers, full recall
    assert full[1:5] == exact[1:5] and full[5:7] == ['100.0', '100.0']
    # the cascade row of N = 4 (3 x 4 = 12 cosine candidates)
    assert lines[5].split()[0] == '4' and 'cascade: cosine 12 -> pooled 4' \
        in lines[5]
    assert 'synthetic_B_unseen:' not in table
    assert study.run_cli(study.main, [config, 'none', '--shortlists',
                                      '0']) == 2
    assert '--shortlists must be' in capsys.readouterr().err


def test_benchmark_shortlist_runs_tiny(capsys):
    bench = load_tool('tools/analysis_tools/benchmark_shortlist.py')
    args = bench.parse_args(['--channels', '8', '--height', '4', '--width',
                             '2', '--shortlists', '5', '40', '--refine',
                             '20'])
    bench.run_size('tiny', 12, 40, args, exact_limit=4)
    out = capsys.readouterr().out
    assert 'EXTRAPOLATED to 12 queries from 4 timed queries' in out
    assert 'shortlist 5' in out and 'shortlist 40' in out
    assert 'shortlist 5 / 20' in out

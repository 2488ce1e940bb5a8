"""tools/analysis_tools/gpu_check.{sh,py}: the parts that run without a GPU
(argument parsing, the dry run, the summary table, the Market-sized timing
code on tiny CPU sizes) and the timing on CUDA (marked, skips on the CPU)."""
import json
import os.path as osp
import re
import subprocess

import pytest
import torch
from helpers import REPO, load_tool, write_tiny_config

SCRIPT = osp.join(REPO, 'tools', 'analysis_tools', 'gpu_check.sh')


def _tool():
    return load_tool('tools/analysis_tools/gpu_check.py')


def test_dry_run_lists_every_step(tmp_path):
    proc = subprocess.run(
        ['bash', SCRIPT, '--dry-run', '--work-dir', str(tmp_path)],
        capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    rows = [line.split()[:2] for line in proc.stdout.splitlines()
            if line.split()[1:2] == ['skipped']]
    assert [r[0] for r in rows] == [
        'cuda_tests', 'benchmark_match', 'market_fp16', 'graph_devices',
        'gs_qaconv_exact', 'gs_qaconv_pairs', 'gs_tm_exact', 'gs_tm_union',
        'msmt_qaconv_shortlist', 'msmt_tm_shortlist', 'tm_fp16',
        'tm_fp16_large', 'ddp_nccl']
    assert '13 steps, 0 failed' in proc.stdout
    assert 'benchmark_match.py --device cuda --amp' in proc.stdout
    assert 'train configs/transmatcher_gs_demo.py --graph union --amp' in \
        proc.stdout
    assert '--num-query 11659 --num-gallery 82161 --num 100' in proc.stdout
    assert 'dist_train.sh configs/qaconv_gs_demo.py 2 --amp' in proc.stdout
    # the steps' time limits fit 10 minutes on one GPU
    text = open(SCRIPT).read()
    limits = [int(v) for v in re.findall(r'STEP_LIMIT=(\d+) run_step', text)]
    gs = [int(v) for v in re.findall(r'limit=(\d+)', text)]
    assert sum(limits[:4]) + gs[1] + 3 * gs[0] + 2 * limits[5] + \
        limits[6] + limits[7] <= 600
    bad = subprocess.run(['bash', SCRIPT, '--bogus'], capture_output=True,
                         text=True, timeout=60)
    assert bad.returncode == 2 and 'unknown argument --bogus' in bad.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason='a GPU is present')
def test_without_a_gpu_it_says_so(tmp_path):
    proc = subprocess.run(['bash', SCRIPT, '--work-dir', str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert 'no CUDA GPU' in proc.stderr


def test_summary_table(tmp_path, capsys):
    results = tmp_path / 'results.tsv'
    results.write_text('cuda_tests\tok\t3 passed in 2.0s\t4.2\n'
                       'market_fp16\tFAIL\texit 1; see x.log\t0.5\n')
    text = _tool().summary(str(results))
    lines = text.splitlines()
    assert lines[0].split() == ['step', 'status', 'result', 'seconds']
    assert lines[2].split()[:2] == ['cuda_tests', 'ok']
    assert lines[-1] == '2 steps, 1 failed: market_fp16'
    results.write_text('only\ttwo\n')
    with pytest.raises(SystemExit, match='expected 4 tab-separated'):
        _tool().summary(str(results))


def _market(device, dtype, tmp_path, ref_queries=None):
    tool = _tool()
    out = tmp_path / f'{device}_{dtype}.json'
    argv = ['market', '--device', device, '--num-query', '6',
            '--num-gallery', '10', '--channels', '8', '--height', '4',
            '--width', '2', '--dtype', dtype, '--ref-blocks', '4x4',
            '--chunk-queries', '4', '--json', str(out)]
    if ref_queries:
        argv += ['--ref-queries', str(ref_queries)]
    tool.main(argv)
    return json.loads(out.read_text())


def test_market_timing_code_on_the_cpu(tmp_path, capsys):
    figures = _market('cpu', 'float32', tmp_path)
    assert figures['max_abs_diff'] <= 1e-4
    assert figures['ours_s'] > 0 and figures['speedup'] > 0
    assert 'QAConvHead.match' in capsys.readouterr().out
    figures = _market('cpu', 'bfloat16', tmp_path, ref_queries=3)
    assert figures['ref_queries'] == 3
    assert figures['reference_s_all'] == pytest.approx(
        2 * figures['reference_s'])
    assert figures['max_abs_diff'] <= 0.05 * figures['max_abs_score']


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')
def test_market_timing_on_cuda_float16(tmp_path):
    figures = _market('cuda', 'float16', tmp_path)
    assert figures['device'].startswith('cuda')
    assert figures['max_abs_diff'] <= 0.02 * figures['max_abs_score']


def test_cuda_path_checks_on_the_cpu(tmp_path, capsys):
    """The graph, shortlist, TransMatcher-autocast and GS-epoch checks run
    (tiny sizes) on the CPU and pass."""
    tool = _tool()
    tool.main(['graph', '--device', 'cpu', '--small', '--num-classes', '45',
               '--num-candidates', '8'])
    assert 'worst agreement 1.0000' in capsys.readouterr().out
    for head in ('qaconv', 'transmatcher'):
        out = tmp_path / f'{head}.json'
        tool.main(['shortlist', '--head', head, '--device', 'cpu', '--small',
                   '--num-query', '12', '--num-gallery', '50', '--num', '6',
                   '--json', str(out)])
        figures = json.loads(out.read_text())
        assert figures['max_abs_diff'] <= 1e-5 and figures['num'] == 6
    tool.main(['tm-fp16', '--device', 'cpu', '--small', '--dtype',
               'bfloat16', '--num-query', '4', '--num-gallery', '6'])
    assert 'finite: True' in capsys.readouterr().out
    with pytest.raises(SystemExit, match='differ beyond'):
        tool.main(['tm-fp16', '--device', 'cpu', '--small', '--dtype',
                   'bfloat16', '--num-query', '4', '--num-gallery', '6',
                   '--tol', '0'])
    config = write_tiny_config(tmp_path, train_ids=12, test_ids=4)
    figures = tool.train(tool.parse_args([
        'train', config, '--graph', 'union', '--iters', '2',
        '--num-candidates', '4', '--work-dir', str(tmp_path / 'work')]))
    assert figures['graph_path'] == 'union'
    assert figures['skipped_steps'] == 0 and len(figures['val_metrics']) == 2
    # the patched cost model is restored
    from mmreid_gs.engine.graph import candidates
    assert candidates.MAX_CANDIDATE_FRACTION == 0.25

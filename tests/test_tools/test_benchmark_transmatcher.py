"""tools/analysis_tools/benchmark_transmatcher.py runs (--quick sizes)."""
from helpers import load_tool


def test_quick_run_prints_rates_and_agreement(capsys):
    tool = load_tool('tools/analysis_tools/benchmark_transmatcher.py')
    tool.main(['--quick', '--ref-blocks', '3x5'])
    out = capsys.readouterr().out
    for label in ('TransMatcherHead.match, no_grad',
                  'TransMatcherHead.match, inference_mode',
                  'TransMatcherHead.match_pairs, inference_mode',
                  'public einsum formula', 'peak memory'):
        assert label in out
    diff = float(out.split('pairs: ')[1].split()[0])
    assert diff < 1e-4
    # the list kernel scores the same pairs as match
    pairs = float(out.split('max |match_pairs - match|')[1].split(': ')[1]
                  .split()[0])
    assert pairs < 1e-4

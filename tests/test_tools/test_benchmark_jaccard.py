"""tools/analysis_tools/benchmark_jaccard.py: its measurements at tiny
size, in this process; its SpCL-style reference agrees with
jaccard_distance."""
from helpers import load_tool

TASK = dict(n=120, dim=16, per_id=10, noise=0.5, k1=10, k2=3, eps=0.6,
            min_samples=4)


def test_sparse_and_reference_rows():
    tool = load_tool('tools/analysis_tools/benchmark_jaccard.py')
    row = tool.run_child(dict(TASK, kind='sparse'))
    # 12 well separated identities of 10: found exactly
    assert row['num_clusters'] == 12 and row['num_outliers'] == 0
    assert row['nmi'] == 1.0 and row['stored_pairs'] == 120 * 10
    assert row['jaccard_seconds'] > 0 and row['peak_mb'] >= 0
    ref = tool.run_child(dict(TASK, kind='reference', noise=1.5))
    assert ref['max_abs_diff'] < 1e-5
    assert ref['reference_seconds'] > 0

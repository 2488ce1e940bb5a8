"""tools/analysis_tools/readme_figures.py: the README block it renders from
a record (rows, seeds, the commits the figures come from)."""
import copy
import json
import os.path as osp

from helpers import REPO, load_tool


def _record():
    with open(osp.join(REPO, 'docs', 'readme_figures.json')) as f:
        return json.load(f)


def test_block_of_the_record_is_the_readme_block():
    tool = load_tool('tools/analysis_tools/readme_figures.py')
    record = _record()
    # the README's figures are those of its record
    assert tool._figures_only(tool.render(record)) == tool._figures_only(
        tool.readme_block())


def test_transmatcher_rows_and_commits_of_reused_runs():
    tool = load_tool('tools/analysis_tools/readme_figures.py')
    record = copy.deepcopy(_record())
    metrics = dict(record['runs']['gs_seed0']['metrics'])
    metrics['synthetic_A/Rank-1'] = 0.5
    record['runs']['tm_gs'] = dict(wall_s=1., metrics=metrics,
                                   commit='abc1234')
    record['runs']['tm_untrained'] = dict(wall_s=1., metrics=metrics,
                                          commit='abc1234')
    block = tool.render(record)
    rows = [r for r in block.splitlines() if r.startswith('| TransMatcher')]
    assert len(rows) == 2 and '| 50.0 / ' in rows[1]
    # every commit is named with its runs; a run without one is the
    # record's own
    own = record['versions']['commit']
    for name in ('gs_seed0', 'gs_tlift'):
        record['runs'][name].pop('commit', None)
    block = tool.render(record)
    assert 'from runs at commits ' in block
    assert 'abc1234 (tm_gs, tm_untrained)' in block
    assert f'{own} (gs_seed0, gs_tlift)' in block
    # one commit for every run: "at commit X"
    del record['runs']['tm_gs'], record['runs']['tm_untrained']
    for run in record['runs'].values():
        run['commit'] = 'def5678'
    assert 'at commit def5678:' in tool.render(record)

"""The drawing and analysis tools on a tiny generated benchmark with a
randomly initialised model: valid PNGs of the expected layout, clear
errors on bad input. The command lines are those of DESIGN.md."""
import json
import os.path as osp

import mmcv
import numpy as np
import pytest
from helpers import load_tool

from mmreid_gs.datasets import SyntheticReID
from mmreid_gs.evaluation.results_file import save_test_results


def _run(folder, name, argv):
    tool = load_tool(osp.join('tools', folder, f'{name}.py'))
    return tool.run_cli(tool.main, argv)


def _png(path):
    assert osp.isfile(path), path
    with open(path, 'rb') as f:
        assert f.read(8) == b'\x89PNG\r\n\x1a\n'
    img = mmcv.imread(path)
    assert img is not None and img.ndim == 3
    return img


@pytest.fixture(scope='module')
def bench(make_tiny_config, tmp_path_factory):
    folder = tmp_path_factory.mktemp('vis_tools')
    kw = dict(data_root=str(folder / 'data' / 'A'), num_train_ids=12,
              num_test_ids=6, num_cams=2, imgs_per_cam=2, img_size=(64, 32))
    query = SyntheticReID(split='query', **kw)
    gallery = SyntheticReID(split='gallery', **kw)
    train = SyntheticReID(split='train', **kw)
    # the tiny benchmark's domain A (the images above) as the set 'tiny'
    config = make_tiny_config(folder, test_sets=dict(tiny='a'))
    rng = np.random.default_rng(0)

    def split(ds):
        return ([ds.get_data_info(i)['img_path'] for i in range(len(ds))],
                np.asarray(ds.get_gt_labels()), np.asarray(ds.get_cam_ids()))

    (q_paths, q_pids, q_cams), (g_paths, g_pids, g_cams) = (split(query),
                                                            split(gallery))
    scores = rng.normal(size=(len(q_paths), len(g_paths))).astype(np.float32)
    sets = {}
    for name in ('set_a', 'set_b'):
        sets[name] = dict(scores=scores, query_pids=q_pids,
                          gallery_pids=g_pids, query_camids=q_cams,
                          gallery_camids=g_cams, query_paths=q_paths,
                          gallery_paths=g_paths)
    results = str(folder / 'results.npz')
    save_test_results(sets, results)
    # graph dumps of a "run" over 3 epochs
    work_dir = folder / 'run'
    (work_dir / 'graph').mkdir(parents=True)
    t_paths, t_labels, _ = split(train)
    first = [t_paths[int(np.flatnonzero(t_labels == c)[0])]
             for c in range(12)]
    for epoch in (2, 3, 4):
        nbrs = np.stack([rng.permutation(np.delete(np.arange(12), c))[:3]
                         for c in range(12)])
        np.savez_compressed(
            work_dir / 'graph' / f'epoch_{epoch}.npz',
            class_ids=np.arange(12), neighbors=nbrs,
            sample_indices=np.arange(12), img_paths=np.array(first),
            label_families=train.get_label_families())
    return dict(folder=folder, config=str(config), results=results,
                work_dir=str(work_dir), query=q_paths[0], gallery=g_paths[1],
                num_query=len(q_paths))


def test_vis_rank_list_design_command(bench):
    out = str(bench['folder'] / 'ranks')
    assert _run('visualization', 'vis_rank_list', [
        bench['config'], '--results', bench['results'], '--out-dir', out
    ]) == 0
    for name in ('set_a', 'set_b'):
        _png(osp.join(out, f'rank_list_{name}.png'))


def test_vis_rank_list_layout(bench):
    shapes = {}
    for topk, queries in ((3, 2), (6, 2), (3, 4)):
        out = str(bench['folder'] / f'r_{topk}_{queries}')
        assert _run('visualization', 'vis_rank_list', [
            bench['config'], '--results', bench['results'], '--out-dir',
            out, '--set', 'set_a', '--topk',
            str(topk), '--queries',
            str(queries)
        ]) == 0
        shapes[topk, queries] = _png(osp.join(
            out, 'rank_list_set_a.png')).shape
        assert not osp.exists(osp.join(out, 'rank_list_set_b.png'))
    assert shapes[6, 2][1] > shapes[3, 2][1]  # width grows with k
    assert shapes[6, 2][0] == shapes[3, 2][0]
    assert shapes[3, 4][0] > shapes[3, 2][0]  # one row per query
    assert shapes[3, 4][1] == shapes[3, 2][1]
    # --worst and --query-ids, pages of --per-image queries
    out = str(bench['folder'] / 'worst')
    assert _run('visualization', 'vis_rank_list', [
        bench['config'], '--results', bench['results'], '--out-dir', out,
        '--set', 'set_b', '--worst', '--queries', '3', '--per-image', '2'
    ]) == 0
    assert _png(osp.join(out, 'rank_list_set_b_1.png')).shape[0] > \
        _png(osp.join(out, 'rank_list_set_b_2.png')).shape[0]


def test_vis_rank_list_scores_from_the_model(bench):
    # no --results: the config's test sets scored by the initialised model
    out = str(bench['folder'] / 'computed')
    assert _run('visualization', 'vis_rank_list', [
        bench['config'], 'none', '--out-dir', out, '--queries', '2',
        '--topk', '3'
    ]) == 0
    _png(osp.join(out, 'rank_list_tiny.png'))


def test_vis_rank_list_errors(bench, capsys):
    out = str(bench['folder'] / 'bad')
    cases = [
        (['--results', str(bench['folder'] / 'none.npz')], 'not found'),
        (['--results', bench['results'], '--set', 'x'], "set 'x'"),
        (['--results', bench['results'], '--query-ids', '99'],
         'out of range'),
        (['--results', bench['results'], '--use', 'rerank'],
         'distmat_rerank'),
    ]
    for extra, msg in cases:
        rc = _run('visualization', 'vis_rank_list',
                  [bench['config'], '--out-dir', out] + extra)
        err = capsys.readouterr().err
        assert rc == 2 and msg in err and 'Traceback' not in err


def test_vis_correspondence_design_command(bench, capsys):
    out = str(bench['folder'] / 'corr.png')
    assert _run('visualization', 'vis_correspondence', [
        bench['config'], 'none', bench['query'], bench['gallery'], '--out',
        out, '--top', '5'
    ]) == 0
    _png(out)
    printed = capsys.readouterr().out
    # the printed split adds up: score = query + gallery + bias
    nums = [float(t) for t in printed.split() if t[-1].isdigit()
            and t.lstrip('-').replace('.', '').isdigit()]
    assert nums[0] == pytest.approx(sum(nums[1:4]), abs=2e-4)
    assert _run('visualization', 'vis_correspondence', [
        bench['config'], 'none', bench['query'] + '.missing',
        bench['gallery'], '--out', out
    ]) == 2


def test_vis_graph_design_command(bench, capsys):
    work_dir = bench['work_dir']
    assert _run('visualization', 'vis_graph', [work_dir]) == 0
    default = _png(osp.join(work_dir, 'graph', 'neighbors.png'))
    printed = capsys.readouterr().out
    assert 'look-alike share' in printed
    out2 = str(bench['folder'] / 'g2.png')
    out4 = str(bench['folder'] / 'g4.png')
    curve = str(bench['folder'] / 'family.png')
    assert _run('visualization', 'vis_graph', [
        work_dir, '--epochs', '2', '4', '--classes', '2', '--out', out2
    ]) == 0
    assert _run('visualization', 'vis_graph', [
        work_dir, '--epochs', '2', '4', '--classes', '4', '--out', out4,
        '--family-curve', curve
    ]) == 0
    g2, g4 = _png(out2), _png(out4)
    assert g4.shape[0] > g2.shape[0] and g4.shape[1] == g2.shape[1]
    assert default.shape[1] > g2.shape[1]  # 3 epochs by default
    _png(curve)
    assert _run('visualization', 'vis_graph', [work_dir, '--epochs',
                                               '7']) == 2
    assert 'epochs saved: 2 3 4' in capsys.readouterr().err
    assert _run('visualization', 'vis_graph',
                [str(bench['folder'])]) == 2


def test_analyze_results_and_logs(bench, tmp_path):
    out = str(tmp_path / 'analysis')
    assert _run('analysis_tools', 'analyze_results',
                [bench['results'], '--out-dir', out]) == 0
    for name in ('cmc', 'pairs_set_a', 'pairs_set_b'):
        _png(osp.join(out, f'{name}.png'))
    scalars = tmp_path / 'scalars.json'
    with open(scalars, 'w') as f:
        for i in range(1, 6):
            f.write(json.dumps(dict(loss=5. / i, pair_acc=i / 10, epoch=1,
                                    iter=i, step=i)) + '\n')
        f.write(json.dumps({'set_a/Rank-1': .5, 'step': 1}) + '\n')
    one, two = str(tmp_path / 'c1.png'), str(tmp_path / 'c2.png')
    assert _run('analysis_tools', 'analyze_logs', [
        'plot_curve', str(scalars), '--keys', 'loss', '--out', one
    ]) == 0
    assert _run('analysis_tools', 'analyze_logs', [
        'plot_curve', str(scalars), '--keys', 'loss', 'set_a/Rank-1',
        '--out', two
    ]) == 0
    assert _png(two).shape[0] > _png(one).shape[0]  # one panel per key
    assert _run('analysis_tools', 'analyze_logs', [
        'plot_curve', str(scalars), '--keys', 'los', '--out', one
    ]) == 2

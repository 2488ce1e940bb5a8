"""ReIDVisualizer: ranked lists (protocol kinds, frame colours on pixels,
layout), class-graph grids, QAConv correspondences, backends."""
import glob
import os.path as osp

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mmreid_gs.evaluation import functional
from mmreid_gs.registry import MODELS, VISUALIZERS
from mmreid_gs.utils import register_all_modules
from mmreid_gs.visualization import (ReIDVisualizer, average_precisions,
                                     class_graph_epoch, query_ranking,
                                     ranked_list_rows, select_queries)

register_all_modules(init_default_scope=False)


def _img(value, h=40, w=20):
    return np.full((h, w, 3), value, dtype=np.uint8)


def _vis(name, **kwargs):
    return VISUALIZERS.build(
        dict(type='mmreid_gs.ReIDVisualizer', name=name,
             cell_size=(40, 20), **kwargs))


def _frame_color(vis, image, row, col):
    x0, y0, _, _ = vis.last_layout['cells'][(row, col)]
    return tuple(int(v) for v in image[y0 + 1, x0 + 1])


# ------------------------------------------------------------- ranking
def test_query_ranking_by_hand():
    # gallery: 0 same id other cam, 1 same id same cam (ignored),
    # 2 other id, 3 same id other cam, 4 other id
    scores = [0.5, 3., 2., 0.1, 1.]
    out = query_ranking(scores, 7, 1, [7, 7, 3, 7, 4], [2, 1, 2, 3, 1],
                        topk=4)
    assert out['indices'].tolist() == [1, 2, 4, 0]
    assert out['kinds'] == ['ignored', 'non-match', 'non-match', 'match']
    # filtered list: 2, 4, 0 (hit at 3), 3 (hit at 4)
    assert out['first_hit'] == 3
    assert out['ap'] == pytest.approx((1 / 3 + 2 / 4) / 2)
    none = query_ranking(scores, 9, 1, [7, 7, 3, 7, 4], [2, 1, 2, 3, 1])
    assert none['first_hit'] is None and np.isnan(none['ap'])
    assert len(none['kinds']) == 5  # topk larger than the gallery


@pytest.mark.parametrize('ties', [False, True])
@pytest.mark.parametrize('dtype', [np.float32, np.float64])
def test_average_precisions_match_evaluate_rank(ties, dtype):
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(12, 30)).astype(dtype)
    if ties:  # a handful of distinct values: ties broken by gallery index
        scores = np.round(scores * 2).astype(dtype)
    q_pids, g_pids = rng.integers(0, 5, 12), rng.integers(0, 5, 30)
    q_cams, g_cams = rng.integers(0, 3, 12), rng.integers(0, 3, 30)
    aps = average_precisions(scores, q_pids, g_pids, q_cams, g_cams)
    # the same numbers as the metric's, bit for bit
    np.testing.assert_array_equal(
        aps, functional.average_precisions(-scores, q_pids, g_pids, q_cams,
                                           g_cams))
    ref = functional.evaluate_rank(-scores, q_pids, g_pids, q_cams, g_cams,
                                   max_rank=5)
    valid = ~np.isnan(aps)
    assert float(aps[valid].mean()) == ref['mAP']
    assert valid.sum() == ref['num_valid_queries']
    # and each ranked list's AP is its query's
    np.testing.assert_array_equal(aps, [
        query_ranking(scores[i], q_pids[i], q_cams[i], g_pids, g_cams)['ap']
        for i in range(12)
    ])
    worst = select_queries(scores, q_pids, g_pids, q_cams, g_cams, num=3,
                           worst=True)
    valid = np.sort(aps[~np.isnan(aps)])
    np.testing.assert_allclose(aps[worst], valid[:3])
    with pytest.raises(ValueError, match='out of range'):
        select_queries(scores, q_pids, g_pids, q_cams, g_cams,
                       query_ids=[12])


# ------------------------------------------------------------ drawing
def _rows(scores, kinds, n=1):
    return [
        dict(query=_img(200), gallery=[_img(60 + 10 * i)
                                       for i in range(len(scores))],
             scores=scores, kinds=kinds, title=f'query {r}')
        for r in range(n)
    ]


@pytest.mark.parametrize('inference', [False, True])
def test_perfect_scores_are_all_green(inference):
    vis = _vis(f't_green_{inference}')
    g_pids, g_cams = [1, 1, 1, 2, 3, 4], [2, 3, 4, 1, 1, 1]
    scores = [9., 8., 7., 1., 0., -1.]  # every match first
    ctx = torch.inference_mode() if inference else torch.no_grad()
    with ctx:
        r = query_ranking(scores, 1, 1, g_pids, g_cams, topk=3)
        assert r['ap'] == 1.0 and r['first_hit'] == 1
        img = vis.draw_ranked_lists(
            [dict(query=_img(200), gallery=[_img(80)] * 3,
                  scores=r['scores'], kinds=r['kinds'])])
    assert img.dtype == np.uint8 and img.ndim == 3
    assert _frame_color(vis, img, 0, 0) == ReIDVisualizer.QUERY_COLOR
    for col in (1, 2, 3):
        assert _frame_color(vis, img, 0, col) == ReIDVisualizer.MATCH_COLOR
    # the image inside the frame is kept as it was
    x0, y0, x1, y1 = vis.last_layout['cells'][(0, 1)]
    f = vis.frame
    assert (img[y0 + f:y1 - f, x0 + f:x1 - f] == 80).all()


def test_same_camera_match_is_grey_and_others_red():
    vis = _vis('t_grey')
    # best item: same identity AND camera as the query -> ignored (grey)
    r = query_ranking([5., 4., 3.], 1, 1, [1, 2, 1], [1, 1, 2], topk=3)
    assert r['kinds'] == ['ignored', 'non-match', 'match']
    assert r['first_hit'] == 2 and r['ap'] == pytest.approx(0.5)
    img = vis.draw_ranked_lists(_rows(r['scores'], r['kinds']))
    assert _frame_color(vis, img, 0, 1) == ReIDVisualizer.IGNORED_COLOR
    assert _frame_color(vis, img, 0, 2) == ReIDVisualizer.NON_MATCH_COLOR
    assert _frame_color(vis, img, 0, 3) == ReIDVisualizer.MATCH_COLOR


def test_ranked_list_layout_grows_with_k_and_rows():
    vis = _vis('t_layout')
    shapes = {}
    for k in (2, 4, 6):
        for n in (1, 2, 3):
            img = vis.draw_ranked_lists(
                _rows(np.zeros(k), ['match'] * k, n))
            shapes[k, n] = img.shape[:2]
    # width: one cell more per k; height: one row more per query
    dw = shapes[4, 1][1] - shapes[2, 1][1]
    assert dw > 0 and shapes[6, 1][1] - shapes[4, 1][1] == dw
    dh = shapes[2, 2][0] - shapes[2, 1][0]
    assert dh > 0 and shapes[2, 3][0] - shapes[2, 2][0] == dh
    assert shapes[6, 3][1] == shapes[6, 1][1]
    assert len(vis.last_layout['cells']) == 3 * 7
    with pytest.raises(ValueError, match='differ in length'):
        vis.draw_ranked_lists([dict(query=_img(1), gallery=[_img(1)],
                                    scores=[1., 2.], kinds=['match'])])
    with pytest.raises(ValueError, match='unknown ranked-list item kind'):
        vis.draw_ranked_lists(_rows([1.], ['hit']))


def test_ranked_list_rows_from_paths(tmp_path):
    import mmcv
    paths = []
    for i in range(5):
        paths.append(str(tmp_path / f'{i}.png'))
        mmcv.imwrite(_img(40 * i), paths[-1])
    scores = np.array([[1., 3., 2., 0.], [0., 1., 2., 3.]])
    rows = ranked_list_rows(scores, [1, 2], [1, 2, 1, 2], [0, 0], [1, 1, 1,
                                                                   1],
                            paths[:2], paths[1:], [0, 1], topk=2)
    assert rows[0]['gallery'] == [paths[2], paths[3]]
    assert rows[0]['kinds'] == ['non-match', 'match']
    assert 'AP 0.58' in rows[0]['title'] and 'rank 2' in rows[0]['title']
    img = _vis('t_paths').draw_ranked_lists(rows)
    assert img.shape[0] > 2 * 40
    with pytest.raises(FileNotFoundError, match='nope.png'):
        _vis('t_missing').draw_ranked_lists(
            [dict(query=str(tmp_path / 'nope.png'), gallery=[], scores=[],
                  kinds=[])])


def test_class_graph_grid_rows_and_family_frames():
    vis = _vis('t_graph')
    fams = np.array([0, 0, 1, 1, 2, 2])
    nbrs = np.array([[1, 2], [0, 3], [3, 4], [2, 0], [5, 0], [4, 1]])
    paths = [_img(30 * i) for i in range(6)]
    blocks = [class_graph_epoch(e, nbrs, paths, [0, 2, 5], fams)
              for e in (2, 8)]
    assert blocks[0]['labels'] == [[0, 1, 2], [2, 3, 4], [5, 4, 1]]
    assert blocks[0]['look_alike'] == [[True, False], [True, False],
                                       [True, False]]
    img = vis.draw_class_graph(blocks)
    cells = vis.last_layout['cells']
    assert sorted({r for r, _ in cells}) == [0, 1, 2]  # one row per class
    assert len(cells) == 3 * 2 * 3
    for r in range(3):
        for block in (0, 3):
            assert _frame_color(vis, img, r, block) == vis.QUERY_COLOR
            assert _frame_color(vis, img, r, block + 1) == vis.MATCH_COLOR
            assert _frame_color(vis, img, r, block + 2) == vis.IGNORED_COLOR
    wider = vis.draw_class_graph(blocks + [blocks[0]])
    assert wider.shape[1] > img.shape[1] and wider.shape[0] == img.shape[0]
    with pytest.raises(ValueError, match='out of range'):
        class_graph_epoch(1, nbrs, paths, [6])


@pytest.mark.parametrize('inference', [False, True])
def test_correspondence_picture(inference):
    torch.manual_seed(0)
    head = MODELS.build(dict(type='mmreid_gs.QAConvHead', num_features=8,
                             height=4, width=2)).eval()
    feats = F.normalize(torch.randn(2, 8, 4, 2), dim=1)
    vis = _vis(f't_corr_{inference}')
    ctx = torch.inference_mode() if inference else torch.no_grad()
    with ctx:
        corr = head.pair_correspondence(feats[0], feats[1])
        img = vis.draw_correspondence(_img(120, 64, 32), _img(180, 64, 32),
                                      corr, (4, 2), top=5, height=64)
    q, g = vis.last_layout['query'], vis.last_layout['gallery']
    assert q[2] < g[0]
    # lines cross the gap between the two images
    gap = img[q[1]:q[3], q[2] + 2:g[0] - 2]
    assert (gap != 255).any()
    with pytest.raises(ValueError, match='locations'):
        vis.draw_correspondence(_img(1), _img(1), corr, (3, 2))


def test_backends_receive_the_pictures(tmp_path):
    vis = _vis('t_local', vis_backends=[dict(type='LocalVisBackend')],
               save_dir=str(tmp_path))
    out = str(tmp_path / 'copy.png')
    img = vis.add_ranked_lists('rank_list_x', _rows([1.], ['match']),
                               step=3, out_file=out)
    saved = glob.glob(str(tmp_path / 'vis_data' / 'vis_image' /
                          'rank_list_x_3.png'))
    assert len(saved) == 1
    import mmcv
    np.testing.assert_array_equal(mmcv.imread(out, channel_order='rgb'), img)


def test_tensorboard_backend(tmp_path):
    pytest.importorskip('tensorboard')
    vis = _vis('t_tb', vis_backends=[dict(type='TensorboardVisBackend')],
               save_dir=str(tmp_path))
    vis.add_ranked_lists('rank_list_x', _rows([1.], ['match']), step=1)
    vis.close()
    events = glob.glob(osp.join(str(tmp_path), '**', 'events.out.*'),
                       recursive=True)
    assert events

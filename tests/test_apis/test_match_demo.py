"""tools/demo/match_demo.py on generated images."""
import os.path as osp
import shutil

import cv2
import numpy as np
import pytest
import torch
from apis_helpers import write_gallery
from helpers import load_tool


def _tool():
    return load_tool('tools/demo/match_demo.py')


@pytest.fixture(scope='module')
def setup(tiny_config, tiny_model, tmp_path_factory):
    folder = tmp_path_factory.mktemp('demo')
    ckpt = str(folder / 'tiny.pth')
    torch.save(dict(state_dict=tiny_model.state_dict()), ckpt)
    paths = write_gallery(folder / 'gallery', num=7, ext='.jpg')
    query = str(folder / 'query.jpg')
    shutil.copy(paths[2], query)
    return tiny_config, ckpt, query, str(folder / 'gallery'), paths, folder


def _rows(out):
    return [line.split() for line in out.splitlines()
            if line.strip()[:1].isdigit()]


def test_ranks_decides_and_draws(setup, capsys):
    config, ckpt, query, gallery, paths, folder = setup
    tool = _tool()
    picture = str(folder / 'ranked.png')
    # the threshold between the best and the second best score
    from mmreid_gs.apis import ReIDInferencer
    from mmreid_gs.apis.inference import init_model
    scores = ReIDInferencer(init_model(config, ckpt)).match([query], paths)
    best, second = torch.topk(scores[0], 2).values.tolist()
    threshold = (best + second) / 2
    code = tool.run_cli(tool.main, [
        config, ckpt, query, gallery, '--topk', '3', '--out', picture,
        '--threshold', f'{threshold:.6f}'
    ])
    out = capsys.readouterr().out
    assert code == 0
    rows = _rows(out)
    assert len(rows) == 3
    assert rows[0][3] == paths[2] and rows[0][2] == 'same'
    assert [r[2] for r in rows[1:]] == ['different', 'different']
    assert abs(float(rows[0][1]) - best) < 1e-3
    assert 'threshold: ' in out and '(given)' in out
    img = cv2.imread(picture)
    assert img is not None and img.shape[1] > img.shape[0]


def test_threshold_from_test_results(setup, capsys):
    config, ckpt, query, gallery, _, folder = setup
    results = str(folder / 'results.npz')
    np.savez(results, **{
        'A/scores': np.array([[3.0, 1.0], [0.5, 2.0]]),
        'A/query_pids': np.array([1, 2]),
        'A/gallery_pids': np.array([1, 2])
    })
    tool = _tool()
    code = tool.run_cli(tool.main, [
        config, ckpt, query, gallery, '--topk', '2', '--out',
        str(folder / 'r.jpg'), '--results', results, '--fpr', '0.5'
    ])
    out = capsys.readouterr().out
    assert code == 0
    # negatives 1.0, 0.5; FPR 0.5 allows one false positive: threshold 0.5
    assert 'threshold: 0.5000 (FPR 0.5 on A of' in out
    assert osp.isfile(str(folder / 'r.jpg'))


def test_bad_input_names_the_file(setup, tmp_path, capsys):
    config, ckpt, query, gallery, _, _ = setup
    tool = _tool()
    out = str(tmp_path / 'x.png')

    def error(argv):
        code = tool.run_cli(tool.main, argv)
        err = capsys.readouterr().err
        assert code == 2
        assert 'Traceback' not in err
        return err.splitlines()[0]

    text = tmp_path / 'notes.jpg'
    text.write_text('not an image')
    line = error([config, ckpt, str(text), gallery, '--out', out])
    assert line.startswith('error (') and str(text) in line
    empty = tmp_path / 'empty'
    empty.mkdir()
    assert str(empty) in error([config, ckpt, query, str(empty), '--out',
                                out])
    broken = tmp_path / 'broken'
    shutil.copytree(gallery, broken)
    bad = broken / 'g3.jpg'
    bad.write_bytes(bad.read_bytes()[:100])  # truncated: does not decode
    assert str(bad) in error([config, ckpt, query, str(broken), '--out',
                              out])
    missing = str(tmp_path / 'missing.jpg')
    assert missing in error([config, ckpt, missing, gallery, '--out', out])
    assert '--set needs --results' in error(
        [config, ckpt, query, gallery, '--out', out, '--set', 'A'])
    assert not osp.exists(out)

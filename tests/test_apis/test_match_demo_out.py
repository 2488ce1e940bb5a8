"""tools/demo/match_demo.py: where the ranked picture goes, and that an
existing picture is never replaced silently."""
import os
import os.path as osp

import cv2
import torch
from apis_helpers import write_gallery
from helpers import load_tool


def test_default_out_is_named_after_the_query_and_never_overwritten(
        tiny_config, tiny_model, tmp_path, monkeypatch, capsys):
    ckpt = str(tmp_path / 'tiny.pth')
    torch.save(dict(state_dict=tiny_model.state_dict()), ckpt)
    paths = write_gallery(tmp_path / 'gallery', num=4, ext='.jpg')
    gallery = str(tmp_path / 'gallery')
    tool = load_tool('tools/demo/match_demo.py')
    help_text = _help(tool, capsys)
    assert 'ranked_<query file name>.png' in help_text
    assert '--overwrite' in help_text

    work = tmp_path / 'cwd'
    work.mkdir()
    monkeypatch.chdir(work)
    args = [tiny_config, ckpt, paths[1], gallery, '--topk', '2']
    assert tool.run_cli(tool.main, args) == 0
    picture = work / 'ranked_g1.png'
    out = capsys.readouterr().out
    assert 'ranked picture: ranked_g1.png' in out
    assert cv2.imread(str(picture)) is not None
    assert os.listdir(str(work)) == ['ranked_g1.png']

    # the same command again: one line naming the file, exit 2, file kept
    with open(str(picture), 'ab') as f:
        f.write(b'mark')
    size = picture.stat().st_size
    assert tool.run_cli(tool.main, args) == 2
    err = capsys.readouterr().err
    assert err.startswith('error (ConfigError): --out ranked_g1.png exists; '
                          'pass --overwrite'), err
    assert picture.stat().st_size == size  # untouched
    # an explicit --out that exists: the same; --overwrite replaces it
    assert tool.run_cli(tool.main, args + ['--out', 'ranked_g1.png']) == 2
    capsys.readouterr()
    assert tool.run_cli(tool.main, args + ['--overwrite']) == 0
    assert picture.stat().st_size != size
    assert cv2.imread(str(picture)) is not None
    # another query gets its own picture
    assert tool.run_cli(tool.main, [tiny_config, ckpt, paths[2], gallery,
                                    '--topk', '2']) == 0
    assert sorted(os.listdir(str(work))) == ['ranked_g1.png',
                                             'ranked_g2.png']
    assert osp.isfile(str(work / 'ranked_g2.png'))


def _help(tool, capsys):
    try:
        tool.parse_args(['--help'])
    except SystemExit as err:
        assert err.code == 0
    return ' '.join(capsys.readouterr().out.split())

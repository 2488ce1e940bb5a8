"""configs/_base_/datasets/my_dataset.py pointed at another folder: the
child config its comment shows trains and validates on that folder (as
written, from a temporary folder), its --cfg-options do the same, and a
child that only changes ``my_dataset_root`` (which MMEngine does not carry
into the base's dataset dicts) is stopped with an error that says so."""
import glob
import os.path as osp
import re

import pytest
from helpers import CONFIGS, load_tool

from mmreid_gs.cli import load_config
from mmreid_gs.cli.config_checks import _data_roots
from mmreid_gs.utils.errors import ConfigError

TEMPLATE = osp.join(CONFIGS, '_base_', 'datasets', 'my_dataset.py')
PARENT = osp.join(CONFIGS, 'qaconv_gs_my_dataset.py')


def _commented_block(first, last):
    """The lines of the template's comment from the one starting with
    ``first`` to the next one starting with ``last``, without their ``#``
    and the indentation of the comment (``#   `` or ``# ``)."""
    lines = [re.sub(r'^#(   | )?', '', line)
             for line in open(TEMPLATE).read().splitlines()
             if line.startswith('#')]
    start = next(i for i, line in enumerate(lines) if line.startswith(first))
    end = next(i for i, line in enumerate(lines)
               if i >= start and line.lstrip().startswith(last))
    return lines[start:end + 1]


@pytest.fixture(scope='module')
def my_market(tmp_path_factory):
    from mmreid_gs.datasets.synthetic import generate_synthetic_reid
    root = str(tmp_path_factory.mktemp('own') / 'my_market')
    generate_synthetic_reid(root, 'A', num_train_ids=8, num_test_ids=4,
                            num_cams=2, imgs_per_cam=2, img_size=(128, 64))
    return root


def test_the_templates_child_config_trains_on_its_folder(
        my_market, tmp_path, capsys):
    snippet = '\n'.join(_commented_block("_base_ = ['./qaconv_gs_my_dataset",
                                         'val_cfg = dict('))
    assert "my_root = 'data/my_market'" in snippet
    child = tmp_path / 'my_market.py'
    child.write_text(snippet.replace("'./qaconv_gs_my_dataset.py'",
                                     repr(PARENT)).replace(
                                         "'data/my_market'", repr(my_market)))
    cfg = load_config(str(child))
    roots = dict(_data_roots(cfg))
    assert len(roots) == 5 and set(roots.values()) == {my_market}
    train = load_tool('tools/train.py')
    work_dir = str(tmp_path / 'run')
    assert train.run_cli(train.main, [
        str(child), '--work-dir', work_dir, '--cfg-options',
        'train_cfg.max_epochs=1', 'train_cfg.val_interval=1',
        'train_dataloader.num_workers=0',
        'train_dataloader.persistent_workers=False',
        'test_dataloader.num_workers=0', 'val_dataloader.num_workers=0'
    ]) == 0
    out = capsys.readouterr().out
    # 8 identities x 2 cameras x 2 images; 4 queries, 16 - 4 gallery images
    for split, images, ids in (('train', 32, 8), ('query', 4, 4),
                               ('gallery', 12, 4)):
        assert f'Market1501 ({split}): {images} images, {ids} identities' \
            in out, out[-3000:]
    assert re.search(r'^my_dataset\s+[\d.]+', out, re.M), out[-2000:]
    assert osp.isfile(osp.join(work_dir, 'epoch_1.pth'))
    log = open(glob.glob(osp.join(work_dir, '*', '*.log'))[0]).read()
    assert f"data_root='{my_market}'" in log


def test_the_templates_cfg_options_point_every_dataset_at_the_folder(
        my_market):
    block = _commented_block('or, without a new file', '(and the same two')
    options = {}
    for line in block:
        for item in line.split():
            if '=' in item and item.split('=')[0].endswith('data_root'):
                key, value = item.split('=', 1)
                options[key] = value
    assert len(options) == 3
    options.update({k.replace('test_cfg', 'val_cfg'): v
                    for k, v in options.items() if k.startswith('test_cfg')})
    options = {k: v.replace('data/my_market', my_market)
               for k, v in options.items()}
    cfg = load_config(PARENT, options)
    assert set(dict(_data_roots(cfg)).values()) == {my_market}


def test_changing_only_the_root_variable_is_refused(tmp_path):
    child = tmp_path / 'child.py'
    child.write_text(f'_base_ = [{PARENT!r}]\n'
                     "my_dataset_root = 'data/my_market'\n")
    with pytest.raises(ConfigError) as info:
        load_config(str(child))
    msg = str(info.value)
    assert msg.startswith(
        f"my_dataset_root = 'data/my_market' in {child} does not reach the "
        'datasets: train_dataloader.dataset.data_root, ')
    assert 'test_cfg.test_sets.my_dataset.query.data_root' in msg
    assert f"still use 'data/my_dataset', the value of {TEMPLATE}" in msg
    assert 'train_dataloader = dict(dataset=dict(data_root=' in msg
    # The same value as the base's, or a root no base defines: accepted.
    child.write_text(f'_base_ = [{PARENT!r}]\n'
                     "my_dataset_root = 'data/my_dataset'\n"
                     "other_root = 'elsewhere'\n")
    load_config(str(child))

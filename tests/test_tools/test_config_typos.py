"""A misspelt argument in a config file, in one of its bases or on the
command line: one line naming the key path, where it was set, the closest
valid argument and the valid ones; exit code 2; nothing built."""
import os
import os.path as osp

import pytest
from helpers import CONFIGS, load_tool

from mmreid_gs.cli import load_config
from mmreid_gs.utils.errors import ConfigError

#: (config line, key path, class, closest, part of the valid list)
TYPOS = [
    ('train_cfg = dict(max_epoch=1)', 'train_cfg.max_epoch',
     'EpochBasedTrainLoop', 'max_epochs',
     'dynamic_intervals, max_epochs, val_begin, val_interval'),
    ('train_dataloader = dict(sampler=dict(num_instance=4))',
     'train_dataloader.sampler.num_instance', 'GraphSampler',
     'num_instances', 'batch_size, batches_per_epoch, num_instances'),
    ('optim_wrapper = dict(optimizer=dict(lrr=0.02))',
     'optim_wrapper.optimizer.lrr', 'SGD', 'lr', 'lr, maximize, momentum'),
]


def _expected(path, where, cls, closest, valid):
    key = path.split('.')[-1]
    return (f'error (ConfigError): {path} ({where}): {cls} takes no '
            f'argument {key!r}. Did you mean: {closest}? Its arguments: ')


@pytest.fixture(scope='module')
def tiny(make_tiny_config, tmp_path_factory):
    return make_tiny_config(tmp_path_factory.mktemp('typos'))


@pytest.mark.parametrize('line,path,cls,closest,valid', TYPOS)
def test_a_typo_in_a_config_file_is_one_line_and_exit_2(
        tiny, tmp_path, capsys, monkeypatch, line, path, cls, closest,
        valid):
    monkeypatch.delenv('MMREID_GS_DEBUG', raising=False)
    child = tmp_path / 'typo.py'
    child.write_text(f'_base_ = [{tiny!r}]\n{line}\n')
    train = load_tool('tools/train.py')
    work_dir = str(tmp_path / 'run')
    assert train.run_cli(train.main,
                         [str(child), '--work-dir', work_dir]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and 'MMREID_GS_DEBUG' in err[1]
    assert err[0].startswith(_expected(path, f'in {child}', cls, closest,
                                       valid)), err[0]
    assert valid in err[0]
    assert not osp.exists(work_dir)  # stopped before building anything

    # The same key on the command line: the same line, naming the option.
    option = path + '=' + ('0.02' if path.endswith('lrr') else '1')
    assert train.run_cli(train.main, [
        tiny, '--work-dir', work_dir, '--cfg-options', option]) == 2
    err = capsys.readouterr().err.splitlines()[0]
    assert err.startswith(_expected(path, f'--cfg-options {option}', cls,
                                    closest, valid)), err


def test_a_typo_in_a_base_names_the_base(tiny, tmp_path):
    base = tmp_path / 'base.py'
    base.write_text(f'_base_ = [{tiny!r}]\n'
                    'train_cfg = dict(val_intreval=1)\n')
    child = tmp_path / 'child.py'
    child.write_text("_base_ = ['./base.py']\nfoo = 1\n")
    with pytest.raises(ConfigError) as info:
        load_config(str(child))
    assert str(info.value).startswith(
        f'train_cfg.val_intreval (in {base}): EpochBasedTrainLoop takes no '
        "argument 'val_intreval'. Did you mean: val_interval?")


def test_component_arguments_not_in_the_base_are_checked_not_refused(tiny):
    """A new key of a component is accepted when its class takes it (the
    DataLoader's persistent_workers, which the tiny test dataloader does
    not set), and refused with the class's arguments when it does not."""
    cfg = load_config(tiny, {'test_dataloader.persistent_workers': True})
    assert cfg.test_dataloader.persistent_workers is True
    with pytest.raises(ConfigError) as info:
        load_config(tiny, {'test_dataloader.persistant_workers': True})
    msg = str(info.value)
    assert msg.startswith(
        'test_dataloader.persistant_workers (--cfg-options '
        'test_dataloader.persistant_workers=True): DataLoader takes no '
        "argument 'persistant_workers'. Did you mean: persistent_workers?")
    # Deeper components: the model's parts, a hook, a pipeline step.
    for option, cls in (('model.head.num_feature', 'QAConvHead'),
                        ('custom_hooks.0.pk_epoch', 'GraphSamplerHook'),
                        ('test_cfg.pipeline.1.scal', 'Resize')):
        with pytest.raises(ConfigError, match=rf'^{option} .*: {cls} takes '
                           'no argument'):
            load_config(tiny, {option: 1})


def test_every_shipped_config_passes_the_check():
    names = [f for f in os.listdir(CONFIGS) if f.endswith('.py')]
    assert len(names) > 20
    for name in names:
        load_config(osp.join(CONFIGS, name))


def test_a_typo_deeper_in_the_model_is_explained_when_built(
        tiny, tmp_path, capsys, monkeypatch):
    """norm_cfg is built by the backbone (mmcv's build_norm_layer), not by
    a builder the check knows: its TypeError (raised by _BatchNorm, a base
    of the registered BatchNorm2d) becomes the same line."""
    monkeypatch.delenv('MMREID_GS_DEBUG', raising=False)
    child = tmp_path / 'deep.py'
    child.write_text(f'_base_ = [{tiny!r}]\nmodel = dict(backbone=dict('
                     "norm_cfg=dict(type='BN', momentun=0.1)))\n")
    train = load_tool('tools/train.py')
    assert train.run_cli(train.main, [
        str(child), '--work-dir', str(tmp_path / 'run')]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[-2].startswith(
        f'error (ConfigError): model.backbone.norm_cfg.momentun (in {child}'
        "): BatchNorm2d takes no argument 'momentun'. Did you mean: "
        'momentum? Its arguments: affine, '), err
    assert 'Traceback' not in '\n'.join(err)


def test_other_type_errors_are_not_explained(tiny):
    from mmreid_gs.cli.config_checks import explain_type_error
    load_config(tiny)
    for err in (TypeError('Foo.__init__() got an unexpected keyword '
                          "argument 'momentun'"),  # no such dict
                TypeError("unsupported operand type(s) for +: 'int' and "
                          "'str'"), ValueError('x')):
        assert explain_type_error(err) is None

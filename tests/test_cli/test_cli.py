"""What the tools share (mmreid_gs.cli), without training: which
errors are one line and which keep their traceback, Ctrl-C, the dataset key
path check, worker sizing, visualisation backends, the summary table, and
checkpoint files that are not checkpoints."""
import io
import os.path as osp
import sys
import zipfile
from types import SimpleNamespace

import pytest
import torch
from helpers import CONFIGS, load_tool
from mmengine.config import Config

from mmreid_gs.engine.checkpoint import load_from_local, load_weights_file
import mmreid_gs.cli.runner as cli_runner
from mmreid_gs.cli import (apply_runner_args, check_dataset_configs,
                           format_metrics_table, interrupted_message,
                           is_user_error, load_config, run_cli,
                           size_dataloader_workers)
from mmreid_gs.utils import (ReIDUserError, ReIDUserFileError,
                             ReIDUserKeyError, ReIDUserTypeError)
from mmreid_gs.utils.errors import ConfigError
from mmreid_gs.visualization.backends import check_vis_backends


def _raiser(err):

    def main(argv):
        raise err

    return main


@pytest.mark.parametrize('err', [
    ReIDUserError('bad value 3 for x'),
    ReIDUserKeyError('test_cfg.test_sets.a has no `query`'),
    ReIDUserTypeError('wrong kind'),
    ReIDUserFileError('not a checkpoint'),
    ConfigError('--out must end with .npz'),
    FileNotFoundError('no such folder: data/x'),
    KeyError('Foo is not in the mmreid_gs::model registry. Please check'),
    TypeError("class `QAConvHead` in mmreid_gs/models/heads/qaconv_head.py: "
              "__init__() got an unexpected keyword argument 'hieght'"),
])
def test_user_errors_are_one_line_with_exit_code_2(err, capsys, monkeypatch):
    monkeypatch.delenv('MMREID_GS_DEBUG', raising=False)
    assert is_user_error(err)
    assert run_cli(_raiser(err), []) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[0].startswith(f'error ({type(err).__name__}): ')
    assert "'" not in lines[0][:len(type(err).__name__) + 10]  # no quotes
    assert len(lines) == 2 and 'MMREID_GS_DEBUG' in lines[1]


@pytest.mark.parametrize('err', [
    ValueError('operands could not be broadcast together'),
    KeyError('scores_qq'),
    TypeError("unsupported operand type(s) for +: 'int' and 'str'"),
    RuntimeError('mat1 and mat2 shapes cannot be multiplied'),
    IndexError('index 3 is out of bounds'),
])
def test_bugs_keep_their_traceback(err, monkeypatch):
    """A package bug is not reported as the user's mistake."""
    monkeypatch.delenv('MMREID_GS_DEBUG', raising=False)
    assert not is_user_error(err)
    with pytest.raises(type(err)):
        run_cli(_raiser(err), [])


def test_user_error_types_keep_their_builtin_bases():
    assert issubclass(ReIDUserError, ValueError)
    assert issubclass(ReIDUserKeyError, KeyError)
    assert issubclass(ReIDUserTypeError, TypeError)
    assert issubclass(ReIDUserFileError, RuntimeError)
    assert issubclass(ConfigError, ReIDUserError)
    assert str(ReIDUserKeyError('plain text')) == 'plain text'


def test_ctrl_c_is_one_line_and_exit_130(capsys, monkeypatch):
    monkeypatch.delenv('MMREID_GS_DEBUG', raising=False)
    monkeypatch.setattr(cli_runner, '_LAST_RUNNER', None)
    assert run_cli(_raiser(KeyboardInterrupt()), []) == 130
    err = capsys.readouterr().err
    assert err.count('\n') == 1 and err.startswith('interrupted (Ctrl-C)')
    assert 'Traceback' not in err


def test_an_error_raised_while_handling_ctrl_c_is_an_interrupt(
        capsys, monkeypatch):
    """MMEngine's Config.pretty_text turns a KeyboardInterrupt into a
    SyntaxError (bare except) when Ctrl-C hits a checkpoint save."""
    monkeypatch.delenv('MMREID_GS_DEBUG', raising=False)
    monkeypatch.setattr(cli_runner, '_LAST_RUNNER', None)

    def main(argv):
        try:
            raise KeyboardInterrupt
        except:  # noqa: E722
            raise SyntaxError('Failed to format the config file')

    assert run_cli(main, []) == 130
    assert capsys.readouterr().err.startswith('interrupted (Ctrl-C)')
    with pytest.raises(SystemExit):  # --help and argparse errors pass
        run_cli(_raiser(SystemExit(0)), [])


def test_interrupted_message_names_the_last_checkpoint_and_resume(
        tmp_path, monkeypatch):
    ckpt = tmp_path / 'epoch_3.pth'
    ckpt.write_bytes(b'x')
    (tmp_path / 'last_checkpoint').write_text(str(ckpt))
    runner = SimpleNamespace(
        work_dir=str(tmp_path), _train_loop=object(),
        cfg=SimpleNamespace(filename='configs/qaconv_gs_demo.py'))
    monkeypatch.setattr(cli_runner, '_LAST_RUNNER', lambda: runner)
    msg = interrupted_message()
    assert str(ckpt) in msg
    assert (f'python tools/train.py configs/qaconv_gs_demo.py --work-dir '
            f'{tmp_path} --resume {ckpt}') in msg
    assert 'nothing was deleted' in msg
    runner._train_loop = None  # a test run: no resume command
    assert '--resume' not in interrupted_message()


def _config(text, tmp_path, name='cfg.py'):
    path = tmp_path / name
    path.write_text(text.replace('CONFIGS', repr(CONFIGS)))
    return Config.fromfile(str(path))


MARKET_OVER_DEMO = """
_base_ = [CONFIGS + '/qaconv_gs_demo.py',
          CONFIGS + '/_base_/datasets/my_dataset.py']
train_dataloader = dict(
    dataset=dict(_base_.my_dataset_train, pipeline=_base_.train_pipeline))
"""


def test_dataset_argument_from_a_base_names_the_key_path(tmp_path):
    """The demo's SyntheticReID arguments merge into a Market1501 dict:
    the error names the key path and the `_delete_` fix."""
    cfg = _config(MARKET_OVER_DEMO, tmp_path)
    with pytest.raises(ReIDUserTypeError) as info:
        check_dataset_configs(cfg)
    msg = str(info.value)
    assert '`train_dataloader.dataset.domain`' in msg
    assert '`train_dataloader.dataset.num_train_ids`' in msg
    assert 'Market1501 takes no argument' in msg
    assert '_delete_=True' in msg
    # With _delete_ the inherited dict is replaced: accepted.
    fixed = MARKET_OVER_DEMO.replace('pipeline=_base_.train_pipeline',
                                     'pipeline=_base_.train_pipeline, '
                                     '_delete_=True')
    check_dataset_configs(_config(fixed, tmp_path, 'fixed.py'))


def test_dataset_key_path_of_a_test_set(tmp_path):
    cfg = Config(dict(test_cfg=dict(test_sets=dict(mine=dict(
        query=dict(type='Market1501', data_root='x', split='query'),
        gallery=dict(type='Market1501', data_root='x', split='gallery',
                     domian='A'))))))
    with pytest.raises(ReIDUserTypeError, match=r'`test_cfg\.test_sets\.'
                       r'mine\.gallery\.domian`'):
        check_dataset_configs(cfg)
    # Every shipped config passes the check.
    import glob
    for path in sorted(glob.glob(osp.join(CONFIGS, '*.py'))):
        check_dataset_configs(Config.fromfile(path))


def test_auto_scale_lr_flag():
    train = load_tool('tools/train.py', '_tool_train_launch_test')
    demo = osp.join(CONFIGS, 'qaconv_gs_demo.py')
    args = train.parse_args([demo, '--auto-scale-lr'])
    cfg = train.merge_args(Config.fromfile(demo), args)
    assert cfg.auto_scale_lr == dict(enable=True, base_batch_size=32)
    market = osp.join(CONFIGS, 'qaconv_gs_market.py')
    cfg = Config.fromfile(market)
    assert cfg.auto_scale_lr == dict(enable=False, base_batch_size=64)
    cfg.auto_scale_lr = None
    with pytest.raises(ConfigError, match='base_batch_size'):
        train.merge_args(cfg, train.parse_args([market, '--auto-scale-lr']))


def test_workers_fit_the_machine_and_persistent_follows():
    cfg = Config(dict(
        train_dataloader=dict(num_workers=4, persistent_workers=True),
        val_dataloader=dict(num_workers=0, persistent_workers=True),
        test_dataloader=dict(num_workers=1)))
    changes = size_dataloader_workers(cfg, cpus=2)
    assert cfg.train_dataloader.num_workers == 2
    assert cfg.train_dataloader.persistent_workers is True
    assert cfg.val_dataloader.persistent_workers is False
    assert cfg.test_dataloader.num_workers == 1
    assert len(changes) == 2 and 'configured 4' in changes[0]
    cfg.train_dataloader.num_workers = 0
    size_dataloader_workers(cfg, cpus=2)
    assert cfg.train_dataloader.persistent_workers is False


def test_vis_backend_flag_and_missing_package(monkeypatch):
    cfg = Config(dict(visualizer=dict(type='ReIDVisualizer', vis_backends=[
        dict(type='LocalVisBackend')])))
    args = SimpleNamespace(local_rank=0, launcher='none', work_dir='w',
                           vis_backend=['tensorboard'])
    apply_runner_args(cfg, args, 'x.py')
    assert [b['type'] for b in cfg.visualizer.vis_backends] == [
        'LocalVisBackend', 'TensorboardVisBackend']
    assert cfg.visualizer.type == 'ReIDVisualizer'
    monkeypatch.setitem(sys.modules, 'tensorboard', None)  # not installed
    with pytest.raises(ReIDUserError, match='pip install tensorboard'):
        check_vis_backends(cfg)
    cfg.visualizer.vis_backends = [dict(type='LocalVisBackend')]
    check_vis_backends(cfg)


def test_metrics_table_in_percent():
    table = format_metrics_table({
        'synthetic_A/Rank-1': 0.676, 'synthetic_A/mAP': 0.614,
        'synthetic_A/Rank-1_rerank': 0.6761, 'synthetic_B/Rank-10': 1.0,
        'synthetic_A/TPR@FPR=1e-2': 0.5, 'data_time': 0.1})
    lines = table.splitlines()
    assert lines[0].split() == ['set', 'Rank-1', 'Rank-5', 'Rank-10', 'mAP',
                                'mINP', '(%)']
    assert lines[1].split() == ['synthetic_A', '67.6', '-', '-', '61.4', '-']
    assert lines[2].split() == ['synthetic_A', 'rerank', '67.6', '-', '-',
                                '-', '-']
    assert lines[3].split() == ['synthetic_B', '-', '-', '100.0', '-', '-']
    assert lines[4] == 'synthetic_A/TPR@FPR=1e-2: 0.5'
    assert format_metrics_table({}) == ''


@pytest.mark.parametrize('content,why', [
    (b'model = dict(type="QAConvReID")\n', 'it is a text file'),
    (b'', 'the file is empty'),
    (b'\x00\x01\x02\x03binary', 'it starts with the bytes'),
])
def test_a_file_that_is_not_a_checkpoint(tmp_path, content, why):
    path = tmp_path / 'model.pth'
    path.write_bytes(content)
    with pytest.raises(ReIDUserFileError) as info:
        load_from_local(str(path))
    msg = str(info.value)
    assert str(path) in msg and 'is not a checkpoint we can read' in msg
    assert why in msg
    assert 'weights_only' not in msg  # never suggest turning it off
    assert path.read_bytes() == content  # untouched


def test_a_checkpoint_holding_objects_is_refused_without_bad_advice(
        tmp_path):
    path = tmp_path / 'pickled.pth'
    torch.save({'state_dict': {}, 'obj': SimpleNamespace(a=1)}, str(path))
    with pytest.raises(ReIDUserFileError) as info:
        load_from_local(str(path))
    msg = str(info.value)
    assert 'types.SimpleNamespace' in msg
    assert 'weights_only set to False' not in msg
    assert 'Re-running' not in msg
    with pytest.raises(ReIDUserError) as info:
        load_weights_file(str(path))
    assert 'Re-running' not in str(info.value)
    # A real checkpoint still loads, under inference mode too.
    good = tmp_path / 'good.pth'
    torch.save({'state_dict': {'w': torch.ones(2)}}, str(good))
    with torch.inference_mode():
        assert load_from_local(str(good))['state_dict']['w'].sum() == 2


def _checkpoint_bytes(legacy=False):
    buf = io.BytesIO()
    torch.save({'state_dict': {'w': torch.randn(16, 16)}}, buf,
               _use_new_zipfile_serialization=not legacy)
    return buf.getvalue()


@pytest.mark.parametrize('name,content', [
    ('truncated zip', _checkpoint_bytes()[:300]),
    ('truncated at half', _checkpoint_bytes()[:len(_checkpoint_bytes()) // 2]),
    ('corrupt zip header',
     _checkpoint_bytes()[:60] + b'\xff' * 300 + _checkpoint_bytes()[360:]),
    ('zip of another program', None),
    ('truncated legacy pickle', _checkpoint_bytes(legacy=True)[:-20]),
    ('legacy pickle cut in its header', _checkpoint_bytes(legacy=True)[:30]),
    ('pickle of garbage', b'\x80\x02' + bytes(range(7, 107))),
])
def test_a_corrupt_checkpoint_is_a_one_line_user_error(tmp_path, name,
                                                       content):
    path = tmp_path / 'epoch_1.pth'
    if content is None:
        with zipfile.ZipFile(path, 'w') as z:
            z.writestr('notes.txt', 'not a model')
        content = path.read_bytes()
    path.write_bytes(content)
    with pytest.raises(ReIDUserFileError) as info:
        load_from_local(str(path))
    msg = str(info.value)
    assert str(path) in msg and 'weights_only' not in msg
    assert is_user_error(info.value)
    with pytest.raises(ReIDUserError) as info:
        load_weights_file(str(path))
    assert str(path) in str(info.value)
    assert path.read_bytes() == content  # untouched


def test_a_bug_under_torch_load_keeps_its_traceback(tmp_path, monkeypatch):
    """Only the errors of a bad file become the one-line error."""
    path = tmp_path / 'good.pth'
    path.write_bytes(_checkpoint_bytes())

    def buggy_load(*args, **kwargs):
        raise TypeError("unsupported operand type(s) for +: 'int' and 'str'")

    monkeypatch.setattr(torch, 'load', buggy_load)
    for load in (load_from_local, load_weights_file):
        with pytest.raises(TypeError) as info:
            load(str(path))
        assert not is_user_error(info.value)


@pytest.mark.parametrize('files,why', [
    ({'cfg.py': 'model = dict(\n'}, 'SyntaxError'),
    ({'cfg.py': 'a = 1\n  b = 2\n'}, 'IndentationError'),
    ({'cfg.py': "_base_ = ['./base.py']\n",
      'base.py': 'x = [1, 2\n'}, 'SyntaxError'),
    ({'cfg.py': "_base_ = ['./no_such_base.py']\n"}, 'no_such_base.py'),
    ({'cfg.py': "_base_ = ['./base.py']\nb = {{_base_.nokey}}\n",
      'base.py': 'a = 1\n'}, 'nokey'),
    ({'cfg.py': "_base_ = ['./base.py']\nb = _base_.nokey\n",
      'base.py': 'a = 1\n'}, 'nokey'),
    ({'cfg.py': 'a = undefined_name\n'}, 'undefined_name'),
    ({'cfg.py': "_base_ = ['no_such_package::x.py']\n"}, 'ValueError'),
])
def test_a_bad_config_file_is_a_one_line_user_error(tmp_path, files, why):
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    path = str(tmp_path / 'cfg.py')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    msg = str(info.value)
    assert msg.startswith(f'cannot read config {path}: ')
    assert why in msg
    assert is_user_error(info.value)
    with pytest.raises(ConfigError, match='config file not found'):
        load_config(str(tmp_path / 'missing.py'))


def test_a_bug_under_config_loading_keeps_its_traceback(tmp_path,
                                                        monkeypatch):
    path = tmp_path / 'cfg.py'
    path.write_text('a = 1\n')
    assert load_config(str(path)).a == 1

    def buggy_fromfile(*args, **kwargs):
        raise TypeError("'NoneType' object is not subscriptable")

    monkeypatch.setattr(Config, 'fromfile', buggy_fromfile)
    with pytest.raises(TypeError):
        load_config(str(path))


def test_runs_built_within_one_second_log_to_their_own_work_dirs(
        tmp_path, monkeypatch):
    # MMEngine names a run's logger after its second-resolution timestamp
    # and hands back an existing logger of that name: without unique
    # timestamps the second run's log lands in the first run's work dir.
    import time

    from mmengine.model import BaseModel

    from mmreid_gs.cli import CLIRunner
    from mmreid_gs.cli.runner import _log_file

    class Tiny(BaseModel):

        def forward(self, *args, **kwargs):
            return {}

    now = time.time()
    monkeypatch.setattr(time, 'time', lambda: now)
    logs = []
    for name in ('first', 'second'):
        runner = CLIRunner(
            model=Tiny(), work_dir=str(tmp_path / name),
            default_scope='mmreid_gs')
        runner.logger.info(f'line of {name}')
        logs.append(_log_file(runner))
    assert logs[0] != logs[1]
    for name, log in zip(('first', 'second'), logs):
        assert log.startswith(str(tmp_path / name))
        assert f'line of {name}' in open(log).read()


def test_resume_with_nothing_to_resume_says_so(tmp_path):
    """--resume (no path) in a work dir without a checkpoint: the message
    names the folder and says that training starts from scratch; with a
    `last_checkpoint` there, or without auto-resume, there is none."""
    runner = SimpleNamespace(_resume=True, _load_from=None,
                             work_dir=str(tmp_path))
    msg = cli_runner.nothing_to_resume(runner)
    assert msg == (f'--resume: no checkpoint found in {tmp_path} (no '
                   '`last_checkpoint` file there); nothing was resumed, '
                   'training starts from scratch.')
    ckpt = tmp_path / 'epoch_1.pth'
    ckpt.write_bytes(b'')
    (tmp_path / 'last_checkpoint').write_text(str(ckpt))
    assert cli_runner.nothing_to_resume(runner) is None
    runner = SimpleNamespace(_resume=False, _load_from=None,
                             work_dir=str(tmp_path / 'empty'))
    assert cli_runner.nothing_to_resume(runner) is None


def test_summary_names_the_versions():
    import mmengine
    line = cli_runner.versions_line()
    assert f'torch {torch.__version__}' in line
    assert f'mmengine {mmengine.__version__}' in line
    assert 'mmcv ' in line and 'mmpretrain ' in line and 'numpy ' in line

"""The first hour of a new user, through the real tools on tiny generated
data: a quiet console that logs every epoch and ends with a summary, no
foreign warnings, Ctrl-C as one line (exit 130, nothing deleted), exact
resume with two dataloader workers, TensorBoard, and the README's own-dataset
and inference examples run as written."""
import glob
import importlib.util
import os
import os.path as osp
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from helpers import REPO, checkpoint_state, load_tool

from mmreid_gs.evaluation.results_file import load_test_results

README = osp.join(REPO, 'README.md')
#: The README and the docs pages it links to (the reference moved there).
DOC_PAGES = [README] + sorted(glob.glob(osp.join(REPO, 'docs', '*.md')))


def _write(make_tiny_config, folder, workers=0, epochs=2):
    """The tiny benchmark as a new user's config: 8 training ids, colour
    jitter, domain A only, progress bars on, no graph dumps."""
    return make_tiny_config(
        folder, train_ids=8, augment=('flip', 'jitter', 'occlusion'),
        workers=workers, test_sets=dict(synthetic_A='a'),
        graph_hook=dict(save_graph=False), progress=True, epochs=epochs,
        log_interval=3)


def _tool(name, *args, cwd=None, timeout=300):
    return subprocess.run(
        [sys.executable, osp.join(REPO, 'tools', f'{name}.py'), *args],
        cwd=cwd or REPO, capture_output=True, text=True, timeout=timeout)


def _has_tensorboard():
    return importlib.util.find_spec('tensorboard') is not None


FOREIGN = ('MultiScaleDeformableAttention', "Only use 'alpha'",
           '"FileClient" will be deprecated', 'HardDiskBackend')


def test_help_and_import_show_no_foreign_warning():
    proc = _tool('train', '--help', timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert '--vis-backend' in proc.stdout and '--auto-scale-lr' in proc.stdout
    assert proc.stderr == '', proc.stderr
    proc = subprocess.run(
        [sys.executable, '-c', 'import mmreid_gs.models, mmreid_gs.apis'],
        capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stderr == '', proc.stderr


@pytest.fixture(scope='module')
def trained(make_tiny_config, tmp_path_factory):
    """One tiny training and test through the tools, as a user runs them."""
    folder = tmp_path_factory.mktemp('first_hour')
    config = _write(make_tiny_config, folder)
    work_dir = str(folder / 'run')
    extra = ['--vis-backend', 'tensorboard'] if _has_tensorboard() else []
    train = _tool('train', config, '--work-dir', work_dir, *extra)
    assert train.returncode == 0, train.stderr[-3000:]
    out = str(folder / 'scores.npz')
    test = _tool('test', config, osp.join(work_dir, 'epoch_2.pth'),
                 '--work-dir', str(folder / 'test'), '--out', out,
                 '--rerank', '--tlift')
    assert test.returncode == 0, test.stderr[-3000:]
    return folder, config, work_dir, train, test, out


def test_console_is_short_and_the_log_file_keeps_everything(trained):
    _, _, work_dir, train, _, _ = trained
    console = train.stdout + train.stderr
    for text in FOREIGN + ('paramwise_options', 'Hooks will be executed',
                           'Traceback'):
        assert text not in console, text
    before = console.split('Epoch(train)')[0].splitlines()
    assert len(before) < 25, '\n'.join(before)
    assert 'model: QAConvReID / ResNetIBN-18' in console
    # Everything MMEngine printed before is in the log file, and the full
    # config is dumped next to the checkpoints.
    log = glob.glob(osp.join(work_dir, '*', '*.log'))
    assert len(log) == 1
    text = open(log[0]).read()
    assert 'paramwise_options' in text and 'System environment' in text
    assert 'Config:' in text and 'FileClient' not in text
    assert osp.isfile(osp.join(work_dir, 'tiny.py'))


def test_every_epoch_logs_its_last_iteration_and_the_run_its_first(trained):
    """8 iterations an epoch with interval 3: 1 (first of the run), 3, 6
    and 8 (the end of the epoch, which MMEngine skips by default)."""
    train = trained[3]
    epoch1 = re.findall(r'Epoch\(train\) \[1\]\[\s*(\d+)/8\]', train.stdout)
    epoch2 = re.findall(r'Epoch\(train\) \[2\]\[\s*(\d+)/8\]', train.stdout)
    assert epoch1 == ['1', '3', '6', '8']
    assert epoch2 == ['3', '6', '8']


LABELS = ('last checkpoint', 'best checkpoint', 'log', 'metrics JSON',
          'scores (--out)', 'versions')


def _summary(stdout):
    """(table lines, label -> path) of the block ending the output."""
    block = stdout.split('-' * 60)
    assert len(block) == 3, stdout[-2000:]
    lines = block[1].strip().splitlines()
    paths = dict(line.split(': ', 1) for line in lines
                 if line.startswith(LABELS))
    table = [line for line in lines if not line.startswith(LABELS)]
    return table, {k: v.strip() for k, v in paths.items()}


def test_train_and_test_end_with_a_summary(trained):
    folder, _, work_dir, train, test, out = trained
    lines, paths = _summary(train.stdout)
    assert len(lines) == 2
    assert lines[0].split() == ['set', 'Rank-1', 'Rank-5', 'Rank-10', 'mAP',
                                'mINP', '(%)']
    row = lines[1].split()
    assert row[0] == 'synthetic_A'
    assert all(0.0 <= float(v) <= 100.0 for v in row[1:])
    assert paths['last checkpoint'] == osp.join(work_dir, 'epoch_2.pth')
    for key in ('last checkpoint', 'log', 'metrics JSON'):
        assert osp.isfile(paths[key]), key
    assert paths['versions'].startswith('torch '), paths['versions']
    # The percentages are the logged fractions x 100.
    logged = float(re.search(r'synthetic_A/Rank-1: ([\d.]+)',
                             train.stdout).group(1))
    assert float(row[1]) == pytest.approx(100 * logged, abs=0.05)

    # Progress bars end their line: no log line continues one.
    assert not any('ETA' in line and ' - mmengine - ' in line
                   for line in test.stdout.splitlines())
    lines, paths = _summary(test.stdout)
    rows = [line.split()[:2] for line in lines[1:]]
    assert rows == [['synthetic_A', lines[1].split()[1]],
                    ['synthetic_A', 'rerank'], ['synthetic_A', 'tlift']]
    assert paths['scores (--out)'] == out
    assert osp.isfile(paths['metrics JSON'])
    assert 'last checkpoint' not in paths
    # The docs list the keys of the --out file.
    keys = {f for fields in load_test_results(out).values() for f in fields}
    readme = open(osp.join(REPO, 'docs', 'testing.md')).read()
    listed = readme[readme.index('- `tools/test.py --out results.npz`'):]
    listed = set(re.findall(r'`(?:<set>/)?(\w+)`', listed.split('\n- ')[0]))
    assert keys <= listed, keys - listed


@pytest.mark.skipif(not _has_tensorboard(), reason='tensorboard not installed')
def test_vis_backend_tensorboard_writes_events(trained):
    work_dir = trained[2]
    assert glob.glob(osp.join(work_dir, '*', 'vis_data', 'events.out.*'))


def test_ctrl_c_prints_one_line_keeps_checkpoints_exit_130(
        make_tiny_config, tmp_path):
    """SIGINT to the whole process group, as Ctrl-C in a terminal sends it
    (the main process and its 2 dataloader workers), twice, as impatient
    users press it."""
    config = _write(make_tiny_config, tmp_path, workers=2, epochs=50)
    work_dir = str(tmp_path / 'run')
    proc = subprocess.Popen(
        [sys.executable, osp.join(REPO, 'tools', 'train.py'), config,
         '--work-dir', work_dir], cwd=REPO, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, start_new_session=True,
        # as from a terminal: a suite launched in the background of a
        # non-interactive shell inherits SIGINT ignored, and Python keeps it
        # ignored in its children
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    ckpt = osp.join(work_dir, 'epoch_1.pth')
    deadline = time.time() + 240
    while not osp.isfile(osp.join(work_dir, 'last_checkpoint')):
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        assert time.time() < deadline, 'no checkpoint in time'
        time.sleep(0.5)
    time.sleep(1.0)
    os.killpg(proc.pid, signal.SIGINT)
    time.sleep(0.3)
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr[-3000:]
    assert 'Traceback' not in stderr and 'KeyboardInterrupt' not in stderr
    line = stderr.strip().splitlines()[-1]
    assert line.startswith('interrupted (Ctrl-C); last checkpoint ')
    last = open(osp.join(work_dir, 'last_checkpoint')).read().strip()
    assert osp.isfile(last) and osp.isfile(ckpt)
    assert f'--work-dir {work_dir} --resume {last}' in line
    assert 'nothing was deleted' in line
    assert len(stderr.strip().splitlines()) == 1, stderr
    assert os.listdir(work_dir)  # nothing deleted


def test_resume_is_exact_with_two_dataloader_workers(make_tiny_config,
                                                     tmp_path):
    """The augmentation runs in 2 persistent worker processes: a run stopped
    after epoch 1 and resumed equals the uninterrupted one bit for bit.
    (Without the workers' per-epoch seeding, 97 of the 115 tensors differ:
    the uninterrupted run's workers continue their streams into epoch 2,
    the resumed run's new workers start from MMEngine's fixed seeds.)"""
    config = _write(make_tiny_config, tmp_path, workers=2, epochs=2)
    train = load_tool('tools/train.py')
    full = str(tmp_path / 'full')
    assert train.run_cli(train.main,
                         [config, '--work-dir', full, '--no-validate']) == 0
    # Resume from the checkpoint the run saved after epoch 1.
    resumed = str(tmp_path / 'resumed')
    assert train.run_cli(train.main, [
        config, '--work-dir', resumed, '--no-validate', '--resume',
        osp.join(full, 'epoch_1.pth')
    ]) == 0
    a = checkpoint_state(osp.join(full, 'epoch_2.pth'))
    b = checkpoint_state(osp.join(resumed, 'epoch_2.pth'))
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=key)


def test_worker_pipeline_reseeds_at_each_new_epoch_seed():
    """The wrapped pipeline of a (persistent) worker draws the same numbers
    for the same (epoch seed, worker id), whatever ran before."""
    from multiprocessing import Value

    from mmreid_gs.engine.hooks.epoch_seed_hook import (_EpochSeededPipeline,
                                                        worker_seed)

    def draw(results):
        return float(np.random.rand()), torch.rand(1).item()

    shared = Value('q', 11, lock=False)
    pipe = _EpochSeededPipeline(draw, shared, worker_id=1)
    first = [pipe({}) for _ in range(3)]
    shared.value = 12
    second = [pipe({}) for _ in range(3)]
    shared.value = 11  # a resumed run at the first epoch again
    again = [pipe({}) for _ in range(3)]
    assert first == again and first != second
    other = _EpochSeededPipeline(draw, shared, worker_id=0)
    assert other({}) != again[0]
    assert worker_seed(11, 0) != worker_seed(11, 1) != worker_seed(12, 1)


def _readme_block(first_line):
    """The ```python block of the README or a docs page that starts with
    ``first_line``."""
    blocks = [block for page in DOC_PAGES for block in re.findall(
        r'```python\n(.*?)```', open(page).read(), re.S)]
    found = [b for b in blocks if b.startswith(first_line)]
    assert len(found) == 1, first_line
    return found[0]


def test_readme_inherit_with_delete_snippet(tmp_path):
    """The README's `_delete_` snippet, saved in configs/, replaces the
    demo's dataset and test sets; without `_delete_` the error names the
    key path."""
    from mmengine.config import Config

    from mmreid_gs.cli import check_dataset_configs
    from mmreid_gs.utils import ReIDUserTypeError
    snippet = _readme_block("_base_ = ['./qaconv_gs_demo.py'")
    path = osp.join(REPO, 'configs', f'_readme_snippet_{os.getpid()}.py')
    try:
        with open(path, 'w') as f:
            f.write(snippet)
        cfg = Config.fromfile(path)
        with open(path, 'w') as f:
            f.write(snippet.replace(', _delete_=True', ''))
        merged = Config.fromfile(path)
    finally:
        os.remove(path)
    dataset = cfg.train_dataloader.dataset
    assert dataset.type == 'Market1501' and 'domain' not in dataset
    assert dataset.data_root == 'data/my_dataset'
    assert dataset.pipeline == cfg.train_pipeline
    assert list(cfg.test_cfg.test_sets) == ['my_dataset']
    assert list(cfg.val_cfg.test_sets) == ['my_dataset']
    check_dataset_configs(cfg)
    assert len(merged.test_cfg.test_sets) == 3  # the demo's stayed
    with pytest.raises(ReIDUserTypeError,
                       match=r'`train_dataloader\.dataset\.domain`'):
        check_dataset_configs(merged)


def test_readme_own_dataset_and_inference_examples(tmp_path, monkeypatch,
                                                   capsys):
    """The README's commands for a Market-layout folder of one's own, run
    as written from a folder with `configs/` and `data/my_dataset` (one
    epoch instead of eight), then its inference example on the result."""
    from mmreid_gs.datasets.synthetic import generate_synthetic_reid
    small = dict(num_train_ids=8, num_test_ids=6, num_cams=2,
                 imgs_per_cam=2, img_size=(128, 64))
    generate_synthetic_reid(str(tmp_path / 'data' / 'my_dataset'), 'A',
                            **small)
    generate_synthetic_reid(
        str(tmp_path / 'data' / 'synthetic_reid' / 'B'), 'B', **small)
    os.symlink(osp.join(REPO, 'configs'), str(tmp_path / 'configs'))
    monkeypatch.chdir(tmp_path)
    train, test = load_tool('tools/train.py'), load_tool('tools/test.py')
    short = ['--cfg-options', 'train_cfg.max_epochs=1',
             'train_cfg.val_interval=1']
    assert train.run_cli(train.main,
                         ['configs/qaconv_gs_my_dataset.py', *short]) == 0
    ckpt = 'work_dirs/qaconv_gs_my_dataset/epoch_1.pth'
    assert osp.isfile(ckpt)
    assert test.run_cli(test.main,
                        ['configs/qaconv_gs_my_dataset.py', ckpt]) == 0
    out = capsys.readouterr().out
    assert re.search(r'^my_dataset\s+[\d.]+', out, re.M), out[-2000:]

    code = _readme_block('import glob\n\nfrom mmreid_gs.apis import')
    assert "'work_dirs/qaconv_gs_demo/epoch_8.pth'" in code
    exec(compile(code.replace("'work_dirs/qaconv_gs_demo/epoch_8.pth'",
                              repr(ckpt)),
                 'README', 'exec'), {})
    printed = [line for line in capsys.readouterr().out.splitlines()
               if ' -> ' in line]
    assert len(printed) == 3
    assert all(' -> data/synthetic_reid/B/bounding_box_test/' in line
               for line in printed)

"""Runner building and the end of a run: :class:`CLIRunner` (MMEngine's
runner with a short console), :func:`build_runner` (checks, worker sizing,
then the runner), the config summary it logs, the metrics table and
:func:`run_summary` printed at the end (the ``--out`` results file is
:mod:`mmreid_gs.evaluation.results_file`'s).
"""
import logging
import os.path as osp
import weakref
from typing import Dict, List, Optional

import mmcv
import mmengine
import mmpretrain
import numpy as np
import torch
from mmengine.config import Config
from mmengine.dist import master_only
from mmengine.runner import Runner, find_latest_checkpoint

# the packages whose modules a config names (imported: registered)
import mmreid_gs.datasets  # noqa: F401
import mmreid_gs.evaluation  # noqa: F401
import mmreid_gs.models  # noqa: F401
import mmreid_gs.visualization  # noqa: F401
from mmreid_gs._warnings import ForeignLogFilter
from mmreid_gs.engine.checkpoint import find_resumable_checkpoint
# registered: MMEngine's CheckpointHook, atomic, in the mmreid_gs scope
from mmreid_gs.engine.hooks.checkpoint_hook import CheckpointHook  # noqa
from mmreid_gs.registry import RUNNERS
from mmreid_gs.utils.errors import ReIDUserFileError
from mmreid_gs.visualization.backends import check_vis_backends
from .config_checks import check_dataset_configs, size_dataloader_workers


def _short(value, limit: int = 60) -> str:
    text = str(value)
    return text if len(text) <= limit else text[:limit - 3] + '...'


def _plural(count, word: str) -> str:
    return f'{count} {word}' + ('' if count == 1 else 's')


def config_summary(cfg: Config, mode: str = 'train') -> str:
    """A few lines about a run: model, data, schedule, where things go.

    Args:
        cfg (Config): The merged config.
        mode (str): ``'train'`` (training data, schedule and optimizer
            listed) or ``'test'`` (model, test sets and work dir only).
            Defaults to ``'train'``.

    Returns:
        str: The summary (the full config is dumped into the work dir).
    """
    lines = []
    model = cfg.get('model') or {}
    parts = [str(model.get('type'))]
    for key in ('backbone', 'neck', 'head'):
        part = model.get(key)
        if isinstance(part, dict) and 'type' in part:
            text = str(part['type'])
            if 'depth' in part:
                text += f'-{part["depth"]}'
            parts.append(text)
    lines.append('model: ' + ' / '.join(parts))
    train = (cfg.get('train_dataloader') or {}) if mode == 'train' else {}
    dataset = train.get('dataset') or {}
    train_cfg = cfg.get('train_cfg') or {}
    if dataset:
        sampler = (train.get('sampler') or {}).get('type', 'default sampler')
        lines.append(
            f'train: {dataset.get("type")} '
            f'{_short(dataset.get("data_root", ""))}, batch '
            f'{train.get("batch_size")} ({sampler}), '
            f'{_plural(train_cfg.get("max_epochs", "?"), "epoch")}, '
            f'{_plural(train.get("num_workers", 0), "worker")}')
    optim = (cfg.get('optim_wrapper') or {}).get('optimizer') or {}
    if dataset and optim:
        lines.append(f'optimizer: {optim.get("type")} lr '
                     f'{optim.get("lr")}')
    sets = ((cfg.get('test_cfg') or {}).get('test_sets') or
            (cfg.get('val_cfg') or {}).get('test_sets') or {})
    if isinstance(sets, dict) and sets:
        lines.append('test sets: ' + ', '.join(sets))
    lines.append(f'work dir: {cfg.get("work_dir")}')
    return '\n    '.join(lines)


class _ConsoleOnly(logging.Filter):
    """Keep records marked ``file_only`` and MMEngine's long listings (a
    line per parameter of ``paramwise_cfg``, the hook order) out of the
    console; the log file keeps them."""

    LISTINGS = ('paramwise_options -- ',
                'Hooks will be executed in the following order',
                # said on every run without DDP; nothing to act on
                'Distributed training is not used, all SyncBatchNorm',
                # MMEngine's loader; the runner logs "Load checkpoint from"
                'Loads checkpoint by ')

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, 'file_only', False):
            return False
        return not record.getMessage().startswith(self.LISTINGS)


class CLIRunner(Runner):
    """MMEngine's :class:`~mmengine.runner.Runner` with a short console.

    The console gets a few lines on the environment and the config instead
    of the full dump (some 600 lines before the first training line); the
    log file in the work dir still holds everything, and the full config is
    dumped next to the checkpoints as before. Foreign deprecation messages
    of MMEngine itself (``FileClient``) are dropped.
    """

    #: Timestamps this process's CLIRunners already used (see setup_env).
    _used_timestamps: set = set()

    #: The mode of the runner being built (see :func:`build_runner`).
    _building_mode = 'train'

    def __init__(self, *args, **kwargs):
        #: ``'train'`` or ``'test'`` (``tools/test.py``): a test run's
        #: header leaves out the training settings, and its config is
        #: dumped into its log folder, not over the training run's.
        self.run_mode = CLIRunner._building_mode
        super().__init__(*args, **kwargs)

    def setup_env(self, env_cfg: dict) -> None:
        """MMEngine's set-up, with a timestamp unique within the process.

        MMEngine names the logger, message hub and visualiser of a run after
        its second-resolution timestamp and returns an existing instance of
        that name: a second run built within the same second as an earlier
        one in this process (the sampler study, a notebook, the tests) would
        write its log into the first run's work dir. A repeated timestamp
        gets a ``_1``, ``_2``... suffix (the same on every rank, as each
        rank builds the same runners in turn).
        """
        super().setup_env(env_cfg)
        stamp, n = self._timestamp, 0
        while stamp in CLIRunner._used_timestamps:
            n += 1
            stamp = f'{self._timestamp}_{n}'
        CLIRunner._used_timestamps.add(stamp)
        self._timestamp = stamp

    def build_logger(self, *args, **kwargs):
        logger = super().build_logger(*args, **kwargs)
        if not any(isinstance(f, ForeignLogFilter) for f in logger.filters):
            logger.addFilter(ForeignLogFilter())
        for handler in logger.handlers:
            if type(handler) is logging.StreamHandler and not any(
                    isinstance(f, _ConsoleOnly) for f in handler.filters):
                handler.addFilter(_ConsoleOnly())
        return logger

    def _config_dump_path(self) -> str:
        """Where :meth:`dump_config` writes: the work dir (training, as
        MMEngine), or the run's timestamped log folder (a test run: the
        training run's config in the work dir stays as it was)."""
        name = osp.basename(self.cfg.filename) if self.cfg.filename else \
            f'{self.timestamp}.py'
        folder = self.log_dir if self.run_mode == 'test' else self.work_dir
        return osp.join(folder, name)

    @master_only
    def dump_config(self) -> None:
        """Dump the config (see :meth:`_config_dump_path`)."""
        self.cfg.dump(self._config_dump_path())

    def _log_env(self, env_cfg: dict) -> None:
        with _file_only(self.logger):
            super()._log_env(env_cfg)
        name = self.cfg.filename or 'config'
        self.logger.info(
            f'{name}: torch {torch.__version__} '
            f'({"CUDA" if torch.cuda.is_available() else "CPU"}), '
            f'seed {self.seed}, {self.world_size} process(es)\n    '
            f'{config_summary(self.cfg, self.run_mode)}\n    full config: '
            f'{self._config_dump_path()}; environment and config also in '
            'the log file')


class _file_only:
    """Context manager: records logged inside go to the log file only."""

    def __init__(self, logger: logging.Logger):
        self.logger = logger

    def _mark(self, record):
        record.file_only = True
        return True

    def __enter__(self):
        self.logger.addFilter(self._mark)

    def __exit__(self, *exc):
        self.logger.removeFilter(self._mark)


#: The runner of the last :func:`build_runner` call (for Ctrl-C messages).
_LAST_RUNNER = None


def build_runner(cfg: Config, mode: str = 'train') -> Runner:
    """Build the runner of a config (``runner_type`` honoured).

    Before building: dataset arguments are checked against their classes
    (:func:`check_dataset_configs`), dataloader workers are fitted to the
    machine (:func:`size_dataloader_workers`) and visualisation backends
    need their package (:func:`check_vis_backends`). Without a
    ``runner_type`` the runner is a :class:`CLIRunner` (short console).

    Args:
        cfg (Config): The merged config.
        mode (str): ``'train'`` or ``'test'`` (a :class:`CLIRunner` then
            lists no training settings and dumps its config into its log
            folder). Defaults to ``'train'``.

    Returns:
        Runner: The runner.
    """
    global _LAST_RUNNER
    if mode not in ('train', 'test'):
        raise ValueError(f"mode must be 'train' or 'test', got {mode!r}")
    check_dataset_configs(cfg)
    check_vis_backends(cfg)
    changes = size_dataloader_workers(cfg)
    if 'runner_type' in cfg:
        runner = RUNNERS.build(cfg)
    else:
        CLIRunner._building_mode = mode
        try:
            runner = CLIRunner.from_cfg(cfg)
        finally:
            CLIRunner._building_mode = 'train'
    for line in changes:
        runner.logger.info(line)
    _LAST_RUNNER = weakref.ref(runner)
    return runner


def last_runner() -> Optional[Runner]:
    """The runner of the last :func:`build_runner` call, while it is alive
    (``None`` before the first call or once it is freed)."""
    return _LAST_RUNNER() if _LAST_RUNNER is not None else None


#: Columns of the summary table, in this order; other metrics are listed.
SUMMARY_COLUMNS = ('Rank-1', 'Rank-5', 'Rank-10', 'mAP', 'mINP')


def format_metrics_table(metrics: Dict[str, float]) -> str:
    """Metrics named ``<set>/<metric>[_<variant>]`` as a table in percent.

    One row per set and variant (``synthetic_A``, ``synthetic_A rerank``),
    one column per ranking metric of :data:`SUMMARY_COLUMNS`; other scalar
    metrics (e.g. verification TPRs) follow as ``name: value`` lines, as
    logged.

    Args:
        metrics (dict): ``name -> value``; ranking metrics are fractions.

    Returns:
        str: The table ('' without metrics).
    """
    rows: Dict[str, Dict[str, float]] = {}
    others = []
    for name, value in metrics.items():
        if '/' not in name or not isinstance(value, (int, float)):
            continue
        set_name, metric = name.split('/', 1)
        base, _, variant = metric.partition('_')
        if base in SUMMARY_COLUMNS:
            row = set_name + (f' {variant}' if variant else '')
            rows.setdefault(row, {})[base] = float(value)
        else:
            others.append(f'{name}: {value:.4g}')
    if not rows and not others:
        return ''
    width = max([len('set')] + [len(r) for r in rows])
    lines = []
    if rows:
        lines.append(f'{"set":<{width}}  ' + '  '.join(
            f'{c:>7}' for c in SUMMARY_COLUMNS) + '   (%)')
        for row, values in rows.items():
            cells = [f'{100 * values[c]:7.1f}' if c in values else
                     f'{"-":>7}' for c in SUMMARY_COLUMNS]
            lines.append(f'{row:<{width}}  ' + '  '.join(cells))
    lines.extend(others)
    return '\n'.join(lines)


def _log_file(runner) -> Optional[str]:
    for handler in getattr(runner.logger, 'handlers', []):
        if isinstance(handler, logging.FileHandler):
            return handler.baseFilename
    return None


def last_metrics(runner: Runner) -> Optional[Dict[str, float]]:
    """The metrics of the runner's last validation or test, as kept by
    :class:`~mmreid_gs.engine.hooks.ReIDLoggerHook` (``None`` without)."""
    for hook in runner.hooks:
        metrics = getattr(hook, 'last_metrics', None)
        if metrics is not None:
            return metrics
    return None


def run_summary(runner: Runner,
                metrics: Optional[Dict[str, float]] = None,
                extra: Optional[Dict[str, str]] = None) -> str:
    """The block a tool prints at the end of a run.

    Args:
        runner (Runner): The finished runner.
        metrics (dict, optional): The final metrics (fractions).
        extra (dict, optional): More ``label -> path`` lines (e.g. the
            ``--out`` file).

    Returns:
        str: Metrics in percent, then the paths of the last (and best)
        checkpoint, the log file and the metrics JSON that exist.
    """
    lines = ['-' * 60]
    table = format_metrics_table(metrics or {})
    lines.append(table if table else 'no metrics (no test set evaluated)')
    paths = []
    last = last_checkpoint(runner.work_dir)
    if last is not None and getattr(runner, '_train_loop', None) is not None \
            and not isinstance(runner._train_loop, dict):
        paths.append(('last checkpoint', last))
    best = runner.message_hub.get_info('best_ckpt')
    if best:
        paths.append(('best checkpoint', best))
    log = _log_file(runner)
    if log:
        paths.append(('log', log))
    stamp = runner.timestamp
    for candidate in (osp.join(runner.log_dir, f'{stamp}.json'),
                      osp.join(runner.log_dir, 'vis_data', f'{stamp}.json')):
        if osp.isfile(candidate):
            paths.append(('metrics JSON', candidate))
            break
    for label, path in (extra or {}).items():
        paths.append((label, path))
    paths.append(('versions', versions_line()))
    width = max(len(label) for label, _ in paths) if paths else 0
    lines.extend(f'{label + ":":<{width + 1}} {path}' for label, path in paths)
    lines.append('-' * 60)
    return '\n'.join(lines)


def nothing_to_resume(runner: Runner) -> Optional[str]:
    """What to tell a user whose ``--resume`` (without a path) finds no
    checkpoint in the work dir, or None when there is one (or no
    auto-resume was asked for).

    MMEngine then trains from scratch and logs only "Auto resumed from the
    latest checkpoint None."; a user who typed ``--resume`` after a crash,
    in the wrong folder, must learn that nothing was resumed.

    Args:
        runner (Runner): The built runner (not yet trained).

    Returns:
        str | None: The message.
    """
    if not runner._resume or runner._load_from is not None:
        return None
    if find_latest_checkpoint(runner.work_dir) is not None:
        return None
    return (f'--resume: no checkpoint found in {runner.work_dir} (no '
            '`last_checkpoint` file there); nothing was resumed, training '
            'starts from scratch.')


def resolve_auto_resume(cfg: Config, rank: int = 0) -> List[str]:
    """Point ``--resume`` without a path at the newest readable checkpoint
    of the work dir.

    MMEngine resumes from the file ``last_checkpoint`` names, readable or
    not. Here every ``epoch_N.pth`` / ``iter_N.pth`` of ``cfg.work_dir``
    (and the ``last_checkpoint`` target) is a candidate, newest first, and
    the first that loads is set as ``cfg.load_from`` (``cfg.resume`` True).
    Unreadable newer ones are kept, renamed to ``<name>.unreadable`` by
    rank 0 (the resumed run writes that epoch again), and named in the
    returned warnings. Without any checkpoint, ``cfg.resume`` becomes False
    (training from scratch, with a warning).

    Args:
        cfg (Config): The merged config (``work_dir`` set); changed in
            place.
        rank (int): This process's rank (only rank 0 renames files).

    Returns:
        list[str]: Warnings for the log.

    Raises:
        ReIDUserFileError: The work dir has checkpoints and none can be read
            (nothing is renamed or deleted).
    """
    work_dir = cfg.work_dir
    choice = find_resumable_checkpoint(work_dir, keep_aside=rank == 0)
    if choice.checkpoint is None:
        if choice.unreadable:
            listed = '; '.join(f'{path}: {why}'
                               for path, why, _ in choice.unreadable)
            raise ReIDUserFileError(
                f'--resume: no checkpoint of {work_dir} can be read '
                f'({listed}). Nothing was changed; start without --resume '
                'to train from scratch, or pass --resume PATH.')
        cfg.resume = False
        cfg.load_from = None
        return [f'--resume: no checkpoint found in {work_dir} (no '
                'epoch_N.pth, iter_N.pth or `last_checkpoint` there); '
                'nothing was resumed, training starts from scratch.']
    cfg.resume = True
    cfg.load_from = choice.checkpoint
    lines = []
    for path, why, kept in choice.unreadable:
        where = f'kept as {kept}' if kept else 'kept'
        lines.append(f'--resume: {path} cannot be read ({why}); {where}. '
                     f'Resuming from {choice.checkpoint}, the newest '
                     'readable checkpoint.')
    return lines


def versions_line() -> str:
    """The versions a result depends on, for the end-of-run summary."""
    return (f'torch {torch.__version__}, mmengine {mmengine.__version__}, '
            f'mmcv {mmcv.__version__}, mmpretrain {mmpretrain.__version__}, '
            f'numpy {np.__version__}')


def last_checkpoint(work_dir: str) -> Optional[str]:
    """The checkpoint MMEngine's CheckpointHook saved last, if any."""
    marker = osp.join(work_dir, 'last_checkpoint')
    if osp.isfile(marker):
        with open(marker) as f:
            path = f.read().strip()
        if osp.isfile(path):
            return path
    return None

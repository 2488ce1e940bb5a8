"""What ``tools/train.py`` and ``tools/test.py`` share: config loading with
checked overrides, CPU-only distributed set-up, runner building, the end of
run summary, result export and the one-line errors of :func:`run_cli`. Kept
here (not in the tools) so that it is tested and reused.
"""
import difflib
import gc
import importlib
import inspect
import logging
import os
import os.path as osp
import signal
import weakref
from typing import Dict, List, Optional

import numpy as np
import torch
from mmengine.config import Config, ConfigDict
from mmengine.runner import Runner

from mmreid_gs._warnings import ForeignLogFilter
from mmreid_gs.registry import DATASETS, RUNNERS
from mmreid_gs.utils import register_all_modules
from mmreid_gs.utils.errors import ReIDUserError, ReIDUserTypeError

# Top-level keys that Runner.from_cfg reads although configs may omit them.
RUNNER_KEYS = {
    'model', 'work_dir', 'train_dataloader', 'val_dataloader',
    'test_dataloader', 'train_cfg', 'val_cfg', 'test_cfg', 'auto_scale_lr',
    'optim_wrapper', 'param_scheduler', 'val_evaluator', 'test_evaluator',
    'default_hooks', 'custom_hooks', 'data_preprocessor', 'load_from',
    'resume', 'launcher', 'env_cfg', 'log_processor', 'log_level',
    'visualizer', 'default_scope', 'randomness', 'experiment_name', 'cfg',
    'model_wrapper_cfg', 'find_unused_parameters', 'runner_type',
    'compile', 'strategy'
}

#: ``--vis-backend`` choice -> (MMEngine backend type, package it needs).
VIS_BACKENDS = {
    'local': ('LocalVisBackend', None),
    'tensorboard': ('TensorboardVisBackend', 'tensorboard'),
    'wandb': ('WandbVisBackend', 'wandb'),
}


class ConfigError(ReIDUserError):
    """A config or command-line problem a user can fix."""


def config_error(msg: str) -> ConfigError:
    """Build the error the tools report without a traceback."""
    return ConfigError(msg)


def _check_option(cfg: Config, key: str) -> None:
    """Refuse ``--cfg-options`` keys whose parent does not exist, and new
    keys anywhere except inside a component (a dict with ``type``)."""
    parts = key.split('.')
    node = dict(cfg.items())
    for depth, part in enumerate(parts):
        is_last = depth == len(parts) - 1
        if isinstance(node, (list, tuple)):
            if not part.isdigit() or int(part) >= len(node):
                raise config_error(
                    f'--cfg-options {key}: `{".".join(parts[:depth])}` is a '
                    f'list of {len(node)} items; `{part}` is not an index '
                    'of it.')
            node = node[int(part)]
            continue
        if not isinstance(node, dict):
            raise config_error(
                f'--cfg-options {key}: `{".".join(parts[:depth])}` is a '
                f'{type(node).__name__}, not a dict.')
        if part in node:
            node = node[part]
            continue
        if is_last and (depth == 0 and part in RUNNER_KEYS
                        or depth > 0 and 'type' in node):
            return  # a new argument of a component: checked when built
        where = '.'.join(parts[:depth]) or 'the config'
        close = difflib.get_close_matches(part, list(node.keys()), n=3)
        hint = f' Did you mean: {", ".join(close)}?' if close else ''
        raise config_error(f'--cfg-options {key}: `{where}` has no key '
                           f'`{part}`.{hint}')


def load_config(path: str, options: Optional[Dict] = None) -> Config:
    """Load a config and merge checked ``--cfg-options``.

    Args:
        path (str): Config file.
        options (dict, optional): ``key -> value`` overrides.

    Returns:
        Config: The merged config.
    """
    if not osp.isfile(path):
        raise config_error(f'config file not found: {path}')
    try:
        cfg = Config.fromfile(path)
    except Exception as err:  # syntax errors, missing _base_ files
        raise config_error(f'cannot read config {path}: {err}') from None
    if options:
        for key in options:
            _check_option(cfg, key)
        cfg.merge_from_dict(options)
    return cfg


def add_runner_args(parser, cfg_options_help: str) -> None:
    """Add the options ``tools/train.py`` and ``tools/test.py`` share:
    ``--work-dir``, ``--cfg-options``, ``--launcher`` and ``--local-rank``."""
    from mmengine.config import DictAction
    parser.add_argument('--work-dir', help='the dir to save logs (and models)')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction, help=cfg_options_help)
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none',
        help='job launcher')
    parser.add_argument(
        '--vis-backend', nargs='+', choices=sorted(VIS_BACKENDS),
        help='where to log scalars besides the work dir\'s JSON files '
        '(local, always on): tensorboard (needs `pip install tensorboard`; '
        'then `tensorboard --logdir WORK_DIR`), wandb (needs `pip install '
        'wandb`)')
    # torch.distributed.launch passes --local-rank
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)


def apply_runner_args(cfg: Config, args, config_path: str) -> None:
    """Set ``launcher``, ``work_dir`` (default ``work_dirs/<config name>``)
    and ``LOCAL_RANK`` from the options of :func:`add_runner_args`."""
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    cfg.launcher = args.launcher
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join(
            './work_dirs',
            osp.splitext(osp.basename(config_path))[0])
    backends = getattr(args, 'vis_backend', None)
    if backends:
        names = ['local'] + [b for b in backends if b != 'local']
        visualizer = cfg.get('visualizer') or ConfigDict(type='Visualizer')
        visualizer['vis_backends'] = [
            dict(type=VIS_BACKENDS[name][0]) for name in names
        ]
        cfg.visualizer = visualizer


def init_cpu_dist(cfg: Config) -> None:
    """Make the ``pytorch`` launcher work on machines without CUDA.

    MMEngine's launcher calls ``torch.cuda.set_device`` and wraps DDP with
    ``device_ids=[LOCAL_RANK]``. Without CUDA we initialise the process group
    with ``gloo`` first (MMEngine then skips its own initialisation) and wrap
    with ``device_ids=None``. With CUDA nothing changes.
    """
    launcher = cfg.get('launcher', 'none')
    if launcher == 'none' or torch.cuda.is_available():
        return
    if launcher != 'pytorch':
        raise config_error(
            f'--launcher {launcher} without CUDA is not supported; use '
            'torchrun (tools/dist_train.sh), which uses --launcher pytorch.')
    for var in ('RANK', 'WORLD_SIZE', 'MASTER_ADDR', 'MASTER_PORT'):
        if var not in os.environ:
            raise config_error(
                f'--launcher pytorch needs the environment variable {var}: '
                'start the tool with torchrun (see tools/dist_train.sh).')
    if not torch.distributed.is_initialized():
        torch.distributed.init_process_group(backend='gloo')
    env_cfg = cfg.setdefault('env_cfg', ConfigDict())
    env_cfg.setdefault('dist_cfg', ConfigDict())['backend'] = 'gloo'
    wrapper = cfg.get('model_wrapper_cfg') or ConfigDict(
        type='MMDistributedDataParallel', **_no_forward_buffer_sync())
    wrapper['device_ids'] = None
    cfg.model_wrapper_cfg = wrapper


def _no_forward_buffer_sync() -> dict:
    """DDP arguments that stop the buffer broadcast before every forward
    (MMEngine's default; SyncBuffersHook averages BN statistics after each
    epoch instead): ``forward_sync_buffers=False`` where PyTorch has it,
    which deprecates ``broadcast_buffers``; the buffers are still synced
    once when DDP wraps the model."""
    params = inspect.signature(
        torch.nn.parallel.DistributedDataParallel.__init__).parameters
    if 'forward_sync_buffers' in params:
        return dict(forward_sync_buffers=False)
    return dict(broadcast_buffers=False)


def _package_available(name: str) -> bool:
    try:
        importlib.import_module(name)
    except ImportError:
        return False
    return True


def check_vis_backends(cfg: Config) -> None:
    """Refuse visualisation backends whose package is not installed, with
    the ``pip install`` line, instead of an ImportError mid-run."""
    visualizer = cfg.get('visualizer') or {}
    packages = {typ: pkg for typ, pkg in VIS_BACKENDS.values() if pkg}
    for backend in visualizer.get('vis_backends') or []:
        typ = backend.get('type') if isinstance(backend, dict) else None
        typ = typ.split('.')[-1] if isinstance(typ, str) else typ
        package = packages.get(typ)
        if package and not _package_available(package):
            raise config_error(
                f'visualizer.vis_backends: {typ} needs the `{package}` '
                f'package, which is not installed: `pip install {package}` '
                f'(or leave out --vis-backend {package}).')


def _accepted_kwargs(cls) -> Optional[set]:
    """Keyword arguments a class's constructor chain accepts, or ``None``
    when some ``__init__`` of the chain takes ``**kwargs`` that nothing
    after it in the MRO closes (then anything may be accepted)."""
    names = set()
    for klass in cls.__mro__:
        init = klass.__dict__.get('__init__')
        if init is None:
            continue
        if klass is object:
            return None
        try:
            params = inspect.signature(init).parameters.values()
        except (TypeError, ValueError):
            return None
        names.update(p.name for p in params
                     if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))
        if not any(p.kind == p.VAR_KEYWORD for p in params):
            return names - {'self'}
    return None


def _dataset_configs(cfg: Config):
    """Yield ``(key path, dataset config)`` of every dataset a run builds:
    the dataloaders' datasets and the named test/val sets."""
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        dataset = (cfg.get(loader) or {}).get('dataset')
        if dataset is not None:
            yield f'{loader}.dataset', dataset
    for loop in ('val_cfg', 'test_cfg'):
        sets = (cfg.get(loop) or {}).get('test_sets')
        if isinstance(sets, dict):
            items = [(f'{loop}.test_sets.{name}', item)
                     for name, item in sets.items()]
        elif isinstance(sets, (list, tuple)):
            items = [(f'{loop}.test_sets[{i}]', item)
                     for i, item in enumerate(sets)]
        else:
            items = []
        for path, item in items:
            if not isinstance(item, dict):
                continue
            for split in ('query', 'gallery'):
                if isinstance(item.get(split), dict):
                    yield f'{path}.{split}', item[split]


def _check_dataset_config(path: str, dataset) -> None:
    if not isinstance(dataset, dict) or 'type' not in dataset:
        return
    for key in ('dataset', 'datasets'):  # dataset wrappers
        inner = dataset.get(key)
        if isinstance(inner, dict):
            _check_dataset_config(f'{path}.{key}', inner)
        elif isinstance(inner, (list, tuple)):
            for i, item in enumerate(inner):
                _check_dataset_config(f'{path}.{key}[{i}]', item)
    typ = dataset['type']
    cls = typ if isinstance(typ, type) else DATASETS.get(typ)
    if cls is None:
        return  # the registry reports an unknown type when it builds
    accepted = _accepted_kwargs(cls)
    if accepted is None:
        return
    unknown = sorted(k for k in dataset if k != 'type' and k not in accepted)
    if not unknown:
        return
    name = getattr(cls, '__name__', str(typ))
    keys = ', '.join(f'`{path}.{k}`' for k in unknown)
    raise ReIDUserTypeError(
        f'{keys}: {name} takes no argument '
        f'{", ".join(repr(k) for k in unknown)} (it takes '
        f'{", ".join(sorted(accepted))}). A dict in a config is merged into '
        f'the dict of the same key of its `_base_` configs; to replace the '
        f'inherited dataset instead, write `{path.split(".")[-1]}='
        f"dict(_delete_=True, type='{name}', ...)`.")


def check_dataset_configs(cfg: Config) -> None:
    """Refuse dataset configs with arguments their class does not take,
    naming the config key path (e.g. ``train_dataloader.dataset.domain``).

    The usual cause: a config inherits another one whose dataset dict has
    other arguments (the demo's ``SyntheticReID`` ``domain``); the dicts
    merge, and the constructor would fail far from the config with
    ``TypeError: ... unexpected keyword argument``.

    Args:
        cfg (Config): The merged config.

    Raises:
        ReIDUserTypeError: naming the key path and the accepted arguments.
    """
    register_all_modules(init_default_scope=False)
    for path, dataset in _dataset_configs(cfg):
        _check_dataset_config(path, dataset)


def _cpu_count() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - macOS, Windows
        return max(1, os.cpu_count() or 1)


def size_dataloader_workers(cfg: Config,
                            cpus: Optional[int] = None) -> List[str]:
    """Fit ``num_workers`` of the dataloaders to the machine and keep
    ``persistent_workers`` consistent with it.

    ``num_workers`` becomes ``min(configured, CPUs)`` (one process per
    core is what helps: more only compete for the cores and PyTorch warns);
    ``persistent_workers`` is turned off where ``num_workers`` is 0 (the
    DataLoader refuses the pair).

    Args:
        cfg (Config): The config, changed in place.
        cpus (int, optional): CPUs to size for. Defaults to the CPUs this
            process may run on.

    Returns:
        list[str]: One line per change, for the log.
    """
    cpus = _cpu_count() if cpus is None else int(cpus)
    changes = []
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg_loader = cfg.get(loader)
        if not isinstance(cfg_loader, dict):
            continue
        configured = int(cfg_loader.get('num_workers', 0) or 0)
        workers = min(configured, cpus)
        if workers != configured:
            cfg_loader['num_workers'] = workers
            changes.append(f'{loader}.num_workers: {workers} (configured '
                           f'{configured}; this machine has {cpus} CPUs)')
        if workers == 0 and cfg_loader.get('persistent_workers'):
            cfg_loader['persistent_workers'] = False
            changes.append(f'{loader}.persistent_workers: False '
                           '(num_workers is 0)')
    return changes


def _short(value, limit: int = 60) -> str:
    text = str(value)
    return text if len(text) <= limit else text[:limit - 3] + '...'


def config_summary(cfg: Config) -> str:
    """A few lines about a run: model, data, schedule, where things go.

    Args:
        cfg (Config): The merged config.

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
    train = cfg.get('train_dataloader') or {}
    dataset = train.get('dataset') or {}
    train_cfg = cfg.get('train_cfg') or {}
    if dataset:
        sampler = (train.get('sampler') or {}).get('type', 'default sampler')
        lines.append(
            f'train: {dataset.get("type")} '
            f'{_short(dataset.get("data_root", ""))}, batch '
            f'{train.get("batch_size")} ({sampler}), '
            f'{train_cfg.get("max_epochs", "?")} epochs, '
            f'{train.get("num_workers", 0)} workers')
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
                'Hooks will be executed in the following order')

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

    def _log_env(self, env_cfg: dict) -> None:
        with _file_only(self.logger):
            super()._log_env(env_cfg)
        name = self.cfg.filename or 'config'
        dumped = osp.join(self.work_dir, osp.basename(name))
        self.logger.info(
            f'{name}: torch {torch.__version__} '
            f'({"CUDA" if torch.cuda.is_available() else "CPU"}), '
            f'seed {self.seed}, {self.world_size} process(es)\n    '
            f'{config_summary(self.cfg)}\n    full config: {dumped}; '
            'environment and config also in the log file')


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


def build_runner(cfg: Config) -> Runner:
    """Build the runner of a config (``runner_type`` honoured).

    Before building: dataset arguments are checked against their classes
    (:func:`check_dataset_configs`), dataloader workers are fitted to the
    machine (:func:`size_dataloader_workers`) and visualisation backends
    need their package (:func:`check_vis_backends`). Without a
    ``runner_type`` the runner is a :class:`CLIRunner` (short console).
    """
    global _LAST_RUNNER
    register_all_modules(init_default_scope=False)
    check_dataset_configs(cfg)
    check_vis_backends(cfg)
    changes = size_dataloader_workers(cfg)
    if 'runner_type' in cfg:
        runner = RUNNERS.build(cfg)
    else:
        runner = CLIRunner.from_cfg(cfg)
    for line in changes:
        runner.logger.info(line)
    _LAST_RUNNER = weakref.ref(runner)
    return runner


def save_test_outputs(outputs: Dict[str, Dict], path: str) -> None:
    """Save per-set arrays as ``<set>/<field>`` entries of a ``.npz`` file.

    Args:
        outputs (dict): ``set name -> dict of arrays / lists``.
        path (str): Output ``.npz`` file.
    """
    arrays = {}
    for name, fields in outputs.items():
        for key, value in fields.items():
            if value is None or key == 'name':
                continue
            if isinstance(value, torch.Tensor):
                value = value.cpu().numpy()
            arrays[f'{name}/{key}'] = np.asarray(value)
    folder = osp.dirname(osp.abspath(path))
    os.makedirs(folder, exist_ok=True)
    np.savez_compressed(path, **arrays)


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
    last = _last_checkpoint(runner.work_dir)
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
    width = max(len(label) for label, _ in paths) if paths else 0
    lines.extend(f'{label + ":":<{width + 1}} {path}' for label, path in paths)
    lines.append('-' * 60)
    return '\n'.join(lines)


#: Built-in errors that are the user's input, whatever raised them.
USER_ERRORS = (ReIDUserError, FileNotFoundError, NotADirectoryError,
               IsADirectoryError, PermissionError)


def is_user_error(err: BaseException) -> bool:
    """Whether ``err`` is bad input (one line) rather than a bug (traceback).

    User errors: :class:`~mmreid_gs.utils.errors.ReIDUserError` (raised
    where the package checks input, :class:`ConfigError` included), missing
    or unreadable files and folders, and the two config mistakes MMEngine's
    registry reports: an unknown ``type`` (``KeyError: 'X is not in the
    ... registry'``) and a component argument its class does not take
    (``TypeError: class `X` in ...: __init__() got an unexpected keyword
    argument``).
    """
    if isinstance(err, USER_ERRORS):
        return True
    msg = str(err)
    if isinstance(err, KeyError) and 'is not in the' in msg and (
            'registry' in msg):
        return True
    if isinstance(err, TypeError) and msg.startswith('class `') and (
            'unexpected keyword argument' in msg
            or 'required positional argument' in msg):
        return True
    return False


def _last_checkpoint(work_dir: str) -> Optional[str]:
    """The checkpoint MMEngine's CheckpointHook saved last, if any."""
    marker = osp.join(work_dir, 'last_checkpoint')
    if osp.isfile(marker):
        with open(marker) as f:
            path = f.read().strip()
        if osp.isfile(path):
            return path
    return None


def interrupted_message() -> str:
    """The one line printed on Ctrl-C: where the last checkpoint is and the
    command that resumes from it (training), or that nothing was lost."""
    runner = _LAST_RUNNER() if _LAST_RUNNER is not None else None
    if runner is None:
        return 'interrupted (Ctrl-C) before the run started; nothing ' \
            'was written or deleted.'
    work_dir = runner.work_dir
    ckpt = _last_checkpoint(work_dir)
    training = getattr(runner, '_train_loop', None) is not None and \
        not isinstance(runner._train_loop, dict)
    if not training:
        return f'interrupted (Ctrl-C); nothing was deleted (work dir ' \
            f'{work_dir}).'
    if ckpt is None:
        return f'interrupted (Ctrl-C) before the first checkpoint; nothing ' \
            f'was deleted (work dir {work_dir}).'
    config = runner.cfg.filename or 'CONFIG'
    return (f'interrupted (Ctrl-C); last checkpoint {ckpt}; nothing was '
            f'deleted. Resume with: python tools/train.py {config} '
            f'--work-dir {work_dir} --resume {ckpt}')


#: While True, processes forked by this one (dataloader workers) ignore
#: SIGINT: Ctrl-C in a terminal reaches the whole process group, and workers
#: interrupted in their exit handlers print tracebacks of their own; the
#: main process stops them cleanly instead.
_CHILDREN_IGNORE_SIGINT = False
_AT_FORK_REGISTERED = False


def _child_ignores_sigint() -> None:
    if _CHILDREN_IGNORE_SIGINT:
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def _ignore_sigint_in_children(enable: bool) -> None:
    global _CHILDREN_IGNORE_SIGINT, _AT_FORK_REGISTERED
    if enable and not _AT_FORK_REGISTERED and hasattr(os, 'register_at_fork'):
        os.register_at_fork(after_in_child=_child_ignores_sigint)
        _AT_FORK_REGISTERED = True
    _CHILDREN_IGNORE_SIGINT = enable


def _interrupted(err: BaseException) -> bool:
    """Whether ``err`` is a Ctrl-C, or an error raised while handling one
    (MMEngine's ``Config.pretty_text`` turns any exception, KeyboardInterrupt
    included, into a ``SyntaxError`` while a checkpoint is saved)."""
    seen = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, KeyboardInterrupt):
            return True
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return False


def run_cli(main, argv=None) -> int:
    """Run a tool's ``main`` and turn user errors into one clear line.

    Bad input (see :func:`is_user_error`: a missing file or folder, a wrong
    config key or value, an unreadable checkpoint) ends with
    ``error (<type>): <what and where>`` and exit code 2 instead of a
    traceback; ``MMREID_GS_DEBUG=1`` shows the traceback. Any other
    exception is a bug and keeps its traceback. Ctrl-C prints one line
    (the last checkpoint and the ``--resume`` command) and exits with 130;
    dataloader workers ignore it (the main process stops them), and with
    ``argv=None`` (a command line) a second Ctrl-C is ignored too while the
    process shuts down.
    Nothing is deleted on the way out: work dirs, logs and checkpoints stay.

    A process group still initialised when ``main`` returns or raises is
    freed by :func:`shutdown_dist`.
    """
    import sys
    _ignore_sigint_in_children(True)
    try:
        main(argv)
    except BaseException as err:
        if os.environ.get('MMREID_GS_DEBUG') or not isinstance(
                err, (Exception, KeyboardInterrupt)):
            raise  # SystemExit (--help) and friends pass
        if _interrupted(err):
            if argv is None:
                # A command line: a second Ctrl-C must not break the clean
                # shutdown (workers, process group) with a traceback.
                signal.signal(signal.SIGINT, signal.SIG_IGN)
            if int(os.environ.get('RANK', '0')) == 0:
                sys.stderr.write(interrupted_message() + '\n')
            return 130
        if not is_user_error(err):
            raise
        msg = str(err).strip() or repr(err)
        if isinstance(err, KeyError) and msg.startswith(("'", '"')):
            msg = msg[1:-1]
        sys.stderr.write(f'error ({type(err).__name__}): {msg}\n'
                         '(set MMREID_GS_DEBUG=1 to see the traceback)\n')
        return 2
    finally:
        _ignore_sigint_in_children(False)
        shutdown_dist()
    return 0


def shutdown_dist() -> None:
    """Destroy the default process group and free it while the interpreter
    is fully alive (no-op without an initialised group).

    ``destroy_process_group`` only drops ``torch.distributed``'s own
    references; the Runner (a reference cycle) still holds the group through
    DDP and its C++ reducer. Left to interpreter finalisation, a gloo worker
    thread that is still releasing the tensors of the last collective takes
    the GIL during finalisation and aborts the process ("terminate called
    without an active exception"). So: keep one Python reference to the
    group, ``gc.collect`` the cycle (the reducer lets go of the group), then
    drop that reference last. Its destructor joins gloo's worker threads with
    the GIL released; had the reducer dropped the last reference, the
    destructor would wait for a worker while holding the GIL the worker
    needs, and hang.
    """
    dist = torch.distributed
    if not (dist.is_available() and dist.is_initialized()):
        return
    group = dist.group.WORLD
    dist.destroy_process_group()
    gc.collect()
    del group  # the last reference: destroyed without the GIL

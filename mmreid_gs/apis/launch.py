"""What ``tools/train.py`` and ``tools/test.py`` share: config loading with
checked overrides, CPU-only distributed set-up, runner building and result
export. Kept here (not in the tools) so that it is tested and reused.
"""
import difflib
import gc
import os
import os.path as osp
from typing import Dict, Optional

import numpy as np
import torch
from mmengine.config import Config, ConfigDict
from mmengine.runner import Runner

from mmreid_gs.registry import RUNNERS
from mmreid_gs.utils import register_all_modules

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


class ConfigError(ValueError):
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
        type='MMDistributedDataParallel', broadcast_buffers=False)
    wrapper['device_ids'] = None
    cfg.model_wrapper_cfg = wrapper


def build_runner(cfg: Config) -> Runner:
    """Build the runner of a config (``runner_type`` honoured)."""
    register_all_modules(init_default_scope=False)
    if 'runner_type' in cfg:
        return RUNNERS.build(cfg)
    return Runner.from_cfg(cfg)


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


USER_ERRORS = (ConfigError, FileNotFoundError, NotADirectoryError,
               ValueError, KeyError, TypeError, RuntimeError)


def run_cli(main, argv=None) -> int:
    """Run a tool's ``main`` and turn user errors into one clear line.

    Bad input (a missing file or folder, a wrong config key or value, an
    unreadable checkpoint) ends with ``error: <what and where>`` and exit
    code 2 instead of a traceback; ``MMREID_GS_DEBUG=1`` shows the traceback.
    Nothing is deleted on the way out: work dirs, logs and checkpoints stay.

    A process group still initialised when ``main`` returns or raises is
    freed by :func:`shutdown_dist`.
    """
    import sys
    try:
        main(argv)
    except USER_ERRORS as err:
        if os.environ.get('MMREID_GS_DEBUG'):
            raise
        msg = str(err).strip() or repr(err)
        if isinstance(err, KeyError) and msg.startswith(("'", '"')):
            msg = msg[1:-1]
        sys.stderr.write(f'error ({type(err).__name__}): {msg}\n'
                         '(set MMREID_GS_DEBUG=1 to see the traceback)\n')
        return 2
    finally:
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

"""The command-line side of the tools: the options ``tools/train.py`` and
``tools/test.py`` share, CPU-only distributed set-up (:func:`init_cpu_dist`),
and :func:`run_cli`: user errors as one line (:func:`is_user_error`),
Ctrl-C as one line with the resume command (:func:`interrupted_message`),
and the process group freed on the way out (:func:`shutdown_dist`).
"""
import gc
import inspect
import os
import os.path as osp
import signal

import torch
from mmengine.config import Config, ConfigDict

from mmreid_gs.utils.errors import ConfigError, ReIDUserError
from mmreid_gs.visualization.backends import VIS_BACKENDS
from .config_checks import explain_type_error
from .runner import last_checkpoint, last_runner


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
        raise ConfigError(
            f'--launcher {launcher} without CUDA is not supported; use '
            'torchrun (tools/dist_train.sh), which uses --launcher pytorch.')
    for var in ('RANK', 'WORLD_SIZE', 'MASTER_ADDR', 'MASTER_PORT'):
        if var not in os.environ:
            raise ConfigError(
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


def interrupted_message() -> str:
    """The one line printed on Ctrl-C: where the last checkpoint is and the
    command that resumes from it (training), or that nothing was lost."""
    runner = last_runner()
    if runner is None:
        return 'interrupted (Ctrl-C) before the run started; nothing ' \
            'was written or deleted.'
    work_dir = runner.work_dir
    ckpt = last_checkpoint(work_dir)
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
    config key or value, an unreadable checkpoint; a constructor's
    ``TypeError`` for an argument of a config dict,
    :func:`~.config_checks.explain_type_error`) ends with
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
        explained = explain_type_error(err)
        if explained is not None:
            err = explained  # a config argument its class does not take
        elif not is_user_error(err):
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

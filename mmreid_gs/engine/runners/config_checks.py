"""Config loading and the checks made before a runner is built:
``--cfg-options`` keys checked against the config (:func:`load_config`),
dataset arguments checked against their classes
(:func:`check_dataset_configs`), visualisation backends that need a package
(:func:`check_vis_backends`) and dataloader workers fitted to the machine
(:func:`size_dataloader_workers`). :class:`ConfigError` is the error they
raise for the user to fix.
The visualisation-backend check lives with the backends, in
:mod:`mmreid_gs.visualization.backends`.
"""
import difflib
import inspect
import os
import os.path as osp
from typing import Dict, List, Optional

import yaml
from mmengine.config import Config

import mmreid_gs.datasets  # noqa: F401 (imported: registered)
from mmreid_gs.registry import DATASETS
from mmreid_gs.utils.errors import ConfigError, ReIDUserTypeError

#: What ``Config.fromfile`` raises on a config a user can fix (checked
#: with bad files): ``SyntaxError`` (also ``IndentationError``, a null
#: byte), in the file or in a base; ``OSError``: a missing ``_base_`` file
#: (``FileNotFoundError``) or an extension other than py/yml/yaml/json;
#: ``ImportError``: a ``pkg::`` base or a ``custom_imports`` module that is
#: not installed; ``KeyError``: ``{{_base_.x}}`` without ``x``, a key
#: defined by two bases, a reserved name; ``AttributeError``:
#: ``_base_.x`` without ``x``; ``NameError``: an undefined name in the
#: config's code; ``ValueError``: a file that is not UTF-8, bad JSON, a
#: malformed ``pkg::`` path; ``yaml.YAMLError``: bad YAML.
_CONFIG_FILE_ERRORS = (SyntaxError, OSError, ImportError, KeyError,
                       AttributeError, NameError, ValueError, yaml.YAMLError)

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


def _check_option(cfg: Config, key: str) -> None:
    """Refuse ``--cfg-options`` keys whose parent does not exist, and new
    keys anywhere except inside a component (a dict with ``type``)."""
    parts = key.split('.')
    node = dict(cfg.items())
    for depth, part in enumerate(parts):
        is_last = depth == len(parts) - 1
        if isinstance(node, (list, tuple)):
            if not part.isdigit() or int(part) >= len(node):
                raise ConfigError(
                    f'--cfg-options {key}: `{".".join(parts[:depth])}` is a '
                    f'list of {len(node)} items; `{part}` is not an index '
                    'of it.')
            node = node[int(part)]
            continue
        if not isinstance(node, dict):
            raise ConfigError(
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
        raise ConfigError(f'--cfg-options {key}: `{where}` has no key '
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
        raise ConfigError(f'config file not found: {path}')
    try:
        cfg = Config.fromfile(path)
    except _CONFIG_FILE_ERRORS as err:
        raise ConfigError(f'cannot read config {path}: '
                          f'{type(err).__name__}: {err}') from None
    if options:
        for key in options:
            _check_option(cfg, key)
        cfg.merge_from_dict(options)
    return cfg


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

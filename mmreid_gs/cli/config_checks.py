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
import re
from typing import Dict, List, Optional

import yaml
from mmengine.config import Config
from mmengine.registry import Registry

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


def _check_option(cfg: Config, key: str, components=()) -> None:
    """Refuse ``--cfg-options`` keys whose parent does not exist, and new
    keys anywhere except inside a component (a dict with ``type``, or a key
    path of ``components``, whose arguments
    :func:`check_component_args` checks after the merge)."""
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
                        or depth > 0 and ('type' in node or '.'.join(
                            parts[:depth]) in components)):
            return  # a new argument of a component: checked after merging
        where = '.'.join(parts[:depth]) or 'the config'
        close = difflib.get_close_matches(part, list(node.keys()), n=3)
        hint = f' Did you mean: {", ".join(close)}?' if close else ''
        raise ConfigError(f'--cfg-options {key}: `{where}` has no key '
                           f'`{part}`.{hint}')


def load_config(path: str, options: Optional[Dict] = None) -> Config:
    """Load a config, merge checked ``--cfg-options`` and check the
    arguments of its components (:func:`check_component_args`), whether
    they come from the file, its bases or the command line.

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
        checked = {p for p, _ in _component_specs(cfg)}
        for key in options:
            _check_option(cfg, key, checked)
        cfg.merge_from_dict(options)
    global _LAST_LOADED
    check_component_args(cfg, options, path)
    check_root_variables(cfg, path)
    _LAST_LOADED = (cfg, dict(options or {}), path)
    return cfg


#: The config keys under which a run builds datasets.
_DATASET_KEYS = ('train_dataloader', 'val_dataloader', 'test_dataloader',
                 'val_cfg', 'test_cfg')


def _data_roots(node, path=''):
    """Yield ``(key path, data_root)`` of every dict with a string
    ``data_root`` inside a config node; for a whole config (a
    :class:`Config`), inside the keys a run builds datasets from
    (dataloaders, ``val_cfg``, ``test_cfg``), not in unused variables."""
    if isinstance(node, Config):
        for key in _DATASET_KEYS:
            yield from _data_roots(node.get(key), key)
        return
    if isinstance(node, dict):
        if isinstance(node.get('data_root'), str):
            yield f'{path}.data_root'.lstrip('.'), node['data_root']
        for key, value in node.items():
            yield from _data_roots(value, f'{path}.{key}')
    elif isinstance(node, (list, tuple)):
        for i, value in enumerate(node):
            yield from _data_roots(value, f'{path}.{i}')


def _read_text(file: str) -> Optional[str]:
    """The text of a config file, or None when it cannot be read."""
    try:
        with open(file, encoding='utf-8') as f:
            return f.read()
    except (OSError, UnicodeDecodeError):
        return None


def _assigns(file: str, name: str) -> bool:
    text = _read_text(file)
    if text is None:
        return False
    return re.search(rf'^{re.escape(name)}\s*=(?!=)', text, re.M) is not None


def check_root_variables(cfg: Config, config_path: str) -> None:
    """Refuse a child config that changes a base's ``*_root`` variable
    while the datasets still use the base's value.

    MMEngine resolves a base's variables when it loads the base: in a child
    of ``configs/_base_/datasets/my_dataset.py``, ``my_dataset_root =
    'data/my_market'`` changes the variable but not the dataset dicts the
    base built from it, and the run would read the base's folder.

    Args:
        cfg (Config): The loaded config.
        config_path (str): Its file.

    Raises:
        ConfigError: Naming the variable, the base, the dataset keys that
            still use the base's value, and the fix.
    """
    files = _config_files(config_path)
    if len(files) < 2:
        return
    roots = list(_data_roots(cfg))
    for name, value in cfg.items():
        if not (name.endswith('_root') and isinstance(value, str)
                and _assigns(files[0], name)):
            continue
        for base in files[1:]:
            if not _assigns(base, name):
                continue
            try:
                old = Config.fromfile(base).get(name)
            except Exception:  # noqa: BLE001 - the full load worked
                continue
            if not isinstance(old, str) or old == value:
                break
            stale = [path for path, root in roots
                     if root == old or root.startswith(old.rstrip('/') + '/')]
            if stale:
                raise ConfigError(
                    f'{name} = {value!r} in {files[0]} does not reach the '
                    f'datasets: {", ".join(stale[:5])} still use {old!r}, '
                    f'the value of {base} (MMEngine resolves a base\'s '
                    'variables when it loads the base). Set data_root in '
                    'the child instead, e.g. train_dataloader = dict('
                    f'dataset=dict(data_root={name})) and the query and '
                    'gallery data_root of test_cfg.test_sets / '
                    'val_cfg.test_sets (see the comment of '
                    'configs/_base_/datasets/my_dataset.py).')
            break


# ---------------------------------------------------------------------------
# Component arguments: the classes a Runner builds from the config


class _Spec(dict):
    """How a config dict is built: ``cls`` (the class), ``skip`` (keys the
    builder takes out before calling ``cls``), ``given`` (arguments the
    builder passes itself, not shown as the user's)."""


def _registry_class(registry, typ):
    """The class ``typ`` names in ``registry`` (None when unknown: the
    registry reports that when it builds)."""
    if isinstance(typ, type):
        return typ
    if not isinstance(typ, str):
        return None
    try:
        return registry.get(typ)
    except Exception:  # noqa: BLE001 - a bad scope or import: build says
        return None


def _spec(path, node, registry=None, default=None, skip=(), given=()):
    if not isinstance(node, dict):
        return None
    if 'type' in node:
        cls = _registry_class(registry, node['type'])
    else:
        cls = default
    if cls is None or not isinstance(cls, type):
        return None
    return path, _Spec(node=node, cls=cls, skip={'type', '_scope_'} |
                       set(skip), given=set(given))


def _component_specs(cfg):
    """Yield ``(key path, spec)`` of every component dict of a config whose
    class is known: the loops, dataloaders and their samplers, the optim
    wrapper and optimizer, parameter schedulers, hooks, evaluators, the
    model and its ``backbone`` / ``neck`` / ``head`` / ``loss`` /
    ``data_preprocessor``, the visualiser and its backends, the log
    processor and every transform of a ``pipeline`` list. (Dataset
    arguments: :func:`check_dataset_configs`.)"""
    from mmengine.runner import (EpochBasedTrainLoop, IterBasedTrainLoop,
                                 LogProcessor, TestLoop, ValLoop)
    from torch.utils.data import DataLoader

    from mmreid_gs.registry import (DATA_SAMPLERS, HOOKS, LOG_PROCESSORS,
                                    LOOPS, METRICS, MODELS, OPTIM_WRAPPERS,
                                    OPTIMIZERS, PARAM_SCHEDULERS, TRANSFORMS,
                                    VISBACKENDS, VISUALIZERS)
    specs = []
    train_cfg = cfg.get('train_cfg')
    if isinstance(train_cfg, dict):
        loop = EpochBasedTrainLoop if train_cfg.get('by_epoch', True) \
            else IterBasedTrainLoop
        specs.append(_spec('train_cfg', train_cfg, LOOPS, loop,
                           skip=('by_epoch', ),
                           given=('runner', 'dataloader')))
    for key, loop in (('val_cfg', ValLoop), ('test_cfg', TestLoop)):
        specs.append(_spec(key, cfg.get(key), LOOPS, loop,
                           given=('runner', 'dataloader', 'evaluator')))
    for key in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        loader = cfg.get(key)
        specs.append(_spec(
            key, loader, None, DataLoader,
            skip=('num_batch_per_epoch', 'disable_subprocess_warning'),
            given=('dataset', 'sampler', 'batch_sampler', 'collate_fn',
                   'worker_init_fn')))
        if isinstance(loader, dict):
            specs.append(_spec(f'{key}.sampler', loader.get('sampler'),
                               DATA_SAMPLERS, given=('dataset', )))
            specs.append(_spec(f'{key}.batch_sampler',
                               loader.get('batch_sampler'), DATA_SAMPLERS,
                               given=('sampler', )))
    wrapper = cfg.get('optim_wrapper')
    if isinstance(wrapper, dict) and 'optimizer' in wrapper:
        specs.append(_spec(
            'optim_wrapper', wrapper, OPTIM_WRAPPERS,
            _registry_class(OPTIM_WRAPPERS, 'OptimWrapper'),
            skip=('constructor', 'paramwise_cfg'), given=('optimizer', )))
        specs.append(_spec('optim_wrapper.optimizer', wrapper['optimizer'],
                           OPTIMIZERS, given=('params', )))
    schedulers = cfg.get('param_scheduler')
    if isinstance(schedulers, dict):
        schedulers = [schedulers]
    for i, item in enumerate(schedulers or []):
        path = 'param_scheduler' if isinstance(cfg.get('param_scheduler'),
                                               dict) else \
            f'param_scheduler.{i}'
        specs.append(_spec(path, item, PARAM_SCHEDULERS,
                           skip=('convert_to_iter_based', ),
                           given=('optimizer', )))
    for name, hook in (cfg.get('default_hooks') or {}).items():
        specs.append(_spec(f'default_hooks.{name}', hook, HOOKS,
                           skip=('priority', )))
    for i, hook in enumerate(cfg.get('custom_hooks') or []):
        specs.append(_spec(f'custom_hooks.{i}', hook, HOOKS,
                           skip=('priority', )))
    for key in ('val_evaluator', 'test_evaluator'):
        evaluator = cfg.get(key)
        items = [(key, evaluator)] if isinstance(evaluator, dict) else [
            (f'{key}.{i}', e) for i, e in enumerate(evaluator or [])
            if isinstance(evaluator, (list, tuple))]
        for path, item in items:
            if isinstance(item, dict) and 'metrics' not in item:
                specs.append(_spec(path, item, METRICS))

    def model_parts(path, node):
        found = _spec(path, node, MODELS)
        if found is None:
            return
        specs.append(found)
        for part in ('backbone', 'neck', 'head', 'loss',
                     'data_preprocessor'):
            if isinstance(node.get(part), dict):
                model_parts(f'{path}.{part}', node[part])

    model_parts('model', cfg.get('model'))
    visualizer = cfg.get('visualizer')
    specs.append(_spec('visualizer', visualizer, VISUALIZERS,
                       given=('name', )))
    if isinstance(visualizer, dict):
        for i, backend in enumerate(visualizer.get('vis_backends') or []):
            specs.append(_spec(f'visualizer.vis_backends.{i}', backend,
                               VISBACKENDS, given=('save_dir', )))
    specs.append(_spec('log_processor', cfg.get('log_processor'),
                       LOG_PROCESSORS, LogProcessor))

    def pipelines(path, node):
        if isinstance(node, dict):
            for key, value in node.items():
                sub = f'{path}.{key}' if path else str(key)
                if key == 'pipeline' and isinstance(value, (list, tuple)):
                    for i, step in enumerate(value):
                        specs.append(_spec(f'{sub}.{i}', step, TRANSFORMS))
                else:
                    pipelines(sub, value)
        elif isinstance(node, (list, tuple)):
            for i, value in enumerate(node):
                pipelines(f'{path}.{i}', value)

    pipelines('', dict(cfg.items()))
    seen = set()
    for found in specs:
        if found is not None and found[0] not in seen:
            seen.add(found[0])
            yield found


def _config_files(path: str) -> List[str]:
    """``path`` and its ``_base_`` files (local ones), child first."""
    files, todo = [], [osp.abspath(path)]
    while todo:
        current = todo.pop(0)
        if current in files or not osp.isfile(current):
            continue
        files.append(current)
        try:
            bases = Config._get_base_files(current)
        except Exception:  # noqa: BLE001 - unreadable: no attribution
            continue
        todo.extend(osp.abspath(osp.join(osp.dirname(current), b))
                    for b in bases if '::' not in b)
    return files


def _set_where(key_path: str, options: Optional[Dict],
               config_path: Optional[str]) -> str:
    """Where a config key was set: the ``--cfg-options`` item, or the
    config file (or base) whose text assigns it."""
    for option, value in (options or {}).items():
        if key_path == option or key_path.startswith(option + '.'):
            return f'--cfg-options {option}={value}'
    if not config_path:
        return 'the config'
    key = key_path.split('.')[-1]
    assigned = re.compile(rf'(\b{re.escape(key)}\s*=(?!=))|'
                          rf'([\'"]{re.escape(key)}[\'"]\s*:)')
    for file in _config_files(config_path):
        text = _read_text(file)
        if text is not None and assigned.search(text):
            return f'in {file}'
    return f'in {config_path} or its _base_ files'


def check_component_args(cfg: Config,
                         options: Optional[Dict] = None,
                         config_path: Optional[str] = None) -> None:
    """Refuse arguments that the class of a config component does not take,
    before anything is built.

    Without this check a typo (``train_cfg = dict(max_epoch=1)``,
    ``sampler=dict(num_instance=4)``, ``optimizer=dict(lrr=0.02)``) ends in
    a ``TypeError`` traceback when MMEngine builds the component, minutes
    into a run for the lazily built ones. The components checked are those
    of :func:`_component_specs`; a class whose constructor takes
    ``**kwargs`` is not checked.

    Args:
        cfg (Config): The merged config.
        options (dict, optional): The ``--cfg-options`` merged into it, to
            say where a key was set.
        config_path (str, optional): The config file, likewise.

    Raises:
        ConfigError: ``<key path> (<where it was set>): <Class> takes no
            argument '<key>'. Did you mean: <closest>? Its arguments: ...``.
    """
    for path, spec in _component_specs(cfg):
        accepted = _accepted_kwargs(spec['cls'])
        if accepted is None:
            continue
        node = spec['node']
        unknown = [k for k in node
                   if k not in accepted and k not in spec['skip']]
        if not unknown:
            continue
        raise ConfigError(
            _unknown_argument(path, unknown[0], spec['cls'].__name__,
                              accepted - spec['given'],
                              _set_where(f'{path}.{unknown[0]}', options,
                                         config_path)))


def _unknown_argument(path: str, key: str, name: str, accepted,
                      where: str) -> str:
    """The one line for an argument ``key`` that class ``name`` (at config
    key ``path``) does not take."""
    shown = sorted(set(accepted) - {'args', 'kwargs'})
    close = difflib.get_close_matches(str(key), shown, n=1)
    hint = f' Did you mean: {close[0]}?' if close else ''
    listed = f' Its arguments: {", ".join(shown)}.' if shown else ''
    return (f'{path}.{key} ({where}): {name} takes no argument {key!r}.'
            f'{hint}{listed}')


#: The config :func:`load_config` loaded last, with its options and file,
#: for :func:`explain_type_error`.
_LAST_LOADED = None

#: A constructor called with an argument it does not take (Python 3.10+
#: names the class; MMEngine's registry may prefix its location).
_UNEXPECTED = re.compile(r"(?:class `\w+` in [^:]*: )?(?:(\w+)\.)?"
                         r"__init__\(\) got an unexpected keyword argument "
                         r"'(\w+)'")


def _typed_dicts(node, path=''):
    """Yield ``(key path, dict)`` of every dict with a ``type`` inside a
    config node."""
    if isinstance(node, dict):
        if 'type' in node:
            yield path, node
        for key, value in node.items():
            yield from _typed_dicts(value, f'{path}.{key}'.lstrip('.'))
    elif isinstance(node, (list, tuple)):
        for i, value in enumerate(node):
            yield from _typed_dicts(value, f'{path}.{i}')


def _any_registry_class(name: str):
    """The class registered as ``name`` in one of our registries (their
    parents included), or None."""
    from mmreid_gs import registry
    for value in vars(registry).values():
        if isinstance(value, Registry):
            cls = _registry_class(value, name)
            if isinstance(cls, type):
                return cls
    return None


def explain_type_error(err: BaseException) -> Optional[ConfigError]:
    """The config error behind a ``TypeError`` raised while a component of
    the last loaded config was built, or None.

    :func:`check_component_args` checks the components whose builder is
    known before anything runs; a component deeper in the config (e.g. a
    ``norm_cfg`` inside a backbone) fails only when it is built, with
    ``X.__init__() got an unexpected keyword argument 'k'``. When the
    config last loaded by :func:`load_config` has a dict of type ``X``
    holding ``k``, this returns the same one-line error as the check
    (key path, where it was set, closest and valid arguments); otherwise
    None (a bug: the traceback stays).

    Args:
        err (BaseException): The error.

    Returns:
        ConfigError | None: The error to report instead.
    """
    if not isinstance(err, TypeError) or _LAST_LOADED is None:
        return None
    found = _UNEXPECTED.search(str(err))
    if not found or not found.group(1):
        return None
    name, key = found.group(1), found.group(2)
    cfg, options, config_path = _LAST_LOADED
    for path, node in _typed_dicts(dict(cfg.items())):
        if key not in node:
            continue
        typ = node['type']
        cls = typ if isinstance(typ, type) else _any_registry_class(str(typ))
        # the raising __init__ may be a base class's (BatchNorm2d: _BatchNorm)
        names = {k.__name__ for k in cls.__mro__} if cls is not None else {
            str(typ).split('.')[-1]}
        if name not in names:
            continue
        accepted = (_accepted_kwargs(cls) if cls is not None else None) or ()
        shown = cls.__name__ if cls is not None else name
        return ConfigError(
            _unknown_argument(path, key, shown, accepted,
                              _set_where(f'{path}.{key}', options,
                                         config_path)))
    return None


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

"""Study configs: one declarative file per study in ``configs/studies/``.

A study config names its ``kind`` (``'variants'``: variants of one config
over seeds; ``'scale'``: samplers x identity counts x starts x seeds;
``'multisource'``: variants on a pooled training set), a ``doc`` line, the
base training ``config``, the ``variants`` (overrides, see
:func:`mmreid_gs.studies.variants.apply_variant`) and named ``presets``
(``quick`` and ``full`` at least: seeds, epochs, lr steps and, for the
scale study, counts, starts, epoch length, warm-up, pretraining ...).
"""
import copy
import glob
import os.path as osp
from typing import Dict, List

from mmengine.config import Config

from mmreid_gs.utils.errors import ConfigError

#: the kinds of study the machinery runs
KINDS = ('variants', 'scale', 'multisource')


def repo_root() -> str:
    """The repository the package is checked out in (``configs/`` and
    ``docs/`` next to ``mmreid_gs/``)."""
    return osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def study_config_dir() -> str:
    """``configs/studies`` of the repository."""
    return osp.join(repo_root(), 'configs', 'studies')


def study_names() -> List[str]:
    """The studies with a config in ``configs/studies/``, sorted."""
    return sorted(osp.splitext(osp.basename(p))[0]
                  for p in glob.glob(osp.join(study_config_dir(), '*.py'))
                  if not osp.basename(p).startswith('_'))


def _tuples(value):
    """Lists of numbers -> tuples (presets compare and hash them)."""
    if isinstance(value, dict):
        return {k: _tuples(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)) and all(
            not isinstance(v, (dict, list, tuple)) for v in value):
        return tuple(value)
    return value


def load_study(study: str) -> Dict:
    """Load a study config.

    Args:
        study (str): A study name (``configs/studies/<study>.py``) or the
            path of a study config.

    Returns:
        dict: ``name``, ``kind``, ``doc``, ``config`` (base training config,
        relative to the repository unless absolute), ``variants`` (name ->
        overrides, in the file's order), ``presets`` (name -> dict), and
        whatever else the file sets (``starts``, ``costs`` ...).

    Raises:
        ConfigError: An unknown study, or a config without the fields
            above, naming the file and the field.
    """
    if study.endswith('.py') or osp.sep in study:
        path = study
    else:
        path = osp.join(study_config_dir(), f'{study}.py')
    if not osp.isfile(path):
        raise ConfigError(f'sampler study: no study {study!r} (no file '
                          f'{path}); the studies are {study_names()}')
    cfg = Config.fromfile(path).to_dict()
    spec = {k: v for k, v in cfg.items() if not k.startswith('_')}
    spec = _tuples(spec)
    spec['name'] = osp.splitext(osp.basename(path))[0]
    spec['path'] = path
    for field in ('kind', 'doc', 'config', 'variants', 'presets'):
        if field not in spec:
            raise ConfigError(f'{path}: a study config must set {field!r}')
    if spec['kind'] not in KINDS:
        raise ConfigError(f"{path}: kind must be one of {KINDS}, got "
                          f"{spec['kind']!r}")
    for field in ('variants', 'presets'):
        if not isinstance(spec[field], dict) or not spec[field]:
            raise ConfigError(f'{path}: {field} must be a non-empty dict')
    for name in ('quick', 'full'):
        if name not in spec['presets']:
            raise ConfigError(f'{path}: presets must include {name!r}')
    return spec


def study_preset(spec: Dict, preset: str) -> Dict:
    """A copy of a study's preset.

    Raises:
        ConfigError: The study has no such preset (naming the ones it has).
    """
    if preset not in spec['presets']:
        raise ConfigError(
            f"sampler study {spec['name']}: no preset {preset!r}; its "
            f"presets are {sorted(spec['presets'])} ({spec['path']})")
    return copy.deepcopy(spec['presets'][preset])


def config_path(spec: Dict) -> str:
    """The study's base training config as a path (relative ones from the
    repository root)."""
    path = spec['config']
    if osp.isabs(path) or osp.isfile(path):
        return path
    return osp.join(repo_root(), path)

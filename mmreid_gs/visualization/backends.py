"""The visualisation backends a tool can add (``--vis-backend``) and the
check that the package each one needs is installed.

They live with the pictures, not with the command-line tools: the
picture helpers (:func:`~mmreid_gs.visualization.pictures.build_visualizer`)
and the runner's pre-build checks (:mod:`mmreid_gs.cli.config_checks`)
both use them.
"""
import importlib

from mmengine.config import Config

from mmreid_gs.utils.errors import ConfigError

#: ``--vis-backend`` choice -> (MMEngine backend type, package it needs).
VIS_BACKENDS = {
    'local': ('LocalVisBackend', None),
    'tensorboard': ('TensorboardVisBackend', 'tensorboard'),
    'wandb': ('WandbVisBackend', 'wandb'),
}


def _package_available(name: str) -> bool:
    try:
        importlib.import_module(name)
    except ImportError:
        return False
    return True


def check_vis_backends(cfg: Config) -> None:
    """Refuse visualisation backends whose package is not installed, with
    the ``pip install`` line, instead of an ImportError mid-run.

    Args:
        cfg (Config): A config; its ``visualizer.vis_backends`` are read.

    Raises:
        ConfigError: A backend's package is missing.
    """
    visualizer = cfg.get('visualizer') or {}
    packages = {typ: pkg for typ, pkg in VIS_BACKENDS.values() if pkg}
    for backend in visualizer.get('vis_backends') or []:
        typ = backend.get('type') if isinstance(backend, dict) else None
        typ = typ.split('.')[-1] if isinstance(typ, str) else typ
        package = packages.get(typ)
        if package and not _package_available(package):
            raise ConfigError(
                f'visualizer.vis_backends: {typ} needs the `{package}` '
                f'package, which is not installed: `pip install {package}` '
                f'(or leave out --vis-backend {package}).')

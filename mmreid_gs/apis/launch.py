"""What ``tools/train.py`` and ``tools/test.py`` share, under one import
path: config loading with checked overrides, CPU-only distributed set-up,
runner building, the end of run summary, result export and the one-line
errors of :func:`run_cli`. Kept here (not in the tools) so that it is
tested and reused.

The code lives in three modules; this one re-exports their names so that
``from mmreid_gs.apis.launch import ...`` keeps working:

- :mod:`~mmreid_gs.apis.config_checks`: :func:`load_config`,
  :class:`ConfigError`, the dataset, option and visualisation-backend
  checks, dataloader worker sizing.
- :mod:`~mmreid_gs.apis.runner`: :class:`CLIRunner`, :func:`build_runner`,
  :func:`config_summary`, :func:`run_summary`, :func:`save_test_outputs`.
- :mod:`~mmreid_gs.apis.cli`: :func:`add_runner_args`,
  :func:`apply_runner_args`, :func:`init_cpu_dist`, :func:`run_cli`,
  :func:`is_user_error`, :func:`interrupted_message`,
  :func:`shutdown_dist`.
"""
from .cli import (USER_ERRORS, add_runner_args, apply_runner_args,
                  init_cpu_dist, interrupted_message, is_user_error, run_cli,
                  shutdown_dist)
from .config_checks import (RUNNER_KEYS, VIS_BACKENDS, ConfigError,
                            check_dataset_configs, check_vis_backends,
                            config_error, load_config,
                            size_dataloader_workers)
from .runner import _log_file  # noqa: F401 (used by the tests)
from .runner import (SUMMARY_COLUMNS, CLIRunner, build_runner,
                     config_summary, format_metrics_table, last_checkpoint,
                     last_metrics, last_runner, run_summary,
                     save_test_outputs)

__all__ = [
    'RUNNER_KEYS', 'VIS_BACKENDS', 'ConfigError', 'config_error',
    'load_config', 'check_vis_backends', 'check_dataset_configs',
    'size_dataloader_workers', 'CLIRunner', 'build_runner', 'last_runner',
    'last_checkpoint', 'config_summary', 'save_test_outputs',
    'SUMMARY_COLUMNS', 'format_metrics_table', 'last_metrics', 'run_summary',
    'USER_ERRORS',
    'is_user_error', 'add_runner_args', 'apply_runner_args', 'init_cpu_dist',
    'interrupted_message', 'run_cli', 'shutdown_dist'
]

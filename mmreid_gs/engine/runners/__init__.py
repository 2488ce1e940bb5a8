"""Loops and the runner the tools drive: :class:`ReIDTestLoop` /
:class:`ReIDValLoop` (several named test sets), :class:`CLIRunner` and what
``tools/*.py`` share (config checks, runner building, the end-of-run summary,
:func:`run_cli`)."""
from .cli import (USER_ERRORS, add_runner_args, apply_runner_args,
                  init_cpu_dist, interrupted_message, is_user_error, run_cli,
                  shutdown_dist)
from .cli_runner import (SUMMARY_COLUMNS, CLIRunner, build_runner,
                         config_summary, format_metrics_table, last_checkpoint,
                         last_metrics, last_runner, nothing_to_resume,
                         run_summary, versions_line)
from .config_checks import (RUNNER_KEYS, check_dataset_configs, load_config,
                            size_dataloader_workers)
from .reid_test_loop import ReIDTestLoop, ReIDValLoop

__all__ = [
    'ReIDTestLoop', 'ReIDValLoop', 'CLIRunner', 'build_runner', 'last_runner',
    'last_checkpoint', 'last_metrics', 'nothing_to_resume', 'versions_line',
    'config_summary', 'run_summary',
    'format_metrics_table', 'SUMMARY_COLUMNS', 'RUNNER_KEYS', 'load_config',
    'check_dataset_configs', 'size_dataloader_workers', 'USER_ERRORS',
    'is_user_error', 'add_runner_args', 'apply_runner_args', 'init_cpu_dist',
    'interrupted_message', 'run_cli', 'shutdown_dist'
]

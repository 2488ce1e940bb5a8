"""What ``tools/*.py`` share: config loading and the checks made before a
runner is built (:mod:`.config_checks`), :class:`CLIRunner` and
:func:`build_runner` with the config and end-of-run summaries
(:mod:`.runner`), and the command line itself (:mod:`.run`: the shared
options, CPU-only distributed set-up, :func:`run_cli`)."""
from .config_checks import (RUNNER_KEYS, check_dataset_configs, load_config,
                            size_dataloader_workers)
from .run import (USER_ERRORS, add_runner_args, apply_runner_args,
                  init_cpu_dist, interrupted_message, is_user_error, run_cli,
                  shutdown_dist)
from .runner import (SUMMARY_COLUMNS, CLIRunner, build_runner, config_summary,
                     format_metrics_table, last_checkpoint, last_metrics,
                     last_runner, nothing_to_resume, resolve_auto_resume,
                     run_summary, versions_line)

__all__ = [
    'CLIRunner', 'build_runner', 'last_runner', 'last_checkpoint',
    'last_metrics', 'nothing_to_resume', 'resolve_auto_resume',
    'versions_line', 'config_summary', 'run_summary', 'format_metrics_table',
    'SUMMARY_COLUMNS', 'RUNNER_KEYS', 'load_config', 'check_dataset_configs',
    'size_dataloader_workers', 'USER_ERRORS', 'is_user_error',
    'add_runner_args', 'apply_runner_args', 'init_cpu_dist',
    'interrupted_message', 'run_cli', 'shutdown_dist'
]

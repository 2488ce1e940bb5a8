from .inference import extract_feature_maps, init_model, match_images
from .launch import (ConfigError, build_runner, init_cpu_dist, load_config,
                     run_cli, save_test_outputs, shutdown_dist)

__all__ = [
    'ConfigError', 'build_runner', 'init_cpu_dist', 'load_config', 'run_cli',
    'save_test_outputs', 'shutdown_dist', 'init_model', 'extract_feature_maps',
    'match_images'
]

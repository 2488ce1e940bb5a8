from .deploy import (QAConvExportMatcher, check_onnx, export_matcher,
                     export_onnx, register_export_matcher)
from .inference import (RankResult, ReIDInferencer, extract_feature_maps,
                        init_model, list_images, match_images, read_image,
                        threshold_at_fpr)
from .launch import (ConfigError, build_runner, init_cpu_dist, load_config,
                     run_cli, save_test_outputs, shutdown_dist)

__all__ = [
    'ConfigError', 'build_runner', 'init_cpu_dist', 'load_config', 'run_cli',
    'save_test_outputs', 'shutdown_dist', 'init_model', 'extract_feature_maps',
    'match_images', 'ReIDInferencer', 'RankResult', 'read_image',
    'list_images', 'QAConvExportMatcher', 'export_matcher', 'export_onnx',
    'check_onnx', 'register_export_matcher', 'threshold_at_fpr'
]

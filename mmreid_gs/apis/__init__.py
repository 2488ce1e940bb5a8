"""What a user imports to use a trained model: :func:`init_model`, feature
extraction and matching (:class:`ReIDInferencer`), and ONNX export."""
from .deploy import (QAConvExportMatcher, check_onnx, export_matcher,
                     export_onnx, register_export_matcher)
from .inference import (RankResult, ReIDInferencer, extract_feature_maps,
                        init_model, list_images, match_images, read_image,
                        threshold_at_fpr)

__all__ = [
    'init_model', 'extract_feature_maps', 'match_images', 'ReIDInferencer',
    'RankResult', 'read_image', 'list_images', 'QAConvExportMatcher',
    'export_matcher', 'export_onnx', 'check_onnx', 'register_export_matcher',
    'threshold_at_fpr'
]

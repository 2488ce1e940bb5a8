"""TransMatcher person re-identification model."""
from mmreid_gs.registry import MODELS
from .qaconv_reid import QAConvReID


@MODELS.register_module()
class TransMatcherReID(QAConvReID):
    """Person re-identification by TransMatcher matching of feature maps
    (Liao & Shao, NeurIPS 2021).

    ``backbone`` (e.g. :class:`ResNetIBN`, or ``type='mmpretrain.ResNet'``,
    to layer3) -> ``neck`` (:class:`TransMatcherNeck`: 3x3 conv, BN and a
    Transformer encoder, every layer's output kept) -> feature maps
    [B, num_layers * d_model, h, w]; ``head`` (:class:`TransMatcherHead`)
    scores pairs of maps (``match(q, g)``: q is the query, not symmetric)
    and computes the pair loss of a batch. As :class:`QAConvReID`: the neck
    is required, the maps are checked against the head's ``num_features``
    (``num_layers * d_model``) / ``height`` / ``width``, :meth:`predict` sets
    ``feature_map``; ``extract_feat`` and ``match`` are those of
    :class:`ReIDModel`, and so is ``match_pairs``: the head's
    :meth:`TransMatcherHead.match_pairs` (index form), which the two-stage
    class graph (``GraphSamplerHook(num_candidates=...)``) and the
    shortlisted test (``--shortlist N``) call.

    Args:
        backbone (dict | nn.Module): Backbone config or module.
        neck (dict | nn.Module): Neck config or module.
        head (dict | nn.Module): Head config or module; its ``height`` and
            ``width`` must equal the feature map size of the training input.
        data_preprocessor (dict | nn.Module, optional): Defaults to
            ``dict(type='ReIDDataPreprocessor')``.
        init_cfg (dict | list[dict], optional): Initialisation config.
    """

    feature_field = 'feature_map'

"""Export a re-ID model to ONNX: a feature extractor and a matcher graph.

The deployed pipeline is two graphs:

- ``feature_extractor.onnx``: ``images`` [N, 3, H, W] float32, BGR pixel
  values in 0..255 already resized to the model's input size (what
  ``cv2.imread`` + ``cv2.resize`` give, channels first) -> ``feats``, what
  ``model.extract_feat`` returns: for QAConv the L2-normalised feature maps
  [N, c, h, w], for a global-embedding model the embeddings [N, d] (the
  data preprocessor's BGR->RGB and mean/std are inside the graph). ``N``
  is dynamic.
- ``matcher.onnx``: ``query`` [q, ...], ``gallery`` [g, ...] features ->
  ``scores`` [q, g], what ``model.match`` returns in eval mode (higher =
  more similar). ``q`` and ``g`` are dynamic.

``model.match`` of QAConv runs a blockwise CPU fast path (worker threads,
max reductions on integer bit patterns) that ONNX cannot express, so the
matcher graph is traced from an export-friendly module that computes the
same eval-mode scores with plain ops (:class:`QAConvExportMatcher`).
:func:`export_matcher` finds that module for a model: a model's or head's
own ``export_matcher()`` method first, then the matchers registered here
with :func:`register_export_matcher` (by head class name), then
``model.match`` itself (fine for plain-op matchers such as cosine
similarity of embeddings). The ONNX matcher scores all pairs of a call at
once (memory q x g x hw x hw floats for QAConv): call it on gallery blocks.
"""
import inspect
import json
import os
import os.path as osp
import warnings
from typing import Callable, Dict, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn

#: head class name -> builder ``(model) -> nn.Module`` of its matcher.
EXPORT_MATCHERS: Dict[str, Callable[[nn.Module], nn.Module]] = {}


def register_export_matcher(head_type: str):
    """Register an export-friendly matcher builder for a head class.

    Args:
        head_type (str): Class name of the head (``type(model.head)``).

    Returns:
        callable: Decorator of a builder ``(model) -> nn.Module`` whose
        ``forward(query_feats, gallery_feats)`` returns the [q, g] scores
        of ``model.match`` in eval mode with ONNX-exportable ops.
    """

    def wrap(builder):
        EXPORT_MATCHERS[head_type] = builder
        return builder

    return wrap


class FeatureMapExtractor(nn.Module):
    """Images in pixel values -> the model's feature maps (exportable).

    Applies the data preprocessor's channel flip and mean/std (read from
    ``model.data_preprocessor``), casts to the model's dtype, then
    ``model.extract_feat``.

    Args:
        model (nn.Module): A re-ID model with ``extract_feat`` and an
            MMEngine ``ImgDataPreprocessor`` (``mean``/``std`` buffers).
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        pre = model.data_preprocessor
        self.to_rgb = bool(getattr(pre, '_channel_conversion', False))
        normalize = bool(getattr(pre, '_enable_normalize', False))
        mean = pre.mean.detach().float().reshape(1, -1, 1, 1) \
            if normalize else torch.zeros(1, 3, 1, 1)
        std = pre.std.detach().float().reshape(1, -1, 1, 1) \
            if normalize else torch.ones(1, 3, 1, 1)
        self.register_buffer('mean', mean.clone(), persistent=False)
        self.register_buffer('std', std.clone(), persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Feature maps of images.

        Args:
            images (Tensor): [N, 3, H, W] BGR pixel values (0..255).

        Returns:
            Tensor: [N, c, h, w] feature maps.
        """
        x = images.float()
        if self.to_rgb:
            x = x[:, [2, 1, 0]]
        x = (x - self.mean) / self.std
        dtype = next(self.model.parameters()).dtype
        return self.model.extract_feat(x.to(dtype))


class QAConvExportMatcher(nn.Module):
    """Eval-mode QAConv scores with plain ops (ONNX-exportable).

    With S = Q^T G (hw x hw location similarities of a pair), the eval-mode
    head computes ``logit_bn(fc(bn(max_r S)) + fc(bn(max_s S)))``; BatchNorm
    with running statistics is affine and ``fc`` is linear, so this equals
    ``scale * (w . max_r S + w . max_s S) + offset`` with ``w`` the fc
    weights (the fold of :class:`QAConvHead`). Here: one matrix multiply
    for all pairs of the call, ``amax`` over each side, two weighted sums.

    Args:
        head (QAConvHead): The head, in eval mode (running statistics).

    Raises:
        ValueError: When the head's BatchNorm layers use batch statistics
            (training mode or no running statistics): such scores depend on
            the other pairs of the call and cannot be exported per pair.
    """

    def __init__(self, head: nn.Module):
        super().__init__()
        if head._uses_batch_stats():
            raise ValueError(
                'QAConvExportMatcher: the head is in training mode or has no '
                'running BatchNorm statistics; call model.eval() first')
        w, scale, offset = head._folded_affine()
        self.num_features = head.num_features
        self.height, self.width = head.height, head.width
        self.register_buffer('weight', w.float().clone(), persistent=False)
        self.register_buffer(
            'scale', torch.tensor(scale, dtype=torch.float32),
            persistent=False)
        self.register_buffer(
            'offset', torch.tensor(offset, dtype=torch.float32),
            persistent=False)

    def forward(self, query: torch.Tensor,
                gallery: torch.Tensor) -> torch.Tensor:
        """Scores of every query/gallery pair.

        Args:
            query (Tensor): [q, c, h, w] feature maps.
            gallery (Tensor): [g, c, h, w] feature maps.

        Returns:
            Tensor: [q, g] float32 logits (memory: a q x hw x g x hw
            similarity tensor).
        """
        c, hw = self.num_features, self.height * self.width
        nq, ng = query.shape[0], gallery.shape[0]
        q = query.float().reshape(nq, c, hw).transpose(1, 2).reshape(-1, c)
        g = gallery.float().reshape(ng, c, hw).transpose(0, 1)
        sim = torch.matmul(q, g.reshape(c, -1)).reshape(nq, hw, ng, hw)
        max_q = sim.amax(dim=3)  # [q, s, g]: best gallery location
        max_g = sim.amax(dim=1)  # [q, g, r]: best query location
        total = (torch.einsum('qsg,s->qg', max_q, self.weight) +
                 torch.matmul(max_g, self.weight))
        return total * self.scale + self.offset


@register_export_matcher('QAConvHead')
def _qaconv_matcher(model: nn.Module) -> nn.Module:
    return QAConvExportMatcher(model.head)


class GlobalEmbeddingExportMatcher(nn.Module):
    """Scores of :class:`GlobalEmbeddingHead` (cosine similarity, or minus
    the Euclidean distance) for all pairs at once, without its Python loop
    over query blocks (ONNX-exportable).

    Args:
        head (GlobalEmbeddingHead): The head.
    """

    def __init__(self, head: nn.Module):
        super().__init__()
        self.head = head

    def forward(self, query: torch.Tensor,
                gallery: torch.Tensor) -> torch.Tensor:
        """Scores of every pair.

        Args:
            query (Tensor): [q, d] embeddings.
            gallery (Tensor): [g, d] embeddings.

        Returns:
            Tensor: [q, g] float32 similarities.
        """
        return self.head._pair_scores(query.float(), gallery.float()).float()


@register_export_matcher('GlobalEmbeddingHead')
def _global_matcher(model: nn.Module) -> nn.Module:
    return GlobalEmbeddingExportMatcher(model.head)


class _ModelMatcher(nn.Module):
    """``model.match`` as a module (for matchers made of plain ops)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, query: torch.Tensor,
                gallery: torch.Tensor) -> torch.Tensor:
        return self.model.match(query, gallery)


def export_matcher(model: nn.Module) -> nn.Module:
    """An ONNX-exportable module with the eval-mode scores of
    ``model.match``.

    Looked up in this order: ``model.export_matcher()``,
    ``model.head.export_matcher()``, the builder registered for the head's
    class name (:func:`register_export_matcher`; QAConv is), else
    ``model.match`` itself wrapped as a module.

    Args:
        model (nn.Module): A re-ID model in eval mode.

    Returns:
        nn.Module: ``forward(query_feats [q, c, h, w], gallery_feats
        [g, c, h, w]) -> [q, g]`` scores.
    """
    head = getattr(model, 'head', None)
    for owner in (model, head):
        method = getattr(owner, 'export_matcher', None)
        if callable(method):
            return method()
    builder = EXPORT_MATCHERS.get(type(head).__name__)
    if builder is not None:
        return builder(model)
    return _ModelMatcher(model)


def input_size_from_config(cfg) -> Tuple[int, int]:
    """Input ``(height, width)`` of a model: the ``Resize`` scale of the
    config's test pipeline.

    Args:
        cfg (Config): The model's config.

    Returns:
        tuple[int, int]: ``(height, width)``.

    Raises:
        KeyError: When the test pipeline has no ``Resize`` with a
            ``scale``.
    """
    pipeline = cfg.get('test_pipeline') or (cfg.get('test_cfg') or {}).get(
        'pipeline') or []
    for t in pipeline:
        if str(t.get('type', '')).endswith('Resize') and t.get('scale'):
            scale = t['scale']
            if isinstance(scale, int):
                return scale, scale
            width, height = scale
            return int(height), int(width)
    raise KeyError('cannot find the input size: the config\'s test_pipeline '
                   'has no Resize with a scale; give it explicitly '
                   '(--shape H W)')


def _export(module: nn.Module, args: tuple, path: str, input_names,
            output_names, dynamic: Dict[str, Dict[int, str]],
            opset: int) -> None:
    """``torch.onnx.export`` with dynamic dimensions: the dynamo exporter
    where this PyTorch has it and onnxscript is installed, else the
    TorchScript one. Weights are stored inside the ``.onnx`` file unless
    the model is over 1.5 GB (then next to it, ``<file>.data``)."""
    params = inspect.signature(torch.onnx.export).parameters
    try:
        import onnxscript  # noqa: F401
        dynamo = 'dynamo' in params
    except ImportError:
        dynamo = False
    kwargs = dict(input_names=list(input_names),
                  output_names=list(output_names), opset_version=opset)
    if dynamo:
        dims = {}
        shapes = {}
        for name in input_names:
            axes = dynamic.get(name, {})
            shapes[name] = {
                axis: dims.setdefault(label, torch.export.Dim(label))
                for axis, label in axes.items()
            }
        size = sum(t.numel() * t.element_size()
                   for t in module.state_dict().values())
        kwargs.update(dynamo=True, dynamic_shapes=shapes, verbose=False,
                      external_data=size > 1.5e9)
    else:
        kwargs.update(dynamic_axes=dynamic)
        if 'dynamo' in params:
            kwargs.update(dynamo=False)
    with torch.no_grad(), warnings.catch_warnings():
        # the exporters' own deprecation notices, not the user's concern
        warnings.simplefilter('ignore', FutureWarning)
        warnings.simplefilter('ignore', DeprecationWarning)
        torch.onnx.export(module, args, path, **kwargs)


def export_onnx(model: nn.Module,
                out_dir: str,
                input_size: Tuple[int, int],
                opset: int = 18) -> Dict[str, str]:
    """Export the feature extractor and the matcher of a model to ONNX.

    Args:
        model (nn.Module): A re-ID model in eval mode (float32, CPU).
        out_dir (str): Output folder (created).
        input_size (tuple[int, int]): Input ``(height, width)``.
        opset (int): ONNX opset. Defaults to 18.

    Returns:
        dict[str, str]: Paths of ``feature_extractor`` and ``matcher``
        (``.onnx``) and ``info`` (a JSON file with the input size, the
        input and output names and the feature map shape).
    """
    model = model.eval()
    os.makedirs(out_dir, exist_ok=True)
    height, width = input_size
    extractor = FeatureMapExtractor(model).eval()
    matcher = export_matcher(model).eval()
    images = torch.rand(2, 3, height, width) * 255
    with torch.no_grad():
        feats = extractor(images).float()
    paths = dict(
        feature_extractor=osp.join(out_dir, 'feature_extractor.onnx'),
        matcher=osp.join(out_dir, 'matcher.onnx'),
        info=osp.join(out_dir, 'export_info.json'))
    _export(extractor, (images, ), paths['feature_extractor'], ['images'],
            ['feats'], {'images': {0: 'batch'}, 'feats': {0: 'batch'}},
            opset)
    gallery = torch.cat([feats, feats.flip(0), feats])
    _export(matcher, (feats, gallery), paths['matcher'],
            ['query', 'gallery'], ['scores'], {
                'query': {0: 'num_query'},
                'gallery': {0: 'num_gallery'},
                'scores': {0: 'num_query', 1: 'num_gallery'}
            }, opset)
    info = dict(
        input_size=[height, width],
        feature_extractor=dict(
            file=osp.basename(paths['feature_extractor']),
            inputs={'images': ['batch', 3, height, width]},
            outputs={'feats': ['batch'] + list(feats.shape[1:])},
            input_format='float32 BGR pixel values 0..255, resized'),
        matcher=dict(
            file=osp.basename(paths['matcher']),
            inputs={
                'query': ['num_query'] + list(feats.shape[1:]),
                'gallery': ['num_gallery'] + list(feats.shape[1:])
            },
            outputs={'scores': ['num_query', 'num_gallery']},
            note='higher = more similar; scores every pair of a call at '
            'once: call it on gallery blocks'))
    with open(paths['info'], 'w') as f:
        json.dump(info, f, indent=2)
    return paths


def _session(path: str):
    try:
        import onnxruntime as ort
    except ImportError:
        raise ImportError(
            'checking the ONNX graphs needs onnxruntime: pip install -r '
            'requirements/optional.txt') from None
    return ort.InferenceSession(path, providers=['CPUExecutionProvider'])


def check_onnx(model: nn.Module,
               paths: Dict[str, str],
               input_size: Tuple[int, int],
               batch_sizes: Sequence[int] = (3, 5),
               seed: int = 0) -> Dict[str, float]:
    """Compare the ONNX graphs with PyTorch on generated inputs.

    Random images of ``batch_sizes`` (not the export batch, to exercise the
    dynamic axes) go through the extractor graph and
    :class:`FeatureMapExtractor`; their PyTorch feature maps go through the
    matcher graph and ``model.match`` (the model's own matcher, not the
    export module).

    Args:
        model (nn.Module): The exported model (eval mode, CPU).
        paths (dict): As returned by :func:`export_onnx`.
        input_size (tuple[int, int]): Input ``(height, width)``.
        batch_sizes (Sequence[int]): Query and gallery image counts.
        seed (int): Seed of the generated images.

    Returns:
        dict[str, float]: ``feats_max_abs_diff``, ``scores_max_abs_diff``
        and ``scores_max_abs`` (the largest |score|, for scale).
    """
    gen = torch.Generator().manual_seed(seed)
    height, width = input_size
    extractor = FeatureMapExtractor(model).eval()
    feat_sess = _session(paths['feature_extractor'])
    match_sess = _session(paths['matcher'])
    feats, diffs = [], []
    for n in batch_sizes:
        images = torch.rand(n, 3, height, width, generator=gen) * 255
        with torch.no_grad():
            ref = extractor(images).float()
        out = feat_sess.run(None, {'images': images.numpy()})[0]
        diffs.append(float(np.abs(out - ref.numpy()).max()))
        feats.append(ref)
    query, gallery = feats[0], feats[-1]
    with torch.no_grad():
        ref_scores = model.match(query, gallery).float().numpy()
    scores = match_sess.run(None, {
        'query': query.numpy(),
        'gallery': gallery.numpy()
    })[0]
    return dict(
        feats_max_abs_diff=max(diffs),
        scores_max_abs_diff=float(np.abs(scores - ref_scores).max()),
        scores_max_abs=float(np.abs(ref_scores).max()))

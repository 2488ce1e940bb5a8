"""ONNX export: the export-friendly matchers equal ``model.match``; the
tool's two graphs run in onnxruntime with the PyTorch numbers."""
import importlib.util
import os.path as osp

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from apis_helpers import person
from helpers import feature_maps, load_tool

from mmreid_gs.apis import ReIDInferencer, export_matcher
from mmreid_gs.apis.deploy import (FeatureMapExtractor,
                                   GlobalEmbeddingExportMatcher,
                                   QAConvExportMatcher, check_onnx,
                                   export_onnx)
from mmreid_gs.registry import MODELS
from mmreid_gs.utils import register_all_modules

register_all_modules(init_default_scope=False)


def _maps(n, c=16, h=4, w=2, seed=0):
    return feature_maps(n, c, h, w, seed)


def _onnx_or_skip():
    for name in ('onnx', 'onnxruntime'):
        if importlib.util.find_spec(name) is None:
            pytest.skip(f'{name} is not installed (pip install -r '
                        'requirements/optional.txt)')
    import onnxruntime
    return onnxruntime


def test_qaconv_export_matcher_equals_model_match(tiny_model):
    matcher = export_matcher(tiny_model)
    assert isinstance(matcher, QAConvExportMatcher)
    q, g = _maps(5, seed=1), _maps(7, seed=2)
    ref = tiny_model.match(q, g)
    assert float(ref.std()) > 0.01  # the folded affine is not trivial
    assert float((matcher(q, g) - ref).abs().max()) <= 1e-4
    with torch.inference_mode():
        assert float((matcher(q, g) - ref).abs().max()) <= 1e-4
    # a bigger map and the QAConvHead built from the registry alone
    head = MODELS.build(dict(type='QAConvHead', num_features=8, height=6,
                             width=3)).eval()
    head.bn.running_var.fill_(0.3)
    head.logit_bn.running_mean.fill_(2.0)
    q, g = _maps(3, 8, 6, 3, seed=3), _maps(4, 8, 6, 3, seed=4)
    diff = QAConvExportMatcher(head)(q, g) - head.match(q, g)
    assert float(diff.abs().max()) <= 1e-4


def test_export_matcher_lookup(tiny_model):
    head = MODELS.build(dict(type='QAConvHead', num_features=8, height=2,
                             width=2))
    with pytest.raises(ValueError, match='training mode'):
        QAConvExportMatcher(head.train())

    class OwnMatcher(nn.Module):

        def __init__(self):
            super().__init__()
            self.head = nn.Identity()
            self.mine = nn.Identity()

        def export_matcher(self):
            return self.mine

        def match(self, q, g):
            return q @ g.t()

    own = OwnMatcher()
    assert export_matcher(own) is own.mine

    class Plain(nn.Module):

        def match(self, q, g):
            return F.normalize(q, dim=1) @ F.normalize(g, dim=1).t()

    plain = Plain()
    q, g = torch.randn(3, 5), torch.randn(4, 5)
    assert torch.equal(export_matcher(plain)(q, g), plain.match(q, g))

    model = MODELS.build(
        dict(type='ReIDModel',
             backbone=dict(type='ResNetIBN', depth=18, base_channels=8,
                           num_stages=3, out_indices=(2, )),
             head=dict(type='GlobalEmbeddingHead', in_channels=32,
                       block_size=2))).eval()
    matcher = export_matcher(model)
    assert isinstance(matcher, GlobalEmbeddingExportMatcher)
    q = F.normalize(torch.randn(5, 32), dim=1)
    g = F.normalize(torch.randn(3, 32), dim=1)
    assert float((matcher(q, g) - model.match(q, g)).abs().max()) <= 1e-6


@pytest.fixture(scope='module')
def exported(tiny_config, tiny_model, tmp_path_factory):
    """The tool's export of the tiny model (with its BN statistics)."""
    _onnx_or_skip()
    folder = tmp_path_factory.mktemp('onnx')
    ckpt = str(folder / 'tiny.pth')
    torch.save(dict(state_dict=tiny_model.state_dict()), ckpt)
    tool = load_tool('tools/deployment/pytorch2onnx.py')
    out_dir = str(folder / 'out')
    code = tool.run_cli(tool.main, [tiny_config, ckpt, '--out-dir', out_dir])
    return code, out_dir


def test_tool_exports_and_checks(exported, capsys):
    code, out_dir = exported
    assert code == 0
    for name in ('feature_extractor.onnx', 'matcher.onnx',
                 'export_info.json'):
        assert osp.isfile(osp.join(out_dir, name))


def test_onnxruntime_round_trip(exported, tiny_model):
    ort = _onnx_or_skip()
    _, out_dir = exported
    providers = ['CPUExecutionProvider']
    extractor = ort.InferenceSession(
        osp.join(out_dir, 'feature_extractor.onnx'), providers=providers)
    matcher = ort.InferenceSession(
        osp.join(out_dir, 'matcher.onnx'), providers=providers)
    # images already at the input size: the pipeline's resize is a no-op
    images = [person(i) for i in range(4)]
    ref_feats = ReIDInferencer(tiny_model).extract(images)
    batch = np.stack(images).transpose(0, 3, 1, 2).astype(np.float32)
    for rows in (slice(0, 1), slice(0, 4)):  # batch 1 and 4
        feats = extractor.run(None, {'images': batch[rows]})[0]
        assert feats.shape == tuple(ref_feats[rows].shape)
        assert np.abs(feats - ref_feats[rows].numpy()).max() <= 1e-4
    q, g = _maps(1, seed=5), _maps(9, seed=6)
    for query, gallery in ((q, g), (g, q), (g[:3], g)):
        scores = matcher.run(None, {
            'query': query.numpy(),
            'gallery': gallery.numpy()
        })[0]
        ref = tiny_model.match(query, gallery).numpy()
        assert scores.shape == ref.shape
        assert np.abs(scores - ref).max() <= 1e-4


def test_global_embedding_model_exports(tmp_path):
    _onnx_or_skip()
    model = MODELS.build(
        dict(type='ReIDModel',
             backbone=dict(type='ResNetIBN', depth=18, base_channels=8,
                           num_stages=3, out_indices=(2, )),
             head=dict(type='GlobalEmbeddingHead', in_channels=32))).eval()
    with torch.no_grad():
        model.head.bnneck.running_mean.uniform_(-0.1, 0.1)
    paths = export_onnx(model, str(tmp_path), (64, 32))
    diffs = check_onnx(model, paths, (64, 32), batch_sizes=(2, 3))
    assert diffs['feats_max_abs_diff'] <= 1e-4
    assert diffs['scores_max_abs_diff'] <= 1e-4
    assert FeatureMapExtractor(model)(torch.zeros(1, 3, 64, 32)).shape == (
        1, 32)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')
def test_qaconv_export_matcher_on_cuda(tiny_model):
    model = tiny_model.to('cuda')
    try:
        q, g = _maps(4, seed=7).cuda(), _maps(300, seed=8).cuda()
        diff = export_matcher(model)(q, g) - model.match(q, g)
        assert float(diff.abs().max()) <= 1e-4
    finally:
        tiny_model.to('cpu')

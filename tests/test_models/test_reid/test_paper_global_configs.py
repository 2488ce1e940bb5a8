"""The paper-scale global-embedding configs build and run (never trained
here: Market-1501 cannot be downloaded on CI machines).

``configs/gs_r50_ibn_global_market.py`` and
``configs/gs_vit_b16_global_market.py``: the model is built from the config
(no pretrained weights loaded), extracts L2-normalised embeddings of two
384x128 images, matches them by cosine similarity and trains one step with
the config's optimiser wrapper (paramwise settings included).
"""
import copy
import os.path as osp

import pytest
import torch
from helpers import CONFIGS
from mmengine.optim import build_optim_wrapper
from mmpretrain.structures import DataSample

from mmreid_gs.cli import load_config
from mmreid_gs.registry import MODELS
from mmreid_gs.utils import register_all_modules


@pytest.mark.parametrize('name, dim', [('gs_r50_ibn_global_market', 2048),
                                       ('gs_vit_b16_global_market', 768)])
def test_paper_global_config_builds_matches_and_trains(name, dim):
    register_all_modules()
    cfg = load_config(osp.join(CONFIGS, f'{name}.py'))
    model_cfg = copy.deepcopy(cfg.model)
    model_cfg.backbone.pop('init_cfg', None)  # no local weights here
    torch.manual_seed(0)
    model = MODELS.build(model_cfg)
    h, w = 384, 128
    assert cfg.train_pipeline[1].scale == (w, h)
    x = torch.rand(2, 3, h, w) * 255
    model.eval()
    with torch.inference_mode():
        feats = model.extract_feat(model.data_preprocessor(
            dict(inputs=list(x.to(torch.uint8))), False)['inputs'])
        scores = model.match(feats, feats)
    assert feats.shape == (2, dim)
    torch.testing.assert_close(feats.norm(dim=1), torch.ones(2))
    assert scores.shape == (2, 2)
    torch.testing.assert_close(scores.diagonal(), torch.ones(2))

    model.train()
    optim = build_optim_wrapper(model, cfg.optim_wrapper)
    samples = [DataSample().set_gt_label(i) for i in (0, 0, 1, 1)]
    data = dict(inputs=list((torch.rand(4, 3, h, w) * 255).to(torch.uint8)),
                data_samples=samples)
    before = [p.detach().clone() for p in model.parameters()]
    log = model.train_step(data, optim)
    assert torch.isfinite(torch.stack([v for k, v in log.items()
                                       if 'loss' in k])).all()
    changed = sum(not torch.equal(a, p) for a, p in
                  zip(before, model.parameters()))
    assert changed > 0

# TransMatcher-GS demo on the embedded synthetic benchmark (no download, CPU,
# minutes): as configs/qaconv_gs_demo.py (train on camera-style domain A,
# one PK warm-up epoch then the Graph Sampler, its class graph scored by the
# TransMatcher head; test on A and on the unseen domain B), with a small
# TransMatcher: the half-width ResNet-18-IBN's layer3 (128 channels, 8x4
# maps) -> neck to d_model = 64 channels + 2 encoder layers (feed-forward
# 256) -> 3 matcher layers (feed-forward 256).
#
#   python tools/train.py configs/transmatcher_gs_demo.py
#
# The paper's settings are configs/transmatcher_gs_market.py.
_base_ = ['./qaconv_gs_demo.py']

d_model, num_layers, dim_feedforward = 64, 3, 256
model = dict(
    type='TransMatcherReID',
    neck=dict(
        _delete_=True,
        type='TransMatcherNeck',
        in_channels=128,
        d_model=d_model,
        num_layers=num_layers,
        dim_feedforward=dim_feedforward),
    head=dict(
        _delete_=True,
        type='TransMatcherHead',
        height=8,
        width=4,
        d_model=d_model,
        num_layers=num_layers,
        dim_feedforward=dim_feedforward,
        loss=dict(type='PairwiseMatchingLoss')))
# clipping at 4 as the public TransMatcher code (the QAConv demo: 512)
optim_wrapper = dict(clip_grad=dict(max_norm=4))

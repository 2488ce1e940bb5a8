# TransMatcher (Liao & Shao, NeurIPS 2021) on ResNet-50-IBN-b, as the public
# code trains it with the Graph Sampler: the backbone up to layer3 (stride
# 16, 1024 channels) -> TransMatcherNeck (3x3 conv with a bias to d_model =
# 512 channels, no BN, no L2 norm, then num_layers - 1 = 2 Transformer
# encoder layers: 1 head, feed-forward 2048, no dropout, no positional
# encoding; the neck
# output and every encoder layer's output concatenated: 3 x 512 channels)
# -> TransMatcherHead (one decoder layer per 512-channel chunk: a shared
# Linear(512, 512) on query and gallery, the 192 x 192 dot products gated by
# a learned score embedding, both maxima, a 192 -> 2048 -> 1 MLP; the layers'
# scores summed and batch-normalised). 384x128 input -> 24x8 maps.
# ImageNet IBN-Net weights are read from a local file (see README: "Models").
pretrained = 'checkpoints/resnet50_ibn_b_backbone.pth'
d_model, num_layers, dim_feedforward = 512, 3, 2048
model = dict(
    type='TransMatcherReID',
    data_preprocessor=dict(
        type='ReIDDataPreprocessor',
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        to_rgb=True),
    backbone=dict(
        type='ResNetIBN',
        depth=50,
        num_stages=3,
        out_indices=(2, ),
        norm_eval=True,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(
        type='TransMatcherNeck',
        in_channels=1024,
        d_model=d_model,
        num_layers=num_layers,
        dim_feedforward=dim_feedforward),
    head=dict(
        type='TransMatcherHead',
        height=24,
        width=8,
        d_model=d_model,
        num_layers=num_layers,
        dim_feedforward=dim_feedforward,
        loss=dict(type='PairwiseMatchingLoss')))

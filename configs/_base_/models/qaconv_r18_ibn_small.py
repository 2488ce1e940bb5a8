# A small QAConv network that trains on a CPU (the demo's): a half-width
# ResNet-18-IBN-b (32 base channels) up to layer3 (stride 16), from scratch
# (no ImageNet weights, so BN is trained: norm_eval=False), a 3x3 conv neck
# to 64 channels and the QAConv matcher, for 128x64 input (8x4 maps).
# For another input size set model.head.height / width to size // 16.
# The paper's ResNet-50-IBN (_base_/models/qaconv_r50_ibn.py) needs a GPU:
# on a CPU a one-epoch Market-1501 run grew to 6.6 GB and had not logged
# its first 50 iterations after 5 minutes.
model = dict(
    type='QAConvReID',
    data_preprocessor=dict(
        type='ReIDDataPreprocessor',
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        to_rgb=True),
    backbone=dict(
        type='ResNetIBN', depth=18, base_channels=32, num_stages=3,
        out_indices=(2, ), norm_eval=False),
    neck=dict(type='QAConvNeck', in_channels=128, out_channels=64),
    head=dict(
        type='QAConvHead', num_features=64, height=8, width=4,
        loss=dict(type='PairwiseMatchingLoss')))

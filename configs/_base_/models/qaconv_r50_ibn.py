# ResNet-50-IBN-b up to layer3 (stride 16) + 3x3 conv neck to 64 channels +
# QAConv matcher, as in Liao & Shao, CVPR 2022. 384x128 input -> 24x8 maps.
# ImageNet IBN-Net weights are read from a local file (see README: "Models"):
# convert them with tools/model_converters/ibn_to_mmreid.py --backbone-only.
pretrained = 'checkpoints/resnet50_ibn_b_backbone.pth'
model = dict(
    type='QAConvReID',
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
    neck=dict(type='QAConvNeck', in_channels=1024, out_channels=64),
    head=dict(
        type='QAConvHead',
        num_features=64,
        height=24,
        width=8,
        loss=dict(type='PairwiseMatchingLoss')))

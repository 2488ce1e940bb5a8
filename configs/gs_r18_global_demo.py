# A global-embedding model trained with the Graph Sampler on the embedded
# synthetic benchmark (the QAConv demo's data, backbone, schedule, seed and
# batches; only the matcher differs): train on camera-style domain A, test on
# A and on the unseen domain B.
#
#   python tools/train.py configs/gs_r18_global_demo.py
#   python tools/train.py configs/pk_r18_global_demo.py   # random PK batches
#
# The half-width ResNet-18-IBN to layer3 of configs/qaconv_gs_demo.py
# (128 channels, 8x4 maps at 128x64 input) -> average pooling -> BNNeck ->
# L2-normalised 128-d embedding, matched by cosine similarity (one GEMM).
# Losses: batch-hard triplet on the cosine similarities (margin 0.3) + a
# label-smoothed identity loss (0.1) on the BNNeck features. The Graph
# Sampler builds its class graph from the same cosine similarities.
_base_ = ['./qaconv_gs_demo.py']

num_train_ids = 200  # domain A's training identities (the classifier)

model = dict(
    _delete_=True,
    type='ReIDModel',
    data_preprocessor=dict(
        type='ReIDDataPreprocessor',
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        to_rgb=True),
    backbone=dict(
        type='ResNetIBN', depth=18, base_channels=32, num_stages=3,
        out_indices=(2, ), norm_eval=False),
    head=dict(
        type='GlobalEmbeddingHead',
        in_channels=128,
        pooling='avg',
        metric='cosine',
        triplet_loss=dict(type='HardTripletLoss', margin=0.3),
        num_classes=num_train_ids,
        id_loss=dict(type='mmpretrain.LabelSmoothLoss',
                     label_smooth_val=0.1, mode='original')))

# The data pipelines of every config (the one definition: configs that
# change the input size or a setting take these lists from `_base_` and edit
# them, as configs/qaconv_gs_demo.py does). Types resolve under the default
# scope mmreid_gs (mmcv's transforms are registered there, mmpretrain's are
# scope-qualified).
#
# Training: the augmentation of the public QAConv / QAConv-GS code at the
# paper's 384x128 input: bicubic resize; zero padding of 10 pixels and a
# random crop back to the input size; horizontal flip with probability 0.5;
# rotation by an angle uniform in [-5, 5] degrees (nearest neighbour, zero
# fill); colour jitter with brightness, contrast and saturation factors
# uniform in [0.5, 2] and a hue shift uniform in [-0.1, 0.1] (our
# ReIDColorJitter: mmpretrain's ColorJitter semantics, whose hue step fails
# for negative factors with NumPy >= 2); a white square occlusion whose side
# is up to 0.8 of the shorter image side; packing.
# Test: bicubic resize to the input size, packing.
img_height, img_width = 384, 128
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(img_width, img_height), keep_ratio=False,
         interpolation='bicubic'),
    dict(type='mmpretrain.RandomCrop', crop_size=(img_height, img_width),
         padding=10, pad_val=0),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='mmpretrain.Rotate', magnitude_range=(0, 5),
         magnitude_std='inf', prob=1.0, random_negative_prob=0.5, pad_val=0,
         interpolation='nearest'),
    dict(type='ReIDColorJitter', brightness=(0.5, 2.0),
         contrast=(0.5, 2.0), saturation=(0.5, 2.0), hue=(-0.1, 0.1)),
    dict(type='RandomOcclusion', min_size=0., max_size=0.8),
    dict(type='PackReIDInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(img_width, img_height), keep_ratio=False,
         interpolation='bicubic'),
    dict(type='PackReIDInputs'),
]

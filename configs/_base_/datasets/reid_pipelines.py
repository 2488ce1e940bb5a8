# Training augmentation of the public QAConv-GS code and the test pipeline,
# at the paper's 384x128 input (see mmreid_gs/datasets/pipelines.py).
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

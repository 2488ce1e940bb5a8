# QAConv-GS on a Market-1501-layout folder of your own (data/my_dataset, see
# configs/_base_/datasets/my_dataset.py), with the demo's small network and
# 128x64 input so that it trains on a CPU:
#
#   python tools/train.py configs/qaconv_gs_my_dataset.py
#   python tools/test.py configs/qaconv_gs_my_dataset.py \
#       work_dirs/qaconv_gs_my_dataset/epoch_8.pth
#
# Another folder than data/my_dataset: a child config that sets data_root
# (not my_dataset_root), as configs/_base_/datasets/my_dataset.py shows.
_base_ = [
    './_base_/models/qaconv_r18_ibn_small.py',
    './_base_/datasets/reid_data.py',
    './_base_/datasets/my_dataset.py',
    './_base_/schedules/qaconv_gs_15e.py',
    './_base_/default_runtime.py',
]

img_height, img_width = 128, 64  # the model base's head expects 8x4 maps
batch_size, num_instances = 32, 4
max_epochs = 8

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(img_width, img_height), keep_ratio=False,
         interpolation='bicubic'),
    dict(type='mmpretrain.RandomCrop', crop_size=(img_height, img_width),
         padding=4, pad_val=0),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='ReIDColorJitter', brightness=(0.5, 2.0),
         contrast=(0.5, 2.0), saturation=(0.5, 2.0), hue=(-0.1, 0.1)),
    dict(type='RandomOcclusion', min_size=0., max_size=0.8, prob=0.5),
    dict(type='PackReIDInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(img_width, img_height), keep_ratio=False,
         interpolation='bicubic'),
    dict(type='PackReIDInputs'),
]

train_dataloader = dict(
    batch_size=batch_size,
    num_workers=2,
    sampler=dict(batch_size=batch_size, num_instances=num_instances),
    dataset=dict(_base_.my_dataset_train, pipeline=train_pipeline))
test_dataloader = dict(num_workers=2)
val_dataloader = test_dataloader

test_sets = dict(my_dataset=_base_.my_dataset_test)
test_cfg = dict(pipeline=test_pipeline, test_sets=test_sets)
val_cfg = dict(pipeline=test_pipeline, test_sets=test_sets)
custom_hooks = [
    dict(type='GraphSamplerHook', pipeline=test_pipeline, pk_epochs=1,
         batch_size=128)
]

# From scratch: every layer at the same, higher learning rate (set for a
# total batch of 32; --auto-scale-lr rescales it for other totals).
optim_wrapper = dict(
    optimizer=dict(lr=0.01),
    paramwise_cfg=dict(custom_keys={'backbone': dict(lr_mult=1.0)}))
param_scheduler = [
    dict(type='MultiStepLR', by_epoch=True, milestones=[6], gamma=0.1)
]
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
auto_scale_lr = dict(base_batch_size=batch_size)

# Demo on the embedded synthetic benchmark (no download, CPU, minutes):
# train QAConv-GS on camera-style domain A, then test on A and on the unseen
# domain B. The data is generated into data/synthetic_reid/ on first use.
#
#   python tools/train.py configs/qaconv_gs_demo.py
#   python tools/test.py configs/qaconv_gs_demo.py        # untrained network
#
# Differences from the paper's settings, for a 2-core CPU: a half-width
# ResNet-18-IBN (32 base channels) from scratch (no ImageNet weights, so BN is
# trained and the lr is higher), 128x64 input (8x4 maps), B = 32 (8 identities
# x 4 images), 8 epochs with the lr step at 6, light padding for the crop.
_base_ = [
    './_base_/models/qaconv_r18_ibn_small.py',
    './_base_/datasets/reid_data.py',
    './_base_/schedules/qaconv_gs_15e.py',
    './_base_/default_runtime.py',
]

img_height, img_width = 128, 64
batch_size, num_instances = 32, 4
max_epochs = 8

synthetic_root = 'data/synthetic_reid'
domain_a = dict(type='SyntheticReID', data_root=synthetic_root + '/A',
                domain='A', num_train_ids=200, num_test_ids=100)
domain_b = dict(type='SyntheticReID', data_root=synthetic_root + '/B',
                domain='B', num_train_ids=200, num_test_ids=100)

# The pipelines of _base_/datasets/reid_pipelines.py at 128x64, with lighter
# padding for the crop and the occlusion on half of the images.
train_pipeline = _base_.train_pipeline
train_pipeline[1].scale = (img_width, img_height)  # Resize
train_pipeline[2].update(crop_size=(img_height, img_width), padding=4)
train_pipeline[6].prob = 0.5  # RandomOcclusion
test_pipeline = _base_.test_pipeline
test_pipeline[1].scale = (img_width, img_height)  # Resize

train_dataloader = dict(
    batch_size=batch_size,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(batch_size=batch_size, num_instances=num_instances),
    dataset=dict(domain_a, split='train', pipeline=train_pipeline))

test_sets = dict(
    synthetic_A=dict(
        query=dict(domain_a, split='query'),
        gallery=dict(domain_a, split='gallery')),
    synthetic_B_unseen=dict(
        query=dict(domain_b, split='query'),
        gallery=dict(domain_b, split='gallery')))

# (train/batch_lookalike_share is logged every epoch by the default hook
# batch_hardness of _base_/default_runtime.py, in the PK warm-up epoch too)
# save_graph: each epoch's class graph to work_dir/graph/epoch_k.npz (for
# tools/visualization/vis_graph.py); it only writes files, the training is
# the same without it.
custom_hooks = [
    dict(type='GraphSamplerHook', pipeline=test_pipeline, pk_epochs=1,
         batch_size=128, save_graph=True)
]
test_dataloader = dict(batch_size=128, num_workers=2)
val_dataloader = test_dataloader
test_cfg = dict(pipeline=test_pipeline, test_sets=test_sets)
val_cfg = dict(pipeline=test_pipeline, test_sets=test_sets)

# From scratch: every layer at the same, higher learning rate.
optim_wrapper = dict(
    optimizer=dict(lr=0.01),
    paramwise_cfg=dict(custom_keys={'backbone': dict(lr_mult=1.0)}))
param_scheduler = [
    dict(type='MultiStepLR', by_epoch=True, milestones=[6], gamma=0.1)
]
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
# The lr above is set for a total batch of 32 (--auto-scale-lr).
auto_scale_lr = dict(base_batch_size=batch_size)
default_hooks = dict(logger=dict(interval=20))

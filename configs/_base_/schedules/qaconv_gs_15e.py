# SGD (momentum 0.9, nesterov, weight decay 5e-4), lr 0.001 for new layers and
# x0.1 for the backbone, gradient-norm clipping at 512, decay x0.1 at epoch 10,
# 15 epochs (Liao & Shao, CVPR 2022). Steps with a NaN/inf loss are skipped
# and counted (`skipped_steps` in the log), as in the public code.
optim_wrapper = dict(
    type='SkipNonFiniteOptimWrapper',
    optimizer=dict(
        type='SGD', lr=0.001, momentum=0.9, nesterov=True,
        weight_decay=5e-4),
    paramwise_cfg=dict(custom_keys={'backbone': dict(lr_mult=0.1)}),
    clip_grad=dict(max_norm=512))

param_scheduler = [
    dict(type='MultiStepLR', by_epoch=True, milestones=[10], gamma=0.1)
]

train_cfg = dict(by_epoch=True, max_epochs=15, val_interval=15)

# RandPerson schedule of the paper: 4 epochs, lr decay x0.1 at epoch 2.
_base_ = ['./qaconv_gs_15e.py']

param_scheduler = [
    dict(type='MultiStepLR', by_epoch=True, milestones=[2], gamma=0.1)
]
train_cfg = dict(by_epoch=True, max_epochs=4, val_interval=4)

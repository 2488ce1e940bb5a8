# Unsupervised domain adaptation Market-1501 -> MSMT17: the QAConv-GS network
# trained with labels on Market-1501 (configs/qaconv_gs_market.py) adapted to
# MSMT17's training images without their labels (pseudo-label GS), tested on
# MSMT17 and Market-1501. Peer settings and sources:
# _base_/qaconv_gs_pseudo_label.py (eps 0.7 for MSMT17, 400 iterations per
# epoch: Cluster Contrast's MSMT17 runs).
_base_ = ['./_base_/qaconv_gs_pseudo_label.py']

load_from = 'work_dirs/qaconv_gs_market/epoch_15.pth'
model = dict(backbone=dict(init_cfg=None))  # weights from load_from

eps = 0.7
batches_per_epoch = 400
train_dataloader = dict(
    sampler=dict(batches_per_epoch=batches_per_epoch),
    dataset=dict(dataset=_base_.msmt17_train))
custom_hooks = [
    dict(_base_.custom_hooks[0], eps=eps,
         load_from_hint='python tools/train.py configs/qaconv_gs_market.py'),
    _base_.custom_hooks[1],
]
test_sets = dict(msmt17=_base_.msmt17_test, market1501=_base_.market1501_test)
test_cfg = dict(test_sets=test_sets)
val_cfg = dict(test_sets=test_sets)

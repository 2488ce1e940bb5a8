# Unsupervised domain adaptation MSMT17 -> Market-1501: the QAConv-GS network
# trained with labels on MSMT17 (configs/qaconv_gs_msmt17.py) adapted to
# Market-1501's training images without their labels (pseudo-label GS),
# tested on Market-1501 and MSMT17. Peer settings and sources:
# _base_/qaconv_gs_pseudo_label.py (eps 0.6, 200 iterations per epoch).
_base_ = ['./_base_/qaconv_gs_pseudo_label.py']

load_from = 'work_dirs/qaconv_gs_msmt17/epoch_15.pth'
model = dict(backbone=dict(init_cfg=None))  # weights from load_from

train_dataloader = dict(dataset=dict(dataset=_base_.market1501_train))
custom_hooks = [
    dict(_base_.custom_hooks[0],
         load_from_hint='python tools/train.py configs/qaconv_gs_msmt17.py'),
    _base_.custom_hooks[1],
]
test_sets = dict(market1501=_base_.market1501_test, msmt17=_base_.msmt17_test)
test_cfg = dict(test_sets=test_sets)
val_cfg = dict(test_sets=test_sets)

# TransMatcher-GS trained on RandPerson (4 epochs, lr step at 2, as the
# QAConv-GS RandPerson schedule), tested on Market-1501, CUHK03-NP and
# MSMT17; the rest as configs/transmatcher_gs_market.py.
_base_ = [
    './_base_/models/transmatcher_r50_ibn.py',
    './_base_/datasets/reid_data.py',
    './_base_/datasets/market1501.py',
    './_base_/datasets/cuhk03_np.py',
    './_base_/datasets/msmt17.py',
    './_base_/datasets/randperson.py',
    './_base_/schedules/transmatcher_gs_15e.py',
    './_base_/default_runtime.py',
]

train_dataloader = dict(
    dataset=dict(_base_.randperson_train, pipeline=_base_.train_pipeline))
test_sets = dict(
    market1501=_base_.market1501_test,
    cuhk03_np=_base_.cuhk03_np_test,
    msmt17=_base_.msmt17_test)
test_cfg = dict(test_sets=test_sets)
val_cfg = dict(test_sets=test_sets)
param_scheduler = [
    dict(type='MultiStepLR', by_epoch=True, milestones=[2], gamma=0.1)
]
train_cfg = dict(by_epoch=True, max_epochs=4, val_interval=4)

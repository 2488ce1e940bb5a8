# TransMatcher-GS trained on MSMT17 (train + val), tested on Market-1501 and
# CUHK03-NP; settings as configs/transmatcher_gs_market.py.
_base_ = [
    './_base_/models/transmatcher_r50_ibn.py',
    './_base_/datasets/reid_data.py',
    './_base_/datasets/market1501.py',
    './_base_/datasets/cuhk03_np.py',
    './_base_/datasets/msmt17.py',
    './_base_/schedules/transmatcher_gs_15e.py',
    './_base_/default_runtime.py',
]

train_dataloader = dict(
    dataset=dict(_base_.msmt17_train, pipeline=_base_.train_pipeline))
test_sets = dict(
    market1501=_base_.market1501_test, cuhk03_np=_base_.cuhk03_np_test)
test_cfg = dict(test_sets=test_sets)
val_cfg = dict(test_sets=test_sets)

# The base of the leave-one-out configs (configs/qaconv_gs_loo_*.py):
# QAConv-GS at the paper's settings (ResNet-50-IBN-b, 384x128, B=64, K=4, 15
# epochs, step 10) on three sources pooled (PooledReIDDataset, the *_all
# sources of datasets/multisource_loo.py), tested on the held-out one. A
# config sets train_dataloader.dataset (the pooled sources) and test_sets.
_base_ = [
    './models/qaconv_r50_ibn.py',
    './datasets/reid_data.py',
    './datasets/multisource_loo.py',
    './schedules/qaconv_gs_15e.py',
    './default_runtime.py',
]

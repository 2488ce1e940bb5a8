# Multi-source domain generalization (leave one out): QAConv-GS
# (ResNet-50-IBN-b, 384x128, the paper's schedule) trained on Market-1501 +
# CUHK03-NP + CUHK-SYSU, all splits pooled (about 14,900 identities), tested
# on MSMT17, never seen. See configs/qaconv_gs_loo_market.py.
_base_ = ['./_base_/qaconv_gs_loo.py']

train_dataloader = dict(
    dataset=dict(
        type='PooledReIDDataset',
        datasets=[_base_.market1501_all, _base_.cuhk03_np_all,
                  _base_.cuhk_sysu_all],
        names=['market1501', 'cuhk03_np', 'cuhk_sysu'],
        pipeline=_base_.train_pipeline))
test_sets = dict(msmt17=_base_.msmt17_test)
test_cfg = dict(test_sets=test_sets)
val_cfg = dict(test_sets=test_sets)

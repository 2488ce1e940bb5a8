# Multi-source domain generalization (leave one out): QAConv-GS
# (ResNet-50-IBN-b, 384x128, the paper's schedule) trained on Market-1501 +
# MSMT17 + CUHK-SYSU, all splits pooled (about 17,500 identities), tested on
# CUHK03-NP (detected), never seen. See configs/qaconv_gs_loo_market.py.
_base_ = ['./_base_/qaconv_gs_loo.py']

train_dataloader = dict(
    dataset=dict(
        type='PooledReIDDataset',
        datasets=[_base_.market1501_all, _base_.msmt17_all,
                  _base_.cuhk_sysu_all],
        names=['market1501', 'msmt17', 'cuhk_sysu'],
        pipeline=_base_.train_pipeline))
test_sets = dict(cuhk03_np=_base_.cuhk03_np_test)
test_cfg = dict(test_sets=test_sets)
val_cfg = dict(test_sets=test_sets)

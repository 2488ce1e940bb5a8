# Multi-source domain generalization (leave one out): QAConv-GS
# (ResNet-50-IBN-b, 384x128, B=64, K=4, the paper's schedule) trained on
# CUHK03-NP + MSMT17 + CUHK-SYSU, all splits pooled (about 17,500 identities,
# as many GS batches per epoch), tested on Market-1501, never seen. The class
# graph spans the pooled classes; add `within_source=True` to the
# GraphSamplerHook to keep every class's neighbours within its source.
# The other held-out targets: qaconv_gs_loo_cuhk03.py, qaconv_gs_loo_msmt17.py.
_base_ = ['./_base_/qaconv_gs_loo.py']

train_dataloader = dict(
    dataset=dict(
        type='PooledReIDDataset',
        datasets=[_base_.cuhk03_np_all, _base_.msmt17_all,
                  _base_.cuhk_sysu_all],
        names=['cuhk03_np', 'msmt17', 'cuhk_sysu'],
        pipeline=_base_.train_pipeline))
test_sets = dict(market1501=_base_.market1501_test)
test_cfg = dict(test_sets=test_sets)
val_cfg = dict(test_sets=test_sets)

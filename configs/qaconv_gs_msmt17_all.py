# QAConv-GS trained on MSMT17 (all): train + val + query + gallery
# identities, as in the paper; tested on Market-1501 and CUHK03-NP.
_base_ = ['./qaconv_gs_msmt17.py']

train_dataloader = dict(
    dataset=dict(_base_.msmt17_all_train, pipeline=_base_.train_pipeline))

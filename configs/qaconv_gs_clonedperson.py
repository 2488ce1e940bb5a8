# QAConv-GS trained on ClonedPerson, tested on Market-1501, CUHK03-NP and
# MSMT17.
_base_ = ['./qaconv_gs_randperson.py', './_base_/datasets/clonedperson.py']

train_dataloader = dict(
    dataset=dict(_base_.clonedperson_train, pipeline=_base_.train_pipeline))

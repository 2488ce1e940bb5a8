# The demo with QAConv 1.x's class memory loss and random PK batches: the
# "QAConv baseline" of the paper's Table 1 on the synthetic benchmark (same
# network, seed, epochs and batch size as configs/qaconv_gs_demo.py).
# num_classes must equal the training identities of the dataset (200 here);
# a label outside the memory is a clear error.
_base_ = ['./qaconv_pk_demo.py']

model = dict(
    head=dict(
        loss=dict(
            _delete_=True, type='ClassMemoryLoss', num_classes=200,
            num_features=64, height=8, width=4)))

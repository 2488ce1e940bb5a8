# The paper's Table 1 "QAConv baseline" on Market-1501: QAConv 1.x's class
# memory loss with random PK batches (no Graph Sampler); network, input size,
# optimiser and schedule as configs/qaconv_gs_market.py.
# num_classes = the training identities of Market-1501 (751); a label outside
# the memory is a clear error. The memory (C x 64 x 24 x 8 floats) is saved in
# the checkpoints and restored by --resume.
_base_ = ['./qaconv_gs_market.py']

custom_hooks = []
model = dict(
    head=dict(
        loss=dict(
            _delete_=True, type='ClassMemoryLoss', num_classes=751,
            num_features=64, height=24, width=8, mem_batch_size=16)))

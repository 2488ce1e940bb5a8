# The demo with random PK batches throughout (no Graph Sampler): the GS-vs-PK
# comparison of the paper on the synthetic benchmark, same seed, epochs and
# batch size as configs/qaconv_gs_demo.py. The GraphSampler without a graph
# yields random PK batches of the same number and size.
# Training still logs train/batch_lookalike_share every epoch (a default
# hook of _base_/default_runtime.py, kept by custom_hooks = []): the share of
# a batch's identities that meet a look-alike in the batch, as GS epochs do.
_base_ = ['./qaconv_gs_demo.py']

custom_hooks = []

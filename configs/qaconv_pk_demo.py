# The demo with random PK batches throughout (no Graph Sampler): the GS-vs-PK
# comparison of the paper on the synthetic benchmark, same seed, epochs and
# batch size as configs/qaconv_gs_demo.py. The GraphSampler without a graph
# yields random PK batches of the same number and size.
_base_ = ['./qaconv_gs_demo.py']

custom_hooks = []

# configs/gs_r18_global_demo.py with random PK batches throughout (no Graph
# Sampler): same seed, epochs and batch size, to measure what GS adds to a
# global-embedding model. The GraphSampler without a graph yields random PK
# batches of the same number and size.
_base_ = ['./gs_r18_global_demo.py']

custom_hooks = []

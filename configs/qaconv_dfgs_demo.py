# The demo with depth-first graph sampling (DFGS, repository DG-ReiD/DFGS)
# instead of GS: same network, data, seed, epochs, batch size and number of
# iterations as configs/qaconv_gs_demo.py; only the batches differ.
#
#   python tools/train.py configs/qaconv_dfgs_demo.py
#
# After the PK warm-up epoch, GraphSamplerHook builds each class's
# num_neighbors = 15 nearest classes with the model (the hook reads the
# width from the sampler: P - 1 for GraphSampler), and every batch of
# P = 32 / 4 = 8 identities grows by a depth-first walk of that graph,
# nearest neighbour first (DepthFirstGraphSampler's docstring says where it
# departs from the public code). Each identity's 4 images are taken
# round-robin over its cameras.
_base_ = ['./qaconv_gs_demo.py']

# 200 batches an epoch, as the GS demo (C = 200 training identities); the
# sampler's own default (None) would be one pass over the data.
train_dataloader = dict(
    sampler=dict(
        type='DepthFirstGraphSampler',
        num_neighbors=15,
        batches_per_epoch=200))

# Multi-source demo on the embedded synthetic benchmark (no download, CPU,
# minutes): QAConv-GS trained on camera-style domains A (indoor) and B
# (outdoor daylight) pooled into one training set (PooledReIDDataset: 2
# sources, 200 + 200 = 400 identities with labels 0..399), then tested on
# domain C, never seen (outdoor night and overcast, strong blue or green
# casts, high contrast, smaller persons), and on the test sets of A and B.
# The data is generated into data/synthetic_reid/{A,B,C} on first use (A and
# B are the trees of configs/qaconv_gs_demo.py).
#
#   python tools/train.py configs/qaconv_gs_multisource_demo.py
#   python tools/test.py configs/qaconv_gs_multisource_demo.py   # untrained
#
# The model, input size, batches and schedule are the demo's: 1 PK warm-up
# epoch, then the Graph Sampler over the pooled class graph. An epoch is
# fixed at the demo's 200 batches (batches_per_epoch; the paper's C = 400
# would double the CPU time): the same iterations as the single-source
# demo, centres drawn without replacement, so every class centres a batch
# every two epochs. The graph spans both sources; the log
# gives the share of neighbours from the other source
# (graph/cross_source_share). To keep each class's neighbours within its
# source: --cfg-options "custom_hooks.0.within_source=True".
_base_ = ['./qaconv_gs_demo.py']

domain_c = dict(type='SyntheticReID', data_root=_base_.synthetic_root + '/C',
                domain='C', num_train_ids=200, num_test_ids=100)

train_dataloader = dict(
    sampler=dict(batches_per_epoch=200),
    dataset=dict(
        _delete_=True,
        type='PooledReIDDataset',
        datasets=[
            dict(_base_.domain_a, split='train'),
            dict(_base_.domain_b, split='train')
        ],
        names=['synthetic_A', 'synthetic_B'],
        pipeline=_base_.train_pipeline))

test_sets = dict(
    _delete_=True,
    synthetic_C_unseen=dict(
        query=dict(domain_c, split='query'),
        gallery=dict(domain_c, split='gallery')),
    synthetic_A=dict(
        query=dict(_base_.domain_a, split='query'),
        gallery=dict(_base_.domain_a, split='gallery')),
    synthetic_B=dict(
        query=dict(_base_.domain_b, split='query'),
        gallery=dict(_base_.domain_b, split='gallery')))
test_cfg = dict(test_sets=test_sets)
val_cfg = dict(test_sets=test_sets)

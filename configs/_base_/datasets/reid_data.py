# Data loading shared by every QAConv-GS config: Graph Sampler batches of
# B = P x K (paper: 64 = 16 identities x 4 images) and the cross-dataset test
# loop. A config sets train_dataloader.dataset and test_sets.
_base_ = ['./reid_pipelines.py']

batch_size = 64
num_instances = 4

train_dataloader = dict(
    batch_size=batch_size,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(
        type='GraphSampler', batch_size=batch_size,
        num_instances=num_instances),
)

custom_hooks = [
    # Rebuilds the class graph before every epoch from epoch `pk_epochs` on.
    dict(type='GraphSamplerHook', pipeline=_base_.test_pipeline,
         pk_epochs=1, batch_size=128)
]

test_dataloader = dict(
    batch_size=128,
    num_workers=4,
    sampler=dict(type='DefaultSampler', shuffle=False))
test_evaluator = dict(type='ReIDMetric')
# shortlist=N (tools/test.py --shortlist N): score only each query's N best
# gallery items by a pooled-map proxy with the exact matcher (None: exact).
test_cfg = dict(type='ReIDTestLoop', pipeline=_base_.test_pipeline,
                shortlist=None)

val_dataloader = test_dataloader
val_evaluator = test_evaluator
val_cfg = dict(type='ReIDValLoop', pipeline=_base_.test_pipeline)

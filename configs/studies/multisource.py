# Multi-source training on synthetic A + B (PooledReIDDataset), tested on the
# unseen C and on A, B: random PK vs GS over the pooled class graph vs GS
# within each source.
#
#   python tools/analysis_tools/sampler_study.py multisource --quick
#
# pk: random PK batches throughout (custom_hooks = []); gs: the config as is
# (1 PK warm-up epoch, then GS over one class graph spanning both sources);
# gs_within: GS with within_source=True. The full preset's None values are
# the config's (8 epochs x 200 batches = 1,600 iterations for
# configs/qaconv_gs_multisource_demo.py); the quick preset is 4 epochs x 100
# batches = 400 iterations, the lr step at epoch 3. Every run is validated
# once, at its last epoch.
kind = 'multisource'
doc = ('multi-source training on synthetic A + B (PooledReIDDataset), tested '
       'on the unseen C and on A, B: random PK vs GS over the pooled class '
       'graph vs GS within each source (within_source=True); Rank-1 / mAP, '
       'batch_lookalike_share and graph/cross_source_share')
config = 'configs/qaconv_gs_multisource_demo.py'
variants = dict(
    pk=dict(sampler='pk'),
    gs=dict(sampler='gs', pk_epochs=1),
    gs_within=dict(sampler='gs', pk_epochs=1, within_source=True),
)
presets = dict(
    quick=dict(seeds=[0, 1, 2], epochs=4, milestones=[3],
               batches_per_epoch=100),
    full=dict(seeds=[0, 1, 2], epochs=None, milestones=None,
              batches_per_epoch=None),
)

# Paper Fig. 4 (left): GS after 0, 1, 2 or 4 PK warm-up epochs.
#
#   python tools/analysis_tools/sampler_study.py init --quick
kind = 'variants'
doc = 'paper Fig. 4 (left): GS after 0, 1, 2 or 4 PK warm-up epochs'
config = 'configs/qaconv_gs_demo.py'
variants = dict(
    pk0=dict(sampler='gs', pk_epochs=0),
    pk1=dict(sampler='gs', pk_epochs=1),
    pk2=dict(sampler='gs', pk_epochs=2),
    pk4=dict(sampler='gs', pk_epochs=4),
)
presets = dict(
    quick=dict(seeds=[0, 1], epochs=4, milestones=[]),
    full=dict(seeds=[0, 1, 2], epochs=8, milestones=[6]),
)

# PK vs GS of the TransMatcher demo (1 PK warm-up epoch, the class graph
# scored by the TransMatcher head), Rank-1 / mAP against epochs.
#
#   python tools/analysis_tools/sampler_study.py transmatcher
kind = 'variants'
doc = ('the TransMatcher demo (configs/transmatcher_gs_demo.py): random PK '
       'vs GS (1 PK warm-up epoch, the class graph scored by the '
       'TransMatcher head), Rank-1 / mAP against epochs')
config = 'configs/transmatcher_gs_demo.py'
variants = dict(
    pk=dict(sampler='pk'),
    gs=dict(sampler='gs', pk_epochs=1),
)
presets = dict(
    quick=dict(seeds=[0, 1, 2], epochs=5, milestones=[4]),
    full=dict(seeds=[0, 1, 2], epochs=8, milestones=[6]),
)

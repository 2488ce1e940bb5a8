# GS without labels (issue 30, study a): adapt the network trained with
# labels on synthetic A to B from B's training images without their labels
# (configs/qaconv_gs_uda_demo.py: PseudoLabelHook clusters B before every
# epoch), with random PK batches, GS or DFGS over the pseudo-classes; tested
# on B (and A) after every epoch, the pseudo-labels' NMI logged at every
# clustering.
#
#   python tools/train.py configs/qaconv_gs_demo.py     # the source network
#   python tools/analysis_tools/sampler_study.py uda --commit
#   python tools/analysis_tools/sampler_study.py uda --render
#   python tools/test.py configs/qaconv_gs_uda_demo.py \
#       work_dirs/qaconv_gs_demo/epoch_8.pth            # direct transfer
#
# The PK variant keeps the pseudo-labels (PseudoLabelHook stays) and drops
# the GraphSamplerHook; GS and DFGS build their class graph over the
# pseudo-classes from the first epoch (pk_epochs=0: the network is trained).
kind = 'variants'
doc = ('unsupervised adaptation A -> B on pseudo-labels: random PK vs GS vs '
       'DFGS over the pseudo-classes, B / A Rank-1 and mAP after every '
       'epoch')
config = 'configs/qaconv_gs_uda_demo.py'
variants = dict(
    pk=dict(sampler='pk'),
    gs=dict(sampler='gs', pk_epochs=0),
    dfgs=dict(sampler='dfgs', pk_epochs=0, num_neighbors=15),
)
presets = dict(
    quick=dict(seeds=[0, 1, 2], epochs=2, milestones=[]),
    full=dict(seeds=[0, 1, 2], epochs=4, milestones=[]),
)

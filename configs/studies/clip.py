# Paper Fig. 4 (right): GS with gradient-norm clipping at 8, 32, 128, 512 or
# off; runs that do not converge are counted.
#
#   python tools/analysis_tools/sampler_study.py clip --quick
kind = 'variants'
doc = ('paper Fig. 4 (right): GS with gradient-norm clipping at 8, 32, 128, '
       '512 or off; runs that do not converge are counted')
config = 'configs/qaconv_gs_demo.py'
variants = dict(
    clip8=dict(sampler='gs', clip=8),
    clip32=dict(sampler='gs', clip=32),
    clip128=dict(sampler='gs', clip=128),
    clip512=dict(sampler='gs', clip=512),
    clip_off=dict(sampler='gs', clip=None),
)
presets = dict(
    quick=dict(seeds=[0, 1], epochs=3, milestones=[]),
    full=dict(seeds=[0, 1, 2], epochs=8, milestones=[6]),
)

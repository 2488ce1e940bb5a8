# Paper Fig. 3: GS with B in {16, 32, 64} at K = 4 and K in {2, 4, 8} at
# B = 32.
#
#   python tools/analysis_tools/sampler_study.py batch --quick
kind = 'variants'
doc = 'paper Fig. 3: GS with B in {16, 32, 64} at K = 4 and K in {2, 4, 8} at B = 32'
config = 'configs/qaconv_gs_demo.py'
variants = dict(
    B16_K4=dict(sampler='gs', batch_size=16, num_instances=4),
    B32_K4=dict(sampler='gs', batch_size=32, num_instances=4),
    B64_K4=dict(sampler='gs', batch_size=64, num_instances=4),
    B32_K2=dict(sampler='gs', batch_size=32, num_instances=2),
    B32_K8=dict(sampler='gs', batch_size=32, num_instances=8),
)
presets = dict(
    quick=dict(seeds=[0, 1], epochs=3, milestones=[]),
    full=dict(seeds=[0, 1, 2], epochs=8, milestones=[6]),
)

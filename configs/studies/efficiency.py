# Paper Fig. 2: class memory vs random PK vs GS (1 PK warm-up epoch),
# Rank-1 / mAP against epochs, on the demo.
#
#   python tools/analysis_tools/sampler_study.py efficiency --quick
#
# A study config is declarative: the base training config, the variants
# (overrides of it, see mmreid_gs.studies.variants.apply_variant) and named
# presets (seeds, epochs, lr steps). Finished runs go to
# docs/studies/efficiency/runs.jsonl (one JSON line per run).
kind = 'variants'
doc = ('paper Fig. 2: class memory vs random PK vs GS (1 PK warm-up epoch), '
       'Rank-1 / mAP against epochs')
config = 'configs/qaconv_gs_demo.py'
variants = dict(
    class_memory=dict(sampler='pk', loss='class_memory'),
    pk=dict(sampler='pk'),
    gs=dict(sampler='gs', pk_epochs=1),
)
presets = dict(
    quick=dict(seeds=[0, 1, 2], epochs=5, milestones=[4]),
    full=dict(seeds=[0, 1, 2, 3, 4], epochs=8, milestones=[6]),
)

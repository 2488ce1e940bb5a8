# TransMatcher-GS (ResNet-50-IBN-b, 384x128, B=64, K=4, lr 0.005, clip 4, 15
# epochs, step at 10) trained on Market-1501, tested across datasets on
# CUHK03-NP (detected) and MSMT17.
#
# The Graph Sampler starts after one PK warm-up epoch, as in the GS paper
# (Section 5.4.4: GS needs a trained model). The public TransMatcher script
# builds the graph from the first epoch (from the ImageNet start):
#   --cfg-options "custom_hooks.0.pk_epochs=0"
# The test cost grows with the gallery (a network per pair): at MSMT17 size
# use a shortlist, e.g. `tools/test.py CONFIG CKPT --shortlist 500`.
_base_ = [
    './_base_/models/transmatcher_r50_ibn.py',
    './_base_/datasets/reid_data.py',
    './_base_/datasets/market1501.py',
    './_base_/datasets/cuhk03_np.py',
    './_base_/datasets/msmt17.py',
    './_base_/schedules/transmatcher_gs_15e.py',
    './_base_/default_runtime.py',
]

train_dataloader = dict(
    dataset=dict(_base_.market1501_train, pipeline=_base_.train_pipeline))
test_sets = dict(cuhk03_np=_base_.cuhk03_np_test, msmt17=_base_.msmt17_test)
test_cfg = dict(test_sets=test_sets)
val_cfg = dict(test_sets=test_sets)

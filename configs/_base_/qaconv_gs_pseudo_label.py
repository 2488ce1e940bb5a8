# The base of the pseudo-label configs (configs/qaconv_gs_uda_*.py,
# configs/qaconv_gs_usl_market.py): QAConv-GS at the paper's settings
# (ResNet-50-IBN-b, 384x128, B=64, K=4) trained on the clusters of an
# unlabelled training set. A config sets the target
# (train_dataloader.dataset.dataset), test_sets, load_from and, per target,
# the DBSCAN eps.
#
# Clustering settings of the peers, every epoch, on the k-reciprocal Jaccard
# distance: k1 30, k2 6, DBSCAN min_samples 4, eps 0.6 (SpCL,
# github.com/yxgeee/SpCL examples/spcl_train_uda.py and spcl_train_usl.py
# defaults; the default of Cluster Contrast's examples/
# cluster_contrast_train_usl.py, github.com/alibaba/cluster-contrast-reid),
# 0.7 for MSMT17 (Cluster Contrast's run_code.sh; its Market-1501 runs there
# use 0.4). Outliers sit the epoch out (both). Cluster Contrast trains 50
# epochs of 200 (Market-1501) / 400 (MSMT17) iterations; the epoch length
# here is fixed the same way (batches_per_epoch), the number of epochs is
# QAConv-GS's. Not yet run on a GPU: the figures are still to be measured.
_base_ = [
    './models/qaconv_r50_ibn.py',
    './datasets/reid_data.py',
    './datasets/market1501.py',
    './datasets/msmt17.py',
    './schedules/qaconv_gs_15e.py',
    './default_runtime.py',
]

eps = 0.6
batches_per_epoch = 200

train_dataloader = dict(
    sampler=dict(batches_per_epoch=batches_per_epoch),
    dataset=dict(
        # each config adds dataset=<the target's train split>
        type='UnlabeledReIDDataset',
        pipeline=_base_.train_pipeline))

custom_hooks = [
    # Clusters before every epoch (priority ABOVE_NORMAL: before the GS
    # hook), then GS builds its class graph over the pseudo-classes.
    dict(type='PseudoLabelHook', pipeline=_base_.test_pipeline, interval=1,
         batch_size=128, eps=eps, min_samples=4, k1=30, k2=6,
         keep_outliers=False, fp16=True),
    dict(type='GraphSamplerHook', pipeline=_base_.test_pipeline, pk_epochs=0,
         batch_size=128),
]

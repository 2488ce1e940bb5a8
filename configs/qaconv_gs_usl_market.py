# Fully unsupervised Market-1501: QAConv-GS from the ImageNet IBN-Net weights
# only (no labelled source), trained on the clusters of Market-1501's
# training images, tested on Market-1501. Peer settings and sources:
# _base_/qaconv_gs_pseudo_label.py (eps 0.6; Cluster Contrast's own
# Market-1501 runs use 0.4). Pseudo-label GS from the first epoch: with an
# ImageNet network the first clusters are poor (NMI in the log), which is
# what the unsupervised peers start from too.
_base_ = ['./_base_/qaconv_gs_pseudo_label.py']

train_dataloader = dict(dataset=dict(dataset=_base_.market1501_train))
test_sets = dict(market1501=_base_.market1501_test)
test_cfg = dict(test_sets=test_sets)
val_cfg = dict(test_sets=test_sets)

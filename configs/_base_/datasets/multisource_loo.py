# Multi-source domain generalization, leave one out: train on three labelled
# datasets pooled (PooledReIDDataset: labels made disjoint, 0..C-1 over the
# sources), test on the fourth, never seen. The training sources are used
# whole (train + query + gallery identities, as the M3L / MetaBIN protocols
# do); CUHK-SYSU is a training source only.
#
#   data/market1501/{bounding_box_train,query,bounding_box_test}
#   data/cuhk03_np/detected/{bounding_box_train,query,bounding_box_test}
#   data/msmt17/{train,test} + list_{train,val,query,gallery}.txt
#   data/cuhk_sysu/cropped_images/p<pid>_s<scene image>.jpg
#
# A config of the protocol pools three of the *_all sources below
# (PooledReIDDataset's `split='all'`: every split of the dataset; MSMT17 uses
# its own 'all' mode, the same images and identities) and tests on the
# held-out dataset's *_test set.
_base_ = [
    './market1501.py', './cuhk03_np.py', './msmt17.py', './cuhk_sysu.py'
]

market1501_all = dict(_base_.market1501_train, split='all')
cuhk03_np_all = dict(_base_.cuhk03_np_train, split='all')
msmt17_all = _base_.msmt17_all_train  # train + val + query + gallery
cuhk_sysu_all = _base_.cuhk_sysu_train  # training identities only

# CUHK-SYSU person crops (training only, all 11,934 labelled identities):
# data/cuhk_sysu/cropped_images/p<pid>_s<scene image>.jpg
# (mmreid_gs/datasets/cuhk_sysu.py describes how to prepare them)
cuhk_sysu_root = 'data/cuhk_sysu'
cuhk_sysu_train = dict(
    type='CUHKSYSU', data_root=cuhk_sysu_root, split='train')

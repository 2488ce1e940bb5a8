# A dataset of your own in the Market-1501 layout (README: "Your own
# dataset"). Images are named <person id>_c<camera>s<seq>_<frame>_<n>.jpg,
# e.g. 0002_c1s1_000451_03.jpg (person 2, camera 1); person id -1 is junk
# and dropped, 0000 (distractors) stays in the gallery only:
#
#   data/my_dataset/
#   ├── bounding_box_train/   training images
#   ├── query/                query images
#   └── bounding_box_test/    gallery images
#
# Another folder: MMEngine resolves this file's variables when it loads it,
# so `my_dataset_root = ...` in a child config does not reach the dicts below
# (the tools stop with an error that says so). Either copy this file and
# change my_dataset_root in the copy, or set data_root in the child, e.g. a
# child of configs/qaconv_gs_my_dataset.py:
#
#   _base_ = ['./qaconv_gs_my_dataset.py']
#   my_root = 'data/my_market'
#   train_dataloader = dict(dataset=dict(data_root=my_root))
#   test_sets = dict(my_dataset=dict(query=dict(data_root=my_root),
#                                    gallery=dict(data_root=my_root)))
#   test_cfg = dict(test_sets=test_sets)
#   val_cfg = dict(test_sets=test_sets)
#
# or, without a new file: --cfg-options
#   train_dataloader.dataset.data_root=data/my_market
#   test_cfg.test_sets.my_dataset.query.data_root=data/my_market
#   test_cfg.test_sets.my_dataset.gallery.data_root=data/my_market
#   (and the same two for val_cfg, when training validates)
my_dataset_root = 'data/my_dataset'
my_dataset_train = dict(
    type='Market1501', data_root=my_dataset_root, split='train')
my_dataset_test = dict(
    query=dict(type='Market1501', data_root=my_dataset_root, split='query'),
    gallery=dict(
        type='Market1501', data_root=my_dataset_root, split='gallery'))

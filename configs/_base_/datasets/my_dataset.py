# A dataset of your own in the Market-1501 layout (README: "Your own
# dataset"). Images are named <person id>_c<camera>s<seq>_<frame>_<n>.jpg,
# e.g. 0002_c1s1_000451_03.jpg (person 2, camera 1); person id -1 is junk
# and dropped, 0000 (distractors) stays in the gallery only:
#
#   data/my_dataset/
#   ├── bounding_box_train/   training images
#   ├── query/                query images
#   └── bounding_box_test/    gallery images
my_dataset_root = 'data/my_dataset'
my_dataset_train = dict(
    type='Market1501', data_root=my_dataset_root, split='train')
my_dataset_test = dict(
    query=dict(type='Market1501', data_root=my_dataset_root, split='query'),
    gallery=dict(
        type='Market1501', data_root=my_dataset_root, split='gallery'))

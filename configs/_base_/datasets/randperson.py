# RandPerson (synthetic, training only): data/randperson/randperson_subset/
randperson_root = 'data/randperson'
randperson_train = dict(
    type='RandPerson', data_root=randperson_root, split='train')

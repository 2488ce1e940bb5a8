# ClonedPerson (synthetic, training only): mmreid_gs/datasets/clonedperson.py
clonedperson_root = 'data/clonedperson'
clonedperson_train = dict(
    type='ClonedPerson', data_root=clonedperson_root, split='train')

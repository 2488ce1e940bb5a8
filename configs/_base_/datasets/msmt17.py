# MSMT17 (V1 or V2 layout): data/msmt17/{train,test} + list_{train,val,
# query,gallery}.txt
msmt17_root = 'data/msmt17'
msmt17_train = dict(type='MSMT17', data_root=msmt17_root, split='train')
# MSMT17 (all): train + val + query + gallery identities, as in the paper
msmt17_all_train = dict(
    type='MSMT17', data_root=msmt17_root, split='train', mode='all')
msmt17_test = dict(
    query=dict(type='MSMT17', data_root=msmt17_root, split='query'),
    gallery=dict(type='MSMT17', data_root=msmt17_root, split='gallery'))

# CUHK03-NP (new protocol, 767/700 identities), detected boxes:
# data/cuhk03_np/detected/{bounding_box_train,query,bounding_box_test}
cuhk03_np_root = 'data/cuhk03_np'
cuhk03_np_train = dict(
    type='CUHK03NP', data_root=cuhk03_np_root, mode='detected',
    split='train')
cuhk03_np_test = dict(
    query=dict(
        type='CUHK03NP', data_root=cuhk03_np_root, mode='detected',
        split='query'),
    gallery=dict(
        type='CUHK03NP', data_root=cuhk03_np_root, mode='detected',
        split='gallery'))

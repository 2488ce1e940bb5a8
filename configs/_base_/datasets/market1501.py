# Market-1501: data/market1501/{bounding_box_train,query,bounding_box_test}
market1501_root = 'data/market1501'
market1501_train = dict(
    type='Market1501', data_root=market1501_root, split='train')
market1501_test = dict(
    query=dict(type='Market1501', data_root=market1501_root, split='query'),
    gallery=dict(
        type='Market1501', data_root=market1501_root, split='gallery'))

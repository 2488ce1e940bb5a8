"""Datasets, transforms and samplers of mmreid_gs."""
from .bad_images import BadImageError
from .base_reid_dataset import BaseReIDDataset
from .clonedperson import ClonedPerson
from .cuhk03_np import CUHK03NP
from .cuhk_sysu import CUHKSYSU
from .market1501 import Market1501
from .msmt17 import MSMT17
from .pooled_reid_dataset import PooledReIDDataset
from .randperson import RandPerson
from .samplers import GraphSampler
from .synthetic import SyntheticReID
from .transforms import PackReIDInputs, RandomOcclusion, ReIDColorJitter
from .unlabeled_reid_dataset import UnlabeledReIDDataset

__all__ = [
    'BadImageError', 'BaseReIDDataset', 'Market1501', 'CUHK03NP', 'MSMT17',
    'CUHKSYSU', 'RandPerson', 'ClonedPerson', 'SyntheticReID',
    'PooledReIDDataset', 'UnlabeledReIDDataset', 'GraphSampler',
    'PackReIDInputs', 'RandomOcclusion', 'ReIDColorJitter'
]

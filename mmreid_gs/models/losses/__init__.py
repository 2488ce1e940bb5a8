from .class_memory_loss import ClassMemoryLoss
from .pairwise_matching_loss import PairwiseMatchingLoss
from .triplet_loss import HardTripletLoss

__all__ = ['PairwiseMatchingLoss', 'HardTripletLoss', 'ClassMemoryLoss']

from .skip_nonfinite_optim_wrapper import (SkipNonFiniteAmpOptimWrapper,
                                           SkipNonFiniteOptimWrapper)

__all__ = ['SkipNonFiniteOptimWrapper', 'SkipNonFiniteAmpOptimWrapper']

"""References for tests and benchmarks (not used by the package itself)."""
from .devices import FakeAccelerator, accelerator_code_paths, is_fake
from .public_qaconv import PublicQAConv, random_maps
from .public_transmatcher import (PublicTransMatcher,
                                  PublicTransMatcherEncoder)

__all__ = [
    'PublicQAConv', 'random_maps', 'PublicTransMatcher',
    'PublicTransMatcherEncoder', 'accelerator_code_paths',
    'FakeAccelerator', 'is_fake'
]

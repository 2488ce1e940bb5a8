"""References for tests and benchmarks (not used by the package itself)."""
from .public_qaconv import PublicQAConv, random_maps

__all__ = ['PublicQAConv', 'random_maps']

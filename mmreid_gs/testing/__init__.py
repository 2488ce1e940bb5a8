"""References for tests and benchmarks (not used by the package itself)."""
from .public_qaconv import PublicQAConv

__all__ = ['PublicQAConv']

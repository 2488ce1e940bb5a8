"""The test loops: :class:`ReIDTestLoop` / :class:`ReIDValLoop` (several
named test sets, blockwise ``model.match``, through ``self.evaluator``).
What the tools share (config checks, the runner, :func:`run_cli`) is
:mod:`mmreid_gs.cli`'s."""
from .reid_test_loop import ReIDTestLoop, ReIDValLoop

__all__ = ['ReIDTestLoop', 'ReIDValLoop']

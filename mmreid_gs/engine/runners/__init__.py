from .reid_test_loop import ReIDTestLoop, ReIDValLoop

__all__ = ['ReIDTestLoop', 'ReIDValLoop']

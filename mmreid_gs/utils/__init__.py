from .errors import (ReIDUserError, ReIDUserFileError, ReIDUserKeyError,
                     ReIDUserTypeError)
from .setup_env import register_all_modules

__all__ = [
    'register_all_modules', 'ReIDUserError', 'ReIDUserKeyError',
    'ReIDUserTypeError', 'ReIDUserFileError'
]

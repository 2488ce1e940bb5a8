"""The error type of input a user can fix.

``tools/*.py`` (through :func:`mmreid_gs.cli.run_cli`) report these
on one line, ``error (<type>): <message>``, and exit with code 2; any other
exception is a bug and keeps its traceback. Raise them where the package
checks user input: a config value, a dataset folder, a checkpoint file.

The subclasses also derive from the built-in type that such a check raised
before (``ValueError``, ``KeyError``, ``TypeError``, ``RuntimeError``), so
``except ValueError`` and ``pytest.raises(KeyError)`` keep working.
"""


class ReIDUserError(ValueError):
    """Bad input a user can fix: a config value, a path, a file."""


class ReIDUserKeyError(ReIDUserError, KeyError):
    """A config key a user must add or rename."""

    def __str__(self) -> str:
        # KeyError quotes its message; a user error reads as plain text.
        return ValueError.__str__(self)


class ReIDUserTypeError(ReIDUserError, TypeError):
    """A config value of the wrong kind (e.g. a component of another
    type than the one needed)."""


class ReIDUserFileError(ReIDUserError, RuntimeError):
    """A file a user passed that cannot be read (e.g. not a checkpoint)."""


class ConfigError(ReIDUserError):
    """A config or command-line problem a user can fix."""

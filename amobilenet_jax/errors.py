"""Errors that are the user's to fix: the command line prints them as one line, no traceback.

Anything else that escapes is a bug in this codebase and keeps its traceback. Each class
also derives from the builtin a caller would expect (``ValueError``,
``FileNotFoundError``...), so library code can be caught as before.
"""

from __future__ import annotations


class UserError(Exception):
    """A problem in what the user gave: a config, a data set, a checkpoint, a flag."""


class ConfigError(UserError, ValueError):
    """A config field that is unknown, of the wrong type, or out of its allowed values."""


class DataError(UserError, ValueError):
    """Malformed data: the message names the file (and row)."""


class DataNotFoundError(UserError, FileNotFoundError):
    """A data directory, split, label file or image that is not there."""


class CheckpointError(UserError, RuntimeError):
    """A checkpoint that cannot be used: another experiment's, or unreadable."""


class NonFiniteError(UserError, FloatingPointError):
    """Training produced a NaN or Inf; the message names the step and the last good checkpoint."""


class Interrupted(UserError):
    """SIGTERM or SIGINT stopped a run after it saved a checkpoint; running the same command resumes.

    ``exit_code`` follows the shell's convention, 128 + the signal's number.
    """

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


class RunNotFoundError(UserError, FileNotFoundError):
    """A run directory, checkpoint or finished run that is not there."""

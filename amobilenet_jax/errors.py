"""Errors that are the user's to fix: the command line prints them as one line, no traceback.

Anything else that escapes is a bug in this codebase and keeps its traceback. Each class
also derives from the builtin a caller would expect (``ValueError``,
``FileNotFoundError``...), so library code can be caught as before.
"""

from __future__ import annotations

import re


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


# ---------------------------------------------------------------- as the user reads them


def joined(text: object) -> str:
    """``text`` (an error, a message) with its lines joined by spaces, for a one-line message."""
    return " ".join(part.strip() for part in str(text).splitlines() if part.strip())


def one_line(error: BaseException) -> str:
    """First and last line of an error's text (config_flags embeds a whole traceback); an
    unknown config field as ``no config field 'x' (did you mean "y"?)``."""
    text = str(error)
    if len(text) > 1 and text[0] == text[-1] == "'":  # a KeyError's repr inside an AttributeError
        text = text[1:-1].replace("\\n", "\n").replace("\\'", "'")
    if isinstance(error, (AttributeError, KeyError)):
        name = re.search(r'Key "(\w+)" does not exist', text) or re.match(r"""^["'\\]*(\w+)["'\\]*(\s|$)""", text)
        if name:
            hint = re.search(r'Did you mean "(\w+)"', text)
            return f"no config field '{name.group(1)}'" + (f' (did you mean "{hint.group(1)}"?)' if hint else "")
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return type(error).__name__
    return lines[0] if len(lines) == 1 else f"{lines[0]} {lines[-1]}"


def warning_line(message, category, filename, lineno, line=None) -> str:
    """A warning as the user reads it: ``warning: <text>``, without this codebase's file and line."""
    return f"warning: {' '.join(str(message).split())}\n"


def bad_config_line(error: BaseException, argv: list[str]) -> str:
    """``error: bad config in --config.x=...: ...``: a config file's or override's error, naming
    the override that caused it (ml_collections raises plain Python errors; a misspelt field
    is an AttributeError saying 'Did you mean ...')."""
    detail = one_line(error)
    field = re.search(r"no config field '(\w+)'", detail) or re.match(r"'?(\w+)'?", detail)
    overrides = [a for a in argv[1:] if a.startswith("--config.")]
    culprit = next((a for a in overrides if field and f".{field.group(1)}" in a), None)
    where = f" in {culprit}" if culprit else ""
    kind = "" if detail.startswith("no config field") else f"{type(error).__name__}: "
    return f"error: bad config{where}: {kind}{detail}"

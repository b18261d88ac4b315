"""What a reader does with one bad image or row, by ``data.on_error``: raise it, or skip it and say so.

An ITEM is one image or one row of a label list: a truncated, undecodable, missing or
wrongly sized image; a row with the wrong number of columns, a vote or label that is not
one, a bad pixel string. With ``on_error="raise"`` (the default) the first bad item
raises its one-line ``DataError`` / ``DataNotFoundError``; with ``"skip"`` it is left out
and its message (``file:row: reason``) kept, so the caller can count and list what went.

Problems with the data set as a whole (a data directory, split folder or label file that
is not there, an empty label file, a split left with no usable item, misaligned Kaggle
files) raise in both modes: skipping them would silently train on something else.
"""

from __future__ import annotations

from collections.abc import Sequence

from amobilenet_jax.errors import ConfigError, DataError, DataNotFoundError, UserError, joined

ON_ERROR = ("raise", "skip")
SHOWN = 5  # how many skipped items a report lists
ITEM_ERRORS = (DataError, DataNotFoundError)  # what a reader catches around one item


def check_on_error(on_error: str) -> None:
    if on_error not in ON_ERROR:
        raise ConfigError(f"data.on_error must be one of {list(ON_ERROR)}, got {on_error!r}")


class BadItems:
    """Collects the items a reader skipped; under ``"raise"`` the first one raises instead.

    Messages are kept once each, in the order met: a reader that walks a file once per split
    meets a malformed row (whose split it cannot tell) on every walk.
    """

    def __init__(self, on_error: str = "raise"):
        check_on_error(on_error)
        self.on_error = on_error
        self._reasons: dict[str, None] = {}

    def handle(self, error: UserError) -> None:
        """Raises ``error`` under ``"raise"``; records its message under ``"skip"``."""
        if self.on_error == "raise":
            raise error
        self._reasons.setdefault(joined(error))

    @property
    def reasons(self) -> tuple[str, ...]:
        return tuple(self._reasons)

    def __len__(self) -> int:
        return len(self._reasons)


def handler(bad: BadItems | None) -> BadItems:
    """``bad``, or a raising one when the caller passed none."""
    return BadItems() if bad is None else bad


def report(name: str, skipped: Sequence[str], shown: int = SHOWN) -> None:
    """Prints (stdout, flushed) how many items of data set ``name`` were skipped and the first ``shown``."""
    if not skipped:
        return
    count = f"{len(skipped)} bad item" + ("s" if len(skipped) != 1 else "")
    first = f", the first {shown}" if len(skipped) > shown else ""
    lines = [f"{name}: skipped {count} (data.on_error=skip){first}:"]
    lines += [f"  {reason}" for reason in skipped[:shown]]
    print("\n".join(lines), flush=True)

"""Every file the project writes goes through here: whole or not at all.

A file is written to a temporary name in its own directory and renamed into place, so a
reader (or a resumed run) never sees half of it, and a failure leaves no temporary file.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from typing import Any


class AtomicOutput:
    """A temporary file ``tmp`` beside ``path`` (same extension, for writers that pick a format
    by it): ``commit()`` renames it to ``path``, ``discard()`` removes it.

    For outputs streamed over a long time (predict's CSV and annotated video); ``atomic_path``
    for one block of code, ``write_atomic`` for bytes or text in hand."""

    def __init__(self, path: str):
        self.path = path
        directory = os.path.dirname(os.path.abspath(path))
        os.makedirs(directory, exist_ok=True)
        base, ext = os.path.splitext(os.path.basename(path))
        fd, self.tmp = tempfile.mkstemp(prefix=f".{base}.", suffix=f".partial{ext}", dir=directory)
        os.close(fd)

    def commit(self) -> None:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(self.tmp, 0o666 & ~umask)  # mkstemp's 0600 would outlive the rename
        os.replace(self.tmp, self.path)

    def discard(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.remove(self.tmp)


@contextlib.contextmanager
def atomic_path(path: str) -> Iterator[str]:
    """A temporary path to write ``path`` through: renamed into place when the block ends,
    removed when it raises."""
    output = AtomicOutput(path)
    try:
        yield output.tmp
        output.commit()
    except BaseException:
        output.discard()
        raise


def write_atomic(path: str, data: str | bytes) -> None:
    """Writes ``data`` to ``path`` (flushed to disk before the rename)."""
    with atomic_path(path) as tmp, open(tmp, "wb" if isinstance(data, bytes) else "w") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def write_json_atomic(path: str, obj: Any) -> None:
    write_atomic(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def read_json(path: str) -> Any | None:
    """The JSON in ``path``, or None when there is no such file."""
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)

"""SIGTERM and SIGINT as a request to stop at the next step, after a checkpoint.

Clusters preempt a job with SIGTERM and a grace period; a person stops one with Ctrl-C.
Either way the training loop sees ``stop.requested`` after the step in flight, saves a
checkpoint at that step and raises ``errors.Interrupted``; the same command resumes.
A second signal while that happens is not caught: the process ends as the signal says
(Orbax's rename-on-completion leaves the previous checkpoint usable).
"""

from __future__ import annotations

import signal
import threading

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopRequest:
    """Context manager: while inside, SIGTERM/SIGINT set ``requested`` (the signal's name)."""

    def __init__(self):
        self.requested: str | None = None
        self.signum: int | None = None
        self._previous: dict[int, object] = {}

    def _handle(self, signum, frame) -> None:
        self.requested, self.signum = signal.Signals(signum).name, signum
        for sig, handler in self._previous.items():  # a second signal acts at once
            signal.signal(sig, handler)

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():  # Python allows handlers only there
            for sig in SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            if signal.getsignal(sig) == self._handle:
                signal.signal(sig, handler)
        self._previous.clear()

    @property
    def exit_code(self) -> int:
        return 128 + (self.signum or 0)

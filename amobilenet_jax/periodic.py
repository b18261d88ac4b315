"""The periodic actions of a training loop, shared by a single run (``train``) and a
vectorised group (``vectorized``): when to log, evaluate and checkpoint; the non-finite guard
before any of them; the training time without evaluation; and stopping on a signal.

SIGTERM and SIGINT are a request to stop at the next step, after a checkpoint. Clusters
preempt a job with SIGTERM and a grace period; a person stops one with Ctrl-C. Either way the
loop sees the request after the step in flight, saves a checkpoint at that step and raises
``errors.Interrupted``; the same command resumes. A second signal while that happens is not
caught: the process ends as the signal says (Orbax's rename-on-completion leaves the previous
checkpoint usable).

    with Periodic(config.train, total, steps_per_epoch, start_step, mngr, images_per_step) as periodic:
        for step, batch in batches:
            state, metrics = train_step(state, batch)
            due = periodic.after_step(step + 1, metrics)
            if due.log:
                metrics, images_per_s = periodic.take_metrics(step + 1)   # host sync
            if due.evaluate:
                with periodic.paused():
                    ...
            if due.save:
                periodic.save(step + 1, state, config_json, position)    # raises Interrupted on a stop
"""

from __future__ import annotations

import contextlib
import dataclasses
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

import jax
import numpy as np

from amobilenet_jax import checkpoints
from amobilenet_jax.errors import Interrupted, NonFiniteError
from amobilenet_jax.kernels import check_frames

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


@dataclasses.dataclass(frozen=True)
class Due:
    """What is due after a step."""

    log: bool
    evaluate: bool
    save: bool
    stop: bool


class Periodic:
    """The loop's schedule and bookkeeping (see the module's docstring); a context manager that
    turns SIGTERM/SIGINT into a stop request while inside.

    ``images_per_step``: all points' images for a vectorised group. ``evaluate``: whether to
    evaluate every ``eval_every_epochs`` (a vectorised group evaluates once, at the end).
    ``names``: the points' names, for the non-finite error of a group.
    """

    def __init__(
        self,
        train_config,
        total: int,
        steps_per_epoch: int,
        start_step: int,
        mngr,
        images_per_step: int,
        evaluate: bool = True,
        names: list[str] | None = None,
        earlier_train_time: float = 0.0,
    ):
        self.total, self.mngr, self.names = total, mngr, names
        self.log_every = train_config.log_every_steps
        self.checkpoint_every = train_config.checkpoint_every_steps
        self.eval_every = max(1, train_config.eval_every_epochs) * steps_per_epoch if evaluate else None
        self.images_per_step = images_per_step
        self.accumulated = None
        self.train_time = earlier_train_time  # what the attempts before this one counted
        self._last_time, self._last_step = time.perf_counter(), start_step
        self.stop = StopRequest()
        self._stopping = False

    def __enter__(self) -> Periodic:
        self.stop.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.__exit__(*exc)

    def after_step(self, done: int, metrics) -> Due:
        """Accumulates the step's metrics and says what is due; before anything is logged,
        evaluated or saved, raises ``NonFiniteError`` if a step since the last check went NaN/Inf."""
        self.accumulated = metrics if self.accumulated is None else self.accumulated.merge(metrics)
        stopping = self._stopping = self.stop.requested is not None  # read once: a signal may come at any line
        due = Due(
            log=done % self.log_every == 0 or done == self.total,
            evaluate=bool(self.eval_every) and done % self.eval_every == 0 and done != self.total and not stopping,
            save=done % self.checkpoint_every == 0 or done == self.total or stopping,
            stop=stopping,
        )
        if due.log or due.evaluate or due.save:
            check_finite(self.accumulated.nonfinite_step.step, self.mngr, self.names)
        return due

    def take_metrics(self, done: int) -> tuple[Any, float]:
        """The metrics accumulated since the last log (waited for: a host sync) and the images
        per second since then; adds that time to ``train_time``."""
        accumulated = jax.block_until_ready(self.accumulated)
        now = time.perf_counter()
        elapsed = now - self._last_time
        self.train_time += elapsed
        images_per_s = (done - self._last_step) * self.images_per_step / max(elapsed, 1e-9)
        self.accumulated, self._last_time, self._last_step = None, now, done
        return accumulated, images_per_s

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Time spent inside (evaluation) is not training time."""
        started = time.perf_counter()
        try:
            yield
        finally:
            self._last_time += time.perf_counter() - started

    def time_so_far(self) -> float:
        """Training seconds up to now: those counted at each log, and those since the last one."""
        return self.train_time + time.perf_counter() - self._last_time

    def save(self, done: int, state, config_json: Any, position: dict) -> None:
        """A checkpoint at step ``done``, its data position carrying the training time so far
        (``train_time_s``: a resumed run counts its earlier attempts too); after it, ends the
        loop with ``Interrupted`` when a stop was requested."""
        checkpoints.save(self.mngr, state, config_json, {**position, "train_time_s": self.time_so_far()})
        if self._stopping:
            raise interrupted(self.stop, self.mngr, done, self.total)


def check_finite(first_bad_step, mngr, names: list[str] | None = None) -> None:
    """Raises ``NonFiniteError`` when the accumulated ``nonfinite_step`` metric saw a NaN or Inf.

    ``first_bad_step``: 0 (none) or the 1-based step, one per point for a vectorised group
    (``names`` then says which). Called before anything is evaluated or saved, so that no
    checkpoint ever holds a non-finite state.
    """
    check_frames()  # a host counter: warns once if the compiled CPU kernel met a frame it refused
    steps = np.atleast_1d(np.asarray(jax.device_get(first_bad_step)))
    bad = [i for i, s in enumerate(steps) if s > 0]
    if not bad:
        return
    step = int(min(steps[i] for i in bad))
    which = f" in {', '.join(names[i] for i in bad)}" if names else ""
    mngr.wait_until_finished()
    last = mngr.latest_step()
    good = f"the last good checkpoint is {checkpoints.step_path(mngr, last)}" if last is not None else "no checkpoint"
    raise NonFiniteError(
        f"non-finite loss or gradient at step {step}{which}; training stopped, {good} "
        "(nothing non-finite was saved); lower optimizer.learning_rate or check the data"
    )


def interrupted(stop: StopRequest, mngr, step: int, total: int) -> Interrupted:
    """The error that ends a run stopped by a signal, after its checkpoint at ``step`` is written."""
    mngr.wait_until_finished()
    return Interrupted(
        f"stopped by {stop.requested} at step {step}/{total}; checkpoint {checkpoints.step_path(mngr, step)} saved; "
        "run the same command again to resume",
        stop.exit_code,
    )

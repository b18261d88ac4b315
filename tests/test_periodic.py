"""periodic.py: when a loop logs, evaluates and checkpoints; the non-finite guard before any of
them; training time without evaluation; a signal as a request to stop after a checkpoint. With
stand-ins for the checkpoint manager and the train state: nothing is compiled."""

import os
import signal
import types

import jax.numpy as jnp
import pytest

from amobilenet_jax import periodic, steps
from amobilenet_jax.errors import Interrupted, NonFiniteError

TRAIN = types.SimpleNamespace(log_every_steps=4, checkpoint_every_steps=8, eval_every_epochs=1)


class Manager:
    """The part of Orbax's CheckpointManager that the loop's bookkeeping uses."""

    directory = "/runs/x/checkpoints"

    def __init__(self):
        self.saved, self.positions = [], []

    def save(self, step, args):
        self.saved.append(step)
        self.positions.append(args["data"].item)

    def wait_until_finished(self):
        pass

    def latest_step(self):
        return self.saved[-1] if self.saved else None


def metrics(nonfinite_step=0):
    return steps.TrainMetrics.single_from_model_output(
        loss=jnp.float32(1.0), softmax_loss=jnp.float32(1.0), distill_loss=jnp.float32(0.0),
        center_loss=jnp.float32(0.0), accuracy=jnp.float32(0.5), learning_rate=jnp.float32(1e-3),
        nonfinite_step=jnp.int32(nonfinite_step),
    )  # fmt: skip


def test_what_is_due_after_each_step():
    """Evaluation every epoch but not at the last step (the final evaluation covers it); a
    checkpoint and a log line at the last step whatever the period."""
    with periodic.Periodic(TRAIN, total=18, steps_per_epoch=5, start_step=0, mngr=Manager(), images_per_step=8) as p:
        due = {step: p.after_step(step, metrics()) for step in range(1, 19)}
    assert [s for s, d in due.items() if d.log] == [4, 8, 12, 16, 18]
    assert [s for s, d in due.items() if d.evaluate] == [5, 10, 15]
    assert [s for s, d in due.items() if d.save] == [8, 16, 18]
    assert not any(d.stop for d in due.values())
    with periodic.Periodic(TRAIN, 18, 5, 0, Manager(), 8, evaluate=False) as group:  # a vectorised group
        assert not any(group.after_step(step, metrics()).evaluate for step in range(1, 19))


def test_a_non_finite_step_stops_the_loop_before_anything_is_logged_or_saved():
    mngr = Manager()
    mngr.saved.append(8)
    with periodic.Periodic(TRAIN, 18, 5, 8, mngr, 8) as p:
        assert not p.after_step(9, metrics(nonfinite_step=9)).log  # checked at the next sync point only
        with pytest.raises(NonFiniteError, match=r"step 9; training stopped, the last good checkpoint is /runs/x/c"):
            p.after_step(10, metrics())  # the first bad step is carried in the accumulated metrics
    names = ["lr=0.1", "lr=1"]
    with pytest.raises(NonFiniteError, match=r"at step 3 in lr=1; .*no checkpoint"):
        periodic.check_finite(jnp.array([0, 3]), Manager(), names)


def test_paused_time_is_not_training_time(monkeypatch):
    clock = iter([0.0, 10.0, 40.0, 50.0])
    monkeypatch.setattr(periodic.time, "perf_counter", lambda: next(clock))
    with periodic.Periodic(TRAIN, 18, 5, 0, Manager(), images_per_step=8) as p:  # starts at 0 s
        p.after_step(4, metrics())
        with p.paused():  # an evaluation from 10 s to 40 s
            pass
        _, images_per_s = p.take_metrics(4)  # at 50 s: 20 s of training for 4 steps of 8 images
    assert p.train_time == pytest.approx(20.0) and images_per_s == pytest.approx(4 * 8 / 20.0)


def test_a_checkpoint_carries_the_training_time_of_every_attempt_so_far(monkeypatch):
    clock = iter([0.0, 10.0, 20.0, 30.0, 35.0])
    monkeypatch.setattr(periodic.time, "perf_counter", lambda: next(clock))
    mngr, state = Manager(), types.SimpleNamespace(step=jnp.asarray(12))
    # resumed at step 8 after attempts that trained 100 s; this one starts at 0 s
    with periodic.Periodic(TRAIN, 18, 5, 8, mngr, 8, earlier_train_time=100.0) as p:
        p.after_step(12, metrics())
        with p.paused():  # an evaluation from 10 s to 20 s
            pass
        p.take_metrics(12)  # at 30 s: 20 s more training
        p.save(12, state, {}, {"step": 12})  # at 35 s: 5 s since that log
    assert p.train_time == pytest.approx(120.0)
    assert mngr.positions == [{"step": 12, "train_time_s": pytest.approx(125.0)}]


def test_a_signal_stops_the_loop_after_a_checkpoint_at_the_next_step():
    before = signal.getsignal(signal.SIGTERM)
    mngr = Manager()
    state = types.SimpleNamespace(step=jnp.asarray(3))
    with periodic.Periodic(TRAIN, 18, 5, 2, mngr, 8) as p:
        os.kill(os.getpid(), signal.SIGTERM)
        due = p.after_step(3, metrics())
        assert due.stop and due.save and not due.evaluate
        with pytest.raises(
            Interrupted, match=r"stopped by SIGTERM at step 3/18; checkpoint /runs/x/checkpoints/3 saved"
        ):
            p.save(3, state, {}, {"step": 3})
    assert mngr.saved == [3] and p.stop.exit_code == 128 + signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) == before  # the handler is the loop's only while it runs

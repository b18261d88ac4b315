"""Checkpoints (amobilenet_jax/checkpoints.py): another experiment's checkpoint is refused, an
unreadable newest one is moved aside for the previous one, and none readable is an error, never
a fresh start."""

import json
import os
import re
import shutil

import pytest

from amobilenet_jax import train
from amobilenet_jax.errors import CheckpointError
from amobilenet_jax.summary_writer import read_scalars


def test_checkpoint_from_another_config_is_refused(finished_run, tiny_config):
    workdir, _ = finished_run
    other = tiny_config.copy_and_resolve_references()
    other.loss.center_weight = 0.5
    with open(os.path.join(workdir, "config.json")) as f:
        config_before = f.read()
    with pytest.raises(CheckpointError, match=r"another experiment: loss.center_weight \(0.01 -> 0.5\)"):
        train.train_and_evaluate(other, workdir)
    with open(os.path.join(workdir, "config.json")) as f:
        assert f.read() == config_before


def _garble(step_dir: str) -> None:
    for root, _, files in os.walk(os.path.join(step_dir, "state")):
        for name in files:
            with open(os.path.join(root, name), "wb") as f:
                f.write(b"garbage")


def _no_init(*args, **kwargs):
    raise AssertionError("a run with a checkpoint ran the model's init")


def test_corrupt_newest_checkpoint_falls_back_to_the_previous_one(finished_run, tiny_config, tmp_path, monkeypatch):
    workdir, result = finished_run
    # A resumed run restores into the state's shapes (Experiment.abstract_state): no init runs.
    monkeypatch.setattr(train, "create_train_state", _no_init)
    broken = str(tmp_path / "broken")
    shutil.copytree(workdir, broken)
    os.remove(os.path.join(broken, "results.json"))
    newest = os.path.join(broken, "checkpoints", str(result["final_step"]))
    _garble(newest)
    with pytest.warns(UserWarning, match=re.escape(newest) + r": unreadable checkpoint.*resuming from step 12"):
        again = train.train_and_evaluate(tiny_config, broken)
    assert again["resumed_from_step"] == 12
    assert again["params_fingerprint"] == result["params_fingerprint"]  # the lost steps are retrained exactly
    assert os.listdir(os.path.join(broken, "checkpoints.corrupt")) == [str(result["final_step"])]


def test_no_readable_checkpoint_is_an_error_not_a_fresh_start(finished_run, tiny_config, tmp_path):
    workdir, result = finished_run
    broken = str(tmp_path / "broken")
    shutil.copytree(workdir, broken)
    steps = sorted(os.listdir(os.path.join(broken, "checkpoints")))
    for step in steps:
        if step.isdigit():
            _garble(os.path.join(broken, "checkpoints", step))
    with pytest.raises(CheckpointError, match="no readable checkpoint.*step 16: cannot read its train state"):
        train.train_and_evaluate(tiny_config, broken)
    assert sorted(os.listdir(os.path.join(broken, "checkpoints"))) == steps  # nothing moved or deleted


def test_orbax_save_timing_notes_stay_off_stderr():
    """Under load Orbax warns that a save waited for the previous one; a stopped run must still
    end in one line on stderr."""
    import logging

    from amobilenet_jax import checkpoints  # noqa: F401 (installs the filter)

    absl_logger = logging.getLogger("absl")
    note = absl_logger.makeRecord("absl", logging.WARNING, "checkpoint_manager.py", 1466,
                                  "Waiting for previous save to complete took %f seconds.", (1.1,), None)  # fmt: skip
    other = absl_logger.makeRecord("absl", logging.WARNING, "x.py", 1, "something else", (), None)
    assert not absl_logger.filter(note) and absl_logger.filter(other)


def test_an_unfinished_save_is_left_to_the_writer_and_swept_when_the_run_resumes(finished_run, tiny_config, tmp_path):
    """A run killed mid-save leaves ``<step>.orbax-checkpoint-tmp``. Reading the run (the
    resumability check, ``evaluate``) must leave it alone, since for a run still training it is
    the save in progress, and a reader sweeping it raced the resumed run's own sweep, which then
    failed (FileNotFoundError). The run that resumes there sweeps it and finishes."""
    from amobilenet_jax import evaluate

    workdir, result = finished_run
    broken = str(tmp_path / "broken")
    shutil.copytree(workdir, broken)
    os.remove(os.path.join(broken, "results.json"))
    final = str(result["final_step"])
    unfinished = os.path.join(broken, "checkpoints", f"{final}.orbax-checkpoint-tmp")
    os.rename(os.path.join(broken, "checkpoints", final), unfinished)

    evaluated = evaluate.evaluate_checkpoint(tiny_config, broken)
    assert evaluated["step"] == 12  # the newest finished step
    assert os.path.isdir(unfinished)

    again = train.train_and_evaluate(tiny_config, broken)
    assert again["resumed_from_step"] == 12
    assert again["params_fingerprint"] == result["params_fingerprint"]
    assert not os.path.exists(unfinished)
    assert final in os.listdir(os.path.join(broken, "checkpoints"))


def test_a_resumed_run_counts_the_training_time_its_checkpoint_carries(finished_run, tiny_config, tmp_path):
    """A run killed before its end has no results.json; the checkpoint it resumes from says how
    long the attempts before it trained, and its results count that too."""
    workdir, result = finished_run
    resumed = str(tmp_path / "resumed")
    shutil.copytree(workdir, resumed)
    os.remove(os.path.join(resumed, "results.json"))
    shutil.rmtree(os.path.join(resumed, "checkpoints", str(result["final_step"])))
    position_file = os.path.join(resumed, "checkpoints", "12", "data", "metadata")
    with open(position_file) as f:
        position = json.load(f)
    assert 0 < position["train_time_s"] <= result["train_time_s"]  # the first attempt's count at step 12
    position["train_time_s"] = 1e6  # as if the attempts before had trained 1e6 s
    with open(position_file, "w") as f:
        json.dump(position, f)
    again = train.train_and_evaluate(tiny_config, resumed)
    assert again["resumed_from_step"] == 12
    assert again["train_time_s"] > 1e6
    # its curves hold every step the uninterrupted run logged, the checkpoint's step's too
    logged = {tag: [s for s, _ in points] for tag, points in read_scalars(workdir).items()}
    assert {tag: [s for s, _ in points] for tag, points in read_scalars(resumed).items()} == logged

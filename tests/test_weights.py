"""One-file weights: export from a run, evaluate a shipped model (weights + config.json alone)."""

import pytest

from amobilenet_jax import ship, steps, weights
from amobilenet_jax.errors import CheckpointError, RunNotFoundError


def test_weights_that_do_not_fit_are_one_line_errors(finished_run, tiny_config, tmp_path):
    workdir, _ = finished_run
    path = ship.export_run(workdir, str(tmp_path / "w.msgpack"))
    wider = tiny_config.copy_and_resolve_references()
    wider.model.width = 0.5
    with pytest.raises(
        CheckpointError, match=r"w.msgpack: \['batch_stats'\]\['block\d+_\w+'\].* has shape .*, the config's model"
    ):
        weights.restore_into(steps.state_without_data(wider), path)
    damaged = tmp_path / "damaged.msgpack"
    damaged.write_bytes(open(path, "rb").read()[:1000])
    with pytest.raises(CheckpointError, match="damaged.msgpack: not a weights file"):
        weights.load(str(damaged))
    with pytest.raises(RunNotFoundError, match="no such weights file"):
        weights.load(str(tmp_path / "absent.msgpack"))

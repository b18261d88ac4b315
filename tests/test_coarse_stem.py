"""``train.coarse_stem_epochs``: the first epochs train the same parameters with the stem at
stride 2, then at the run's stride 1."""

import pytest

from amobilenet_jax import steps, train
from amobilenet_jax.config import validate
from amobilenet_jax.errors import ConfigError
from tests.conftest import micro


def _config(tiny_config, coarse):
    config = micro(tiny_config)  # 128 images, batch 16: 8 steps an epoch, 2 epochs
    config.model.stem_stride = 1
    config.train.coarse_stem_epochs = coarse
    return config


def test_a_coarse_phase_needs_the_stem_at_stride_1_and_must_end_before_the_run(tiny_config):
    config = _config(tiny_config, 1.0)
    config.model.stem_stride = None  # the architecture's 2
    with pytest.raises(ConfigError, match="needs model.stem_stride=1"):
        validate(config)
    with pytest.raises(ConfigError, match="is 16 steps, not fewer than the run's 16"):
        train.Experiment(_config(tiny_config, 2.0))


def test_the_first_epoch_trains_the_stride_2_stem_and_the_rest_stride_1(tiny_config, tmp_path, capsys):
    config = _config(tiny_config, 1.0)
    result = train.train_and_evaluate(config, str(tmp_path / "run"))
    out = capsys.readouterr().out
    assert "steps 0-7: the stem at stride 2 (train.coarse_stem_epochs 1)" in out
    assert "step 8 on: the stem at stride 1" in out

    # The same 16 steps by hand: the first 8 through the stride-2 model, the last 8 through the
    # run's own, from the same initial state and batches, give the run's parameters.
    exp = train.Experiment(config)
    coarse, fine = exp.coarse_model, exp.model
    assert (coarse.stem_stride, fine.stem_stride) == (2, 1)
    state = exp.init_state()
    for step, batch in exp.train_batches(0):
        state = state.replace(apply_fn=(coarse if step < 8 else fine).apply)
        state, _ = exp.train_step(state, batch)
    assert steps.params_fingerprint(state.params) == result["params_fingerprint"]

"""inference.py: which files a model comes from, the padded batches a stream of faces runs in,
the views' vote turned into probabilities. The model is a stand-in: nothing big is compiled
(predict's, export's and visualize's tests load real models through here)."""

import numpy as np
import pytest

from amobilenet_jax import inference
from amobilenet_jax.data.augment import num_views
from amobilenet_jax.errors import ConfigError, RunNotFoundError


@pytest.fixture
def run_dir(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text("{}")  # resolve checks the files are there; load_model reads them
    (run / "weights.msgpack").write_bytes(b"")
    return run


def test_resolve_names_the_weights_and_config_of_a_run_or_a_weights_file(run_dir, monkeypatch):
    weights, config = str(run_dir / "weights.msgpack"), str(run_dir / "config.json")
    assert inference.resolve(workdir=str(run_dir)) == (weights, config, str(run_dir))
    assert inference.resolve(weights=weights) == (weights, config, str(run_dir))
    monkeypatch.setenv(inference.MODEL_ENV, str(run_dir))  # the default model, named by the variable
    assert inference.resolve() == (weights, config, str(run_dir))
    monkeypatch.delenv(inference.MODEL_ENV)
    assert inference.default_model() == inference.SHIPPED_MODEL


def test_resolve_errors_name_what_is_missing(run_dir, monkeypatch):
    root = run_dir.parent
    for name in ("empty", "unfinished", "alone"):
        (root / name).mkdir()
    (root / "unfinished" / "config.json").write_text("{}")  # a run that has not written its weights
    (root / "alone" / "weights.msgpack").write_bytes(b"")
    cases = [
        ({"workdir": run_dir, "weights": run_dir / "weights.msgpack"}, ConfigError, "not both"),
        ({"workdir": root / "missing"}, RunNotFoundError, "no such run directory"),
        ({"weights": root / "missing.msgpack"}, RunNotFoundError, "no such weights file"),
        ({"workdir": root / "empty"}, RunNotFoundError, "not a run directory"),
        ({"workdir": root / "unfinished"}, RunNotFoundError, "python -m amobilenet_jax.ship --workdir"),
        ({"weights": root / "alone" / "weights.msgpack"}, RunNotFoundError, "no config.json beside it"),
    ]
    for names, error, message in cases:
        with pytest.raises(error, match=message):
            inference.resolve(**{k: str(v) for k, v in names.items()})
    monkeypatch.setenv(inference.MODEL_ENV, str(root / "missing"))
    with pytest.raises(RunNotFoundError, match="the default model is not there"):
        inference.resolve()


class StandIn:
    """A module whose logits tell the faces apart: class k scores k times the mean pixel."""

    def apply(self, variables, x, train, return_attention=False):
        mean = x.mean(axis=(1, 2, 3))
        return mean[:, None] * np.arange(8, dtype=np.float32), {}


def stand_in_model(tiny_config):
    names = tuple(f"class{k}" for k in range(8))
    return inference.Model(config=tiny_config, module=StandIn(), variables={}, class_names=names, source="stand-in")


def test_faces_run_in_batches_padded_to_a_few_sizes(tiny_config):
    model = stand_in_model(tiny_config)
    shape = model.native_shape
    faces = np.zeros((70, *shape), np.uint8)
    assert [(len(b), n) for b, n in model.padded_batches(faces)] == [(64, 64), (16, 6)]
    assert [(len(b), n) for b, n in model.padded_batches(faces[:1])] == [(1, 1)]
    with pytest.raises(ValueError, match="faces must be uint8"):
        next(model.padded_batches(np.zeros((2, 5, 5, shape[2]), np.uint8)))


def test_logits_of_any_number_of_faces_are_each_faces_own(tiny_config):
    model = stand_in_model(tiny_config)
    rng = np.random.default_rng(0)
    faces = rng.integers(0, 256, (20, *model.native_shape), dtype=np.uint8)
    logits = model.logits(faces)
    assert logits.shape == (20, 8)
    np.testing.assert_allclose(model.logits(faces[3:4]), logits[3:4], rtol=1e-5, atol=1e-5)  # not its batch's
    assert model.logits(faces[:0]).shape == (0, 8)
    probabilities = model.probabilities(faces)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    assert np.array_equal(probabilities.argmax(axis=1), logits.argmax(axis=1))


def test_probabilities_are_the_softmax_of_the_views_mean(tiny_config):
    config = tiny_config.copy_and_resolve_references()
    config.eval_flip, config.eval_crops = True, 5
    assert num_views(config) == 12
    p = np.array([[0.7, 0.2, 0.1], [1 / 3, 1 / 3, 1 / 3]])
    summed = 12 * (np.log(p) + 5.0)  # twelve views, each the same log-probabilities up to a constant
    np.testing.assert_allclose(inference.probabilities_from_logits(summed, config), p, rtol=1e-5)

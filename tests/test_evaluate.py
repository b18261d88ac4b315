"""--mode eval (amobilenet_jax/evaluate.py): a checkpoint or a shipped model's weights on one
split, prepared and read alone."""

import json
import os
import subprocess

import pytest

from amobilenet_jax import evaluate
from tests import fixtures
from tests.conftest import REPO


def test_evaluate_checkpoint(finished_run, tiny_config):
    workdir, result = finished_run
    evaluated = evaluate.evaluate_checkpoint(tiny_config, workdir)
    assert evaluated["accuracy"] == pytest.approx(result["accuracy"])
    assert evaluated["step"] == result["final_step"]
    assert os.path.exists(os.path.join(workdir, "eval_test.json"))


def _random_model(name: str, root: str) -> str:
    """A run directory with a random small model of data set ``name``: weights.msgpack + config.json."""
    from amobilenet_jax import files, steps, weights
    from tests.conftest import load_config

    config = load_config(name, "runlocal")
    config.model.width, config.data.image_size, config.train.batch_size = 0.25, 32, 16
    config.data.dir = ""  # as a shipped model's config.json has it
    state = steps.state_without_data(config)
    os.makedirs(root)
    weights.save(os.path.join(root, weights.WEIGHTS_FILE), state.params, state.batch_stats)
    files.write_json_atomic(os.path.join(root, "config.json"), json.loads(config.to_json()))
    return root


@pytest.mark.parametrize("name", ["ferplus", "rafdb"])
def test_a_model_evaluates_on_a_directory_that_holds_only_the_test_split(name, tmp_path, python):
    """FER2013Test/ alone (FERPlus) or a partition list of test images alone (RAF-DB): --mode eval
    of a model prepares and reads that split, and nothing asks for a training split."""
    data, cache = str(tmp_path / "data"), str(tmp_path / "cache")
    if name == "ferplus":
        written = fixtures.write_ferplus_folders(data, {"test": 24})
        count = int((written["splits"]["test"]["majority"] >= 0).sum())
    else:
        count = len(fixtures.write_rafdb(data, {"test": 21})["splits"]["test"]["names"])
    model = _random_model(name, str(tmp_path / "model"))
    done = subprocess.run(
        [python, "-m", "amobilenet_jax.main", "--mode", "eval", "--workdir", model,
         f"--config.data.dir={data}", f"--config.data.cache_dir={cache}"],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    last = json.loads(done.stdout.strip().splitlines()[-1])
    assert last["split"] == "test" and 0 <= last["accuracy"] <= 1  # eval_split auto: no Valid here, so Test
    with open(os.path.join(model, "eval_test.json")) as f:
        assert json.load(f)["num_examples"] == count
    prepared = os.listdir(os.path.join(cache, name, "1.0.0"))
    assert [f for f in prepared if ".array_record" in f] == [f"{name}-test.array_record-00000-of-00001"]


def test_evaluating_one_split_of_a_full_directory_prepares_that_split_only(tmp_path):
    """Valid evaluated from a directory with all three FERPlus splits: only Valid is prepared; a
    training run on the same cache then finds its split (the copy is rebuilt with it)."""
    from amobilenet_jax.data import load_dataset
    from tests.conftest import load_config

    data, cache = str(tmp_path / "data"), str(tmp_path / "cache")
    fixtures.write_ferplus_folders(data, {"train": 16, "valid": 12, "test": 12})
    model = _random_model("ferplus", str(tmp_path / "model"))
    config = load_config("ferplus", "runlocal")
    config.model.width, config.data.image_size, config.train.batch_size = 0.25, 32, 16
    config.data.dir, config.data.cache_dir = data, cache
    result = evaluate.evaluate_checkpoint(config, model)
    assert result["split"] == "valid" and result["step"] is None
    records = sorted(f for f in os.listdir(os.path.join(cache, "ferplus", "1.0.0")) if ".array_record" in f)
    assert records == ["ferplus-valid.array_record-00000-of-00001"]
    dataset = load_dataset(config.data)  # every split, as training asks
    assert sorted(dataset.splits) == ["test", "train", "valid"]

"""--mode eval (amobilenet_jax/evaluate.py): a checkpoint or a shipped model's weights on one
split, prepared and read alone."""

import json
import os
import shutil
import subprocess

import numpy as np
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


def test_an_ensemble_sums_its_members_logits_from_the_command_line(finished_run, tiny_config, tmp_path, python):
    """``--mode eval --workdir RUN --ensemble OTHER``: the two models as one, their logits summed
    before the argmax, checked against the sum of each model's own logits."""
    import jax

    from amobilenet_jax import files, inference, steps, weights
    from amobilenet_jax.data import load_dataset
    from amobilenet_jax.errors import ConfigError

    def sharpened(params, batch_stats, root, config):
        """A model whose classifier is scaled up: varied, confident answers (the tiny run's own
        answers are one class everywhere), written as weights and config."""
        params = jax.tree.map(np.asarray, params)
        params["classifier"]["kernel"] = params["classifier"]["kernel"] * 300.0
        root.mkdir()
        weights.save(str(root / weights.WEIGHTS_FILE), params, batch_stats)
        files.write_json_atomic(str(root / "config.json"), json.loads(config.to_json()))
        return root

    trained = weights.load(os.path.join(finished_run[0], weights.WEIGHTS_FILE))
    run = sharpened(trained["params"], trained["batch_stats"], tmp_path / "run", tiny_config)
    other_config = tiny_config.copy_and_resolve_references()
    other_config.seed = 5  # another random model of the same architecture
    state = steps.state_without_data(other_config)
    other = sharpened(state.params, state.batch_stats, tmp_path / "other", other_config)

    proc = subprocess.run(
        [python, "-m", "amobilenet_jax.main", "--mode=eval", f"--workdir={run}", f"--ensemble={other}"],
        capture_output=True, text=True, cwd=REPO,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    printed = json.loads(proc.stdout.strip().splitlines()[-1])
    assert printed["members"] == [str(run), str(other)]
    assert "an ensemble of 2 models" in proc.stdout
    written = json.loads((run / "eval_test_ensemble.json").read_text())

    test = load_dataset(tiny_config.data).split("test")
    each = [inference.load_model(str(d)).logits(test.images) for d in (run, other)]
    predicted = np.argmax(each[0] + each[1], -1)
    expected = np.zeros((8, 8), int)
    np.add.at(expected, (test.labels, predicted), 1)
    np.testing.assert_array_equal(written["confusion_matrix"], expected)
    assert written["accuracy"] == printed["accuracy"] == pytest.approx(np.mean(predicted == test.labels))

    bad = tmp_path / "bigger"
    shutil.copytree(other, bad)
    saved = json.loads((bad / "config.json").read_text())
    saved["data"]["image_size"] = 40
    (bad / "config.json").write_text(json.dumps(saved))
    with pytest.raises(ConfigError, match="data.image_size=40, the first model's is 32"):
        evaluate.evaluate_ensemble(tiny_config, str(run), [str(bad)])


def test_ensemble_confusion_counts_the_argmax_of_the_summed_logits():
    # Two members that each get one image right and disagree: only their sum gets both right.
    first = {"a": [3.0, 0.0, 2.9], "b": [0.0, 1.0, 1.2]}
    second = {"a": [0.0, 0.0, 0.05], "b": [0.0, 2.0, 0.0]}
    batch = {"image": np.array(["a", "b", "pad"]), "label": np.array([0, 1, 2]), "mask": np.array([1, 1, 0])}
    members = [lambda images, m=m: np.array([m.get(i, [0.0, 0.0, 0.0]) for i in images]) for m in (first, second)]
    confusion = evaluate.ensemble_confusion(members, [batch], 3)
    np.testing.assert_array_equal(confusion, [[1, 0, 0], [0, 1, 0], [0, 0, 0]])
    alone = [evaluate.ensemble_confusion([m], [batch], 3) for m in members]
    assert [int(np.trace(c)) for c in alone] == [1, 1]

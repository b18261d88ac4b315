"""The two input pipelines agree: in-jit augmentation vs its numpy twin on Grain,
and the paper-recipe configs run end to end on fixture data sets."""

import json
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from amobilenet_jax import evaluate, train
from amobilenet_jax.data import augment, grain_pipeline
from tests.conftest import load_config, micro
from tests.fixtures import write_ferplus_folders, write_rafdb

AUGMENT = ml_collections.ConfigDict({"rotation": 20.0, "crop": 0.2, "translate": 0.1, "flip": True})


def _affine_stats(matrix, shift):
    matrix, shift = np.asarray(matrix, np.float64), np.asarray(shift, np.float64)
    det = np.linalg.det(matrix)  # scale^2 * (+1 or -1 with the flip)
    scale = np.sqrt(np.abs(det))
    angle = np.degrees(np.arctan2(matrix[:, 1, 0], matrix[:, 0, 0]))
    return {
        "mean_abs_rotation_deg": np.mean(np.abs(angle)),
        "mean_crop_area": np.mean(scale**2),
        "mean_abs_shift": np.mean(np.abs(shift)),
        "flip_rate": np.mean(det < 0),
    }


def test_augmentation_parameters_have_matching_statistics():
    n = 20_000
    device = _affine_stats(*augment.random_affine(jax.random.PRNGKey(0), n, AUGMENT))
    host = _affine_stats(*grain_pipeline.random_affine_np(np.random.default_rng(0), n, AUGMENT))
    # Uniform rotation in [-20, 20]: mean magnitude 10; zoom 1 - U(0, 0.2): mean area ~0.81.
    expected = {"mean_abs_rotation_deg": 10.0, "mean_crop_area": 0.8133, "mean_abs_shift": 0.1, "flip_rate": 0.5}
    for key, value in expected.items():
        assert device[key] == pytest.approx(value, rel=0.03), key
        assert host[key] == pytest.approx(value, rel=0.03), key
        assert host[key] == pytest.approx(device[key], rel=0.03), key


def test_numpy_warp_equals_the_in_jit_warp():
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (6, 48, 48, 1), dtype=np.uint8)
    matrix, shift = grain_pipeline.random_affine_np(rng, 6, AUGMENT)
    host = grain_pipeline.warp_np(images, matrix, shift, 64)
    device = jax.vmap(lambda im, m, s: augment._warp(im, m, s, 64))(jnp.asarray(images), matrix, shift)
    np.testing.assert_allclose(host, np.asarray(device), atol=1e-3)
    # Identity at native size reproduces the image exactly (evaluation's plain resize).
    same = augment.resize(jnp.asarray(images), 48)
    np.testing.assert_array_equal(np.asarray(same), images.astype(np.float32))


def test_warp_reads_edge_pixels_outside_and_maps_identity_and_mirror_exactly():
    images = np.random.default_rng(4).integers(0, 256, (2, 48, 48, 1), dtype=np.uint8)
    eye, mirror = np.eye(2, dtype=np.float32), np.diag([1.0, -1.0]).astype(np.float32)
    zero = np.zeros(2, np.float32)
    for matrix, want in ((eye, images), (mirror, images[:, :, ::-1])):
        device = jax.vmap(lambda im, m=matrix: augment._warp(im, jnp.asarray(m), jnp.asarray(zero), 48))(
            jnp.asarray(images)
        )
        host = grain_pipeline.warp_np(images, np.stack([matrix] * 2), np.stack([zero] * 2), 48)
        np.testing.assert_allclose(np.asarray(device), want.astype(np.float32), atol=1e-3)  # the first row/column too
        np.testing.assert_allclose(host, want.astype(np.float32), atol=1e-3)
    # Shifted a whole side up-left, every pixel lies outside: the output is the corner pixel.
    far = np.array([-2.0, -2.0], np.float32)
    device = augment._warp(jnp.asarray(images[0]), jnp.asarray(eye), jnp.asarray(far), 48)
    np.testing.assert_allclose(np.asarray(device), np.full((48, 48, 1), float(images[0, 0, 0, 0])), atol=1e-3)


def test_augmented_images_have_matching_pixel_statistics():
    image = np.zeros((1, 48, 48, 1), np.uint8)
    image[0, 16:32, 16:32] = 255  # a centred bright square
    n = 512
    batch = np.repeat(image, n, axis=0)
    device = np.asarray(augment.augment(jax.random.PRNGKey(2), jnp.asarray(batch), 48, AUGMENT))
    m, s = grain_pipeline.random_affine_np(np.random.default_rng(2), n, AUGMENT)
    host = grain_pipeline.warp_np(batch, m, s, 48)
    # The square's mean brightness (area after zoom) and the spread of its centre (translation).
    for stat in (
        lambda x: x.mean(axis=(1, 2, 3)),
        lambda x: (x.mean(axis=(2, 3)) * np.arange(48)).sum(1) / x.sum((1, 2, 3)),
    ):
        a, b = stat(device), stat(host)
        assert a.mean() == pytest.approx(b.mean(), rel=0.05)
        assert a.std() == pytest.approx(b.std(), rel=0.15)


def test_grain_pipeline_trains_and_resumes_exactly(tiny_config, tmp_path):
    cfg = micro(tiny_config)
    cfg.data.pipeline = "grain"
    cfg.data.grain_workers = 0  # worker processes are exercised from the command line test
    full = train.train_and_evaluate(cfg, str(tmp_path / "full"))
    half = cfg.copy_and_resolve_references()
    half.train.num_steps = 8
    train.train_and_evaluate(half, str(tmp_path / "resumed"))
    resumed = train.train_and_evaluate(cfg, str(tmp_path / "resumed"))
    assert resumed["resumed_from_step"] == 8
    assert resumed["params_fingerprint"] == full["params_fingerprint"]


@pytest.mark.parametrize("name", ["ferplus", "rafdb"])
def test_paper_recipe_runlocal_on_fixture_data(name, tmp_path):
    data_dir = str(tmp_path / "data")
    if name == "ferplus":
        write_ferplus_folders(data_dir, {"train": 96, "valid": 24, "test": 24})
    else:
        write_rafdb(data_dir, {"train": 70, "test": 28})
    cfg = load_config(name, "runlocal")
    cfg.data.dir = data_dir
    cfg.data.cache_dir = str(tmp_path / "cache")
    cfg.model.width = 0.25
    cfg.data.image_size = 32  # the same shapes as the tiny quickstart: compiled programs are shared
    cfg.train.batch_size = 16
    cfg.train.num_steps = 4
    cfg.train.log_every_steps = 2
    workdir = str(tmp_path / "run")
    result = train.train_and_evaluate(cfg, workdir)
    # eval_split "auto": select on Valid where the data set has one (FERPlus), else Test (RAF-DB).
    assert result["dataset"] == name and result["split"] == ("valid" if name == "ferplus" else "test")
    assert len(result["class_names"]) == (8 if name == "ferplus" else 7)
    assert result["final_step"] == 4
    if name == "ferplus":  # the held-out split by name, as --mode eval --config.eval_split=test does
        cfg.eval_split = "test"
        evaluated = evaluate.evaluate_checkpoint(cfg, workdir)
        assert evaluated["split"] == "test" and os.path.exists(os.path.join(workdir, "eval_test.json"))
        with open(os.path.join(workdir, "eval_test.json")) as f:
            assert json.load(f)["num_examples"] == evaluated["num_examples"] > 0


@pytest.fixture(scope="module")
def experiment(tiny_config):
    return train.Experiment(tiny_config)


def test_data_order_is_a_pure_function_of_seed_and_step(experiment):
    order = experiment.order
    fresh = type(order)(order.seed, order.labels, order.batch_size, order.balance)
    for step in (0, 5, order.steps_per_epoch, 3 * order.steps_per_epoch + 1):
        np.testing.assert_array_equal(order.indices(step), fresh.indices(step))
    epoch0 = np.concatenate([order.indices(s) for s in range(order.steps_per_epoch)])
    assert len(np.unique(epoch0)) == len(epoch0)  # no repeats within an epoch
    assert not np.array_equal(order.indices(0), order.indices(order.steps_per_epoch))


def test_oversampling_balances_each_epoch():
    from amobilenet_jax.data.pipeline import TrainOrder

    labels = np.array([0] * 50 + [1] * 10 + [2] * 3)
    order = TrainOrder(seed=3, labels=labels, batch_size=10, balance="oversample")
    assert order.epoch_size == 150 and order.steps_per_epoch == 15
    epoch = np.concatenate([order.indices(s) for s in range(order.steps_per_epoch)])
    np.testing.assert_array_equal(np.bincount(labels[epoch]), [50, 50, 50])
    # Every example of every class is used; the majority class exactly once.
    assert set(epoch.tolist()) == set(range(len(labels)))
    assert len(np.unique(epoch[labels[epoch] == 0])) == 50
    again = TrainOrder(seed=3, labels=labels, batch_size=10, balance="oversample")
    np.testing.assert_array_equal(again.indices(16), order.indices(16))
    with pytest.raises(ValueError, match="data.balance"):
        TrainOrder(seed=3, labels=labels, batch_size=10, balance="undersample")


def test_power_sampling_lies_between_plain_and_oversampled_epochs():
    from amobilenet_jax.data.pipeline import TrainOrder, class_draws

    labels = np.array([0] * 100 + [1] * 25 + [2] * 4)
    np.testing.assert_array_equal(class_draws(np.array([100, 25, 4]), "power", 0.5), [100, 50, 20])
    order = TrainOrder(seed=3, labels=labels, batch_size=10, balance="power", power=0.5)
    assert order.epoch_size == 170 and order.steps_per_epoch == 17
    epoch = np.concatenate([order.indices(s) for s in range(order.steps_per_epoch)])
    np.testing.assert_array_equal(np.bincount(labels[epoch]), [100, 50, 20])
    assert set(epoch.tolist()) == set(range(len(labels)))  # every example drawn, the minority ones repeated
    # The ends of the range are the two other modes, draw for draw.
    for power, mode in ((1.0, "oversample"), (0.0, None)):
        same = TrainOrder(seed=3, labels=labels, batch_size=10, balance="power", power=power)
        if mode:
            np.testing.assert_array_equal(same.indices(7), TrainOrder(3, labels, 10, mode).indices(7))
        else:
            counted = np.concatenate([same.indices(s) for s in range(same.steps_per_epoch)])
            assert same.epoch_size == len(labels) and len(np.unique(counted)) == len(counted)
    with pytest.raises(ValueError, match="data.balance_power must be in"):
        TrainOrder(seed=3, labels=labels, batch_size=10, balance="power", power=1.5)

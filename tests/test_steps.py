"""The pure steps (amobilenet_jax/steps.py): learning-rate schedules, the optimizer, one train
step against the paper's equations, purity, test-time flip, the parameters' fingerprint."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from amobilenet_jax import losses, steps, train
from amobilenet_jax.data.augment import prepare_images
from tests.conftest import micro


@pytest.fixture(scope="module")
def experiment(tiny_config):
    return train.Experiment(tiny_config)


def test_learning_rate_is_keras_time_decay(tiny_config):
    cfg = tiny_config.copy_and_resolve_references()
    cfg.optimizer.decay = 1e-5
    factor = steps.learning_rate_factor(cfg)
    assert float(factor(0)) == pytest.approx(1.0)
    assert float(factor(100_000)) == pytest.approx(1 / 2)
    # The optimizer applies it: Adam's normalised step on a constant gradient is ~lr_t / lr.
    cfg.optimizer.decay = 0.1
    tx = steps.make_optimizer(cfg)
    params = {"w": jnp.zeros(2)}
    opt_state = tx.init(params)
    sizes = []
    for _ in range(11):
        updates, opt_state = tx.update({"w": jnp.ones(2)}, opt_state, params)
        sizes.append(-float(updates["w"][0]))
    assert sizes[0] == pytest.approx(1.0, rel=1e-3) and sizes[10] == pytest.approx(1 / 2, rel=1e-3)


def test_cosine_schedule_warms_up_then_decays_to_zero(tiny_config):
    cfg = tiny_config.copy_and_resolve_references()
    cfg.optimizer.schedule, cfg.optimizer.warmup_steps = "cosine", 10
    factor = steps.learning_rate_factor(cfg, total_steps=110)
    assert [float(factor(s)) for s in (0, 4, 9)] == pytest.approx([0.1, 0.5, 1.0])
    assert float(factor(60)) == pytest.approx(0.5, abs=1e-6)  # half way through the cosine
    assert float(factor(110)) == pytest.approx(0.0, abs=1e-7)
    # The optimizer applies it: Adam's normalised step on a constant gradient is ~lr_t.
    tx = steps.make_optimizer(cfg, total_steps=110)
    params = {"w": jnp.zeros(2)}
    opt_state = tx.init(params)
    sizes = []
    for _ in range(61):
        updates, opt_state = tx.update({"w": jnp.ones(2)}, opt_state, params)
        sizes.append(-float(updates["w"][0]))
    assert sizes[0] == pytest.approx(0.1, rel=1e-3) and sizes[60] == pytest.approx(0.5, rel=1e-3)
    with pytest.raises(ValueError, match="total number of steps"):
        steps.learning_rate_factor(cfg)


def test_eval_flip_makes_predictions_mirror_invariant(experiment, tiny_config):
    """A stand-in model that tells left from right: class 0 when a pixel left of the centre is
    brighter than its mirror pixel, else 1 (single pixels: the mirror swaps them exactly)."""

    def left_or_right(variables, images, train, return_attention=False):
        row, col = images.shape[1] // 2, images.shape[2] // 4
        left, right = images[:, row, col, 0], images[:, row, -1 - col, 0]
        logits = jnp.full((images.shape[0], experiment.num_classes), -1e9).at[:, 0].set(left).at[:, 1].set(right)
        return logits, {}

    state = experiment.init_state().replace(apply_fn=left_or_right)
    batch = next(iter(experiment.eval_split("test").eval_batches(32)))
    mirrored = {**batch, "image": batch["image"][:, :, ::-1, :]}
    flip_cfg = tiny_config.copy_and_resolve_references()
    flip_cfg.eval_flip = True
    for cfg, invariant in ((tiny_config, False), (flip_cfg, True)):
        eval_step = steps.make_eval_step(cfg, experiment.num_classes)
        same = np.array_equal(eval_step(state, batch)[0], eval_step(state, mirrored)[0])
        assert same == invariant


def test_test_time_crops_vote_over_zoomed_windows(tiny_config):
    """``vote`` sums the logits of every view: the whole image, then zoom-ins on the centre and
    the four corners, each with its mirror under eval_flip; the whole image's aux comes back. The
    model is called twice: the whole image with its attention maps, then the 11 others (in one
    call for a small batch, one view a call in a loop for a large one: the same sums)."""
    from amobilenet_jax.data.augment import ONE_CALL_IMAGES, num_views, view_batches, vote

    cfg = tiny_config.copy_and_resolve_references()
    cfg.data.image_size = 48
    cfg.eval_flip, cfg.eval_crops, cfg.eval_crop_zoom = True, 5, 0.5
    image = np.zeros((1, 48, 48, 1), np.uint8)
    image[0, :24, :24] = 255  # a bright top-left quadrant
    calls = []

    def mean_pixel(x, attention):
        calls.append(attention)
        return x.mean(axis=(1, 2, 3))[:, None], {"attention": {"b": x[:, :2, :2, 0]}} if attention else {}

    logits, aux = vote(mean_pixel, jnp.asarray(image), cfg, return_attention=True)
    assert num_views(cfg) == 12 and calls == [True, False]
    assert num_views(cfg, crops=False) == 2
    views = view_batches(jnp.asarray(image), cfg)
    means = [float(v.mean()) for v in views]
    # whole image, centre, top-left, top-right, bottom-left, bottom-right (zoom 0.5: quadrants)
    assert means[2] > means[1] > means[3] and means[3] == pytest.approx(means[4]) and means[5] < means[3]
    assert float(logits[0, 0]) == pytest.approx(2 * sum(means), rel=1e-5)  # mirrors have the same mean
    np.testing.assert_array_equal(aux["attention"]["b"], views[0][:, :2, :2, 0])  # the whole image's maps
    rng = np.random.default_rng(0)
    large = rng.integers(0, 256, (ONE_CALL_IMAGES // 11 + 1, 48, 48, 1), dtype=np.uint8)  # views in a loop
    each = [vote(mean_pixel, jnp.asarray(face[None]), cfg)[0] for face in large]  # views together
    np.testing.assert_allclose(vote(mean_pixel, jnp.asarray(large), cfg)[0], np.concatenate(each), rtol=1e-6)

    # The crops come in mirror pairs, so with eval_flip the vote cannot tell a face from its
    # mirror image; without eval_flip it can.
    def left_right(x, attention):
        half = x.shape[2] // 2
        return jnp.stack([x[:, :, :half].mean((1, 2, 3)), x[:, :, half:].mean((1, 2, 3))], -1), {}

    faces = jnp.asarray(rng.integers(0, 256, (3, 48, 48, 1), dtype=np.uint8))
    for flip in (True, False):
        cfg.eval_flip = flip
        a, b = vote(left_right, faces, cfg)[0], vote(left_right, faces[:, :, ::-1], cfg)[0]
        assert np.allclose(a, b, atol=1e-4) == flip


def test_one_train_step_matches_the_paper_equations(experiment, tiny_config):
    cfg = tiny_config
    state = experiment.init_state()
    before = jax.device_get(state)
    batch = experiment.train_split.batch(experiment.order.indices(0))

    # The step's forward pass, redone outside it with the same per-step randomness.
    @jax.jit
    def reference(state, batch):
        augment_key, dropout_key = jax.random.split(jax.random.fold_in(state.rng, state.step))
        images = prepare_images(batch["image"], cfg, augment_key)
        variables = {"params": state.params, "batch_stats": state.batch_stats}
        (logits, aux), _ = state.apply_fn(
            variables, images, train=True, rngs={"dropout": dropout_key}, mutable=["batch_stats"]
        )
        return logits, aux["embedding"]

    logits, embedding = jax.device_get(reference(state, batch))
    labels = np.asarray(batch["label"])
    new_state, metrics = experiment.train_step(state, batch)
    m = {k: float(v) for k, v in metrics.compute().items()}

    # Eq. 7 with the (zero) initial centers, Eq. 6, Eq. 10.
    expected_center = 0.5 * np.mean(np.sum((embedding - before.centers[labels]) ** 2, axis=1))
    log_softmax = (
        logits
        - np.log(np.exp(logits - logits.max(1, keepdims=True)).sum(1, keepdims=True))
        - logits.max(1, keepdims=True)
    )
    expected_softmax = -np.mean(log_softmax[np.arange(len(labels)), labels])
    assert m["center_loss"] == pytest.approx(expected_center, rel=1e-4)
    assert m["softmax_loss"] == pytest.approx(expected_softmax, rel=1e-4)
    assert m["loss"] == pytest.approx(expected_softmax + cfg.loss.center_weight * expected_center, rel=1e-4)
    assert m["learning_rate"] == pytest.approx(cfg.optimizer.learning_rate)
    # Eq. 9: centers move by their own rule, only for classes in the batch.
    expected_centers = np.asarray(losses.center_update(before.centers, embedding, labels, cfg.loss.center_update_rate))
    np.testing.assert_allclose(new_state.centers, expected_centers, rtol=1e-4, atol=1e-6)
    absent = np.setdiff1d(np.arange(experiment.num_classes), labels)
    np.testing.assert_array_equal(np.asarray(new_state.centers)[absent], 0.0)
    # The optimizer never sees the centers: its state mirrors the parameters only.
    assert jax.tree.structure(new_state.opt_state[0].mu) == jax.tree.structure(new_state.params)
    assert int(new_state.step) == 1
    changed = jax.tree.map(lambda a, b: not np.array_equal(a, b), before.params, jax.device_get(new_state.params))
    assert all(jax.tree.leaves(changed))


def test_train_step_is_a_pure_function_of_state_and_batch(experiment):
    batch = experiment.train_split.batch(experiment.order.indices(3))
    first, _ = experiment.train_step(experiment.init_state(), batch)
    second, _ = experiment.train_step(experiment.init_state(), batch)
    assert steps.params_fingerprint(first.params) == steps.params_fingerprint(second.params)
    np.testing.assert_array_equal(first.centers, second.centers)


def test_params_fingerprint_is_order_and_value_sensitive():
    a = {"a": jnp.ones(3), "b": jnp.zeros(2)}
    b = {"a": jnp.ones(3), "b": jnp.zeros(2).at[0].set(1e-7)}
    assert steps.params_fingerprint(a) == steps.params_fingerprint(jax.device_get(a))
    assert steps.params_fingerprint(a) != steps.params_fingerprint(b)


def test_sam_steps_from_the_uphill_gradient_with_the_first_pass_metrics(tiny_config):
    """Mixup/CutMix, random erasing, scale jitter and degradation on, with and without SAM: the same batch and
    keys give the same first pass (the logged loss), SAM another update, each step pure."""
    cfg = micro(tiny_config)
    cfg.data.augment.update({"mixup": 0.4, "cutmix": 1.0, "erase": 0.5, "scale_out": 0.1, "degrade": 0.5})
    sam_cfg = cfg.copy_and_resolve_references()
    sam_cfg.optimizer.sam_rho = 0.05
    plain, sam = train.Experiment(cfg), train.Experiment(sam_cfg)
    batch = plain.train_split.batch(plain.order.indices(1))
    p1, m1 = plain.train_step(plain.init_state(), batch)
    s1, n1 = sam.train_step(sam.init_state(), batch)
    s2, _ = sam.train_step(sam.init_state(), batch)
    m1, n1 = m1.compute(), n1.compute()
    assert float(m1["loss"]) == pytest.approx(float(n1["loss"]), rel=1e-5)
    assert np.isfinite(float(n1["loss"])) and int(n1["nonfinite_step"]) == 0
    assert steps.params_fingerprint(s1.params) == steps.params_fingerprint(s2.params)
    assert steps.params_fingerprint(s1.params) != steps.params_fingerprint(p1.params)

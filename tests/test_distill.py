"""Knowledge distillation (amobilenet_jax/distill.py, ``loss.distill_*``): teachers loaded and
checked before any step, the soft-target loss as Hinton et al. define it, a student pulled
toward a fixed teacher, and a misnamed teacher as a one-line error."""

import json
import os
import shutil
import subprocess

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from amobilenet_jax import distill, losses, train, weights
from amobilenet_jax.config import validate
from amobilenet_jax.data.augment import prepare_images
from amobilenet_jax.errors import ConfigError
from tests.conftest import micro


def student_config(tiny_config, teachers, weight=1.0, temperature=2.0):
    # The micro body at the teacher's (the tiny run's) 32 px: the student's steps are this file's own.
    cfg = micro(tiny_config, image_size=tiny_config.data.image_size)
    cfg.loss.distill_from = tuple(teachers)
    cfg.loss.distill_weight = weight
    cfg.loss.distill_temperature = temperature
    cfg.seed = 7  # another initialisation than the teacher's
    return cfg


def test_distillation_loss_is_t_squared_cross_entropy_to_the_softened_teacher():
    logits = jnp.array([[2.0, 0.0, -1.0], [0.5, 0.5, 3.0]])
    teacher = jax.nn.softmax(jnp.array([[1.0, 1.0, 0.0], [0.0, 2.0, 2.0]]) / 3.0)
    expected = -np.mean(np.sum(np.asarray(teacher) * np.asarray(jax.nn.log_softmax(logits / 3.0)), -1)) * 9.0
    assert float(losses.distillation_loss(logits, teacher, 3.0)) == pytest.approx(expected, rel=1e-6)


def sharp_teacher(run_dir, where):
    """The finished tiny run with its classifier scaled up: a teacher with firm, varied opinions
    (16 steps of training leave the run's own predictions close to uniform)."""
    os.makedirs(where, exist_ok=True)
    shutil.copy(os.path.join(run_dir, "config.json"), os.path.join(where, "config.json"))
    tree = weights.load(os.path.join(run_dir, "weights.msgpack"))
    tree["params"]["classifier"]["kernel"] = tree["params"]["classifier"]["kernel"] * 200.0
    weights.save(os.path.join(where, "weights.msgpack"), tree["params"], tree["batch_stats"])
    return str(where)


@pytest.mark.parametrize("views", ["batch", "stored"])
def test_a_student_is_pulled_toward_a_fixed_teacher(tiny_config, finished_run, tmp_path, views):
    teacher_dir = sharp_teacher(finished_run[0], tmp_path / "teacher")
    cfg = student_config(tiny_config, [teacher_dir])
    cfg.loss.distill_views = views
    cfg.optimizer.learning_rate = 1e-2
    exp = train.Experiment(cfg)
    (teacher,) = exp.teachers
    assert teacher.path == teacher_dir
    state = exp.init_state()
    batch = exp.train_split.batch(exp.order.indices(0))

    @jax.jit
    def divergence(state):  # KL(teacher || student) at T on a fixed view of the batch, inference mode
        images = prepare_images(batch["image"], cfg)
        probs = distill.teacher_probabilities([teacher.model], [teacher.variables], images, 2.0)
        logits = state.apply_fn({"params": state.params, "batch_stats": state.batch_stats}, images, train=False)[0]
        entropy = -jnp.mean(jnp.sum(probs * jnp.log(jnp.maximum(probs, 1e-30)), -1))
        return losses.distillation_loss(logits, probs, 2.0) / 4.0 - entropy, probs

    if views == "stored":  # each stored image's teacher prediction, whole and mirrored, rides with the split
        stored = np.asarray(exp.train_split.arrays["teacher"])
        images = prepare_images(exp.train_split.arrays["image"][:8], cfg)
        whole = distill.teacher_probabilities([teacher.model], [teacher.variables], images, 2.0)
        mirror = distill.teacher_probabilities([teacher.model], [teacher.variables], images[:, :, ::-1, :], 2.0)
        np.testing.assert_allclose(stored[:8], 0.5 * (whole + mirror), atol=1e-5)
        assert stored.shape == (exp.train_split.size, exp.num_classes)
    before, probs = divergence(state)
    assert float(jnp.max(probs, -1).mean()) > 0.5  # the teacher is far from uniform
    teacher_before = jax.tree.map(np.copy, teacher.variables)
    first = None
    for _ in range(30):
        state, metrics = exp.train_step(state, batch)
        m = {k: float(v) for k, v in metrics.compute().items()}
        first = m if first is None else first
        # distill_weight 1: the loss is the soft-target loss (plus the center loss) alone.
        assert m["loss"] == pytest.approx(m["distill_loss"] + cfg.loss.center_weight * m["center_loss"], rel=1e-4)
    assert first["distill_loss"] > 0
    after, _ = divergence(state)
    assert float(after) < 0.75 * float(before)
    # The control: the same student on the labels alone ends farther from the teacher.
    plain_cfg = cfg.copy_and_resolve_references()
    plain_cfg.loss.distill_from, plain_cfg.loss.distill_weight = (), 0.0
    plain = train.Experiment(plain_cfg, dataset=exp.dataset)
    plain_state = plain.init_state()
    for _ in range(30):
        plain_state, _ = plain.train_step(plain_state, batch)
    assert float(after) < float(divergence(plain_state)[0])
    # The teacher is a constant: the steps left its weights as they were.
    for a, b in zip(jax.tree.leaves(teacher_before), jax.tree.leaves(teacher.variables)):
        np.testing.assert_array_equal(a, b)


def test_a_weights_file_names_a_teacher_with_the_config_beside_it(tiny_config, finished_run, tmp_path):
    run_dir, _ = finished_run
    copy = tmp_path / "teacher"
    copy.mkdir()
    shutil.copy(os.path.join(run_dir, "config.json"), copy / "config.json")
    shutil.copy(os.path.join(run_dir, "weights.msgpack"), copy / "model.msgpack")
    (teacher,) = distill.load_teachers(student_config(tiny_config, [str(copy / "model.msgpack")]))
    (same,) = distill.load_teachers(student_config(tiny_config, [run_dir]))
    for a, b in zip(jax.tree.leaves(teacher.variables), jax.tree.leaves(same.variables)):
        np.testing.assert_array_equal(a, b)


def test_bad_teachers_are_one_line_config_errors(tiny_config, finished_run, tmp_path):
    run_dir, _ = finished_run
    with pytest.raises(ConfigError, match="nowhere/run_x: no such run directory or weights file"):
        distill.load_teachers(student_config(tiny_config, [str(tmp_path / "nowhere" / "run_x")]))
    empty = tmp_path / "unfinished"
    empty.mkdir()
    shutil.copy(os.path.join(run_dir, "config.json"), empty / "config.json")
    with pytest.raises(ConfigError, match="weights.msgpack is missing"):
        distill.load_teachers(student_config(tiny_config, [str(empty)]))
    for name, section, field, value, message in (
        ("other_size", "data", "image_size", 40, "data.image_size=40, the student's is 32"),
        ("wider", "model", "width", 0.5, "does not fit|has shape"),
    ):
        changed = tmp_path / name
        shutil.copytree(run_dir, changed, ignore=shutil.ignore_patterns("checkpoints", "events*"))
        saved = json.loads((changed / "config.json").read_text())
        saved[section][field] = value
        (changed / "config.json").write_text(json.dumps(saved))
        with pytest.raises(ConfigError, match=message):
            distill.load_teachers(student_config(tiny_config, [str(changed)]))
    grain = student_config(tiny_config, [run_dir])
    grain.loss.distill_views, grain.data.pipeline = "stored", "grain"
    with pytest.raises(ConfigError, match="needs data.pipeline='device'"):
        validate(grain)
    for weight, teachers, message in ((0.5, [], "needs loss.distill_from"), (0.0, [run_dir], "distill_weight is 0"),
                                      (1.5, [run_dir], "must be in \\[0, 1\\]")):  # fmt: skip
        with pytest.raises(ConfigError, match=message):
            validate(student_config(tiny_config, teachers, weight))


def test_a_misnamed_teacher_fails_the_command_in_one_line_before_any_step(python, tmp_path):
    workdir = tmp_path / "student"
    proc = subprocess.run(
        [python, "-m", "amobilenet_jax.main", "--config", "configs/quickstart.py:tiny", f"--workdir={workdir}",
         "--config.loss.distill_from=('runs/no_such_teacher',)", "--config.loss.distill_weight=0.5"],
        capture_output=True, text=True, cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    )  # fmt: skip
    assert proc.returncode != 0
    errors = [line for line in proc.stderr.splitlines() if "no_such_teacher" in line]
    assert errors and "no such run directory or weights file" in errors[-1], proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert not (workdir / "checkpoints").exists()

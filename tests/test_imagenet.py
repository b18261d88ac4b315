"""ImageNet initialisation: Keras Applications' MobileNet (alpha 1.0) .h5 -> the backbone.

There is no network here: the .h5 files are written with h5py in exactly Keras' layout (layer
and weight names, both the save_weights and the model.save layout), with random values. The
mapping is proved by an independent numpy forward pass of the stem and block 1 against the Flax
model's own activations; training through the command line shows the line, the resume rule
(a checkpoint always wins) and the errors.
"""

import json
import os
import subprocess
import sys

import h5py
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from amobilenet_jax import imagenet, ship, weights
from amobilenet_jax.config import base_config, validate
from amobilenet_jax.errors import CheckpointError, ConfigError
from amobilenet_jax.models import build_model
from tests.conftest import REPO

# Keras' MobileNet: (pointwise filters, stride) of conv_dw_i / conv_pw_i, written out here
# independently of the model's own table.
KERAS_BLOCKS = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2)] + [(512, 1)] * 5 + [(1024, 2), (1024, 1)]
KERAS_TRAINABLE_NO_TOP = 3_206_976  # model.summary() of MobileNet(alpha=1.0, include_top=False)
BN = ("gamma", "beta", "moving_mean", "moving_variance")


def keras_mobilenet_layers(alpha: float = 1.0, seed: int = 0) -> list[tuple[str, list[tuple[str, np.ndarray]]]]:
    """``(layer, [(weight_name, value)])`` of keras.applications.MobileNet(alpha, include_top=True)."""
    rng = np.random.default_rng(seed)

    def bn(name, c):
        return (name, [(f"{name}/gamma:0", rng.uniform(0.5, 2.0, c)), (f"{name}/beta:0", rng.normal(0, 0.5, c)),
                       (f"{name}/moving_mean:0", rng.normal(0, 0.5, c)),
                       (f"{name}/moving_variance:0", rng.uniform(0.5, 1.5, c))])  # fmt: skip

    c = int(32 * alpha)
    layers = [("input_1", []), ("conv1_pad", []), ("conv1", [("conv1/kernel:0", rng.normal(0, 0.3, (3, 3, 3, c)))]),
              bn("conv1_bn", c), ("conv1_relu", [])]  # fmt: skip
    for i, (filters, stride) in enumerate(KERAS_BLOCKS, start=1):
        out = int(filters * alpha)
        if stride == 2:
            layers.append((f"conv_pad_{i}", []))
        layers += [
            (f"conv_dw_{i}", [(f"conv_dw_{i}/depthwise_kernel:0", rng.normal(0, 0.3, (3, 3, c, 1)))]),
            bn(f"conv_dw_{i}_bn", c),
            (f"conv_dw_{i}_relu", []),
            (f"conv_pw_{i}", [(f"conv_pw_{i}/kernel:0", rng.normal(0, 1 / np.sqrt(c), (1, 1, c, out)))]),
            bn(f"conv_pw_{i}_bn", out),
            (f"conv_pw_{i}_relu", []),
        ]
        c = out
    layers += [("global_average_pooling2d", []), ("reshape_1", []), ("dropout", []),
               ("conv_preds", [("conv_preds/kernel:0", rng.normal(0, 0.01, (1, 1, c, 1000))),
                               ("conv_preds/bias:0", np.zeros(1000))]),
               ("reshape_2", []), ("act_softmax", [])]  # fmt: skip
    return [(name, [(w, v.astype(np.float32)) for w, v in ws]) for name, ws in layers]


def write_keras_h5(path, layers, layout: str = "weights") -> str:
    """Writes ``layers`` as Keras 2 does: ``save_weights`` at the root, ``save`` under model_weights."""
    with h5py.File(path, "w") as f:
        if layout == "model":
            f.attrs["keras_version"] = b"2.2.4"
            f.attrs["backend"] = b"tensorflow"
            f.attrs["model_config"] = json.dumps({"class_name": "Model", "config": {"name": "mobilenet_1.00_224"}})
            f.create_group("optimizer_weights")
            group = f.create_group("model_weights")
        else:
            group = f
        group.attrs["layer_names"] = np.array([name.encode("utf8") for name, _ in layers])
        group.attrs["backend"] = b"tensorflow"
        group.attrs["keras_version"] = b"2.2.4"
        for name, ws in layers:
            g = group.create_group(name)
            # Keras writes np.asarray([]) (float64, empty) for a layer without weights.
            g.attrs["weight_names"] = np.array([w.encode("utf8") for w, _ in ws]) if ws else np.asarray([])
            for weight_name, value in ws:
                g.create_dataset(weight_name, data=value)  # "conv1/kernel:0": a subgroup conv1, a dataset kernel:0
    return str(path)


def keras_value(layers, layer: str, weight: str) -> np.ndarray:
    return dict(dict(layers)[layer])[f"{layer}/{weight}:0"]


def convert_cli(h5, out):
    return subprocess.run([sys.executable, "-m", "amobilenet_jax.imagenet", "--h5", str(h5), "--out", str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=300)  # fmt: skip


@pytest.fixture(scope="module")
def keras(tmp_path_factory):
    """The layers, a save_weights .h5, a model.save .h5 and the CLI's converted file of the first."""
    root = tmp_path_factory.mktemp("keras")
    layers = keras_mobilenet_layers()
    h5 = write_keras_h5(root / "mobilenet_1_0_224_tf.h5", layers, "weights")
    full = write_keras_h5(root / "mobilenet_model.h5", layers, "model")
    out = root / "imagenet_mobilenet_v1.msgpack"
    proc = convert_cli(h5, out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return {"layers": layers, "h5": h5, "full": full, "out": str(out), "stdout": proc.stdout}


def model_shapes(name: str, width: float = 1.0):
    config = base_config()
    config.model.name = name
    config.model.width = width
    model = build_model(config.model, 8)
    x = jnp.zeros((1, 32, 32, 3), jnp.float32)
    return model, jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), x, train=False))


def flat(tree, prefix=()):
    out = {}
    for key, value in tree.items():
        out.update(flat(value, (*prefix, key)) if isinstance(value, dict) else {(*prefix, key): value})
    return out


def test_converter_maps_every_backbone_tensor_and_skips_the_rest(keras, tmp_path):
    layers = keras["layers"]
    trainable = sum(v.size for name, ws in layers if name != "conv_preds" for w, v in ws
                    if not w.endswith(("moving_mean:0", "moving_variance:0")))  # fmt: skip
    assert trainable == KERAS_TRAINABLE_NO_TOP  # the generated file is Keras' MobileNet alpha 1.0
    assert keras["stdout"].strip() == (
        f"wrote 135 backbone tensors (3,206,976 parameters) of MobileNet v1 alpha 1.0 to {keras['out']}; "
        "skipped conv_preds"
    )
    tree = weights.load(keras["out"])
    got = flat(tree)
    assert len(got) == 135 and all(v.dtype == np.float32 for v in got.values())
    expected = {("params", "stem", "conv", "kernel"): keras_value(layers, "conv1", "kernel")}
    for ours, theirs in (("scale", "gamma"), ("bias", "beta")):
        expected[("params", "stem", "bn", ours)] = keras_value(layers, "conv1_bn", theirs)
    for ours, theirs in (("mean", "moving_mean"), ("var", "moving_variance")):
        expected[("batch_stats", "stem", "bn", ours)] = keras_value(layers, "conv1_bn", theirs)
    for i in range(1, 14):
        dw = keras_value(layers, f"conv_dw_{i}", "depthwise_kernel")  # (3, 3, C, 1)
        expected[("params", f"block{i}_dw", "dw", "kernel")] = dw.transpose(0, 1, 3, 2)
        expected[("params", f"block{i}_pw", "conv", "kernel")] = keras_value(layers, f"conv_pw_{i}", "kernel")
        for kind in ("dw", "pw"):
            for ours, theirs, collection in (("scale", "gamma", "params"), ("bias", "beta", "params"),
                                             ("mean", "moving_mean", "batch_stats"),
                                             ("var", "moving_variance", "batch_stats")):  # fmt: skip
                value = keras_value(layers, f"conv_{kind}_{i}_bn", theirs)
                expected[(collection, f"block{i}_{kind}", "bn", ours)] = value
    assert set(got) == set(expected)
    for key, value in expected.items():
        np.testing.assert_array_equal(got[key], value, err_msg=str(key))
    # Depthwise: Keras (3, 3, C, 1) -> ours (3, 3, 1, C), channel c's 3x3 filter unchanged.
    dw = keras_value(layers, "conv_dw_5", "depthwise_kernel")
    np.testing.assert_array_equal(got[("params", "block5_dw", "dw", "kernel")][:, :, 0, 17], dw[:, :, 17, 0])
    # The model.save layout converts to the very same file contents.
    summary = imagenet.convert(keras["full"], str(tmp_path / "from_full.msgpack"))
    assert summary["tensors"] == 135 and summary["parameters"] == KERAS_TRAINABLE_NO_TOP
    for key, value in flat(weights.load(str(tmp_path / "from_full.msgpack"))).items():
        np.testing.assert_array_equal(value, got[key])
    # Every tensor lands on a leaf of the same shape in both models' trees; what is left is CBAM and classifier.
    for name in ("amobilenet", "mobilenet_v1"):
        _, shapes = model_shapes(name)
        model_leaves = {k: v.shape for k, v in flat(shapes).items()}
        for key, value in got.items():
            assert model_leaves[key] == value.shape, (name, key)
        rest = {k[1] for k in model_leaves if k not in got}
        cbam = {f"block{i}_cbam" for i in (4, 6, 11, 13)} if name == "amobilenet" else set()
        assert rest == {"classifier"} | cbam


# ---------------------------------------------------------------- the numpy proof


def np_taps(x, k, stride):
    """Yields ``((i, j), window)``: the strided slice of ``x`` (HWC), padded by k // 2 on each side as
    this project pads, that tap (i, j) of a 'SAME' k x k conv reads."""
    p = k // 2
    xp = np.pad(np.asarray(x, np.float64), ((p, p), (p, p), (0, 0)))
    h, w = (x.shape[0] + 2 * p - k) // stride + 1, (x.shape[1] + 2 * p - k) // stride + 1
    for i in range(k):
        for j in range(k):
            yield (i, j), xp[i : i + stride * (h - 1) + 1 : stride, j : j + stride * (w - 1) + 1 : stride]


def np_conv(x, kernel, stride):
    """Dense conv. x: HWC, kernel: HWIO."""
    return sum(patch @ kernel[i, j].astype(np.float64) for (i, j), patch in np_taps(x, kernel.shape[0], stride))


def np_depthwise(x, kernel_keras, stride):
    """Depthwise conv with Keras' own kernel layout (3, 3, C, 1)."""
    return sum(patch * kernel_keras[i, j, :, 0] for (i, j), patch in np_taps(x, kernel_keras.shape[0], stride))


def np_bn(x, layers, name):
    g, b, m, v = (keras_value(layers, name, w).astype(np.float64) for w in BN)
    return (x - m) / np.sqrt(v + 1e-3) * g + b  # Keras' BatchNormalization epsilon in MobileNet


def relu6(x):
    return np.clip(x, 0, 6)


@pytest.mark.parametrize("name", ["amobilenet", "mobilenet_v1"])
def test_numpy_forward_of_stem_and_block1_matches_the_initialised_model(keras, name):
    layers = keras["layers"]
    model, shapes = model_shapes(name)
    zeros = jax.tree.map(lambda s: np.zeros(s.shape, np.float32), shapes)
    variables, tensors, params = imagenet.init_backbone(zeros, keras["out"])
    assert (tensors, params) == (135, KERAS_TRAINABLE_NO_TOP)
    x = np.random.default_rng(1).normal(0, 1, (2, 32, 32, 3)).astype(np.float32)
    _, state = jax.jit(lambda v, x: model.apply(v, x, train=False, capture_intermediates=True,
                                                mutable=["intermediates"]))(variables, x)  # fmt: skip
    acts = state["intermediates"]
    for n in range(2):
        stem = relu6(np_bn(np_conv(x[n], keras_value(layers, "conv1", "kernel"), 2), layers, "conv1_bn"))
        dw = np_bn(np_depthwise(stem, keras_value(layers, "conv_dw_1", "depthwise_kernel"), 1), layers, "conv_dw_1_bn")
        dw = dw if name == "amobilenet" else relu6(dw)  # A-MobileNet: linear depthwise output
        pw = relu6(np_bn(np_conv(dw, keras_value(layers, "conv_pw_1", "kernel"), 1), layers, "conv_pw_1_bn"))
        assert stem.shape == (16, 16, 32) and pw.shape == (16, 16, 64)
        assert (stem == 6).any() and (stem == 0).any()  # the clip is exercised
        if name == "amobilenet":
            assert (dw < 0).any()
        for module, want in (("stem", stem), ("block1_dw", dw), ("block1_pw", pw)):
            got = np.asarray(acts[module]["__call__"][0][n], np.float64)
            np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-4, err_msg=f"{name} {module}")


def test_init_backbone_accepts_the_h5_and_keeps_other_leaves(keras):
    _, shapes = model_shapes("amobilenet")
    sentinel = jax.tree.map(lambda s: np.full(s.shape, 7.0, np.float32), shapes)
    from_file, _, _ = imagenet.init_backbone(sentinel, keras["out"])
    from_h5, _, _ = imagenet.init_backbone(sentinel, keras["h5"])  # converted in memory
    backbone = {k for k in flat(weights.load(keras["out"]))}
    for key, value in flat(from_file).items():
        np.testing.assert_array_equal(flat(from_h5)[key], value)
        if key not in backbone:  # CBAM and classifier: exactly as they were
            assert value is flat(sentinel)[key]


# ---------------------------------------------------------------- errors


def test_other_architectures_and_widths_are_one_line_errors(keras, tmp_path):
    # MobileNetV2's layer names, through the command line: one line naming the file.
    zeros = np.zeros
    v2 = [("input_1", []), ("Conv1", [("Conv1/kernel:0", zeros((3, 3, 3, 32), np.float32))]),
          ("bn_Conv1", [(f"bn_Conv1/{w}:0", np.ones(32, np.float32)) for w in BN]),
          ("expanded_conv_depthwise", [("expanded_conv_depthwise/depthwise_kernel:0", zeros((3, 3, 32, 1), "f4"))]),
          ("expanded_conv_project", [("expanded_conv_project/kernel:0", zeros((1, 1, 32, 16), "f4"))])]  # fmt: skip
    h5 = write_keras_h5(tmp_path / "mobilenet_v2_1.0_224.h5", v2)
    proc = convert_cli(h5, tmp_path / "v2.msgpack")
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode != 0 and len(lines) == 1, proc.stderr[-3000:]
    assert lines[0].startswith(f"error: {h5}: not Keras' MobileNet (v1)") and "MobileNetV2" in lines[0]
    assert "alpha 1.0" in lines[0] and not os.path.exists(tmp_path / "v2.msgpack")
    # Alpha 0.5: the first layer whose shape differs, and what is needed.
    half = write_keras_h5(tmp_path / "mobilenet_5_0_224_tf.h5", keras_mobilenet_layers(0.5))
    with pytest.raises(CheckpointError, match=r"mobilenet_5_0_224_tf.h5: conv1/kernel has shape \(3, 3, 3, 16\), "
                       r"MobileNet v1 alpha 1.0 has \(3, 3, 3, 32\) \(alpha 0.5\?\);.*alpha 1.0"):  # fmt: skip
        imagenet.convert(half, str(tmp_path / "half.msgpack"))
    # Missing layers.
    kept = [layer for layer in keras["layers"] if not layer[0].startswith("conv_pw_13")]
    cut = write_keras_h5(tmp_path / "cut.h5", kept)
    with pytest.raises(CheckpointError, match=r"cut.h5: missing layers conv_pw_13, conv_pw_13_bn;"):
        imagenet.convert(cut, str(tmp_path / "cut.msgpack"))
    # Not HDF5 at all.
    (tmp_path / "notes.h5").write_text("not weights")
    with pytest.raises(CheckpointError, match=r"notes.h5: not an HDF5 file"):
        imagenet.convert(str(tmp_path / "notes.h5"), str(tmp_path / "notes.msgpack"))
    # A model of width 0.5 cannot take the alpha 1.0 weights: the leaf and both shapes.
    _, shapes = model_shapes("mobilenet_v1", 0.5)
    zeros = jax.tree.map(lambda s: np.zeros(s.shape, np.float32), shapes)
    with pytest.raises(CheckpointError, match=r"imagenet_mobilenet_v1.msgpack: params/stem/conv/kernel has shape "
                       r"\(3, 3, 3, 32\), the config's model \(3, 3, 3, 16\); .*model.width=1.0"):  # fmt: skip
        imagenet.init_backbone(zeros, keras["out"])
    # A weights file of another model (no backbone) is refused, not half applied.
    other = tmp_path / "other.msgpack"
    weights.save(str(other), {"classifier": {"kernel": np.zeros((4, 8), np.float32)}}, {})
    with pytest.raises(CheckpointError, match=r"other.msgpack: holds no params/stem/conv/kernel"):
        imagenet.init_backbone(zeros, str(other))


def test_init_from_applies_to_mobilenet_v1_and_amobilenet_only():
    config = base_config()
    config.model.init_from = "imagenet.msgpack"
    for name in ("amobilenet", "mobilenet_v1"):
        config.model.name = name
        validate(config)
    config.model.name = "mobilenet_v2"
    with pytest.raises(ConfigError, match=r"model.init_from applies to mobilenet_v1 and amobilenet only"):
        validate(config)


# ---------------------------------------------------------------- training through the command line

# The quickstart at width 1.0 and the paper's 13 blocks (the ImageNet body), on 16 images for one step.
MAIN = [sys.executable, "-m", "amobilenet_jax.main", "--config", "configs/quickstart.py",
        "--config.model.width=1.0", "--config.data.num_train=16", "--config.data.num_test=16",
        "--config.train.batch_size=8", "--config.train.eval_batch_size=16", "--config.train.num_steps=1"]  # fmt: skip


def run_main(*args):
    return subprocess.run([*MAIN, *args], cwd=REPO, capture_output=True, text=True, timeout=600)


def test_fresh_run_initialises_the_backbone_and_a_resumed_run_keeps_its_checkpoint(keras, tmp_path):
    workdir = str(tmp_path / "run")
    first = run_main("--workdir", workdir, f"--config.model.init_from={keras['out']}")
    assert first.returncode == 0, first.stderr[-3000:]
    line = f"initialised 135 backbone tensors (3.2M parameters) from {keras['out']}; CBAM and classifier fresh"
    assert first.stdout.splitlines()[0] == line, first.stdout
    with open(os.path.join(workdir, "config.json")) as f:
        assert json.load(f)["model"]["init_from"] == keras["out"]
    # The checkpoint of step 1: one Adam step (at most the learning rate per value) from the ImageNet values.
    config, state = ship.restore_run_state(workdir)
    lr = config.optimizer.learning_rate
    stem = np.asarray(state.params["stem"]["conv"]["kernel"])
    h5_stem = keras_value(keras["layers"], "conv1", "kernel")
    assert np.abs(stem - h5_stem).max() <= lr * 1.01 and np.abs(stem - h5_stem).max() > 0
    pw13 = np.asarray(state.params["block13_pw"]["conv"]["kernel"])
    assert np.abs(pw13 - keras_value(keras["layers"], "conv_pw_13", "kernel")).max() <= lr * 1.01
    # The same command again resumes: the checkpoint wins, nothing is re-initialised.
    again = run_main("--workdir", workdir, f"--config.model.init_from={keras['out']}")
    assert again.returncode == 0, again.stderr[-3000:]
    assert "resuming from checkpoint at step 1" in again.stdout and "initialised" not in again.stdout
    with open(os.path.join(workdir, "results.json")) as f:
        resumed = json.load(f)
    from amobilenet_jax.steps import params_fingerprint

    assert resumed["params_fingerprint"] == params_fingerprint(state.params)


def test_init_from_errors_through_the_command_line(keras, tmp_path):
    v2 = run_main("--workdir", str(tmp_path / "v2"), "--config.model.name=mobilenet_v2",
                  f"--config.model.init_from={keras['out']}")  # fmt: skip
    lines = v2.stderr.strip().splitlines()
    assert v2.returncode != 0 and len(lines) == 1, v2.stderr[-3000:]
    assert lines[0].startswith("error: config: model.init_from applies to mobilenet_v1 and amobilenet only")
    assert not os.path.exists(tmp_path / "v2" / "config.json")

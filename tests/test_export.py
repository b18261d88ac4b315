"""ONNX export (amobilenet_jax/export.py): ONNX Runtime gives JAX's logits.

- small random-weight MobileNetV1 / A-MobileNet (width 0.25, 48x48, stem stride 1 and 2,
  random BatchNorm statistics so the folding matters): the graph's logits match
  ``module.apply(train=False)`` on the same prepared input to 1e-4, at several batch sizes;
- the shipped FERPlus model on real faces (scikit-image's astronaut and LFW photos):
  ``OnnxModel.logits`` (preparation, ONNX Runtime, test-time flip) matches
  ``inference.Model.logits`` to 1e-4;
- the command line writes a file that loads, and gives one line and a non-zero exit for bad input;
- other architectures, files that are not ONNX and ONNX files without the metadata are clear errors.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import onnx
import pytest

from amobilenet_jax import export, inference
from amobilenet_jax import weights as weights_lib
from amobilenet_jax.config import base_config
from amobilenet_jax.data import class_names
from amobilenet_jax.data.augment import prepare_images
from amobilenet_jax.errors import CheckpointError, ConfigError, RunNotFoundError
from amobilenet_jax.models import build_model
from tests import media

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ATOL = 1e-4


def small_config(name: str, stem_stride: int, cbam: bool | None = None, eval_flip: bool = False):
    config = base_config()
    config.model.name = name
    config.model.width = 0.25
    config.model.stem_stride = stem_stride
    config.model.cbam = cbam
    config.eval_flip = eval_flip
    return config


def random_variables(module, seed: int) -> dict:
    """Variables of ``module`` drawn at random in numpy (no init run): kernels scaled by fan-in,
    every bias (CBAM's too), BatchNorm scale, shift and running statistic random, so the
    folding of all four into the convs matters."""
    rng = np.random.default_rng(seed)
    shapes = jax.eval_shape(lambda: module.init(jax.random.PRNGKey(0), jnp.zeros((1, 48, 48, 3)), train=False))

    def draw(path, leaf):
        name, shape = path[-1].key, leaf.shape
        if name == "kernel":
            value = rng.normal(0.0, 1.0 / np.sqrt(np.prod(shape[:-1])), shape)
        elif name in ("scale", "var"):
            value = rng.uniform(0.5, 1.5 if name == "scale" else 2.0, shape)
        else:  # bias, mean
            value = rng.normal(0.0, 0.3, shape)
        return jnp.asarray(value, jnp.float32)

    return jax.tree_util.tree_map_with_path(draw, {"params": shapes["params"], "batch_stats": shapes["batch_stats"]})


def random_model(name: str, stem_stride: int, cbam: bool | None = None, seed: int = 0, eval_flip: bool = False):
    config = small_config(name, stem_stride, cbam, eval_flip)
    names = class_names(config.data.name)
    module = build_model(config.model, len(names))
    variables = random_variables(module, seed)
    return inference.Model(config=config, module=module, variables=variables, class_names=names, source="random")


def random_faces(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 48, 48, 1), dtype=np.uint8)


def session(proto):
    import onnxruntime as ort

    return ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])


# (model.name, stem stride, model.cbam): A-MobileNet at both strides, MobileNetV1 with ReLU6
# depthwise outputs with and without CBAM.
CASES = [("amobilenet", 1, None), ("amobilenet", 2, None), ("mobilenet_v1", 2, True), ("mobilenet_v1", 1, None)]


def _case_id(case) -> str:
    name, stride, cbam = case
    return f"{name}-stem{stride}" + ("-cbam" if cbam or name == "amobilenet" else "")


@pytest.fixture(scope="module", params=CASES, ids=_case_id)
def small(request):
    """A random small model, its graph, and JAX's logits of 5 prepared random faces."""
    name, stride, cbam = request.param
    model = random_model(name, stride, cbam, seed=CASES.index(request.param))
    x = np.asarray(prepare_images(jnp.asarray(random_faces(5)), model.config))
    want = np.asarray(jax.jit(lambda v, x: model.module.apply(v, x, train=False)[0])(model.variables, x))
    return model, export.to_onnx(model), x, want


def test_small_models_match_jax(small):
    model, proto, x, want = small
    assert x.shape == (5, 48, 48, 3)
    assert np.abs(want).max() > 0.1  # logits worth comparing, not all ~0
    s = session(proto)
    np.testing.assert_allclose(s.run(["logits"], {"image": x})[0], want, rtol=0, atol=ATOL)
    # The batch is dynamic: one face and two faces give their rows of the same logits.
    np.testing.assert_allclose(s.run(["logits"], {"image": x[:1]})[0], want[:1], rtol=0, atol=ATOL)
    np.testing.assert_allclose(s.run(["logits"], {"image": x[3:]})[0], want[3:], rtol=0, atol=ATOL)


def test_graph_form(small):
    """Inference form: BatchNorm folded, depthwise convs grouped, ReLU6 as Clip, dynamic batch."""
    model, proto, _, _ = small
    ops = [n.op_type for n in proto.graph.node]
    assert "BatchNormalization" not in ops
    assert ops.count("Transpose") == 1
    groups = {n.name: next((a.i for a in n.attribute if a.name == "group"), 1) for n in proto.graph.node}
    params = model.variables["params"]
    for i in range(1, 14):
        channels = params[f"block{i}_dw"]["dw"]["kernel"].shape[-1]
        assert groups[f"block{i}_dw/conv"] == channels > 1
        assert groups[f"block{i}_pw/conv"] == 1
        assert (f"block{i}_dw/relu6" in groups) == (not model.module.linear_depthwise)
        assert (f"block{i}_cbam/out" in groups) == (model.module.cbam and i in model.module.cbam_blocks)
    (inp,), (out,) = proto.graph.input, proto.graph.output
    assert [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim] == ["batch", 48, 48, 3]
    assert [d.dim_param or d.dim_value for d in out.type.tensor_type.shape.dim] == ["batch", len(model.class_names)]
    meta = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(meta[export.META_CLASSES]) == list(model.class_names)
    assert json.loads(meta[export.META_CONFIG]) == json.loads(model.config.to_json())


@pytest.fixture(scope="module")
def shipped():
    model = inference.load_model()  # amobilenet_jax/assets/ferplus_amobilenet
    return model, export.OnnxModel(export.to_onnx(model).SerializeToString())


def test_shipped_model_on_real_faces(shipped):
    model, runtime = shipped
    assert model.config.eval_flip and model.config.model.stem_stride == 1  # the recipe's model: flip path used
    faces = media.sample_faces(model.native_shape, 16)
    assert faces.shape == (16, 48, 48, 1) and faces.dtype == np.uint8
    assert faces.std() > 20  # photos, not blank crops
    np.testing.assert_array_equal(faces[1], faces[0][:, ::-1])  # the astronaut and her mirror image
    want, got = model.logits(faces), runtime.logits(faces)
    np.testing.assert_allclose(got, want, rtol=0, atol=ATOL)
    np.testing.assert_array_equal(got.argmax(-1), want.argmax(-1))
    np.testing.assert_allclose(runtime.probabilities(faces), model.probabilities(faces), rtol=0, atol=1e-5)
    # Odd counts go through the same bucketing as the JAX model.
    np.testing.assert_allclose(runtime.logits(faces[:3]), want[:3], rtol=0, atol=ATOL)
    assert runtime.logits(faces[:0]).shape == (0, 8)


def test_onnx_model_interface(shipped):
    model, runtime = shipped
    assert runtime.class_names == model.class_names
    assert runtime.native_shape == model.native_shape == (48, 48, 1)
    assert runtime.grayscale
    assert runtime.config.to_json() == model.config.to_json()
    with pytest.raises(ValueError, match=r"\[N, 48, 48, 1\]"):
        runtime.logits(np.zeros((2, 48, 48, 3), np.uint8))


def test_unsupported_architecture():
    config = base_config()
    config.model.name = "mobilenet_v2"
    config.model.width = 0.25
    module = build_model(config.model, 8)
    model = inference.Model(config=config, module=module, variables={}, class_names=("a",) * 8, source="v2run")
    with pytest.raises(ConfigError, match=r"v2run: model.name='mobilenet_v2' has no ONNX export \(supported: "):
        export.to_onnx(model)


def test_bad_onnx_files(tmp_path):
    with pytest.raises(RunNotFoundError, match="missing.onnx: no such ONNX file"):
        export.OnnxModel(str(tmp_path / "missing.onnx"))
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a protobuf at all")
    with pytest.raises(CheckpointError, match="junk.onnx: not an ONNX model") as info:
        export.OnnxModel(str(junk))
    assert "\n" not in str(info.value)
    # A valid ONNX model, but not one of ours: no config or class names to rebuild the pipeline from.
    h, tp = onnx.helper, onnx.TensorProto
    graph = h.make_graph([h.make_node("Identity", ["image"], ["logits"])], "g",
                         [h.make_tensor_value_info("image", tp.FLOAT, [1])],
                         [h.make_tensor_value_info("logits", tp.FLOAT, [1])])  # fmt: skip
    foreign = tmp_path / "foreign.onnx"
    foreign.write_bytes(h.make_model(graph, opset_imports=[h.make_opsetid("", 17)], ir_version=8).SerializeToString())
    with pytest.raises(CheckpointError, match="foreign.onnx: an ONNX model without amobilenet_jax's config"):
        export.OnnxModel(str(foreign))


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "amobilenet_jax.export", *args], cwd=REPO, capture_output=True, text=True, timeout=180
    )


def test_cli(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    model = random_model("amobilenet", 1, seed=3)
    (run_dir / "config.json").write_text(json.dumps(json.loads(model.config.to_json())))
    weights = str(run_dir / "weights.msgpack")
    weights_lib.save(weights, model.variables["params"], model.variables["batch_stats"])
    out = tmp_path / "out" / "small.onnx"
    out.parent.mkdir()

    proc = _cli("--weights", weights, "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"export: wrote {out} (") and "opset 17" in lines[0]
    assert "image float32 [N, 48, 48, 3]" in lines[0] and "logits float32 [N, 8]" in lines[0]
    diff = float(lines[0].rsplit(": ", 1)[1])
    assert diff <= ATOL
    assert os.listdir(out.parent) == ["small.onnx"]  # no temporary file left beside it
    loaded = export.OnnxModel(str(out))
    assert loaded.source == str(out)
    assert loaded.config.model.width == 0.25 and loaded.config.model.stem_stride == 1
    assert loaded.class_names == model.class_names
    x = np.asarray(prepare_images(jnp.asarray(random_faces(3)), model.config))
    want = np.asarray(model.module.apply(model.variables, x, train=False)[0])
    np.testing.assert_allclose(loaded.logits(random_faces(3)), want, rtol=0, atol=ATOL)  # eval_flip off: one view
    # With test-time crops and flip, the ONNX model votes over the same 12 views as JAX's.
    model.config.eval_flip, model.config.eval_crops = True, 5
    views = export.OnnxModel(export.to_onnx(model).SerializeToString())
    assert views.config.eval_crops == 5
    np.testing.assert_allclose(views.logits(random_faces(3)), model.logits(random_faces(3)), rtol=0, atol=4 * ATOL)
    np.testing.assert_allclose(views.probabilities(random_faces(3)), model.probabilities(random_faces(3)), atol=1e-5)

    bad = _cli("--weights", str(tmp_path / "nope.msgpack"), "--out", str(tmp_path / "bad.onnx"))
    assert bad.returncode != 0
    assert bad.stderr.strip().splitlines() == [f"export: error: {tmp_path / 'nope.msgpack'}: no such weights file"]
    assert not (tmp_path / "bad.onnx").exists()
    with pytest.raises(RunNotFoundError, match=r"m.onnx: no such directory .*absent"):
        export.export(None, weights, str(tmp_path / "absent" / "m.onnx"))
    assert not (tmp_path / "absent").exists()


def test_bfloat16_run_exports_in_float32(tmp_path):
    """A run that computed in bfloat16 exports float32 weights; the check compares with float32 JAX."""
    model = random_model("amobilenet", 2, seed=5)
    model.config.model.dtype = "bfloat16"
    run_dir = tmp_path / "bf16"
    run_dir.mkdir()
    (run_dir / "config.json").write_text(json.dumps(json.loads(model.config.to_json())))
    weights = str(run_dir / "weights.msgpack")
    weights_lib.save(weights, model.variables["params"], model.variables["batch_stats"])
    summary = export.export(None, weights, str(tmp_path / "bf16.onnx"), faces=4)
    assert summary["max_abs_logit_diff"] <= ATOL
    assert export.OnnxModel(str(tmp_path / "bf16.onnx")).config.model.dtype == "bfloat16"

"""ONNX export: a trained MobileNetV1 / A-MobileNet as one self-contained ``.onnx`` file.

    python -m amobilenet_jax.export --out model.onnx                      # the shipped FERPlus model
    python -m amobilenet_jax.export --workdir runs/x --out model.onnx     # a run
    python -m amobilenet_jax.predict --onnx model.onnx photo.jpg          # the same pipeline on ONNX Runtime

The graph is written from the parameters with the ``onnx`` package, not traced from JAX (the
traced CPU-tuned forward pass is larger and slower: experiments/use/README.md). Input ``image``:
float32 ``[N, S, S, 3]`` NHWC as ``data.augment.prepare_images`` makes it; output ``logits`` of
one view. BatchNorm is folded into the convs, depthwise convs are grouped ``Conv`` (the form
ONNX Runtime runs best). The run's config and class names travel in the file's metadata, so
``OnnxModel(path)`` needs nothing else and adds the run's test-time views as
``inference.Model.logits`` does.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import os
from typing import Any

import numpy as np

from amobilenet_jax.errors import CheckpointError, ConfigError, RunNotFoundError, UserError, joined
from amobilenet_jax.files import write_atomic
from amobilenet_jax.inference import FaceFormat

OPSET = 17  # ReduceMean/ReduceMax take their axes as an attribute up to 17
IR_VERSION = 8  # the IR of opset 17 (a newer onnx package would stamp its own, which older runtimes refuse)
SUPPORTED = ("amobilenet", "mobilenet_v1")
INPUT, OUTPUT = "image", "logits"
META_CONFIG = "amobilenet_jax.config"  # the run's config.json
META_CLASSES = "amobilenet_jax.class_names"  # JSON list
META_SOURCE = "amobilenet_jax.source"  # the weights the file was exported from
# The command refuses to write a file whose logits differ from JAX's by more than this
# (float32 folding and summation order account for a few 1e-6 on the shipped model).
SELF_CHECK_TOLERANCE = 1e-3


def _onnx():
    try:
        import onnx
    except ImportError as e:
        raise ImportError(f"ONNX export needs the onnx package: pip install 'onnx>=1.16,<2' ({e})") from None
    return onnx


def _onnxruntime():
    try:
        import onnxruntime
    except ImportError as e:
        raise ImportError(
            f"running an ONNX model needs onnxruntime: pip install 'onnxruntime>=1.18,<2' ({e})"
        ) from None
    return onnxruntime


class _Graph:
    """Nodes and initializers of a graph being written; each node's output is named after it."""

    def __init__(self, onnx):
        self.onnx = onnx
        self.nodes: list = []
        self.initializers: list = []

    def const(self, name: str, array) -> str:
        self.initializers.append(self.onnx.numpy_helper.from_array(np.ascontiguousarray(array, np.float32), name))
        return name

    def op(self, op_type: str, inputs: list[str], name: str, **attrs) -> str:
        self.nodes.append(self.onnx.helper.make_node(op_type, inputs, [name], name=name, **attrs))
        return name


def _fold(kernel_hwio, bn_params, bn_stats, epsilon: float) -> tuple[np.ndarray, np.ndarray]:
    """A conv kernel (HWIO; depthwise ``(k, k, 1, C)``) with its inference-mode BatchNorm
    folded in: ONNX weights ``[O, I, k, k]`` and bias ``[O]``, computed in float64."""
    kernel = np.asarray(kernel_hwio, np.float64)
    scale, bias = (np.asarray(bn_params[k], np.float64) for k in ("scale", "bias"))
    mean, var = (np.asarray(bn_stats[k], np.float64) for k in ("mean", "var"))
    mul = scale / np.sqrt(var + epsilon)
    weight = kernel.transpose(3, 2, 0, 1) * mul[:, None, None, None]
    return weight, bias - mean * mul


class _Writer:
    """Writes MobileNetV1 / A-MobileNet layer by layer from a variables tree."""

    def __init__(self, graph: _Graph, variables: dict, epsilon: float):
        self.g = graph
        self.params = variables["params"]
        self.stats = variables.get("batch_stats", {})
        self.epsilon = epsilon
        self.clip = None

    def _relu6(self, x: str, name: str) -> str:
        if self.clip is None:
            self.clip = (self.g.const("relu6/min", np.zeros(())), self.g.const("relu6/max", np.full((), 6.0)))
        return self.g.op("Clip", [x, *self.clip], f"{name}/relu6")

    def conv_bn(self, x: str, name: str, stride: int, activation: str, depthwise: bool) -> str:
        """ConvBN (models/layers.py) with its BatchNorm folded into the conv."""
        p, s = self.params[name], self.stats[name]
        weight, bias = _fold(p["dw" if depthwise else "conv"]["kernel"], p["bn"], s["bn"], self.epsilon)
        k = weight.shape[-1]
        inputs = [x, self.g.const(f"{name}/weight", weight), self.g.const(f"{name}/bias", bias)]
        y = self.g.op("Conv", inputs, f"{name}/conv", kernel_shape=[k, k], strides=[stride, stride],
                      pads=[k // 2] * 4, group=weight.shape[0] if depthwise else 1)  # fmt: skip
        if activation == "relu6":
            return self._relu6(y, name)
        if activation != "linear":
            raise ConfigError(f"export: activation {activation!r} has no ONNX form here")
        return y

    def cbam(self, x: str, name: str) -> str:
        """CBAM (models/cbam.py): channel attention, then spatial attention, NCHW."""
        g, p = self.g, self.params[name]
        ch = p["channel"]
        w0, b0 = np.asarray(ch["mlp_0"]["kernel"]), np.asarray(ch["mlp_0"]["bias"])
        w1, b1 = np.asarray(ch["mlp_1"]["kernel"]), np.asarray(ch["mlp_1"]["bias"])
        squeeze = [g.const(f"{name}/mlp_0/weight", w0.T[:, :, None, None]), g.const(f"{name}/mlp_0/bias", b0)]
        hidden = []
        for pool, op in (("avg", "ReduceMean"), ("max", "ReduceMax")):
            pooled = g.op(op, [x], f"{name}/channel/{pool}", axes=[2, 3], keepdims=1)  # [N, C, 1, 1]
            h = g.op("Conv", [pooled, *squeeze], f"{name}/channel/{pool}/mlp_0", kernel_shape=[1, 1])
            hidden.append(g.op("Relu", [h], f"{name}/channel/{pool}/relu"))
        # The shared MLP's second layer is linear: mlp_1(a) + mlp_1(b) = W1 (a + b) + 2 b1.
        summed = g.op("Add", hidden, f"{name}/channel/hidden_sum")
        expand = [g.const(f"{name}/mlp_1/weight", w1.T[:, :, None, None]), g.const(f"{name}/mlp_1/bias", 2.0 * b1)]
        att = g.op("Conv", [summed, *expand], f"{name}/channel/mlp_1", kernel_shape=[1, 1])
        att = g.op("Sigmoid", [att], f"{name}/channel/sigmoid")
        x = g.op("Mul", [x, att], f"{name}/channel/out")
        pooled = [g.op(op, [x], f"{name}/spatial/{pool}", axes=[1], keepdims=1)
                  for pool, op in (("avg", "ReduceMean"), ("max", "ReduceMax"))]  # fmt: skip
        pooled = g.op("Concat", pooled, f"{name}/spatial/concat", axis=1)  # [N, 2, H, W]
        sp = p["spatial"]["conv"]
        kernel = np.asarray(sp["kernel"]).transpose(3, 2, 0, 1)  # (k, k, 2, 1) -> (1, 2, k, k)
        k = kernel.shape[-1]
        conv = [g.const(f"{name}/spatial/weight", kernel), g.const(f"{name}/spatial/bias", np.asarray(sp["bias"]))]
        att = g.op("Conv", [pooled, *conv], f"{name}/spatial/conv", kernel_shape=[k, k], pads=[k // 2] * 4)
        att = g.op("Sigmoid", [att], f"{name}/spatial/sigmoid")
        return g.op("Mul", [x, att], f"{name}/out")

    def classifier(self, x: str) -> str:
        g, p = self.g, self.params["classifier"]
        pooled = g.op("GlobalAveragePool", [x], "pool")
        flat = g.op("Flatten", [pooled], "embedding", axis=1)
        weight, bias = g.const("classifier/weight", p["kernel"]), g.const("classifier/bias", p["bias"])
        return g.op("Gemm", [flat, weight, bias], OUTPUT)


def config_json(config) -> str:
    """The config as its run's ``config.json`` holds it (``config.from_json`` reads it back)."""
    return json.dumps(json.loads(config.to_json()), indent=2, sort_keys=True)


def to_onnx(model):
    """The ``onnx.ModelProto`` of an ``inference.Model`` (MobileNetV1 or A-MobileNet), checked by
    ``onnx.checker``."""
    from amobilenet_jax.models.layers import ConvBN
    from amobilenet_jax.models.mobilenet_v1 import MobileNetV1

    onnx = _onnx()
    name = model.config.model.name
    if name not in SUPPORTED or not isinstance(model.module, MobileNetV1):
        raise ConfigError(f"{model.source}: model.name={name!r} has no ONNX export (supported: {', '.join(SUPPORTED)})")
    module = model.module
    variables = _host_tree(model.variables)
    size = int(model.config.data.image_size)
    num_classes = int(np.shape(variables["params"]["classifier"]["bias"])[0])

    g = _Graph(onnx)
    w = _Writer(g, variables, float(ConvBN.bn_epsilon))  # MobileNetV1 keeps ConvBN's epsilon
    x = g.op("Transpose", [INPUT], "nchw", perm=[0, 3, 1, 2])
    x = w.conv_bn(x, "stem", int(module.stem_stride), "relu6", depthwise=False)
    dw_activation = "linear" if module.linear_depthwise else "relu6"
    for i, (_, stride) in enumerate(module.blocks, start=1):
        x = w.conv_bn(x, f"block{i}_dw", stride, dw_activation, depthwise=True)
        x = w.conv_bn(x, f"block{i}_pw", 1, "relu6", depthwise=False)
        if module.cbam and i in module.cbam_blocks:
            x = w.cbam(x, f"block{i}_cbam")
    w.classifier(x)

    helper, tp = onnx.helper, onnx.TensorProto
    graph = helper.make_graph(
        g.nodes,
        f"{name}_{size}px",
        [helper.make_tensor_value_info(INPUT, tp.FLOAT, ["batch", size, size, 3])],
        [helper.make_tensor_value_info(OUTPUT, tp.FLOAT, ["batch", num_classes])],
        initializer=g.initializers,
    )
    from importlib.metadata import version  # the package's own, without importing its root (api)

    proto = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        ir_version=IR_VERSION,
        producer_name="amobilenet_jax.export",
        producer_version=version("amobilenet-jax"),
        doc_string=(
            f"{name} ({len(model.class_names)} classes), BatchNorm folded. Input: float32 [N, {size}, {size}, 3] "
            "NHWC as prepare_images makes it; output: logits of one view. Config and class names in metadata."
        ),
    )
    helper.set_model_props(
        proto,
        {
            META_CONFIG: config_json(model.config),
            META_CLASSES: json.dumps(list(model.class_names)),
            META_SOURCE: str(model.source),
        },
    )
    onnx.checker.check_model(proto, full_check=True)
    return proto


def _host_tree(tree):
    if isinstance(tree, dict) or hasattr(tree, "items"):
        return {k: _host_tree(v) for k, v in tree.items()}
    return np.asarray(tree, np.float32)


class OnnxModel(FaceFormat):
    """An exported model on ONNX Runtime (CPU) with ``inference.Model``'s prediction interface:
    ``config``, ``class_names``, ``native_shape``, ``grayscale``, ``source``, ``logits(faces)``
    and ``probabilities(faces)``. ``model``: a path, or the serialised bytes."""

    def __init__(self, model: str | bytes, threads: int | None = None):
        ort = _onnxruntime()
        from amobilenet_jax.config import from_json

        where = os.fspath(model) if not isinstance(model, bytes) else "<ONNX bytes>"
        if not isinstance(model, bytes) and not os.path.isfile(where):
            raise RunNotFoundError(f"{where}: no such ONNX file")
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = int(threads)
        options.log_severity_level = 3  # errors only: the reason reaches the user through the exception
        try:
            self.session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
        except Exception as e:  # noqa: BLE001 - ONNX Runtime raises its own types for a bad file
            raise CheckpointError(f"{where}: not an ONNX model ONNX Runtime can load ({joined(e)[:300]})") from None
        meta = self.session.get_modelmeta().custom_metadata_map
        if META_CONFIG not in meta or META_CLASSES not in meta:
            raise CheckpointError(
                f"{where}: an ONNX model without amobilenet_jax's config and class names "
                "(write it with python -m amobilenet_jax.export)"
            )
        try:
            tree, classes = json.loads(meta[META_CONFIG]), json.loads(meta[META_CLASSES])
        except json.JSONDecodeError as e:
            raise CheckpointError(f"{where}: damaged amobilenet_jax metadata ({e})") from None
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if [i.name for i in inputs] != [INPUT] or OUTPUT not in [o.name for o in outputs]:
            raise CheckpointError(f"{where}: expected input {INPUT!r} and output {OUTPUT!r}")
        self.config = from_json(tree, where)
        self.class_names = tuple(classes)
        self.source = meta.get(META_SOURCE, where) if isinstance(model, bytes) else where
        self._image_size = int(inputs[0].shape[1])

    @functools.cached_property
    def _prepare(self):
        """``data.augment.view_batches`` of uint8 faces (the whole image, then its crops), jitted."""
        import jax

        from amobilenet_jax.data.augment import view_batches

        config = self.config
        return jax.jit(lambda images: view_batches(images, config))

    def run(self, images: np.ndarray) -> np.ndarray:
        """Logits of prepared float32 images ``[N, S, S, 3]``: the graph alone, one view."""
        return self.session.run([OUTPUT], {INPUT: np.ascontiguousarray(images, np.float32)})[0]

    def logits(self, faces: np.ndarray, return_attention: bool = False) -> np.ndarray:
        """Logits ``[N, K]`` of uint8 faces ``[N, H, W, C]`` at ``native_shape``, as
        ``inference.Model.logits`` computes them: every test-time view's (``data.augment.vote``)."""
        if return_attention:
            raise ValueError("the ONNX model has no attention maps; load the JAX model for them")
        out = []
        for padded, n in self.padded_batches(faces):
            views = [np.asarray(v, np.float32)[:n] for v in self._prepare(padded)]
            if self.config.eval_flip:  # as evaluation: each view and its mirror image, in vote's order
                views = [y for x in views for y in (x, x[:, :, ::-1, :])]
            every = self.run(np.concatenate(views))
            logits = every[:n]
            for i in range(1, len(views)):
                logits = logits + every[i * n : (i + 1) * n]
            out.append(logits)
        return np.concatenate(out) if out else np.zeros((0, len(self.class_names)), np.float32)


def _check_faces(native_shape: tuple[int, int, int], count: int) -> np.ndarray:
    """Seeded random uint8 faces ``[count, *native_shape]``: the graph is checked against JAX on
    inputs that reach every pixel value, whatever the data set."""
    return np.random.default_rng(0).integers(0, 256, (count, *native_shape), dtype=np.uint8)


def export(workdir: str | None, weights: str | None, out: str, faces: int = 8) -> dict[str, Any]:
    """Exports, checks on ONNX Runtime against JAX, then writes ``out``; returns a summary."""
    from amobilenet_jax import inference

    directory = os.path.dirname(os.path.abspath(out))
    if os.path.isdir(out):
        raise ConfigError(f"{out}: is a directory; --out names the .onnx file to write")
    if not os.path.isdir(directory):
        raise RunNotFoundError(f"{out}: no such directory {directory}")
    model = inference.load_model(workdir=workdir, weights=weights)
    data = to_onnx(model).SerializeToString()
    runtime = OnnxModel(data)
    sample = _check_faces(model.native_shape, faces)
    reference = model
    if model.config.model.get("dtype", "float32") != "float32":  # the graph computes in float32: compare with that
        import jax.numpy as jnp

        reference = dataclasses.replace(model, module=model.module.clone(dtype=jnp.float32))
    diff = float(np.max(np.abs(reference.logits(sample) - runtime.logits(sample))))
    if not diff <= SELF_CHECK_TOLERANCE:
        raise UserError(
            f"{model.source}: ONNX Runtime's logits differ from JAX's by {diff:.2e} (> {SELF_CHECK_TOLERANCE}) "
            f"on {len(sample)} random faces; {out} not written"
        )
    write_atomic(out, data)
    size = model.config.data.image_size
    return {
        "out": out,
        "source": model.source,
        "megabytes": len(data) / 1e6,
        "opset": OPSET,
        "input": f"{INPUT} float32 [N, {size}, {size}, 3]",
        "output": f"{OUTPUT} float32 [N, {len(model.class_names)}]",
        "faces": len(sample),
        "max_abs_logit_diff": diff,
    }


def parse_args(argv: list[str] | None = None):
    parser = argparse.ArgumentParser(
        prog="python -m amobilenet_jax.export",
        description="Writes a trained MobileNetV1 / A-MobileNet as an ONNX file (BatchNorm folded, dynamic batch).",
    )
    which = parser.add_argument_group("model (default: the shipped FERPlus model)")
    which.add_argument("--workdir", help="a run directory (its weights.msgpack, which a finished run writes)")
    which.add_argument("--weights", help="a weights file with its config.json beside it")
    parser.add_argument("--out", required=True, help="the .onnx file to write")
    return parser.parse_args(argv)


def run(args) -> int:
    s = export(args.workdir, args.weights, args.out)
    print(
        f"export: wrote {s['out']} ({s['megabytes']:.2f} MB, ONNX opset {s['opset']}) from {s['source']}: "
        f"input {s['input']} (prepared, NHWC) -> output {s['output']}; "
        f"max |logit difference| JAX vs ONNX Runtime on {s['faces']} random faces: {s['max_abs_logit_diff']:.1e}"
    )
    return 0


def main(argv: list[str] | None = None) -> None:
    from amobilenet_jax.inference import command_main

    command_main("export", parse_args, run, argv)


if __name__ == "__main__":
    main()

"""MobileNetV1 / A-MobileNet: parameter counts of the paper's Table 3, structure, CBAM, depthwise impls."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from amobilenet_jax.config import base_config
from amobilenet_jax.models import MODELS, build_model, model_kwargs
from amobilenet_jax.models.cbam import CBAM
from amobilenet_jax.models.layers import depthwise_conv_shift, depthwise_conv_xla


def _param_count(name: str, **overrides) -> int:
    cfg = base_config().model
    cfg.name = name
    for key, value in overrides.items():
        cfg[key] = value
    model = build_model(cfg, num_classes=8)
    shapes = jax.eval_shape(lambda: model.init({"params": jax.random.PRNGKey(0)}, jnp.zeros((1, 224, 224, 3))))
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(shapes["params"]))


# Trainable parameters (the "params" collection; BN moving statistics excluded), 8 classes.
PAPER_TABLE3 = {"amobilenet": 3.4e6, "mobilenet_v1": 3.2e6, "mobilenet_v2": 2.3e6, "mobilenet_v3_small": 1.5e6}
EXACT = {"amobilenet": 3_422_820, "mobilenet_v1": 3_215_176, "mobilenet_v2": 2_234_120, "mobilenet_v3_small": 1_526_056}


@pytest.mark.parametrize("name", sorted(PAPER_TABLE3))
def test_parameter_counts_match_paper_table3(name):
    count = _param_count(name)
    assert abs(count - PAPER_TABLE3[name]) / PAPER_TABLE3[name] < 0.05
    assert count == EXACT[name]


def test_cbam_adds_its_own_parameters_only():
    # Reduction-16 MLP with biases plus a 7x7 two-channel conv with bias, at 256, 512, 512, 1024 channels.
    def cbam_params(c):
        return c * (c // 16) + c // 16 + (c // 16) * c + c + 7 * 7 * 2 + 1

    expected = sum(cbam_params(c) for c in (256, 512, 512, 1024))
    assert _param_count("amobilenet") - _param_count("amobilenet", cbam=False) == expected
    assert _param_count("amobilenet", cbam_blocks=(13,)) - _param_count("amobilenet", cbam=False) == cbam_params(1024)


def test_registry_defaults_and_overrides():
    cfg = base_config().model
    cfg.name = "mobilenet_v1"
    kw = model_kwargs(cfg, 8)
    assert kw["cbam"] is False and kw["linear_depthwise"] is False
    cfg.name = "amobilenet"
    kw = model_kwargs(cfg, 7)
    assert kw["cbam"] is True and kw["linear_depthwise"] is True and kw["cbam_blocks"] == (4, 6, 11, 13)
    assert kw["num_classes"] == 7 and kw["dropout"] == 0.5
    cfg.linear_depthwise = False
    assert model_kwargs(cfg, 7)["linear_depthwise"] is False
    assert set(MODELS) == {"amobilenet", "mobilenet_v1", "mobilenet_v2", "mobilenet_v3_small"}
    cfg.name = "resnet"
    with pytest.raises(ValueError, match="model.name"):
        model_kwargs(cfg, 7)


def _tiny(name="amobilenet", **overrides):
    cfg = base_config().model
    cfg.name = name
    cfg.width = 0.25
    for key, value in overrides.items():
        cfg[key] = value
    return build_model(cfg, num_classes=8)


@pytest.fixture(scope="module")
def tiny_amobilenet():
    model = _tiny()
    x = jax.random.normal(jax.random.PRNGKey(1), (2, 64, 64, 3))
    variables = jax.jit(lambda k: model.init({"params": k}, x))(jax.random.PRNGKey(0))
    return model, variables, x


def test_amobilenet_outputs_and_attention_shapes(tiny_amobilenet):
    model, variables, x = tiny_amobilenet
    logits, aux = jax.jit(lambda v, x: model.apply(v, x, return_attention=True))(variables, x)
    assert logits.shape == (2, 8) and logits.dtype == jnp.float32
    assert aux["embedding"].shape == (2, 256)  # 1024 * width 0.25
    # 64x64 input: blocks 4, 6, 11, 13 run at 8x8, 4x4, 4x4, 2x2 (paper: 28, 14, 14, 7 at 224).
    assert {k: v.shape for k, v in aux["attention"].items()} == {
        "block4": (2, 8, 8),
        "block6": (2, 4, 4),
        "block11": (2, 4, 4),
        "block13": (2, 2, 2),
    }
    for amap in aux["attention"].values():
        assert float(amap.min()) >= 0.0 and float(amap.max()) <= 1.0


def test_train_mode_uses_dropout_and_updates_batch_stats(tiny_amobilenet):
    model, variables, x = tiny_amobilenet

    @jax.jit
    def train_apply(v, key):
        return model.apply(v, x, train=True, rngs={"dropout": key}, mutable=["batch_stats"])

    (logits_a, _), updates = train_apply(variables, jax.random.PRNGKey(1))
    (logits_b, _), _ = train_apply(variables, jax.random.PRNGKey(2))
    assert not np.allclose(logits_a, logits_b)  # dropout 0.5 before the classifier
    old = jax.tree.leaves(variables["batch_stats"])
    new = jax.tree.leaves(updates["batch_stats"])
    assert all(not np.array_equal(a, b) for a, b in zip(old, new))


def test_linear_depthwise_changes_the_function():
    x = jax.random.normal(jax.random.PRNGKey(1), (1, 32, 32, 3))
    relu_model = _tiny(linear_depthwise=False, cbam=False)
    linear_model = _tiny(linear_depthwise=True, cbam=False)
    variables = jax.jit(lambda k: relu_model.init({"params": k}, x))(jax.random.PRNGKey(0))
    a, _ = jax.jit(lambda v: relu_model.apply(v, x))(variables)
    b, _ = jax.jit(lambda v: linear_model.apply(v, x))(variables)  # same parameter tree
    assert not np.allclose(a, b)


def test_cbam_is_channel_then_spatial():
    x = jax.random.normal(jax.random.PRNGKey(0), (2, 5, 5, 32))
    module = CBAM(reduction=16, kernel_size=7)
    variables = module.init(jax.random.PRNGKey(1), x)
    out, spatial = module.apply(variables, x)
    p = variables["params"]

    def mlp(v):
        h = np.maximum(v @ p["channel"]["mlp_0"]["kernel"] + p["channel"]["mlp_0"]["bias"], 0)
        return h @ p["channel"]["mlp_1"]["kernel"] + p["channel"]["mlp_1"]["bias"]

    xn = np.asarray(x)
    mc = 1 / (1 + np.exp(-(mlp(xn.mean(axis=(1, 2))) + mlp(xn.max(axis=(1, 2))))))
    f1 = xn * mc[:, None, None, :]
    pooled = np.concatenate([f1.mean(-1, keepdims=True), f1.max(-1, keepdims=True)], -1)
    conv = jax.lax.conv_general_dilated(
        pooled, p["spatial"]["conv"]["kernel"], (1, 1), ((3, 3), (3, 3)), dimension_numbers=("NHWC", "HWIO", "NHWC")
    )
    ms = 1 / (1 + np.exp(-(np.asarray(conv) + p["spatial"]["conv"]["bias"])))
    np.testing.assert_allclose(spatial, ms[..., 0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out, f1 * ms, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("size,stride", [(8, 1), (8, 2), (7, 1), (7, 2)])
def test_depthwise_impls_agree_with_gradients(size, stride):
    kx, kk, kg = jax.random.split(jax.random.PRNGKey(size * 10 + stride), 3)
    x = jax.random.normal(kx, (2, size, size, 5))
    kernel = jax.random.normal(kk, (3, 3, 1, 5))
    out_shift = depthwise_conv_shift(x, kernel, stride)
    out_xla = depthwise_conv_xla(x, kernel, stride)
    assert out_shift.shape == out_xla.shape == (2, -(-size // stride), -(-size // stride), 5)
    np.testing.assert_allclose(out_shift, out_xla, rtol=1e-5, atol=1e-5)
    cotangent = jax.random.normal(kg, out_xla.shape)

    def grads(fn):
        return jax.grad(lambda x, k: jnp.sum(fn(x, k, stride) * cotangent), argnums=(0, 1))(x, kernel)

    for a, b in zip(grads(depthwise_conv_shift), grads(depthwise_conv_xla)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


def test_bfloat16_compute_keeps_float32_params():
    cfg = ml_collections.ConfigDict(base_config().model.to_dict())
    cfg.width = 0.25
    cfg.dtype = "bfloat16"
    model = build_model(cfg, 8)
    x = jnp.ones((1, 32, 32, 3))
    variables = jax.jit(lambda k: model.init({"params": k}, x))(jax.random.PRNGKey(0))
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(variables["params"]))
    logits, aux = jax.jit(lambda v: model.apply(v, x))(variables)
    assert logits.dtype == jnp.float32 and aux["embedding"].dtype == jnp.float32
    assert np.all(np.isfinite(logits))

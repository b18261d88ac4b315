"""MobileNetV1 / A-MobileNet: parameter counts of the paper's Table 3, structure, CBAM, depthwise impls."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from amobilenet_jax.config import base_config
from amobilenet_jax.kernels import DEPTHWISE_FNS, conv_dense_dot, depthwise
from amobilenet_jax.kernels.depthwise import depthwise_conv_shift, depthwise_conv_xla
from amobilenet_jax.models import MODELS, build_model, model_kwargs
from amobilenet_jax.models.cbam import CBAM
from amobilenet_jax.models.layers import ACTIVATIONS, ConvBN, DepthwiseConv
from tests.conftest import normal, random_variables


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
    x = normal(1, (2, 64, 64, 3))
    return model, random_variables(model, x), x


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
    x = normal(1, (1, 32, 32, 3))
    relu_model = _tiny(linear_depthwise=False, cbam=False)
    linear_model = _tiny(linear_depthwise=True, cbam=False)
    variables = random_variables(relu_model, x)
    a, _ = jax.jit(lambda v: relu_model.apply(v, x))(variables)
    b, _ = jax.jit(lambda v: linear_model.apply(v, x))(variables)  # same parameter tree
    assert not np.allclose(a, b)


def test_cbam_is_channel_then_spatial():
    x = normal(0, (2, 5, 5, 32))
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


@pytest.mark.parametrize("size,stride", [(8, 1), (8, 2), (7, 1), (7, 2), (3, 2), (2, 1)])
def test_depthwise_impls_agree_with_gradients(size, stride):
    seed = 3 * (size * 10 + stride)
    x = normal(seed, (2, size, size, 5))
    kernel = normal(seed + 1, (3, 3, 1, 5))
    out_xla = depthwise_conv_xla(x, kernel, stride)
    assert out_xla.shape == (2, -(-size // stride), -(-size // stride), 5)
    cotangent = normal(seed + 2, out_xla.shape)

    def grads(fn):
        return jax.grad(lambda x, k: jnp.sum(fn(x, k, stride) * cotangent), argnums=(0, 1))(x, kernel)

    reference = grads(depthwise_conv_xla)
    for impl in ("shift", "shift_ffi", "shift_autodiff"):
        fn = DEPTHWISE_FNS[impl]
        np.testing.assert_allclose(fn(x, kernel, stride), out_xla, rtol=1e-5, atol=1e-5)
        for a, b in zip(grads(fn), reference):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


def test_depthwise_kernel_gradient_chunks_the_batch(monkeypatch):
    """The cache-sized chunking of the kernel gradient sums to the whole-batch value."""
    x = normal(1, (6, 9, 9, 4))
    kernel = normal(2, (3, 3, 1, 4))

    def kernel_grad():
        return jax.grad(lambda k: jnp.sum(depthwise_conv_shift(x, k, 2) ** 2))(kernel)

    whole = kernel_grad()
    # 9*9*4 floats per image; a 700-byte budget forces chunks of 2 images.
    monkeypatch.setattr(depthwise, "_DK_CHUNK_BYTES", 700)
    np.testing.assert_allclose(kernel_grad(), whole, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(
        whole, jax.grad(lambda k: jnp.sum(depthwise_conv_xla(x, k, 2) ** 2))(kernel), rtol=1e-4, atol=1e-4
    )


@pytest.mark.parametrize("kernel_size,stride", [(1, 1), (3, 2), (3, 1)])
def test_dense_conv_matches_xla_conv_with_gradients(kernel_size, stride):
    x = normal(3, (2, 7, 7, 3))
    kernel = normal(4, (kernel_size, kernel_size, 3, 6))
    pad = kernel_size // 2

    def xla(x, k):
        dn = ("NHWC", "HWIO", "NHWC")
        return jax.lax.conv_general_dilated(x, k, (stride, stride), ((pad, pad), (pad, pad)), dimension_numbers=dn)

    np.testing.assert_allclose(conv_dense_dot(x, kernel, stride), xla(x, kernel), rtol=1e-5, atol=1e-5)
    cotangent = normal(5, xla(x, kernel).shape)
    for fn_grads in zip(
        *(
            jax.grad(lambda a, b, f=f: jnp.sum(f(a, b) * cotangent), (0, 1))(x, kernel)
            for f in (lambda a, b: conv_dense_dot(a, b, stride), xla)
        )
    ):
        np.testing.assert_allclose(*fn_grads, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("activation", ["relu6", "linear", "hard_swish"])
def test_fused_batch_norm_matches_flax_with_gradients(activation):
    """ConvBN's BatchNormAct: same outputs, statistics and gradients as nn.BatchNorm + act."""
    x = 3 * normal(6, (4, 5, 5, 8)) + 1
    cotangent = normal(7, x.shape)
    fused = ConvBN(None, 3, activation=activation)
    variables = fused.init(jax.random.PRNGKey(0), x, train=True)
    params = jax.tree.map(lambda p: p + 0.3 * normal(8, p.shape), variables["params"])
    variables = {**variables, "params": params}
    act = ACTIVATIONS[activation] or (lambda v: v)
    bn = nn.BatchNorm(use_running_average=False, momentum=0.99, epsilon=1e-3)

    def reference(p, x):
        z, state = bn.apply(
            {"params": p["bn"], "batch_stats": variables["batch_stats"]["bn"]},
            DepthwiseConv(name="dw").apply({"params": p["dw"]}, x),
            mutable=["batch_stats"],
        )
        return jnp.sum(act(z) * cotangent), state["batch_stats"]

    def ours(p, x):
        y, state = fused.apply({**variables, "params": p}, x, train=True, mutable=["batch_stats"])
        return jnp.sum(y * cotangent), state["batch_stats"]["bn"]

    (v1, s1), g1 = jax.value_and_grad(ours, (0, 1), has_aux=True)(params, x)
    (v2, s2), g2 = jax.value_and_grad(reference, (0, 1), has_aux=True)(params, x)
    np.testing.assert_allclose(v1, v2, rtol=1e-5, atol=1e-4)
    for a, b in zip(jax.tree.leaves((s1, g1)), jax.tree.leaves((s2, g2))):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
    eval_out = fused.apply({**variables, "batch_stats": {"bn": s1}}, x, train=False)
    eval_ref = act(
        bn.clone(use_running_average=True).apply(
            {"params": params["bn"], "batch_stats": s1}, DepthwiseConv(name="dw").apply({"params": params["dw"]}, x)
        )
    )
    np.testing.assert_allclose(eval_out, eval_ref, rtol=1e-5, atol=1e-5)


def test_bfloat16_compute_keeps_float32_params():
    cfg = ml_collections.ConfigDict(base_config().model.to_dict())
    cfg.width = 0.25
    cfg.dtype = "bfloat16"
    model = build_model(cfg, 8)
    x = jnp.ones((1, 32, 32, 3))
    variables = random_variables(model, x)  # in the dtypes init gives (jax.eval_shape)
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(variables["params"]))
    logits, aux = jax.jit(lambda v: model.apply(v, x))(variables)
    assert logits.dtype == jnp.float32 and aux["embedding"].dtype == jnp.float32
    assert np.all(np.isfinite(logits))


def test_stem_stride_one_keeps_twice_the_resolution_with_the_same_parameters():
    """model.stem_stride=1 (for 48x48 inputs) halves no resolution at the stem; the paper's 2 is the default."""
    from amobilenet_jax.config import validate
    from amobilenet_jax.errors import ConfigError

    c = base_config()
    c.model.width = 0.25
    x = jnp.zeros((1, 48, 48, 3))
    shapes = {}
    for stride in (None, 1):
        c.model.stem_stride = stride
        model = build_model(c.model, 8)
        variables = jax.eval_shape(lambda m=model: m.init({"params": jax.random.PRNGKey(0)}, x))
        _, aux = jax.eval_shape(lambda v, m=model: m.apply(v, x, return_attention=True), variables)
        shapes[stride] = (jax.tree.map(lambda a: a.shape, variables["params"]), aux["attention"]["block13"].shape)
    assert shapes[None][0] == shapes[1][0]  # the same parameters
    assert shapes[None][1] == (1, 2, 2) and shapes[1][1] == (1, 3, 3)  # 48/32 -> 2 (padded), 48/16 -> 3
    c.model.name = "mobilenet_v2"
    with pytest.raises(ConfigError, match="model.stem_stride applies to mobilenet_v1 and amobilenet only"):
        validate(c)


def test_blocks_set_the_body_from_the_config_and_bad_ones_are_config_errors():
    """model.blocks replaces the paper's 13 (channels, stride) blocks: a 3-block body has those
    blocks' parameters only and its CBAM where cbam_blocks says; None is the paper's body."""
    from amobilenet_jax.config import validate
    from amobilenet_jax.errors import ConfigError

    c = base_config()
    c.model.width = 0.25
    x = jnp.zeros((1, 32, 32, 3))

    def shapes(model_config):
        model = build_model(model_config, 8)
        variables = jax.eval_shape(lambda: model.init({"params": jax.random.PRNGKey(0)}, x))
        _, aux = jax.eval_shape(lambda v: model.apply(v, x, return_attention=True), variables)
        return variables["params"], aux

    params, aux = shapes(c.model)
    assert len([k for k in params if k.endswith("_dw")]) == 13 and set(aux["attention"]) == {
        "block4",
        "block6",
        "block11",
        "block13",
    }
    c.model.blocks = ((16, 1), (64, 2), (32, 2))
    c.model.cbam_blocks = (1, 3)
    validate(c)
    params, aux = shapes(c.model)
    assert sorted(k for k in params if k.startswith("block")) == [
        "block1_cbam",
        "block1_dw",
        "block1_pw",
        "block2_dw",
        "block2_pw",
        "block3_cbam",
        "block3_dw",
        "block3_pw",
    ]
    assert params["block2_pw"]["conv"]["kernel"].shape == (1, 1, 8, 16)  # 16 and 64 channels at width 0.25
    assert {k: v.shape for k, v in aux["attention"].items()} == {"block1": (1, 16, 16), "block3": (1, 4, 4)}
    assert aux["embedding"].shape == (1, 8)
    # JSON gives lists (a run's config.json): the same body
    c.model.blocks = [[16, 1], [64, 2], [32, 2]]
    assert model_kwargs(c.model, 8)["blocks"] == ((16, 1), (64, 2), (32, 2))

    c.model.cbam_blocks = (4,)
    with pytest.raises(ConfigError, match=r"model.cbam_blocks=\[4\] must be within model.blocks' 1..3"):
        validate(c)
    c.model.cbam_blocks = None
    for bad in ([[16, 3]], [[16]], [], [[0, 1]]):
        c.model.blocks = bad
        with pytest.raises(ConfigError, match="model.blocks must be \\(channels, stride\\) pairs"):
            validate(c)
    c.model.blocks = ((16, 1),)
    c.model.init_from = "imagenet.npz"
    with pytest.raises(ConfigError, match="model.init_from fills the ImageNet MobileNet v1 body, 13 blocks"):
        validate(c)
    c.model.init_from = ""
    c.model.name = "mobilenet_v2"
    with pytest.raises(ConfigError, match="model.blocks applies to mobilenet_v1 and amobilenet only"):
        validate(c)

"""Tests for the MobileNetV2 and MobileNetV3-Small baselines.

On CPU the cost of these tests is XLA compilation, not arithmetic, so the file keeps
the number of compiled programs small: parameters are drawn with numpy into the
shapes ``jax.eval_shape(model.init)`` reports (a jitted Flax init alone compiles for
~15 s per model), each model is compiled once per mode, and forward passes use thin
models (width 0.35 / 0.25) on 32x32 inputs. Full-width parameter counts also come
from ``jax.eval_shape`` and cost no compute.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from amobilenet_jax.models.mobilenet_v2 import InvertedResidual, MobileNetV2
from amobilenet_jax.models.mobilenet_v3 import Bneck, MobileNetV3Small
from tests.conftest import normal, random_variables

NUM_CLASSES = 8
BATCH = 2
SIZE = 32

# Trainable ("params") counts at width 1.0 with 8 classes. They equal the Keras models
# (include_top=False plus an 8-way Dense) minus BatchNorm's moving mean/variance:
# V2 2,268,232 total - 34,112 BN statistics; V3-Small 1,538,168 total - 12,112.
EXACT_PARAMS = {MobileNetV2: 2_234_120, MobileNetV3Small: 1_526_056}
# The A-MobileNet paper's Table 3.
PAPER_PARAMS = {MobileNetV2: 2_300_000, MobileNetV3Small: 1_500_000}
EMBED_DIM = {MobileNetV2: 1280, MobileNetV3Small: 1024}
# Thin widths for forward checks; the last layers keep full width below 1.0 in both designs.
FORWARD_WIDTH = {MobileNetV2: 0.35, MobileNetV3Small: 0.25}

MODELS = [MobileNetV2, MobileNetV3Small]


def _count(tree: Any) -> int:
    return int(sum(np.prod(leaf.shape) for leaf in jax.tree.leaves(tree)))


def _images(seed: int = 0) -> jnp.ndarray:
    return normal(seed, (BATCH, SIZE, SIZE, 3), jnp.float32)


def _build(cls: type[nn.Module], **kwargs: Any) -> nn.Module:
    return cls(num_classes=NUM_CLASSES, width=FORWARD_WIDTH[cls], **kwargs)


def _shapes(module: nn.Module, x: jnp.ndarray) -> dict[str, Any]:
    return jax.eval_shape(lambda: module.init({"params": jax.random.key(0)}, x, train=False))


def _eval_fn(model: nn.Module) -> Any:
    return jax.jit(lambda v, x: model.apply(v, x, train=False, return_attention=True))


@pytest.fixture(scope="module", params=MODELS, ids=lambda c: c.__name__)
def run(request: pytest.FixtureRequest) -> dict[str, Any]:
    """Runs one thin model (XLA depthwise) once in eval and once in train mode."""
    cls = request.param
    model = _build(cls, depthwise_impl="xla")
    x = _images(1)
    variables = random_variables(model, x, train=False)
    train_fn = jax.jit(
        lambda v, x: model.apply(v, x, train=True, mutable=["batch_stats"], rngs={"dropout": jax.random.key(2)})
    )
    return {
        "cls": cls,
        "x": x,
        "variables": variables,
        "eval": _eval_fn(model)(variables, x),
        "train": train_fn(variables, x),
    }


@pytest.mark.parametrize("cls", MODELS, ids=lambda c: c.__name__)
def test_param_counts_match_paper_table(cls: type[nn.Module]) -> None:
    shapes = _shapes(cls(num_classes=NUM_CLASSES, width=1.0), _images())
    n_params = _count(shapes["params"])
    print(f"{cls.__name__}: {n_params:,} trainable, {_count(shapes['batch_stats']):,} BN statistics")
    assert n_params == EXACT_PARAMS[cls]
    assert abs(n_params - PAPER_PARAMS[cls]) / PAPER_PARAMS[cls] < 0.05


@pytest.mark.parametrize("cls", MODELS, ids=lambda c: c.__name__)
def test_config_only_fields_are_accepted(cls: type[nn.Module]) -> None:
    # The shared config may carry A-MobileNet fields; with cbam off they must not change the model.
    model = cls(num_classes=NUM_CLASSES, cbam_blocks=(1, 3), cbam_reduction=8, cbam_kernel=3, linear_depthwise=False)
    assert _count(_shapes(model, _images())["params"]) == EXACT_PARAMS[cls]


def test_output_shapes_and_dtypes(run: dict[str, Any]) -> None:
    embed_dim = EMBED_DIM[run["cls"]]
    logits, aux = run["eval"]
    assert logits.shape == (BATCH, NUM_CLASSES) and logits.dtype == jnp.float32
    assert aux["embedding"].shape == (BATCH, embed_dim) and aux["embedding"].dtype == jnp.float32
    assert aux["attention"] == {}
    assert np.isfinite(np.asarray(logits)).all()

    (train_logits, train_aux), _ = run["train"]
    assert train_logits.shape == (BATCH, NUM_CLASSES) and train_logits.dtype == jnp.float32
    assert train_aux["embedding"].shape == (BATCH, embed_dim) and train_aux["embedding"].dtype == jnp.float32
    assert "attention" not in train_aux
    assert np.isfinite(np.asarray(train_logits)).all()


def test_train_mode_updates_batch_stats(run: dict[str, Any]) -> None:
    initial = run["variables"]["batch_stats"]
    _, updated = run["train"]
    updated = updated["batch_stats"]
    assert jax.tree.structure(initial) == jax.tree.structure(updated)
    changed = jax.tree.leaves(jax.tree.map(lambda a, b: bool(np.any(np.asarray(a) != np.asarray(b))), initial, updated))
    assert all(changed), "every BatchNorm mean/var should move after one training step"
    # Eval mode normalises with running statistics, train mode with batch statistics: logits must differ.
    assert not np.allclose(np.asarray(run["eval"][0]), np.asarray(run["train"][0][0]))


def test_depthwise_impls_agree(run: dict[str, Any]) -> None:
    # Both implementations share the (k, k, 1, C) kernel layout, so the XLA model's variables load as is.
    shift_model = _build(run["cls"], depthwise_impl="shift")
    shift_logits, shift_aux = _eval_fn(shift_model)(run["variables"], run["x"])
    np.testing.assert_allclose(np.asarray(run["eval"][0]), np.asarray(shift_logits), atol=1e-4)
    np.testing.assert_allclose(np.asarray(run["eval"][1]["embedding"]), np.asarray(shift_aux["embedding"]), atol=1e-4)


def test_bfloat16_compute_keeps_float32_params(run: dict[str, Any]) -> None:
    model = _build(run["cls"], dtype=jnp.bfloat16, depthwise_impl="xla")
    shapes = _shapes(model, run["x"])
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(shapes["params"]))
    assert jax.tree.structure(shapes) == jax.tree.structure(run["variables"])
    logits, aux = _eval_fn(model)(run["variables"], run["x"])
    assert logits.dtype == jnp.float32 and aux["embedding"].dtype == jnp.float32
    assert logits.shape == (BATCH, NUM_CLASSES)
    assert np.isfinite(np.asarray(logits)).all()
    # bf16 keeps ~3 significant digits (observed max error ~1e-3 on logits of magnitude ~0.3); the float32
    # run is a loose reference that catches gross errors such as a layer computing in the wrong dtype.
    np.testing.assert_allclose(np.asarray(logits), np.asarray(run["eval"][0]), atol=2e-2)


def _zero_projection_bn(variables: dict[str, Any]) -> dict[str, Any]:
    params = dict(variables["params"])
    bn = params["project"]["bn"]
    params["project"] = {
        **params["project"],
        "bn": {"scale": jnp.zeros_like(bn["scale"]), "bias": jnp.zeros_like(bn["bias"])},
    }
    return {**variables, "params": params}


@pytest.mark.parametrize(
    "block",
    [
        InvertedResidual(features=16, expansion=6, stride=1),
        Bneck(expanded=48, features=16, kernel_size=5, stride=1, use_se=True, activation="hard_swish"),
    ],
    ids=["v2_block", "v3_block"],
)
def test_residual_shortcut(block: nn.Module) -> None:
    x = normal(3, (BATCH, 8, 8, 16))
    for stride in (1, 2):
        module = block.clone(stride=stride, depthwise_impl="xla")
        variables = random_variables(module, x, train=False)
        out = jax.jit(lambda v, x, m=module: m.apply(v, x, train=False))(_zero_projection_bn(variables), x)
        if stride == 1:
            # With the projection's BN output forced to zero only the shortcut is left: the block is the identity.
            np.testing.assert_array_equal(np.asarray(out), np.asarray(x))
        else:
            # Stride 2 changes resolution, so there is no shortcut and nothing is left.
            assert out.shape == (BATCH, 4, 4, 16)
            np.testing.assert_array_equal(np.asarray(out), 0.0)


@pytest.mark.parametrize("cls", MODELS, ids=lambda c: c.__name__)
def test_cbam_is_rejected(cls: type[nn.Module]) -> None:
    with pytest.raises(ValueError, match="CBAM"):
        cls(cbam=True)

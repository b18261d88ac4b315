"""MobileNetV3-Small baseline (Howard et al., 2019), laid out like Keras ``applications.MobileNetV3Small``.

Follows the Keras model with ``minimalistic=False`` (the A-MobileNet paper's Table 3
gives 1.5M parameters for it): the stem is 16 channels at every width, a block's
expanded width is ``make_divisible(in_channels * ratio)`` with the ratio taken from
the paper's table (so it scales with the block's actual input), SE reduces to
``make_divisible(expanded / 4)`` with biased 1x1 convs, and the head is a 576-wide
1x1 conv followed, after pooling, by a biased 1024-wide layer. Padding is the
project's symmetric ``k // 2`` (Keras pads stride-2 layers asymmetrically) and
BatchNorm uses ``ConvBN``'s defaults; neither changes parameter counts.

This baseline has its own fixed design: it carries no CBAM and ignores
``linear_depthwise``; those fields exist only so one config can build any model.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from amobilenet_jax.models.layers import ConvBN, hard_sigmoid, hard_swish, make_divisible

# (kernel, expanded channels, output channels, squeeze-excite, activation, stride) at width 1.0,
# from the paper's Table 2 / the Keras stack.
V3_SMALL_BLOCKS: tuple[tuple[int, int, int, bool, str, int], ...] = (
    (3, 16, 16, True, "relu", 2),
    (3, 72, 24, False, "relu", 2),
    (3, 88, 24, False, "relu", 1),
    (5, 96, 40, True, "hard_swish", 2),
    (5, 240, 40, True, "hard_swish", 1),
    (5, 240, 40, True, "hard_swish", 1),
    (5, 120, 48, True, "hard_swish", 1),
    (5, 144, 48, True, "hard_swish", 1),
    (5, 288, 96, True, "hard_swish", 2),
    (5, 576, 96, True, "hard_swish", 1),
    (5, 576, 96, True, "hard_swish", 1),
)
STEM_CHANNELS = 16
LAST_POINT_CHANNELS = 1024


class SqueezeExcite(nn.Module):
    """MobileNetV3 SE: global pool -> 1x1 reduce (ReLU) -> 1x1 expand (hard sigmoid) -> channel gate."""

    reduced: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        # Pool in float32 so the bf16 path does not lose precision summing over H*W positions.
        s = jnp.mean(x.astype(jnp.float32), axis=(1, 2), keepdims=True).astype(self.dtype)
        # Dense on the [B, 1, 1, C] pooled map is Keras's biased 1x1 Conv2D with the same parameter count.
        s = nn.relu(nn.Dense(self.reduced, dtype=self.dtype, param_dtype=jnp.float32, name="reduce")(s))
        s = nn.Dense(x.shape[-1], dtype=self.dtype, param_dtype=jnp.float32, name="expand")(s)
        return x * hard_sigmoid(s)


class Bneck(nn.Module):
    """MobileNetV3 bottleneck: [1x1 expand] -> kxk depthwise -> [SE] -> 1x1 linear projection (+ shortcut)."""

    expanded: int
    features: int
    kernel_size: int = 3
    stride: int = 1
    use_se: bool = False
    activation: str = "relu"
    depthwise_impl: str = "auto"
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jnp.ndarray, train: bool) -> jnp.ndarray:
        in_channels = x.shape[-1]
        shortcut = x
        if self.expanded != in_channels:
            x = ConvBN(self.expanded, 1, activation=self.activation, dtype=self.dtype, name="expand")(x, train)
        x = ConvBN(
            None,
            self.kernel_size,
            self.stride,
            activation=self.activation,
            depthwise_impl=self.depthwise_impl,
            dtype=self.dtype,
            name="depthwise",
        )(x, train)
        if self.use_se:
            x = SqueezeExcite(make_divisible(self.expanded / 4), dtype=self.dtype, name="se")(x)
        x = ConvBN(self.features, 1, activation="linear", dtype=self.dtype, name="project")(x, train)
        if self.stride == 1 and in_channels == self.features:
            x = x + shortcut
        return x


class MobileNetV3Small(nn.Module):
    """MobileNetV3-Small classifier with the A-MobileNet model interface.

    ``__call__`` returns ``(logits, aux)``: float32 logits ``[B, num_classes]`` and
    ``aux["embedding"]``, the ``[B, 1024]`` hard-swish feature after pooling and the
    last 1x1 layer (``make_divisible(1024 * width)`` wide when ``width > 1``), which
    feeds dropout and the classifier. With ``return_attention`` ``aux["attention"]``
    is an empty dict, since this model has no CBAM.

    ``cbam*`` and ``linear_depthwise`` are accepted so one config can build every
    model, but V3 has a fixed design: ``cbam=True`` raises ``ValueError`` and
    ``linear_depthwise`` is ignored (depthwise convs use each block's own activation).
    """

    num_classes: int = 8
    width: float = 1.0
    dropout: float = 0.2
    depthwise_impl: str = "auto"
    dtype: Any = jnp.float32
    cbam: bool = False
    cbam_blocks: tuple = ()
    cbam_reduction: int = 16
    cbam_kernel: int = 7
    linear_depthwise: bool = True

    def __post_init__(self) -> None:
        # Fail when the model is built from a config, not later at the first forward pass.
        if self.cbam:
            raise ValueError("MobileNetV3Small is a baseline without CBAM; set model.cbam=False")
        super().__post_init__()

    @nn.compact
    def __call__(
        self, x: jnp.ndarray, train: bool = False, return_attention: bool = False
    ) -> tuple[jnp.ndarray, dict[str, Any]]:
        x = x.astype(self.dtype)
        # Keras keeps the stem at 16 channels for every alpha.
        x = ConvBN(STEM_CHANNELS, 3, 2, activation="hard_swish", dtype=self.dtype, name="stem")(x, train)

        base_in = STEM_CHANNELS
        for i, (kernel, expanded, out, use_se, act, stride) in enumerate(V3_SMALL_BLOCKS):
            # Keras stores expansion as a ratio of the unscaled input width and applies it to the
            # actual input, so at width != 1 the expanded width follows the (rounded) input width.
            expanded_ch = make_divisible(x.shape[-1] * expanded / base_in)
            x = Bneck(
                expanded_ch,
                make_divisible(out * self.width),
                kernel,
                stride,
                use_se,
                act,
                depthwise_impl=self.depthwise_impl,
                dtype=self.dtype,
                name=f"block_{i}",
            )(x, train)
            base_in = out

        x = ConvBN(make_divisible(x.shape[-1] * 6), 1, activation="hard_swish", dtype=self.dtype, name="head")(x, train)
        # Pool in float32 so the bf16 path does not lose precision summing over H*W positions.
        x = jnp.mean(x.astype(jnp.float32), axis=(1, 2)).astype(self.dtype)
        last_point = make_divisible(LAST_POINT_CHANNELS * self.width) if self.width > 1.0 else LAST_POINT_CHANNELS
        x = nn.Dense(last_point, dtype=self.dtype, param_dtype=jnp.float32, name="last_point")(x)
        x = hard_swish(x)

        embedding = x.astype(jnp.float32)
        x = nn.Dropout(self.dropout)(x, deterministic=not train)
        logits = nn.Dense(self.num_classes, dtype=self.dtype, param_dtype=jnp.float32, name="classifier")(x)

        aux: dict[str, Any] = {"embedding": embedding}
        if return_attention:
            aux["attention"] = {}
        return logits.astype(jnp.float32), aux

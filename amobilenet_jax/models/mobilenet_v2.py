"""MobileNetV2 baseline (Sandler et al., 2018), laid out like Keras ``applications.MobileNetV2``.

The A-MobileNet paper compares against the Keras models (its Table 3 gives 2.3M
parameters for MobileNetV2), so channel rounding, the fixed 1280-wide last layer
and the skipped expansion in the first block follow the Keras code. Two
deliberate differences from Keras, neither of which changes parameter counts:
padding is the symmetric ``k // 2`` used throughout this project (Keras pads
stride-2 layers asymmetrically), and BatchNorm uses ``ConvBN``'s defaults so
every model of the family trains with the same BN settings.

This baseline has its own fixed design: it carries no CBAM and ignores
``linear_depthwise``; those fields exist only so one config can build any model.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from amobilenet_jax.models.layers import ConvBN, make_divisible

# (expansion t, output channels c, repeats n, first stride s), from the paper's Table 2.
V2_BLOCKS: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1x1 expand (ReLU6) -> 3x3 depthwise (ReLU6) -> 1x1 linear projection.

    The expansion width is ``expansion * in_channels`` without rounding, as in Keras.
    The shortcut is added when the block keeps both resolution and channel count.
    """

    features: int
    expansion: int
    stride: int = 1
    depthwise_impl: str = "auto"
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jnp.ndarray, train: bool) -> jnp.ndarray:
        in_channels = x.shape[-1]
        shortcut = x
        if self.expansion != 1:
            # Keras skips the expansion conv in the t=1 block rather than running a 1x1 identity-width conv.
            x = ConvBN(in_channels * self.expansion, 1, activation="relu6", dtype=self.dtype, name="expand")(x, train)
        x = ConvBN(
            None,
            3,
            self.stride,
            activation="relu6",
            depthwise_impl=self.depthwise_impl,
            dtype=self.dtype,
            name="depthwise",
        )(x, train)
        # Linear bottleneck: a ReLU here would destroy information in the narrow projection (paper Sec. 3.2).
        x = ConvBN(self.features, 1, activation="linear", dtype=self.dtype, name="project")(x, train)
        if self.stride == 1 and in_channels == self.features:
            x = x + shortcut
        return x


class MobileNetV2(nn.Module):
    """MobileNetV2 classifier with the A-MobileNet model interface.

    ``__call__`` returns ``(logits, aux)``: float32 logits ``[B, num_classes]`` and
    ``aux["embedding"]``, the pooled ``[B, 1280]`` feature (``[B, make_divisible(1280 * width)]``
    when ``width > 1``) seen by dropout and the classifier. With ``return_attention``
    ``aux["attention"]`` is an empty dict, since this model has no CBAM.

    ``cbam*`` and ``linear_depthwise`` are accepted so one config can build every
    model, but V2 has a fixed design: ``cbam=True`` raises ``ValueError`` and
    ``linear_depthwise`` is ignored (the depthwise conv is always followed by ReLU6,
    the projection is always linear).
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
            raise ValueError("MobileNetV2 is a baseline without CBAM; set model.cbam=False")
        super().__post_init__()

    @nn.compact
    def __call__(
        self, x: jnp.ndarray, train: bool = False, return_attention: bool = False
    ) -> tuple[jnp.ndarray, dict[str, Any]]:
        x = x.astype(self.dtype)
        x = ConvBN(make_divisible(32 * self.width), 3, 2, activation="relu6", dtype=self.dtype, name="stem")(x, train)

        block_id = 0
        for expansion, channels, repeats, first_stride in V2_BLOCKS:
            # Keras truncates c * alpha to int before rounding; int() keeps counts identical at every width.
            features = make_divisible(int(channels * self.width))
            for i in range(repeats):
                x = InvertedResidual(
                    features,
                    expansion,
                    first_stride if i == 0 else 1,
                    depthwise_impl=self.depthwise_impl,
                    dtype=self.dtype,
                    name=f"block_{block_id}",
                )(x, train)
                block_id += 1

        # The last layer is not thinned below width 1: the paper keeps 1280 to preserve accuracy of small models.
        last_channels = make_divisible(1280 * self.width) if self.width > 1.0 else 1280
        x = ConvBN(last_channels, 1, activation="relu6", dtype=self.dtype, name="head")(x, train)

        # Pool in float32 so the bf16 path does not lose precision summing over H*W positions.
        embedding = jnp.mean(x.astype(jnp.float32), axis=(1, 2))
        x = nn.Dropout(self.dropout)(embedding.astype(self.dtype), deterministic=not train)
        logits = nn.Dense(self.num_classes, dtype=self.dtype, param_dtype=jnp.float32, name="classifier")(x)

        aux: dict[str, Any] = {"embedding": embedding}
        if return_attention:
            aux["attention"] = {}
        return logits.astype(jnp.float32), aux

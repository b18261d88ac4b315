"""MobileNetV1 (Howard et al. 2017) and A-MobileNet (paper Table 1, Fig. 6).

One module covers both: A-MobileNet is MobileNetV1 with a linear (BN only)
depthwise output and CBAM after the pointwise conv of blocks 4, 6, 11 and 13.
Each of those choices is a field, so an ablation flips a config value; so is the body
itself (``blocks``: a shallower net for small inputs, or a test-size one that compiles fast).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from amobilenet_jax.models.cbam import CBAM
from amobilenet_jax.models.layers import ConvBN

Dtype = Any

# (pointwise output channels, depthwise stride) of the 13 depthwise-separable blocks.
BLOCKS: tuple[tuple[int, int], ...] = (
    (64, 1),
    (128, 2),
    (128, 1),
    (256, 2),
    (256, 1),
    (512, 2),
    (512, 1),
    (512, 1),
    (512, 1),
    (512, 1),
    (512, 1),
    (1024, 2),
    (1024, 1),
)
PAPER_CBAM_BLOCKS = (4, 6, 11, 13)  # 1-based, as in Table 1


class MobileNetV1(nn.Module):
    """MobileNetV1 body with optional CBAM and linear depthwise output.

    Returns ``(logits_BxK, aux)``; ``aux["embedding"]`` is the pooled feature that
    center loss uses, ``aux["attention"]`` the CBAM spatial maps when asked for.
    """

    num_classes: int = 8
    width: float = 1.0
    dropout: float = 0.5
    cbam: bool = False
    cbam_blocks: tuple[int, ...] = PAPER_CBAM_BLOCKS
    cbam_reduction: int = 16
    cbam_kernel: int = 7
    linear_depthwise: bool = False
    depthwise_impl: str = "auto"
    stem_stride: int = 2  # the paper's; 1 keeps twice the resolution for small (48x48) inputs
    blocks: tuple[tuple[int, int], ...] = BLOCKS  # (pointwise channels, depthwise stride) per block
    dtype: Dtype = jnp.float32

    def _channels(self, c: int) -> int:
        return max(int(c * self.width), 8)

    @nn.compact
    def __call__(self, x, train: bool = False, return_attention: bool = False):
        unknown = set(self.cbam_blocks) - set(range(1, len(self.blocks) + 1))
        if self.cbam and unknown:
            raise ValueError(f"model.cbam_blocks must be within 1..{len(self.blocks)}, got {sorted(unknown)}")
        x = x.astype(self.dtype)
        x = ConvBN(self._channels(32), 3, self.stem_stride, "relu6", dtype=self.dtype, name="stem")(x, train)
        attention = {}
        dw_act = "linear" if self.linear_depthwise else "relu6"
        for i, (out, stride) in enumerate(self.blocks, start=1):
            x = ConvBN(None, 3, stride, dw_act, self.depthwise_impl, dtype=self.dtype, name=f"block{i}_dw")(x, train)
            x = ConvBN(self._channels(out), 1, 1, "relu6", dtype=self.dtype, name=f"block{i}_pw")(x, train)
            if self.cbam and i in self.cbam_blocks:
                x, spatial = CBAM(self.cbam_reduction, self.cbam_kernel, self.dtype, name=f"block{i}_cbam")(x)
                attention[f"block{i}"] = spatial.astype(jnp.float32)
        embedding = jnp.mean(x, axis=(1, 2))
        x = nn.Dropout(self.dropout)(embedding, deterministic=not train)
        logits = nn.Dense(self.num_classes, dtype=self.dtype, param_dtype=jnp.float32, name="classifier")(x)
        aux = {"embedding": embedding.astype(jnp.float32)}
        if return_attention:
            aux["attention"] = attention
        return logits.astype(jnp.float32), aux

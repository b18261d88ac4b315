"""CBAM: channel attention then spatial attention (Woo et al. 2018; paper Eqs. 1-3)."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

Dtype = Any


class ChannelAttention(nn.Module):
    """M_c(F) = sigmoid(MLP(AvgPool(F)) + MLP(MaxPool(F))), one MLP shared by both pools (Eq. 2)."""

    reduction: int = 16
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        channels = x.shape[-1]
        hidden = max(channels // self.reduction, 1)
        squeeze = nn.Dense(hidden, dtype=self.dtype, param_dtype=jnp.float32, name="mlp_0")
        expand = nn.Dense(channels, dtype=self.dtype, param_dtype=jnp.float32, name="mlp_1")
        # Both pooled vectors go through the MLP in one batched call.
        pooled = jnp.stack([jnp.mean(x, axis=(1, 2)), jnp.max(x, axis=(1, 2))], axis=0)
        summed = expand(nn.relu(squeeze(pooled))).sum(axis=0)
        return nn.sigmoid(summed)[:, None, None, :]


class SpatialAttention(nn.Module):
    """M_s(F) = sigmoid(conv_kxk([AvgPool_c(F); MaxPool_c(F)])) (Eq. 3)."""

    kernel_size: int = 7
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        pooled = jnp.concatenate([jnp.mean(x, axis=-1, keepdims=True), jnp.max(x, axis=-1, keepdims=True)], axis=-1)
        pad = self.kernel_size // 2
        logits = nn.Conv(
            1,
            (self.kernel_size, self.kernel_size),
            padding=((pad, pad), (pad, pad)),
            dtype=self.dtype,
            param_dtype=jnp.float32,
            name="conv",
        )(pooled)
        return nn.sigmoid(logits)


class CBAM(nn.Module):
    """F' = M_c(F) * F; F'' = M_s(F') * F' (Eq. 1). Returns (F'', spatial map [B, H, W])."""

    reduction: int = 16
    kernel_size: int = 7
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        x = x * ChannelAttention(self.reduction, self.dtype, name="channel")(x)
        spatial = SpatialAttention(self.kernel_size, self.dtype, name="spatial")(x)
        return x * spatial, spatial[..., 0]

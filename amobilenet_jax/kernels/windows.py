"""The k x k windows of a SAME-padded convolution as shifted views: shared by the depthwise
kernels (nine shifted multiply-adds) and the dense convolution's im2col."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def out_size(size: int, k: int, stride: int) -> int:
    return (size + 2 * (k // 2) - k) // stride + 1


def taps(xp, k: int, stride: int, out_h: int, out_w: int):
    """Yields ((i, j), view): the strided window of padded ``xp`` that kernel tap (i, j) reads."""
    for i in range(k):
        for j in range(k):
            yield (
                (i, j),
                jax.lax.slice(
                    xp,
                    (0, i, j, 0),
                    (xp.shape[0], i + stride * (out_h - 1) + 1, j + stride * (out_w - 1) + 1, xp.shape[3]),
                    (1, stride, stride, 1),
                ),
            )


def shift_sum(xp, kernel, stride: int, out_h: int, out_w: int):
    out = None
    for (i, j), view in taps(xp, kernel.shape[0], stride, out_h, out_w):
        term = view * kernel[i, j, 0]
        out = term if out is None else out + term
    return out


def pad_same(x, k: int):
    # Symmetric padding k//2 on each side, as PyTorch and the paper's Keras model do
    # for odd kernels; output size is ceil(H / stride).
    p = k // 2
    return jnp.pad(x, ((0, 0), (p, p), (p, p), (0, 0)))

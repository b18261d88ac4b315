"""Dense convolutions as matmuls: a 1x1 conv directly, a k x k conv (the 3-channel stem) through
im2col, with a backward pass of two plain matmuls."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from amobilenet_jax.kernels.windows import out_size, pad_same, taps


@jax.custom_vjp
def _matmul(x, w):
    """x (M, K) @ w (K, N) whose backward pass is two plain matmuls.

    JAX's own transpose rule ends the weight gradient with a transpose, and XLA:CPU
    then lays the whole cotangent out transposed and runs a slow matmul on it.
    """
    return jax.lax.dot_general(x, w, (((1,), (0,)), ((), ())))


def _matmul_fwd(x, w):
    return _matmul(x, w), (x, w)


def _matmul_bwd(residuals, g):
    x, w = residuals
    dx = jax.lax.dot_general(g, w, (((1,), (1,)), ((), ())))
    dw = jax.lax.dot_general(x, g, (((0,), (0,)), ((), ())))
    return dx.astype(x.dtype), dw.astype(w.dtype)


_matmul.defvjp(_matmul_fwd, _matmul_bwd)


def conv_dense_dot(x, kernel, stride: int):
    """Dense k x k conv (SAME, symmetric padding) as one matmul. x: NHWC, kernel: HWIO.

    A 1x1 conv is the matmul itself; a larger kernel first gathers its k*k taps along
    the channel axis (im2col), which pays off for the 3-channel stem.
    """
    k, _, cin, cout = kernel.shape
    if k == 1 and stride == 1:
        cols = x
    else:
        out_h, out_w = out_size(x.shape[1], k, stride), out_size(x.shape[2], k, stride)
        cols = jnp.concatenate([view for _, view in taps(pad_same(x, k), k, stride, out_h, out_w)], axis=-1)
    n, h, w, kc = cols.shape
    return _matmul(cols.reshape(n * h * w, kc), kernel.reshape(k * k * cin, cout)).reshape(n, h, w, cout)

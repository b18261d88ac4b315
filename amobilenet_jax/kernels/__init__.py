"""Convolution kernels: public ops over backend-specific implementations.

``depthwise_conv(x, kernel, stride, impl)`` (``DEPTHWISE_IMPLS``, ``resolve_depthwise_impl``)
and ``conv_dense_dot`` are what the models call; ``cpu_kernels`` is the compiled CPU kernel
gradient of the depthwise conv (numba, through XLA's FFI), and ``check_frames`` reports a
call it refused.
"""

from amobilenet_jax.kernels.cpu_kernels import check_frames
from amobilenet_jax.kernels.dense import conv_dense_dot
from amobilenet_jax.kernels.depthwise import DEPTHWISE_FNS, DEPTHWISE_IMPLS, depthwise_conv, resolve_depthwise_impl

__all__ = [
    "DEPTHWISE_FNS",
    "DEPTHWISE_IMPLS",
    "check_frames",
    "conv_dense_dot",
    "depthwise_conv",
    "resolve_depthwise_impl",
]

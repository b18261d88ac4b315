"""XLA typed-FFI handler for the depthwise kernel gradient, compiled by numba.

Imported by ``cpu_kernels.available()`` only: compiling takes seconds the first
time (numba then caches the machine code beside this file).
"""

from __future__ import annotations

import sys

import numpy as np

# Byte offsets of the fields the handler touches, from xla/ffi/api/c_api.h (LP64).
# tests/test_cpu_kernels.py checks them against the header with a C compiler when
# one is present. All structs start {size_t struct_size; XLA_FFI_Extension_Base*}.
_FRAME_MIN_SIZE = 168  # XLA_FFI_CallFrame_STRUCT_SIZE (through `attrs`)
_FRAME_EXTENSION = 8  # XLA_FFI_CallFrame.extension_start
_FRAME_STAGE = 32  # XLA_FFI_CallFrame.stage (int32 enum)
_FRAME_ARGS_SIZE = 56  # XLA_FFI_CallFrame.args.size
_FRAME_ARGS = 72  # XLA_FFI_CallFrame.args.args (XLA_FFI_Buffer**)
_FRAME_RETS_SIZE = 96  # XLA_FFI_CallFrame.rets.size
_FRAME_RETS = 112  # XLA_FFI_CallFrame.rets.rets (XLA_FFI_Buffer**)
_EXT_TYPE = 8  # XLA_FFI_Extension_Base.type (int32); 1 = metadata
_META_EXT_METADATA = 24  # XLA_FFI_Metadata_Extension.metadata (XLA_FFI_Metadata*)
_META_API_VERSION = 8  # XLA_FFI_Metadata.api_version (an XLA_FFI_Api_Version)
_API_VERSION_SIZE = 24  # XLA_FFI_Api_Version_STRUCT_SIZE; its major/minor sit at +16, +20
_META_TRAITS = 32  # XLA_FFI_Metadata.traits (uint32)
_META_STATE_TYPE_ID = 40  # XLA_FFI_Metadata.state_type_id (int64)
_BUF_DATA = 24  # XLA_FFI_Buffer.data
_BUF_DIMS = 40  # XLA_FFI_Buffer.dims (int64*)
_API_MAJOR, _API_MINOR = 0, 3  # the header version these offsets were read from
_STAGE_EXECUTE = 3

try:
    import numba
    from numba import types
    from numba.core import cgutils
    from numba.extending import intrinsic
except ImportError:  # numba is a dependency; this guards platforms without its wheels
    numba = None

# The handler reads the call frame as 64-bit little-endian words.
SUPPORTED = numba is not None and sys.byteorder == "little" and sys.maxsize > 2**32

if SUPPORTED:

    @intrinsic
    def _as_ptr(typingctx, address):
        def codegen(context, builder, signature, args):
            return builder.inttoptr(args[0], cgutils.voidptr_t)

        return types.voidptr(types.int64), codegen

    @intrinsic
    def _as_int(typingctx, pointer):
        def codegen(context, builder, signature, args):
            return builder.ptrtoint(args[0], cgutils.intp_t)

        return types.int64(types.voidptr), codegen

    @numba.njit(cache=True, nogil=True)
    def _i64(address, n):
        return numba.carray(_as_ptr(address), (n,), np.int64)

    @numba.njit(cache=True, nogil=True)
    def _i32(address, n):
        return numba.carray(_as_ptr(address), (n,), np.int32)

    @numba.njit(cache=True, nogil=True)
    def _buffer(address, rank):
        """(data address, dims) of the XLA_FFI_Buffer at ``address``."""
        return _i64(address + _BUF_DATA, 1)[0], _i64(_i64(address + _BUF_DIMS, 1)[0], rank)

    @numba.njit(cache=True, nogil=True, fastmath=True, boundscheck=False)
    def _kernel_grad_loop(x, dy, k, stride, out):
        """out[i*k + j, c] = sum over images and output pixels of x_pad[.., i, j, c] * dy.

        x: (N, H, W, C), dy: (N, OH, OW, C), symmetric padding k // 2 (as
        layers._pad_same). Sums run in float32 within an image, float64 across.
        """
        height, width, channels = x.shape[1], x.shape[2], x.shape[3]
        out_h, out_w = dy.shape[1], dy.shape[2]
        pad = k // 2
        acc = np.zeros((k * k, channels), np.float32)
        total = np.zeros((k * k, channels), np.float64)
        for n in range(x.shape[0]):
            for h in range(out_h):
                for w in range(out_w):
                    g = dy[n, h, w]
                    for i in range(k):
                        row = h * stride + i - pad
                        if row < 0 or row >= height:
                            continue
                        for j in range(k):
                            col = w * stride + j - pad
                            if col < 0 or col >= width:
                                continue
                            xv = x[n, row, col]
                            a = acc[i * k + j]
                            for c in range(channels):
                                a[c] += xv[c] * g[c]
            for t in range(k * k):
                for c in range(channels):
                    total[t, c] += acc[t, c]
                    acc[t, c] = 0.0
        for t in range(k * k):
            for c in range(channels):
                out[t, c] = total[t, c]

    @numba.njit(cache=True, nogil=True)
    def _answer_metadata(extension):
        """Fills XLA_FFI_Metadata: the API version of these offsets, no traits, no state."""
        metadata = _i64(extension + _META_EXT_METADATA, 1)[0]
        size = _i64(metadata, 1)[0]
        version = _i64(metadata + _META_API_VERSION, 2)
        version[0] = _API_VERSION_SIZE
        version[1] = 0  # its extension_start
        numbers = _i32(metadata + _META_API_VERSION + 16, 2)
        numbers[0] = _API_MAJOR
        numbers[1] = _API_MINOR
        _i32(metadata + _META_TRAITS, 1)[0] = 0
        if size >= _META_STATE_TYPE_ID + 8:
            _i64(metadata + _META_STATE_TYPE_ID, 1)[0] = 0  # XLA_FFI_UNKNOWN_TYPE_ID

    @numba.njit(cache=True, nogil=True)
    def _handle(frame):
        if _i64(frame, 1)[0] < _FRAME_MIN_SIZE:
            return  # a frame older than these offsets: available()'s self-check sees no result
        extension = _i64(frame + _FRAME_EXTENSION, 1)[0]
        if extension != 0:
            if _i32(extension + _EXT_TYPE, 1)[0] == 1:
                _answer_metadata(extension)
            return
        if _i32(frame + _FRAME_STAGE, 1)[0] != _STAGE_EXECUTE:
            return
        if _i64(frame + _FRAME_ARGS_SIZE, 1)[0] != 3 or _i64(frame + _FRAME_RETS_SIZE, 1)[0] != 1:
            return  # kernel_grad() always passes (x, dy, params) -> out
        args = _i64(_i64(frame + _FRAME_ARGS, 1)[0], 3)
        x_data, x_dims = _buffer(args[0], 4)
        dy_data, dy_dims = _buffer(args[1], 4)
        params_data, _ = _buffer(args[2], 1)
        out_data, _ = _buffer(_i64(_i64(frame + _FRAME_RETS, 1)[0], 1)[0], 2)
        k, stride = _i32(params_data, 2)
        x = numba.carray(_as_ptr(x_data), (x_dims[0], x_dims[1], x_dims[2], x_dims[3]), np.float32)
        dy = numba.carray(_as_ptr(dy_data), (dy_dims[0], dy_dims[1], dy_dims[2], dy_dims[3]), np.float32)
        out = numba.carray(_as_ptr(out_data), (k * k, x_dims[3]), np.float32)
        _kernel_grad_loop(x, dy, k, stride, out)

    @numba.cfunc(types.voidptr(types.voidptr), cache=True, nogil=True)
    def handler(frame):
        _handle(_as_int(frame))
        return _as_ptr(0)  # NULL: success

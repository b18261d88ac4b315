"""XLA typed-FFI handler for the depthwise kernel gradient, compiled by numba.

Imported by ``cpu_kernels.available()`` only: compiling takes seconds the first
time (numba then caches the machine code beside this file).

The handler reads XLA's call frame at fixed byte offsets, so it checks everything it
can before it trusts the frame: the frame's and the API's sizes and version, the
execution stage, the numbers and kinds of arguments, results and attributes, and
each buffer's dtype, rank and dims. A frame it refuses is counted in ``BAD_FRAMES``
(which ``cpu_kernels.check_frames()`` reads and warns about: a cfunc cannot call
Python), and then, in order of preference:

- the output buffer can be found: it is filled with NaN, so a non-finite guard on
  the loss stops training (a NaN kernel gradient makes the parameters and the loss
  NaN) instead of it running on an unwritten buffer;
- it cannot, but XLA's API table is the one these offsets describe: the handler
  returns an XLA error (``XLA_FFI_Error_Create``) and the computation raises;
- neither (a frame too small to hold even the API pointer, or an API of another
  major version, whose table may be laid out differently): nothing is touched and
  success is returned; only the counter tells. ``cpu_kernels.available()`` refuses
  jaxlib versions whose header was not checked, and XLA refuses to register a
  handler whose answered major version differs, so this is a last resort.
"""

from __future__ import annotations

import sys

import numpy as np

# Byte offsets and constants the handler uses, from xla/ffi/api/c_api.h (LP64).
# tests/test_kernels.py checks every one against the installed jaxlib's header
# with a C compiler. All structs start {size_t struct_size; XLA_FFI_Extension_Base*}.
_FRAME_MIN_SIZE = 168  # XLA_FFI_CallFrame_STRUCT_SIZE (through `attrs`)
_FRAME_EXTENSION = 8  # XLA_FFI_CallFrame.extension_start
_FRAME_API = 16  # XLA_FFI_CallFrame.api (const XLA_FFI_Api*)
_FRAME_STAGE = 32  # XLA_FFI_CallFrame.stage (int32 enum)
_FRAME_ARGS_SIZE = 56  # XLA_FFI_CallFrame.args.size
_FRAME_ARGS_TYPES = 64  # XLA_FFI_CallFrame.args.types (XLA_FFI_ArgType*, int32 enums)
_FRAME_ARGS = 72  # XLA_FFI_CallFrame.args.args (XLA_FFI_Buffer**)
_FRAME_RETS_SIZE = 96  # XLA_FFI_CallFrame.rets.size
_FRAME_RETS_TYPES = 104  # XLA_FFI_CallFrame.rets.types (XLA_FFI_RetType*, int32 enums)
_FRAME_RETS = 112  # XLA_FFI_CallFrame.rets.rets (XLA_FFI_Buffer**)
_FRAME_ATTRS_SIZE = 136  # XLA_FFI_CallFrame.attrs.size
_API_VERSION = 16  # XLA_FFI_Api.api_version (an XLA_FFI_Api_Version, inline)
_API_ERROR_CREATE = 48  # XLA_FFI_Api.XLA_FFI_Error_Create (function pointer)
_VERSION_MAJOR = 16  # XLA_FFI_Api_Version.major_version (int32)
_VERSION_MINOR = 20  # XLA_FFI_Api_Version.minor_version (int32)
_API_VERSION_SIZE = 24  # XLA_FFI_Api_Version_STRUCT_SIZE
_EXT_TYPE = 8  # XLA_FFI_Extension_Base.type (int32)
_EXT_METADATA = 1  # XLA_FFI_Extension_Metadata
_META_EXT_METADATA = 24  # XLA_FFI_Metadata_Extension.metadata (XLA_FFI_Metadata*)
_META_API_VERSION = 8  # XLA_FFI_Metadata.api_version (an XLA_FFI_Api_Version, inline)
_META_TRAITS = 32  # XLA_FFI_Metadata.traits (uint32)
_META_STATE_TYPE_ID = 40  # XLA_FFI_Metadata.state_type_id (int64)
_BUF_SIZE = 48  # XLA_FFI_Buffer_STRUCT_SIZE
_BUF_DTYPE = 16  # XLA_FFI_Buffer.dtype (int32 enum)
_BUF_DATA = 24  # XLA_FFI_Buffer.data
_BUF_RANK = 32  # XLA_FFI_Buffer.rank (int64)
_BUF_DIMS = 40  # XLA_FFI_Buffer.dims (int64*)
_ERROR_ARGS_SIZE = 28  # XLA_FFI_Error_Create_Args_STRUCT_SIZE
_ERROR_MESSAGE = 16  # XLA_FFI_Error_Create_Args.message (const char*)
_ERROR_CODE = 24  # XLA_FFI_Error_Create_Args.errc (int32 enum)
_ENUM_BYTES = 4  # sizeof of each enum above (stage, dtype, arg/ret type, error code)
_ERRC_INTERNAL = 13  # XLA_FFI_Error_Code_INTERNAL
_DTYPE_F32 = 11  # XLA_FFI_DataType_F32
_DTYPE_S32 = 4  # XLA_FFI_DataType_S32
_ARG_BUFFER = 1  # XLA_FFI_ArgType_BUFFER
_RET_BUFFER = 1  # XLA_FFI_RetType_BUFFER
_API_MAJOR, _API_MINOR = 0, 3  # the header version these offsets were read from
_STAGE_EXECUTE = 3

# The jaxlib releases (inclusive range) whose c_api.h that test passed on; all ship
# the same header (FFI API 0.3). Older ones speak API 0.1/0.2, whose XLA refuses the
# 0.3 this handler answers (0.9.0: when it starts its CPU backend). pyproject.toml
# pins jax and jaxlib to this range; widen both only after running the test there.
TESTED_JAXLIB = ((0, 9, 1), (0, 10, 2))

# Why a frame was refused; BAD_FRAMES[1] holds the last one.
REASONS = {
    1: "call frame smaller than the header's XLA_FFI_CallFrame",
    2: "unknown extension or metadata query it could not answer",
    3: "XLA FFI API version other than the header's",
    4: "execution stage other than EXECUTE",
    5: "arguments, results or attributes not (x, dy, params) -> out without attributes",
    6: "buffer dtype, rank or dims not those kernel_grad() passes",
    7: "kernel size, stride or padding out of range",
}
_FRAME_TOO_SMALL, _EXTENSION, _API, _STAGE, _SIGNATURE, _BUFFERS, _PARAMS = range(1, 8)

# [number of refused frames, last reason]. The handler updates it through the
# symbol below, which numba's JIT linker resolves to this array in every process,
# cached machine code included.
BAD_FRAMES = np.zeros(2, np.int64)
_BAD_FRAMES_SYMBOL = "amobilenet_jax_ffi_bad_frames"
_ERROR_TEXT = (
    "amobilenet_jax: the compiled depthwise kernel gradient got an XLA FFI call frame it cannot read "
    "(amobilenet_jax/kernels/_ffi_numba.py); set model.depthwise_impl='shift' to use XLA's"
)

try:
    import numba
    from llvmlite import binding as llvm
    from llvmlite import ir
    from numba import types
    from numba.core import cgutils
    from numba.extending import intrinsic
except ImportError:  # numba is a dependency; this guards platforms without its wheels
    numba = None

# The handler reads the call frame as 64-bit little-endian words.
SUPPORTED = numba is not None and sys.byteorder == "little" and sys.maxsize > 2**32

if SUPPORTED:
    llvm.add_symbol(_BAD_FRAMES_SYMBOL, BAD_FRAMES.ctypes.data)

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

    @intrinsic
    def _count_bad_frame(typingctx, reason):
        """BAD_FRAMES[0] += 1 (atomically: XLA may run several calls at once); BAD_FRAMES[1] = reason."""

        def codegen(context, builder, signature, args):
            i64 = ir.IntType(64)
            try:
                counter = builder.module.get_global(_BAD_FRAMES_SYMBOL)
            except KeyError:
                counter = ir.GlobalVariable(builder.module, ir.ArrayType(i64, 2), name=_BAD_FRAMES_SYMBOL)
                counter.linkage = "external"
            zero = ir.Constant(ir.IntType(32), 0)
            count = builder.gep(counter, [zero, zero])
            last = builder.gep(counter, [zero, ir.Constant(ir.IntType(32), 1)])
            builder.atomic_rmw("add", count, ir.Constant(i64, 1), "monotonic")
            builder.store(args[0], last)
            return context.get_dummy_value()

        return types.none(types.int64), codegen

    @intrinsic
    def _create_xla_error(typingctx, create_fn):
        """Calls XLA_FFI_Error_Create (at address ``create_fn``) with _ERROR_TEXT; returns the XLA_FFI_Error*."""

        def codegen(context, builder, signature, args):
            i8p = ir.IntType(8).as_pointer()
            # XLA_FFI_Error_Create_Args on the stack, written at the header's offsets.
            storage = cgutils.alloca_once(builder, ir.ArrayType(ir.IntType(64), 4))
            base = builder.bitcast(storage, i8p)

            def field(offset, ty):
                return builder.bitcast(builder.gep(base, [ir.Constant(ir.IntType(32), offset)]), ty.as_pointer())

            builder.store(ir.Constant(ir.ArrayType(ir.IntType(64), 4), [0, 0, 0, 0]), storage)
            builder.store(ir.Constant(ir.IntType(64), _ERROR_ARGS_SIZE), field(0, ir.IntType(64)))
            message = context.insert_const_string(builder.module, _ERROR_TEXT)
            builder.store(builder.bitcast(message, i8p), field(_ERROR_MESSAGE, i8p))
            builder.store(ir.Constant(ir.IntType(32), _ERRC_INTERNAL), field(_ERROR_CODE, ir.IntType(32)))
            fn_type = ir.FunctionType(i8p, [i8p])
            error = builder.call(builder.inttoptr(args[0], fn_type.as_pointer()), [base])
            return builder.ptrtoint(error, cgutils.intp_t)

        return types.int64(types.int64), codegen

    @numba.njit(cache=True, nogil=True)
    def _i64(address, n):
        return numba.carray(_as_ptr(address), (n,), np.int64)

    @numba.njit(cache=True, nogil=True)
    def _i32(address, n):
        return numba.carray(_as_ptr(address), (n,), np.int32)

    @numba.njit(cache=True, nogil=True)
    def _word(address):
        return _i64(address, 1)[0]

    @numba.njit(cache=True, nogil=True)
    def _int32(address):
        return _i32(address, 1)[0]

    @numba.njit(cache=True, nogil=True, fastmath=True, boundscheck=False)
    def _kernel_grad_loop(x, dy, k, stride, pad, out):
        """out[i*k + j, c] = sum over images and output pixels of x_pad[.., i, j, c] * dy.

        x: (N, H, W, C), dy: (N, OH, OW, C); x_pad is x with ``pad`` zeros on each side
        (k // 2 as layers._pad_same, or 0 for an x that already carries its padding).
        Sums run in float32 within an image, float64 across.
        """
        height, width, channels = x.shape[1], x.shape[2], x.shape[3]
        out_h, out_w = dy.shape[1], dy.shape[2]
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
        """Fills XLA_FFI_Metadata: the API version of these offsets, no traits, no state.

        Returns False (and writes nothing) when the metadata struct is smaller than the header's.
        """
        if _word(extension) < _META_EXT_METADATA + 8:
            return False
        metadata = _word(extension + _META_EXT_METADATA)
        if metadata == 0 or _word(metadata) < _META_TRAITS + 4:
            return False
        size = _word(metadata)
        version = _i64(metadata + _META_API_VERSION, 2)
        version[0] = _API_VERSION_SIZE
        version[1] = 0  # its extension_start
        _i32(metadata + _META_API_VERSION + _VERSION_MAJOR, 1)[0] = _API_MAJOR
        _i32(metadata + _META_API_VERSION + _VERSION_MINOR, 1)[0] = _API_MINOR
        _i32(metadata + _META_TRAITS, 1)[0] = 0
        if size >= _META_STATE_TYPE_ID + 8:
            _i64(metadata + _META_STATE_TYPE_ID, 1)[0] = 0  # XLA_FFI_UNKNOWN_TYPE_ID
        return True

    @numba.njit(cache=True, nogil=True)
    def _api_layout_known(frame):
        """Whether the frame's XLA_FFI_Api is of this major version, large enough to hold Error_Create."""
        api = _word(frame + _FRAME_API)
        if api == 0 or _word(api) < _API_ERROR_CREATE + 8:
            return False
        return _int32(api + _API_VERSION + _VERSION_MAJOR) == _API_MAJOR

    @numba.njit(cache=True, nogil=True)
    def _buffer_is(buffer, dtype, rank):
        """Whether the XLA_FFI_Buffer at ``buffer`` has this dtype and rank, and non-negative dims."""
        if buffer == 0 or _word(buffer) < _BUF_SIZE:
            return False
        if _int32(buffer + _BUF_DTYPE) != dtype or _word(buffer + _BUF_RANK) != rank:
            return False
        dims = _word(buffer + _BUF_DIMS)
        if dims == 0:
            return False
        for d in _i64(dims, rank):
            if d < 0:
                return False
        return True

    @numba.njit(cache=True, nogil=True)
    def _dims(buffer, rank):
        return _i64(_word(buffer + _BUF_DIMS), rank)

    @numba.njit(cache=True, nogil=True)
    def _params(params):
        """(k, stride, padding) from [k, stride] (padding k // 2) or [k, stride, padding]."""
        n_params = _dims(params, 1)[0]
        values = _i32(_word(params + _BUF_DATA), n_params)
        pad = values[2] if n_params == 3 else values[0] // 2
        return values[0], values[1], pad

    @numba.njit(cache=True, nogil=True)
    def _refusal(frame):
        """0 when the frame is exactly kernel_grad()'s call, else the reason (a key of REASONS)."""
        if _word(frame) < _FRAME_MIN_SIZE:
            return _FRAME_TOO_SMALL
        api = _word(frame + _FRAME_API)
        if not _api_layout_known(frame) or _int32(api + _API_VERSION + _VERSION_MINOR) < _API_MINOR:
            return _API
        if _int32(frame + _FRAME_STAGE) != _STAGE_EXECUTE:
            return _STAGE
        if _word(frame + _FRAME_ARGS_SIZE) != 3 or _word(frame + _FRAME_RETS_SIZE) != 1:
            return _SIGNATURE
        if _word(frame + _FRAME_ATTRS_SIZE) != 0:
            return _SIGNATURE
        arg_types, ret_types = _word(frame + _FRAME_ARGS_TYPES), _word(frame + _FRAME_RETS_TYPES)
        args, rets = _word(frame + _FRAME_ARGS), _word(frame + _FRAME_RETS)
        if arg_types == 0 or ret_types == 0 or args == 0 or rets == 0:
            return _SIGNATURE
        for kind in _i32(arg_types, 3):
            if kind != _ARG_BUFFER:
                return _SIGNATURE
        if _int32(ret_types) != _RET_BUFFER:
            return _SIGNATURE
        buffers = _i64(args, 3)
        x, dy, params, out = buffers[0], buffers[1], buffers[2], _word(rets)
        if not (
            _buffer_is(x, _DTYPE_F32, 4)
            and _buffer_is(dy, _DTYPE_F32, 4)
            and _buffer_is(params, _DTYPE_S32, 1)
            and _buffer_is(out, _DTYPE_F32, 2)
        ):
            return _BUFFERS
        n_params = _dims(params, 1)[0]
        if n_params not in (2, 3) or _word(params + _BUF_DATA) == 0 or _word(out + _BUF_DATA) == 0:
            return _BUFFERS
        k, stride, pad = _params(params)
        if k < 1 or stride < 1 or pad < 0 or pad >= k:
            return _PARAMS
        x_dims, dy_dims, out_dims = _dims(x, 4), _dims(dy, 4), _dims(out, 2)
        if dy_dims[0] != x_dims[0] or dy_dims[3] != x_dims[3]:
            return _BUFFERS
        if (
            dy_dims[1] != (x_dims[1] + 2 * pad - k) // stride + 1
            or dy_dims[2] != (x_dims[2] + 2 * pad - k) // stride + 1
        ):
            return _BUFFERS
        if out_dims[0] != k * k or out_dims[1] != x_dims[3]:
            return _BUFFERS
        if x_dims[0] * x_dims[1] * x_dims[2] * x_dims[3] > 0 and _word(x + _BUF_DATA) == 0:
            return _BUFFERS
        if dy_dims[0] * dy_dims[1] * dy_dims[2] * dy_dims[3] > 0 and _word(dy + _BUF_DATA) == 0:
            return _BUFFERS
        return 0

    @numba.njit(cache=True, nogil=True)
    def _fill_output_with_nan(frame):
        """Writes NaN over the first result if it is a float32 buffer the frame describes; whether it did."""
        if _word(frame) < _FRAME_RETS + 8 or _word(frame + _FRAME_RETS_SIZE) < 1:
            return False
        rets = _word(frame + _FRAME_RETS)
        if rets == 0:
            return False
        out = _word(rets)
        if out == 0 or _word(out) < _BUF_SIZE or _int32(out + _BUF_DTYPE) != _DTYPE_F32:
            return False
        rank, data = _word(out + _BUF_RANK), _word(out + _BUF_DATA)
        if rank < 0 or rank > 16 or (rank > 0 and _word(out + _BUF_DIMS) == 0):
            return False
        size = 1
        for d in _i64(_word(out + _BUF_DIMS), rank):
            if d < 0:
                return False
            size *= d
        if size > 0 and data == 0:
            return False
        values = numba.carray(_as_ptr(data), (size,), np.float32)
        values[:] = np.nan
        return True

    @numba.njit(cache=True, nogil=True)
    def _handle(frame):
        """Runs the call; returns an XLA_FFI_Error* address, 0 for success."""
        if _word(frame) < _FRAME_API + 8:
            _count_bad_frame(_FRAME_TOO_SMALL)
            return 0  # not even XLA's API table to report an error through
        extension = _word(frame + _FRAME_EXTENSION)
        if extension != 0:
            # XLA's metadata query (at registration): no buffers to fill.
            if _int32(extension + _EXT_TYPE) != _EXT_METADATA or not _answer_metadata(extension):
                _count_bad_frame(_EXTENSION)
            return 0
        reason = _refusal(frame)
        if reason == 0:
            args = _i64(_word(frame + _FRAME_ARGS), 3)
            x_dims, dy_dims = _dims(args[0], 4), _dims(args[1], 4)
            k, stride, pad = _params(args[2])
            out_data = _word(_word(_word(frame + _FRAME_RETS)) + _BUF_DATA)
            x = numba.carray(
                _as_ptr(_word(args[0] + _BUF_DATA)), (x_dims[0], x_dims[1], x_dims[2], x_dims[3]), np.float32
            )
            dy = numba.carray(
                _as_ptr(_word(args[1] + _BUF_DATA)), (dy_dims[0], dy_dims[1], dy_dims[2], dy_dims[3]), np.float32
            )
            out = numba.carray(_as_ptr(out_data), (k * k, x_dims[3]), np.float32)
            _kernel_grad_loop(x, dy, k, stride, pad, out)
            return 0
        _count_bad_frame(reason)
        if not _api_layout_known(frame):
            return 0  # the frame may be laid out differently: touch nothing
        if _fill_output_with_nan(frame):
            return 0
        create = _word(_word(frame + _FRAME_API) + _API_ERROR_CREATE)
        return 0 if create == 0 else _create_xla_error(create)

    @numba.cfunc(types.voidptr(types.voidptr), cache=True, nogil=True)
    def handler(frame):
        return _as_ptr(_handle(_as_int(frame)))

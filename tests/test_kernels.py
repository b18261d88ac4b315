"""The compiled depthwise kernel gradient (kernels/cpu_kernels.py) against XLA's, and how it fails."""

import ctypes
import os
import shutil
import subprocess
import warnings

import jax
import jax.numpy as jnp
import jaxlib
import numpy as np
import pytest

from amobilenet_jax.kernels import _ffi_numba, cpu_kernels, depthwise
from amobilenet_jax.kernels.windows import pad_same
from amobilenet_jax.models.mobilenet_v3 import V3_SMALL_BLOCKS, MobileNetV3Small
from tests.conftest import normal

IN_CI = os.environ.get("CI", "").lower() not in ("", "0", "false")


def _skip_or_fail(reason: str):
    """CI runs every test here: a missing prerequisite there is a failure, elsewhere a skip."""
    if IN_CI:
        pytest.fail(f"{reason} (CI is set, so this does not skip)")
    pytest.skip(reason)


@pytest.fixture
def compiled_kernel():
    if not cpu_kernels.available():
        _skip_or_fail(
            "the compiled kernel is unavailable: numba, a 64-bit little-endian CPU or a tested jaxlib missing"
        )


needs_kernel = pytest.mark.usefixtures("compiled_kernel")


@pytest.fixture(autouse=True)
def frame_counters():
    """Bad frames a test causes are its own: check_frames() counts and warns from a clean slate,
    and afterwards they count as reported, so no later test (or training loop) warns about them."""
    warned = cpu_kernels._frames_warned
    cpu_kernels._reported_bad_frames = cpu_kernels.bad_frame_count()
    cpu_kernels._frames_warned = False
    yield
    cpu_kernels._reported_bad_frames = cpu_kernels.bad_frame_count()
    cpu_kernels._frames_warned = warned


@needs_kernel
@pytest.mark.parametrize(
    "shape,k,stride",
    [
        ((3, 8, 8, 16), 3, 1),
        ((3, 8, 8, 16), 3, 2),
        ((2, 7, 5, 8), 3, 1),  # odd, non-square
        ((2, 7, 5, 8), 3, 2),
        ((2, 9, 9, 24), 5, 2),  # MobileNetV3's 5x5
        ((4, 1, 1, 8), 3, 1),  # only the centre tap sees data
        ((4, 2, 2, 8), 3, 2),
    ],
)
def test_kernel_grad_matches_xla(shape, k, stride):
    x = normal(0, shape)
    out_hw = [(s + 2 * (k // 2) - k) // stride + 1 for s in shape[1:3]]
    dy = normal(1, (shape[0], *out_hw, shape[3]))
    got = jax.jit(cpu_kernels.kernel_grad, static_argnums=(2, 3))(x, dy, k, stride)
    want = depthwise._kernel_grad(x, dy, k, stride)
    assert got.shape == (k, k, 1, shape[3]) and got.dtype == jnp.float32
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    # the same from an input that already carries its padding, as depthwise.py passes it
    xp = pad_same(x, k)
    got_padded = jax.jit(cpu_kernels.kernel_grad, static_argnums=(2, 3, 4))(xp, dy, k, stride, True)
    np.testing.assert_allclose(got_padded, want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(depthwise._kernel_grad(xp, dy, k, stride, padded=True), want, rtol=1e-5, atol=1e-5)
    # and the grouped convolution's own kernel gradient
    _, vjp = jax.vjp(lambda kern: depthwise.depthwise_conv_xla(x, kern, stride), jnp.zeros((k, k, 1, shape[3])))
    np.testing.assert_allclose(got, vjp(dy)[0], rtol=1e-4, atol=1e-4)


@needs_kernel
def test_kernel_grad_under_vmap():
    """Vectorised sweeps vmap the train step over models: the op runs once per model."""
    xs = normal(2, (3, 2, 6, 6, 8))
    dys = normal(3, (3, 2, 6, 6, 8))
    got = jax.jit(jax.vmap(lambda x, dy: cpu_kernels.kernel_grad(x, dy, 3, 1)))(xs, dys)
    for m in range(3):
        np.testing.assert_allclose(got[m], depthwise._kernel_grad(xs[m], dys[m], 3, 1), rtol=1e-5, atol=1e-5)


@needs_kernel
@pytest.mark.parametrize("k,stride", [(3, 1), (3, 2), (5, 1), (5, 2)])
def test_self_check_tells_a_right_kernel_from_a_wrong_one(k, stride):
    assert cpu_kernels._self_check(cpu_kernels.kernel_grad, k, stride)
    assert not cpu_kernels._self_check(lambda x, dy, k, stride, **_: jnp.zeros((k, k, 1, x.shape[3])), k, stride)
    # right on most taps, wrong on one corner: the check sees every tap
    right = cpu_kernels.kernel_grad
    assert not cpu_kernels._self_check(lambda *a, **kw: right(*a, **kw).at[0, 0].add(1e-2), k, stride)
    # right on an unpadded input, wrong on one that carries its padding: the check runs both
    assert not cpu_kernels._self_check(
        lambda x, dy, k, stride, padded=False: jnp.ones((k, k, 1, x.shape[3])) if padded else right(x, dy, k, stride),
        k,
        stride,
    )


def test_rejects_other_dtypes():
    x = jnp.zeros((1, 4, 4, 8), jnp.bfloat16)
    with pytest.raises(ValueError, match="float32 NHWC"):
        cpu_kernels.kernel_grad(x, x, 3, 1)


@needs_kernel
def test_shift_ffi_falls_back_for_bfloat16():
    x = normal(4, (2, 6, 6, 8), jnp.bfloat16)
    kernel = normal(5, (3, 3, 1, 8), jnp.bfloat16)

    def kernel_grad(fn):
        return jax.grad(lambda k: jnp.sum(fn(x, k, 1).astype(jnp.float32) ** 2))(kernel)

    compiled, plain = kernel_grad(depthwise.depthwise_conv_shift_ffi), kernel_grad(depthwise.depthwise_conv_shift)
    np.testing.assert_array_equal(compiled, plain)


@needs_kernel
def test_auto_uses_it_on_one_cpu_device():
    assert jax.device_count() == 1
    assert depthwise.resolve_depthwise_impl("auto") == "shift_ffi"


FORWARD_THEN_GRADIENT = """
import sys, jax, jax.numpy as jnp
from amobilenet_jax.config import load_config_file
from amobilenet_jax.models import build_model
model = build_model(load_config_file(sys.argv[1]).model, 8)
x = jnp.zeros((2, 32, 32, 3))
variables = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), x, train=False))
jax.eval_shape(lambda v: model.apply(v, x, train=False), variables)
print("after the forward pass:", "numba" in sys.modules)
loss = lambda v: jnp.sum(model.apply(v, x, train=False)[0])
jax.eval_shape(jax.grad(loss), variables)
print("after the gradient:", "numba" in sys.modules)
"""


@needs_kernel
def test_only_a_gradient_loads_the_compiled_kernel(python):
    """A process that only runs the model forward (predict, serve, evaluation) never imports numba
    nor checks the kernel; the first gradient it traces does both (a fresh process, as a user's)."""
    from tests.conftest import REPO

    spec = os.path.join(REPO, "configs", "quickstart.py") + ":tiny"
    proc = subprocess.run([python, "-c", FORWARD_THEN_GRADIENT, spec], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "after the forward pass: False" in proc.stdout and "after the gradient: True" in proc.stdout, proc.stdout


# --- the self-check runs per (kernel size, stride), for the pairs a model uses ---------------


def _lowered_model_grad(depthwise_impl: str = "shift_ffi") -> str:
    """StableHLO of a tiny MobileNetV3-Small's parameter gradient (traced and lowered, not compiled)."""
    model = MobileNetV3Small(num_classes=3, width=0.25, depthwise_impl=depthwise_impl)
    images = jnp.zeros((2, 32, 32, 3))
    variables = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), images))

    def loss(params, batch_stats):
        logits, _ = model.apply({"params": params, "batch_stats": batch_stats}, images, train=False)
        return jnp.sum(logits)

    return jax.jit(jax.grad(loss)).lower(variables["params"], variables["batch_stats"]).as_text()


V3_PAIRS = {(kernel, stride) for kernel, *_, stride in V3_SMALL_BLOCKS}


@needs_kernel
def test_self_check_runs_for_each_pair_a_model_uses(monkeypatch):
    assert V3_PAIRS == {(3, 1), (3, 2), (5, 1), (5, 2)}
    checked = []
    real = cpu_kernels._self_check

    def recording(fn, k, stride):
        checked.append((k, stride))
        return real(fn, k, stride)

    monkeypatch.setattr(cpu_kernels, "_CHECKED", {})  # as in a fresh process
    monkeypatch.setattr(cpu_kernels, "_self_check", recording)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # every pair passes, silently
        hlo = _lowered_model_grad()  # the checks run while jit traces the model
    assert sorted(checked) == sorted(V3_PAIRS)  # each pair once
    assert cpu_kernels._CHECKED == {pair: True for pair in V3_PAIRS}
    assert hlo.count(f"@{cpu_kernels.TARGET}") == len(V3_SMALL_BLOCKS)


@needs_kernel
def test_a_pair_that_fails_its_check_keeps_xla_while_the_others_keep_the_compiled_loop(monkeypatch):
    real = cpu_kernels._self_check
    monkeypatch.setattr(cpu_kernels, "_CHECKED", {})
    monkeypatch.setattr(cpu_kernels, "_self_check", lambda fn, k, s: (k, s) != (5, 2) and real(fn, k, s))
    with pytest.warns(RuntimeWarning, match="known-answer check for 5x5, stride 2"):
        hlo = _lowered_model_grad()
    assert cpu_kernels._CHECKED == {(3, 1): True, (3, 2): True, (5, 1): True, (5, 2): False}
    failing_layers = sum((kernel, stride) == (5, 2) for kernel, *_, stride in V3_SMALL_BLOCKS)
    assert failing_layers == 2
    assert hlo.count(f"@{cpu_kernels.TARGET}") == len(V3_SMALL_BLOCKS) - failing_layers
    # and the gradient that pair gets is XLA's, unchanged
    x = normal(6, (2, 7, 7, 8))
    kernel = normal(7, (5, 5, 1, 8))

    def kernel_grad(fn):
        return jax.grad(lambda kern: jnp.sum(fn(x, kern, 2) ** 2))(kernel)

    np.testing.assert_array_equal(
        kernel_grad(depthwise.depthwise_conv_shift_ffi), kernel_grad(depthwise.depthwise_conv_shift)
    )


# --- unexpected call frames: NaN and a warning, or an XLA error -----------------------------


def _call(result_shape, *args, **attributes):
    """The registered handler called through XLA with any signature, as a future caller might."""
    return jax.ffi.ffi_call(cpu_kernels.TARGET, result_shape)(*args, **attributes)


X, DY = jnp.ones((2, 6, 6, 8)), jnp.ones((2, 6, 6, 8))
PARAMS = np.array([3, 1], np.int32)
OUT = jax.ShapeDtypeStruct((9, 8), jnp.float32)
BAD_CALLS = {
    "two arguments": lambda: _call(OUT, X, DY),
    "an attribute": lambda: _call(OUT, X, DY, PARAMS, stride=np.int32(1)),
    "a rank-1 result": lambda: _call(jax.ShapeDtypeStruct((72,), jnp.float32), X, DY, PARAMS),
    "dy of the wrong size for the stride": lambda: _call(OUT, X, DY, np.array([3, 2], np.int32)),
    "float params": lambda: _call(OUT, X, DY, PARAMS.astype(np.float32)),
    "a negative stride": lambda: _call(OUT, X, DY, np.array([3, -1], np.int32)),
    "a padding as wide as the kernel": lambda: _call(OUT, X, DY, np.array([3, 1, 3], np.int32)),
    "four params": lambda: _call(OUT, X, DY, np.array([3, 1, 1, 0], np.int32)),
    "a rank-3 input": lambda: _call(OUT, X[0], DY, PARAMS),
}


@needs_kernel
@pytest.mark.parametrize("name", BAD_CALLS)
def test_an_unexpected_frame_fills_the_output_with_nan_and_warns(name, frame_counters):
    before = cpu_kernels.bad_frame_count()
    out = BAD_CALLS[name]()
    assert np.isnan(np.asarray(out)).all()
    assert cpu_kernels.bad_frame_count() == before + 1
    with pytest.warns(RuntimeWarning, match=r"refused 1 XLA call frame\(s\)"):
        assert cpu_kernels.check_frames() == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once per process, not at every log step
        assert cpu_kernels.check_frames() == 1


@needs_kernel
def test_the_expected_frame_counts_nothing(frame_counters):
    before = cpu_kernels.bad_frame_count()
    out = _call(OUT, X, DY, PARAMS)
    np.testing.assert_allclose(out, depthwise._kernel_grad(X, DY, 3, 1).reshape(9, 8))
    assert cpu_kernels.bad_frame_count() == before
    assert cpu_kernels.check_frames() == 0


@needs_kernel
def test_a_result_it_cannot_fill_with_nan_is_an_xla_error(frame_counters):
    before = cpu_kernels.bad_frame_count()
    with pytest.raises(Exception, match="INTERNAL: amobilenet_jax: .* call frame it cannot read"):
        np.asarray(_call(jax.ShapeDtypeStruct((9, 8), jnp.int32), X, DY, PARAMS))
    assert cpu_kernels.bad_frame_count() == before + 1


@needs_kernel
def test_a_pair_whose_frames_are_refused_falls_back_with_the_reason(monkeypatch, frame_counters):
    """A self-check whose call frame is refused (here: an op that drops ``params``) names the reason."""

    def drops_params(x, dy, k, stride, padded=False):
        return _call(jax.ShapeDtypeStruct((k * k, x.shape[3]), jnp.float32), x, dy).reshape(k, k, 1, -1)

    monkeypatch.setattr(cpu_kernels, "_CHECKED", {})
    monkeypatch.setattr(cpu_kernels, "kernel_grad", drops_params)
    with pytest.warns(RuntimeWarning, match="stride 1 .arguments, results or attributes"):
        assert not cpu_kernels.available_for(3, 1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert cpu_kernels.check_frames() == 0  # the self-check's own frames were reported by it


# Frames XLA never sends today, built by hand at the header's offsets and passed to the handler.


class _Frame:
    """A kernel_grad() call frame in NumPy memory, laid out as xla/ffi/api/c_api.h says."""

    def __init__(self, x, dy, k, stride):
        f = _ffi_numba
        self.keep = []
        self.x, self.dy = np.ascontiguousarray(x, np.float32), np.ascontiguousarray(dy, np.float32)
        self.params = np.array([k, stride], np.int32)
        self.out = np.zeros((k * k, x.shape[3]), np.float32)
        buffers = [
            self._buffer(self.x, f._DTYPE_F32),
            self._buffer(self.dy, f._DTYPE_F32),
            self._buffer(self.params, f._DTYPE_S32),
        ]
        self.out_buffer = self._buffer(self.out, f._DTYPE_F32)
        self.api = self._words(8)
        self.api[0] = f._API_ERROR_CREATE + 8  # just through Error_Create, all the handler reads
        self.api_version = self.api.view(np.int32)
        self.api[f._API_VERSION // 8] = f._API_VERSION_SIZE
        self.api_version[(f._API_VERSION + f._VERSION_MAJOR) // 4] = f._API_MAJOR
        self.api_version[(f._API_VERSION + f._VERSION_MINOR) // 4] = f._API_MINOR
        self.frame = self._words(f._FRAME_MIN_SIZE // 8 + 1)
        self.frame[0] = f._FRAME_MIN_SIZE
        self.frame[f._FRAME_API // 8] = self.api.ctypes.data
        self.frame.view(np.int32)[f._FRAME_STAGE // 4] = f._STAGE_EXECUTE
        self.frame[f._FRAME_ARGS_SIZE // 8] = 3
        self.frame[f._FRAME_ARGS_TYPES // 8] = self._keep(np.full(3, f._ARG_BUFFER, np.int32)).ctypes.data
        self.frame[f._FRAME_ARGS // 8] = self._keep(np.array([b.ctypes.data for b in buffers])).ctypes.data
        self.frame[f._FRAME_RETS_SIZE // 8] = 1
        self.frame[f._FRAME_RETS_TYPES // 8] = self._keep(np.full(1, f._RET_BUFFER, np.int32)).ctypes.data
        self.frame[f._FRAME_RETS // 8] = self._keep(np.array([self.out_buffer.ctypes.data])).ctypes.data

    def _keep(self, array):
        self.keep.append(array)
        return array

    def _words(self, n):
        return self._keep(np.zeros(n, np.int64))

    def _buffer(self, array, dtype):
        f = _ffi_numba
        buffer = self._words(f._BUF_SIZE // 8)
        buffer[0] = f._BUF_SIZE
        buffer.view(np.int32)[f._BUF_DTYPE // 4] = dtype
        buffer[f._BUF_DATA // 8] = array.ctypes.data
        buffer[f._BUF_RANK // 8] = array.ndim
        buffer[f._BUF_DIMS // 8] = self._keep(np.array(array.shape, np.int64)).ctypes.data
        return buffer

    def set_error_create(self, fn):
        self.api[_ffi_numba._API_ERROR_CREATE // 8] = ctypes.cast(fn, ctypes.c_void_p).value

    def run(self) -> int:
        handler = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_void_p)(_ffi_numba.handler.address)
        return handler(self.frame.ctypes.data) or 0


def _hand_built_frame():
    rng = np.random.default_rng(8)
    x, dy = rng.standard_normal((2, 5, 6, 8), np.float32), rng.standard_normal((2, 3, 3, 8), np.float32)
    return _Frame(x, dy, 3, 2)


@needs_kernel
def test_the_hand_built_frame_is_a_good_one():
    frame = _hand_built_frame()
    before = cpu_kernels.bad_frame_count()
    assert frame.run() == 0
    np.testing.assert_allclose(
        frame.out.reshape(3, 3, 1, 8), cpu_kernels._reference(frame.x, frame.dy, 3, 2), rtol=1e-5, atol=1e-5
    )
    assert cpu_kernels.bad_frame_count() == before


def _older_minor(frame):
    frame.api_version[(_ffi_numba._API_VERSION + _ffi_numba._VERSION_MINOR) // 4] = _ffi_numba._API_MINOR - 1


def _instantiate_stage(frame):
    frame.frame.view(np.int32)[_ffi_numba._FRAME_STAGE // 4] = 0


def _smaller_frame(frame):
    frame.frame[0] = _ffi_numba._FRAME_MIN_SIZE - 8


@needs_kernel
@pytest.mark.parametrize(
    "change,reason",
    [(_older_minor, "API version"), (_instantiate_stage, "execution stage"), (_smaller_frame, "smaller than")],
)
def test_hand_built_bad_frames_fill_nan(change, reason):
    frame = _hand_built_frame()
    change(frame)
    before = cpu_kernels.bad_frame_count()
    assert frame.run() == 0
    assert np.isnan(frame.out).all()
    assert cpu_kernels.bad_frame_count() == before + 1
    assert reason in cpu_kernels._last_reason()


@needs_kernel
def test_another_major_api_version_is_counted_and_left_alone():
    """Its tables may be laid out differently: neither the output nor Error_Create is touched."""
    frame = _hand_built_frame()
    frame.api_version[(_ffi_numba._API_VERSION + _ffi_numba._VERSION_MAJOR) // 4] = _ffi_numba._API_MAJOR + 1
    frame.set_error_create(ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_void_p)(lambda args: pytest.fail("called")))
    before = cpu_kernels.bad_frame_count()
    assert frame.run() == 0
    assert (frame.out == 0).all()
    assert cpu_kernels.bad_frame_count() == before + 1


@needs_kernel
def test_no_result_to_fill_returns_error_create_with_the_header_layout():
    frame = _hand_built_frame()
    frame.frame[_ffi_numba._FRAME_RETS_SIZE // 8] = 0
    calls = []

    def error_create(args):
        f = _ffi_numba
        size = ctypes.c_int64.from_address(args).value
        message = ctypes.string_at(ctypes.c_void_p.from_address(args + f._ERROR_MESSAGE).value).decode()
        calls.append((size, message, ctypes.c_int32.from_address(args + f._ERROR_CODE).value))
        return 0xE770

    stub = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_void_p)(error_create)
    frame.set_error_create(stub)
    assert frame.run() == 0xE770
    [(size, message, code)] = calls
    assert size == _ffi_numba._ERROR_ARGS_SIZE and code == _ffi_numba._ERRC_INTERNAL
    assert "call frame it cannot read" in message


# --- which jaxlib, and the offsets themselves ------------------------------------------------


def test_jaxlib_outside_the_tested_range_is_refused(monkeypatch):
    low, high = _ffi_numba.TESTED_JAXLIB
    assert cpu_kernels.jaxlib_tested(".".join(map(str, low))) and cpu_kernels.jaxlib_tested(".".join(map(str, high)))
    assert not cpu_kernels.jaxlib_tested(f"{high[0]}.{high[1]}.{high[2] + 1}")
    assert not cpu_kernels.jaxlib_tested(f"{high[0]}.{high[1] + 1}.0.dev20260101")
    assert not cpu_kernels.jaxlib_tested(f"{low[0]}.{low[1] - 1}.9")
    assert not cpu_kernels.jaxlib_tested("unknown")
    if not _ffi_numba.SUPPORTED:
        return
    monkeypatch.setattr(jaxlib, "__version__", f"{high[0]}.{high[1] + 1}.0")
    cpu_kernels.available.cache_clear()
    try:
        with pytest.warns(RuntimeWarning, match="checked on jaxlib .* and this is jaxlib"):
            assert not cpu_kernels.available()
    finally:
        cpu_kernels.available.cache_clear()


def test_installed_jaxlib_is_a_tested_one():
    """pyproject pins jax to TESTED_JAXLIB; a bump of one without the other fails here."""
    assert cpu_kernels.jaxlib_tested(jaxlib.__version__), (jaxlib.__version__, _ffi_numba.TESTED_JAXLIB)


HEADER_VALUES = [
    ("_FRAME_MIN_SIZE", "XLA_FFI_CallFrame_STRUCT_SIZE"),
    ("_FRAME_EXTENSION", "offsetof(XLA_FFI_CallFrame, extension_start)"),
    ("_FRAME_API", "offsetof(XLA_FFI_CallFrame, api)"),
    ("_FRAME_STAGE", "offsetof(XLA_FFI_CallFrame, stage)"),
    ("_FRAME_ARGS_SIZE", "offsetof(XLA_FFI_CallFrame, args) + offsetof(XLA_FFI_Args, size)"),
    ("_FRAME_ARGS_TYPES", "offsetof(XLA_FFI_CallFrame, args) + offsetof(XLA_FFI_Args, types)"),
    ("_FRAME_ARGS", "offsetof(XLA_FFI_CallFrame, args) + offsetof(XLA_FFI_Args, args)"),
    ("_FRAME_RETS_SIZE", "offsetof(XLA_FFI_CallFrame, rets) + offsetof(XLA_FFI_Rets, size)"),
    ("_FRAME_RETS_TYPES", "offsetof(XLA_FFI_CallFrame, rets) + offsetof(XLA_FFI_Rets, types)"),
    ("_FRAME_RETS", "offsetof(XLA_FFI_CallFrame, rets) + offsetof(XLA_FFI_Rets, rets)"),
    ("_FRAME_ATTRS_SIZE", "offsetof(XLA_FFI_CallFrame, attrs) + offsetof(XLA_FFI_Attrs, size)"),
    ("_API_VERSION", "offsetof(XLA_FFI_Api, api_version)"),
    ("_API_ERROR_CREATE", "offsetof(XLA_FFI_Api, XLA_FFI_Error_Create)"),
    ("_VERSION_MAJOR", "offsetof(XLA_FFI_Api_Version, major_version)"),
    ("_VERSION_MINOR", "offsetof(XLA_FFI_Api_Version, minor_version)"),
    ("_API_VERSION_SIZE", "XLA_FFI_Api_Version_STRUCT_SIZE"),
    ("_EXT_TYPE", "offsetof(XLA_FFI_Extension_Base, type)"),
    ("_EXT_METADATA", "XLA_FFI_Extension_Metadata"),
    ("_META_EXT_METADATA", "offsetof(XLA_FFI_Metadata_Extension, metadata)"),
    ("_META_API_VERSION", "offsetof(XLA_FFI_Metadata, api_version)"),
    ("_META_TRAITS", "offsetof(XLA_FFI_Metadata, traits)"),
    ("_META_STATE_TYPE_ID", "offsetof(XLA_FFI_Metadata, state_type_id)"),
    ("_BUF_SIZE", "XLA_FFI_Buffer_STRUCT_SIZE"),
    ("_BUF_DTYPE", "offsetof(XLA_FFI_Buffer, dtype)"),
    ("_BUF_DATA", "offsetof(XLA_FFI_Buffer, data)"),
    ("_BUF_RANK", "offsetof(XLA_FFI_Buffer, rank)"),
    ("_BUF_DIMS", "offsetof(XLA_FFI_Buffer, dims)"),
    ("_ERROR_ARGS_SIZE", "XLA_FFI_Error_Create_Args_STRUCT_SIZE"),
    ("_ERROR_MESSAGE", "offsetof(XLA_FFI_Error_Create_Args, message)"),
    ("_ERROR_CODE", "offsetof(XLA_FFI_Error_Create_Args, errc)"),
    ("_ENUM_BYTES", "sizeof(XLA_FFI_ExecutionStage)"),
    ("_ENUM_BYTES", "sizeof(XLA_FFI_DataType)"),
    ("_ENUM_BYTES", "sizeof(XLA_FFI_ArgType)"),
    ("_ENUM_BYTES", "sizeof(XLA_FFI_RetType)"),
    ("_ENUM_BYTES", "sizeof(XLA_FFI_Error_Code)"),
    ("_ENUM_BYTES", "sizeof(XLA_FFI_Extension_Type)"),
    ("_ENUM_BYTES", "sizeof(((XLA_FFI_Api_Version*)0)->major_version)"),
    ("_ENUM_BYTES", "sizeof(XLA_FFI_Handler_Traits)"),
    ("_ERRC_INTERNAL", "XLA_FFI_Error_Code_INTERNAL"),
    ("_DTYPE_F32", "XLA_FFI_DataType_F32"),
    ("_DTYPE_S32", "XLA_FFI_DataType_S32"),
    ("_ARG_BUFFER", "XLA_FFI_ArgType_BUFFER"),
    ("_RET_BUFFER", "XLA_FFI_RetType_BUFFER"),
    ("_API_MAJOR", "XLA_FFI_API_MAJOR"),
    ("_API_MINOR", "XLA_FFI_API_MINOR"),
    ("_STAGE_EXECUTE", "XLA_FFI_ExecutionStage_EXECUTE"),
]


def header_mismatches(header: str, compiler: str, workdir) -> list[str]:
    """The handler's constants that differ from what a C compiler reads off ``header``."""
    lines = "".join(f'  printf("%s %ld\\n", "{name}", (long)({expr}));\n' for name, expr in HEADER_VALUES)
    source = workdir / "offsets.c"
    source.write_text(f'#include <stddef.h>\n#include <stdio.h>\n#include "{header}"\nint main(void) {{\n{lines}}}\n')
    subprocess.run([compiler, str(source), "-o", str(workdir / "offsets")], check=True)
    out = subprocess.run([str(workdir / "offsets")], check=True, capture_output=True, text=True).stdout
    found = [line.split() for line in out.splitlines()]
    assert len(found) == len(HEADER_VALUES)
    return [
        f"{name}: header says {value}, handler uses {getattr(_ffi_numba, name)}"
        for name, value in found
        if int(value) != getattr(_ffi_numba, name)
    ]


def test_offsets_match_the_ffi_header(tmp_path):
    """The handler's struct offsets, read off jaxlib's xla/ffi/api/c_api.h by a C compiler."""
    compiler = shutil.which(os.environ.get("CC", "cc"))
    header = os.path.join(jax.ffi.include_dir(), "xla", "ffi", "api", "c_api.h")
    if compiler is None:
        _skip_or_fail("needs a C compiler (cc, or $CC) to read the offsets off jaxlib's FFI header")
    if not os.path.exists(header):
        _skip_or_fail(f"jaxlib {jaxlib.__version__} ships no FFI header at {header}")
    assert header_mismatches(header, compiler, tmp_path) == []

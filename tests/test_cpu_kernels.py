"""The compiled depthwise kernel gradient (models/cpu_kernels.py) against XLA's."""

import os
import shutil
import subprocess

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from amobilenet_jax.models import _ffi_numba, cpu_kernels, layers

pytestmark = pytest.mark.skipif(not cpu_kernels.available(), reason="numba or a 64-bit little-endian CPU missing")


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
    x = jax.random.normal(jax.random.PRNGKey(0), shape)
    out_hw = [(s + 2 * (k // 2) - k) // stride + 1 for s in shape[1:3]]
    dy = jax.random.normal(jax.random.PRNGKey(1), (shape[0], *out_hw, shape[3]))
    got = jax.jit(cpu_kernels.kernel_grad, static_argnums=(2, 3))(x, dy, k, stride)
    want = layers._kernel_grad(x, dy, k, stride)
    assert got.shape == (k, k, 1, shape[3]) and got.dtype == jnp.float32
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    # and the grouped convolution's own kernel gradient
    _, vjp = jax.vjp(lambda kern: layers.depthwise_conv_xla(x, kern, stride), jnp.zeros((k, k, 1, shape[3])))
    np.testing.assert_allclose(got, vjp(dy)[0], rtol=1e-4, atol=1e-4)


def test_kernel_grad_under_vmap():
    """Vectorised sweeps vmap the train step over models: the op runs once per model."""
    xs = jax.random.normal(jax.random.PRNGKey(2), (3, 2, 6, 6, 8))
    dys = jax.random.normal(jax.random.PRNGKey(3), (3, 2, 6, 6, 8))
    got = jax.jit(jax.vmap(lambda x, dy: cpu_kernels.kernel_grad(x, dy, 3, 1)))(xs, dys)
    for m in range(3):
        np.testing.assert_allclose(got[m], layers._kernel_grad(xs[m], dys[m], 3, 1), rtol=1e-5, atol=1e-5)


def test_self_check_tells_a_right_kernel_from_a_wrong_one():
    assert cpu_kernels._self_check(cpu_kernels.kernel_grad)
    assert not cpu_kernels._self_check(lambda x, dy, k, stride: jnp.zeros((k, k, 1, x.shape[3])))


def test_rejects_other_dtypes():
    x = jnp.zeros((1, 4, 4, 8), jnp.bfloat16)
    with pytest.raises(ValueError, match="float32 NHWC"):
        cpu_kernels.kernel_grad(x, x, 3, 1)


def test_shift_ffi_falls_back_for_bfloat16():
    x = jax.random.normal(jax.random.PRNGKey(4), (2, 6, 6, 8), jnp.bfloat16)
    kernel = jax.random.normal(jax.random.PRNGKey(5), (3, 3, 1, 8), jnp.bfloat16)

    def kernel_grad(fn):
        return jax.grad(lambda k: jnp.sum(fn(x, k, 1).astype(jnp.float32) ** 2))(kernel)

    compiled, plain = kernel_grad(layers.depthwise_conv_shift_ffi), kernel_grad(layers.depthwise_conv_shift)
    np.testing.assert_array_equal(compiled, plain)


def test_auto_uses_it_on_one_cpu_device():
    assert jax.device_count() == 1
    assert layers.resolve_depthwise_impl("auto") == "shift_ffi"


def test_offsets_match_the_ffi_header(tmp_path):
    """The handler's struct offsets, read off jaxlib's xla/ffi/api/c_api.h by a C compiler."""
    compiler = shutil.which(os.environ.get("CC", "cc"))
    header = os.path.join(jax.ffi.include_dir(), "xla", "ffi", "api", "c_api.h")
    if compiler is None or not os.path.exists(header):
        pytest.skip("needs a C compiler and jaxlib's FFI header")
    fields = {
        "_FRAME_MIN_SIZE": "XLA_FFI_CallFrame_STRUCT_SIZE",
        "_FRAME_EXTENSION": "offsetof(XLA_FFI_CallFrame, extension_start)",
        "_FRAME_STAGE": "offsetof(XLA_FFI_CallFrame, stage)",
        "_FRAME_ARGS_SIZE": "offsetof(XLA_FFI_CallFrame, args) + offsetof(XLA_FFI_Args, size)",
        "_FRAME_ARGS": "offsetof(XLA_FFI_CallFrame, args) + offsetof(XLA_FFI_Args, args)",
        "_FRAME_RETS_SIZE": "offsetof(XLA_FFI_CallFrame, rets) + offsetof(XLA_FFI_Rets, size)",
        "_FRAME_RETS": "offsetof(XLA_FFI_CallFrame, rets) + offsetof(XLA_FFI_Rets, rets)",
        "_EXT_TYPE": "offsetof(XLA_FFI_Extension_Base, type)",
        "_META_EXT_METADATA": "offsetof(XLA_FFI_Metadata_Extension, metadata)",
        "_META_API_VERSION": "offsetof(XLA_FFI_Metadata, api_version)",
        "_META_TRAITS": "offsetof(XLA_FFI_Metadata, traits)",
        "_META_STATE_TYPE_ID": "offsetof(XLA_FFI_Metadata, state_type_id)",
        "_BUF_DATA": "offsetof(XLA_FFI_Buffer, data)",
        "_BUF_DIMS": "offsetof(XLA_FFI_Buffer, dims)",
        "_API_MAJOR": "XLA_FFI_API_MAJOR",
        "_API_MINOR": "XLA_FFI_API_MINOR",
        "_STAGE_EXECUTE": "XLA_FFI_ExecutionStage_EXECUTE",
        "_API_VERSION_SIZE": "XLA_FFI_Api_Version_STRUCT_SIZE",
    }
    lines = "".join(f'  printf("%s %ld\\n", "{name}", (long)({expr}));\n' for name, expr in fields.items())
    source = tmp_path / "offsets.c"
    source.write_text(f'#include <stddef.h>\n#include <stdio.h>\n#include "{header}"\nint main(void) {{\n{lines}}}\n')
    subprocess.run([compiler, str(source), "-o", str(tmp_path / "offsets")], check=True)
    out = subprocess.run([str(tmp_path / "offsets")], check=True, capture_output=True, text=True).stdout
    for line in out.splitlines():
        name, value = line.split()
        expected = getattr(_ffi_numba, name)
        assert int(value) == expected, f"{name}: header says {value}, handler uses {expected}"

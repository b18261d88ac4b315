"""The program a GPU would run, lowered here on the CPU: the jitted train step (one device and a
2-device mesh) and predict's forward pass, exported for CUDA with the depthwise convolution a GPU
picks, call no CPU-only kernel. This shows the program, not its speed."""

import re

import jax
import jax.numpy as jnp
import pytest
from jax import export
from jax.sharding import AbstractMesh, NamedSharding
from jax.sharding import PartitionSpec as P

from amobilenet_jax import inference, steps
from amobilenet_jax.kernels.depthwise import resolve_depthwise_impl
from amobilenet_jax.models import build_model

# Custom calls that only the CPU runtime provides: this project's compiled CPU kernels, LAPACK,
# and Python callbacks on the host.
CPU_ONLY = re.compile(r"^(amobilenet_|lapack_|xla_python_cpu|xla_ffi_python_cpu|cpu_)")


def custom_calls(mlir: str) -> set[str]:
    return set(re.findall(r"custom_call @([\w.]+)", mlir)) | set(re.findall(r'call_target_name = "([^"]+)"', mlir))


def spec(tree):
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), tree)


@pytest.fixture(scope="module")
def gpu_config(tiny_config):
    cfg = tiny_config.copy_and_resolve_references()
    cfg.model.depthwise_impl = resolve_depthwise_impl("auto", backend="gpu")
    return cfg


def train_step_inputs(cfg):
    model = build_model(cfg.model, 8)
    state = steps.create_train_state(cfg, model, cfg.data.image_size, 8, total_steps=10)
    size, batch = cfg.data.image_size, cfg.train.batch_size
    images = jnp.zeros((batch, size, size, 1), jnp.uint8)
    return spec((state, {"image": images, "label": jnp.zeros((batch,), jnp.int32)}))


def test_a_gpu_picks_xla_depthwise_and_the_cpu_its_compiled_kernel():
    assert resolve_depthwise_impl("auto", backend="gpu") == "xla"
    assert resolve_depthwise_impl("auto", backend="cpu", device_count=2) == "shift"
    assert resolve_depthwise_impl("shift", backend="gpu") == "shift"


def test_the_train_step_lowers_for_cuda_on_one_device_and_a_2_device_mesh(gpu_config):
    state, batch = train_step_inputs(gpu_config)
    step = steps.make_train_step(gpu_config, 10)
    one = export.export(jax.jit(step), platforms=["cuda"])(state, batch)
    mesh = AbstractMesh((2,), ("data",))
    replicated, sharded = NamedSharding(mesh, P()), NamedSharding(mesh, P("data"))
    sharded_step = jax.jit(step, in_shardings=(replicated, sharded), out_shardings=replicated)
    two = export.export(sharded_step, platforms=["cuda"])(state, batch)
    for exported, devices in ((one, 1), (two, 2)):
        assert exported.platforms == ("cuda",) and exported.nr_devices == devices
        mlir = exported.mlir_module()
        assert "stablehlo.convolution" in mlir and "feature_group_count" in mlir  # XLA's depthwise conv
        assert not {c for c in custom_calls(mlir) if CPU_ONLY.match(c)}, custom_calls(mlir)
    assert "mhlo.num_partitions = 2" in two.mlir_module()
    # The check can fail: the same step lowered for this CPU with its compiled kernel gradient
    # calls it.
    cpu_config = gpu_config.copy_and_resolve_references()
    cpu_config.model.depthwise_impl = "shift_ffi"
    cpu_state, cpu_batch = train_step_inputs(cpu_config)
    cpu_mlir = jax.jit(steps.make_train_step(cpu_config, 10)).lower(cpu_state, cpu_batch).as_text()
    assert {c for c in custom_calls(cpu_mlir) if CPU_ONLY.match(c)} == {"amobilenet_depthwise_kernel_grad"}


def test_predicts_forward_of_the_shipped_model_lowers_for_cuda():
    model = inference.load_model()
    config = model.config.copy_and_resolve_references()
    config.model.depthwise_impl = resolve_depthwise_impl("auto", backend="gpu")
    gpu_model = inference.Model(config, build_model(config.model, len(model.class_names)), model.variables,
                                model.class_names, model.source)  # fmt: skip
    faces = jax.ShapeDtypeStruct((16, *model.native_shape), jnp.uint8)
    exported = export.export(gpu_model._forward, platforms=["cuda"])(spec(model.variables), faces, False)
    mlir = exported.mlir_module()
    assert exported.platforms == ("cuda",)
    assert not {c for c in custom_calls(mlir) if CPU_ONLY.match(c)}, custom_calls(mlir)
    assert exported.out_avals[0].shape == (16, len(model.class_names))

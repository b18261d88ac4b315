"""Shared test setup: one persistent XLA compilation cache for the whole session.

Compiling A-MobileNet's train step takes tens of seconds on a 2-core CPU; tests
and the command-line runs they start share compiled programs through this cache.
"""

import os
import sys
import tempfile

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CACHE = os.environ.setdefault("AMOBILENET_JAX_CACHE", os.path.join(tempfile.gettempdir(), "amobilenet_jax_test_cache"))
# CI starts from an empty cache, so the suite's time is mostly XLA compiling its few dozen
# programs, each then run for a handful of steps. Two settings make compiling cheaper: LLVM's
# expensive passes (vectorisation, unrolling) off, and XLA's backend at optimisation level 2
# instead of 3 (the tiny train step: 5.4 s -> 4.4 s to compile; the suite passes alike). Set
# here, before jax starts, so the command-line runs the tests start inherit them. (Level 0
# compiles 3x faster but makes the tiny model's gradients non-finite on the CPU: not a setting
# to test the code under.)
FAST_COMPILE = "--xla_llvm_disable_expensive_passes=true --xla_backend_optimization_level=2"
os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {FAST_COMPILE}".strip()

import jax  # noqa: E402

jax.config.update("jax_compilation_cache_dir", CACHE)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)  # as runtime.enable_compilation_cache


def normal(seed: int, shape, dtype=None):
    """A standard-normal test input drawn by NumPy: ``jax.random.normal`` compiles a program for
    each shape (one to two seconds each on a 2-core CPU), which a test input need not cost."""
    import numpy as np

    return jax.numpy.asarray(np.random.default_rng(seed).standard_normal(shape), dtype or jax.numpy.float32)


def random_variables(module, x, seed: int = 0, **init_kwargs) -> dict:
    """Fan-in-scaled random variables in the shapes ``module.init(key, x, **init_kwargs)`` would
    create (BatchNorm at its identity), drawn by NumPy: compiling a model's init costs seconds
    to tens of seconds (every initializer's random numbers), which a test of its forward pass
    need not pay."""
    import numpy as np

    rng = np.random.default_rng(seed)

    def draw(path, leaf):
        name = path[-1].key
        if name in ("scale", "var"):
            return jax.numpy.ones(leaf.shape, leaf.dtype)
        if name == "mean":
            return jax.numpy.zeros(leaf.shape, leaf.dtype)
        if name == "bias":
            return jax.numpy.asarray(rng.normal(0.0, 0.1, leaf.shape), leaf.dtype)
        # Kernels: conv/dense (..., in, out) and depthwise (k, k, 1, C) both have fan-in prod(shape[:-1]).
        return jax.numpy.asarray(rng.normal(0.0, 1.0, leaf.shape) / np.sqrt(np.prod(leaf.shape[:-1])), leaf.dtype)

    shapes = jax.eval_shape(lambda: module.init({"params": jax.random.PRNGKey(0)}, x, **init_kwargs))
    return jax.tree_util.tree_map_with_path(draw, shapes)


def load_config(name: str, variant: str | None = None):
    """Loads ``configs/<name>.py[:variant]`` the way --config does."""
    from amobilenet_jax.config import load_config_file

    spec = os.path.join(REPO, "configs", f"{name}.py") + (f":{variant}" if variant else "")
    return load_config_file(spec)


@pytest.fixture(scope="session")
def tiny_config():
    return load_config("quickstart", "tiny")


def micro(config, image_size: int = 16):
    """``config`` with the smallest body the checks of a train step's mechanics need: two blocks
    (the second with CBAM), at 16 px unless ``image_size`` says otherwise. A test whose train
    step no other test compiles (its own augmentation, SAM, vmapped points, the coarse stem,
    a distilled student) compiles it in less time than the tiny body's (experiments/suite/)."""
    config = config.copy_and_resolve_references()
    config.model.blocks = ((32, 1), (64, 2))
    config.model.cbam_blocks = (2,)
    config.data.image_size = image_size
    return config


@pytest.fixture(scope="session")
def python():
    return sys.executable


@pytest.fixture(scope="session")
def finished_run(tiny_config, tmp_path_factory):
    """``(workdir, results)`` of the tiny quickstart run trained to its end (16 steps), shared by
    every test that reads a finished run; a test that changes a run copies it first."""
    from amobilenet_jax import train

    workdir = str(tmp_path_factory.mktemp("finished_run"))
    return workdir, train.train_and_evaluate(tiny_config, workdir)


# The modules that take longest, first (their seconds in a full run, 2026-12-06, in this order):
# the workers (pytest-xdist, one module per worker at a time) then end together instead of one
# running a long module alone at the end. Modules not named run after these, by name.
LONGEST_FIRST = (
    "test_reliability.py",
    "test_predict.py",
    "test_configs.py",
    "test_vectorized.py",
    "test_serve.py",
    "test_multihost.py",
    "test_bench.py",
    "test_pipeline.py",
    "test_steps.py",
    "test_imagenet.py",
    "test_models.py",
    "test_distill.py",
    "test_export.py",
    "test_launch.py",
    "test_ship.py",
    "test_evaluate.py",
    "test_sweep.py",
    "test_models_v2_v3.py",
    "test_kernels.py",
    "test_weight_average.py",
    "test_coarse_stem.py",
    "test_page.py",
)


def pytest_collection_modifyitems(session, config, items):
    def rank(item):
        name = os.path.basename(str(item.fspath))
        return LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)  # stable: tests keep their order within a module

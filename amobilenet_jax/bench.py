"""Benchmarks: the train step and inference against the PyTorch peer, the input pipelines,
and the machine's limits (docs/benchmarks.md).

    python -m amobilenet_jax.bench --mode train --model amobilenet --batch 64 --image_size 48
    python -m amobilenet_jax.bench --mode infer --model amobilenet --batch 1 --image_size 224 --depthwise xla
    python -m amobilenet_jax.bench --mode input --pipeline grain --workers 2 --image_size 224
    python -m amobilenet_jax.bench --mode peak

``train`` times the real jitted train step on one prepared batch, ``infer`` the eval forward
pass; both report the peer's keys (../shared/bench/torch_peer.py: ``images_per_s``,
``ms_per_step``, ``warmup_s``, ``spread``) and more. ``input`` times augmented images leaving a
pipeline (no model); ``peak`` a large matmul and a large elementwise pass. Each is the median of
several repeats after warm-up, a device sync per repeat; the last line printed is JSON.
"""

from __future__ import annotations

import itertools
import json
import resource
import statistics
import time
from typing import NamedTuple

import jax
import ml_collections
from absl import app, flags

from amobilenet_jax.data.pipeline import PIPELINES
from amobilenet_jax.kernels import DEPTHWISE_IMPLS

FLAGS = flags.FLAGS
flags.DEFINE_enum("mode", "train", ["train", "infer", "input", "peak"], "What to time.")
flags.DEFINE_string("model", "amobilenet", "Model name (train/infer).")
flags.DEFINE_enum("dtype", "float32", ["float32", "bfloat16"], "Compute dtype (train/infer).")
flags.DEFINE_enum("depthwise", "auto", list(DEPTHWISE_IMPLS), "Depthwise implementation (train/infer).")
flags.DEFINE_float("width", 1.0, "Width multiplier (train/infer).")
flags.DEFINE_integer("stem_stride", 0, "MobileNetV1/A-MobileNet stem stride (train/infer); 0: the model's own (2).")
flags.DEFINE_bool(
    "augment",
    False,
    "--mode train: feed uint8 grayscale 48x48 images, so the step includes the on-device "
    "augmentation, resize and normalisation of a real FERPlus run (the peer has none).",
)
flags.DEFINE_enum("pipeline", "device", list(PIPELINES), "Input pipeline.")
flags.DEFINE_string("dataset", "synthetic", "Data set name (synthetic, ferplus, rafdb, fer2013).")
flags.DEFINE_string("data_dir", "", "Data set directory (real data sets).")
flags.DEFINE_string("cache_dir", "", "Prepared-data cache directory.")
flags.DEFINE_integer("image_size", 224, "Output image size.")
flags.DEFINE_integer("batch", 64, "Batch size.")
flags.DEFINE_integer("workers", 2, "Grain worker processes.")
flags.DEFINE_integer("steps", 20, "Batches per repeat.")
flags.DEFINE_integer("repeats", 5, "Timed repeats.")
flags.DEFINE_string("balance", "oversample", "Class balancing of the sampler.")
flags.DEFINE_bool(
    "cpu_tuning",
    True,
    "--mode train: apply amobilenet_jax.runtime.configure() first, as main does. Inference is timed "
    "without it: it makes batch-1 calls slower (Python no longer prepares a call while one runs).",
)


def _data_config() -> ml_collections.ConfigDict:
    from amobilenet_jax.config import base_config

    c = base_config()
    c.data.name = FLAGS.dataset
    c.data.dir = FLAGS.data_dir
    c.data.cache_dir = FLAGS.cache_dir
    c.data.image_size = FLAGS.image_size
    c.data.balance = FLAGS.balance
    c.data.grain_workers = FLAGS.workers
    if FLAGS.dataset == "synthetic":
        c.data.num_train, c.data.num_test = 8000, 64
    return c


class Timing(NamedTuple):
    warmup_s: float
    median_s: float  # per call
    times: list[float]  # seconds per call, one per repeat
    minor_faults: float  # per call over the repeats: pages the kernel had to zero-fill


def _timed(fn, args_fn, warmup_calls: int = 3) -> Timing:
    """Warm-up then repeats of FLAGS.steps calls."""
    t0 = time.perf_counter()
    out = None
    for _ in range(warmup_calls):
        out = fn(*args_fn())
    jax.block_until_ready(out)
    warmup = time.perf_counter() - t0
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    times = []
    for _ in range(FLAGS.repeats):
        t = time.perf_counter()
        for _ in range(FLAGS.steps):
            out = fn(*args_fn())
        jax.block_until_ready(out)
        times.append((time.perf_counter() - t) / FLAGS.steps)
    faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults) / (FLAGS.repeats * FLAGS.steps)
    return Timing(warmup, statistics.median(times), times, faults)


def bench_input() -> dict:
    from amobilenet_jax.data import load_dataset
    from amobilenet_jax.data.augment import prepare_images as _prepare
    from amobilenet_jax.data.pipeline import DeviceSplit, TrainOrder, make_mesh

    config = _data_config()
    split = load_dataset(config.data).split("train")
    order = TrainOrder(0, split.labels, FLAGS.batch, config.data.balance, config.data.balance_power)
    total = FLAGS.steps * (FLAGS.repeats + 1)
    if FLAGS.pipeline == "device":
        device_split = DeviceSplit(split, make_mesh())
        prepare = jax.jit(lambda images, key: _prepare(images, config, key))

        def next_batch(step):
            batch = device_split.batch(order.indices(step))
            return prepare(batch["image"], jax.random.PRNGKey(step))
    else:
        from amobilenet_jax.data.grain_pipeline import train_iterator

        iterator = train_iterator(split, order, config.data, 0, total + 1, FLAGS.workers)

        def next_batch(step):
            return next(iterator)["image"]

    steps = itertools.count()  # every call gets the next step's batch
    # Warm-up of a whole repeat: compile, start the workers, fill their buffers.
    warmup, med, times, _ = _timed(next_batch, lambda: (next(steps),), warmup_calls=FLAGS.steps)
    return {
        "mode": "input",
        "pipeline": FLAGS.pipeline,
        "dataset": FLAGS.dataset,
        "native_size": list(split.images.shape[1:]),
        "image_size": FLAGS.image_size,
        "batch": FLAGS.batch,
        "workers": FLAGS.workers if FLAGS.pipeline == "grain" else 0,
        "images_per_s": round(FLAGS.batch / med, 1),
        "ms_per_step": round(1000 * med, 3),
        "warmup_s": round(warmup, 2),
        "spread": round(max(times) / min(times), 3),
        "device": str(jax.devices()[0].device_kind),
    }


def _depthwise_ran(impl: str) -> str:
    """The implementation a timed train step ran: ``shift_ffi`` is ``shift`` where the compiled
    kernel gradient could not run (its warning says why)."""
    from amobilenet_jax.kernels import cpu_kernels

    if impl == "shift_ffi" and FLAGS.mode == "train" and not cpu_kernels.available():
        return "shift"
    return impl


def bench_model() -> dict:
    import jax.numpy as jnp

    from amobilenet_jax import steps
    from amobilenet_jax.config import base_config
    from amobilenet_jax.kernels import resolve_depthwise_impl
    from amobilenet_jax.models import build_model, count_params

    c = base_config()
    c.model.name = FLAGS.model
    c.model.width = FLAGS.width
    c.model.dtype = FLAGS.dtype
    c.model.depthwise_impl = FLAGS.depthwise
    if FLAGS.stem_stride:
        c.model.stem_stride = FLAGS.stem_stride
    c.data.image_size = FLAGS.image_size
    c.train.batch_size = FLAGS.batch
    num_classes = 8
    model = build_model(c.model, num_classes)
    state = steps.create_train_state(c, model, FLAGS.image_size, num_classes)
    key = jax.random.PRNGKey(0)
    images = jax.random.normal(key, (FLAGS.batch, FLAGS.image_size, FLAGS.image_size, 3), jnp.float32)
    labels = jax.random.randint(key, (FLAGS.batch,), 0, num_classes)
    if FLAGS.mode == "train":
        # Float images skip the step's own augmentation, as the peer has none; --augment
        # feeds what a FERPlus run feeds (uint8, 48x48, one channel) instead.
        fn = jax.jit(steps.make_train_step(c), donate_argnums=0)
        if FLAGS.augment:
            images = jax.random.randint(key, (FLAGS.batch, 48, 48, 1), 0, 256).astype(jnp.uint8)
        batch = {"image": images, "label": labels}
        t = time.perf_counter()
        lowered = fn.lower(state, batch)
        compiled = lowered.compile()
        compile_s = time.perf_counter() - t
        holder = {"state": state}

        def step(b):
            holder["state"], _ = compiled(holder["state"], b)
            return holder["state"].params

        flops = lowered.cost_analysis().get("flops", float("nan"))
        timing = _timed(step, lambda: (batch,))
    else:
        variables = {"params": state.params, "batch_stats": state.batch_stats}
        fn = jax.jit(lambda v, x: model.apply(v, x, train=False)[0])
        t = time.perf_counter()
        lowered = fn.lower(variables, images)
        compiled = lowered.compile()
        compile_s = time.perf_counter() - t
        flops = lowered.cost_analysis().get("flops", float("nan"))
        timing = _timed(compiled, lambda: (variables, images))
    warmup, med, times, faults = timing
    return {
        "framework": "jax",
        "jax": jax.__version__,
        "device": str(jax.devices()[0].device_kind),
        "model": FLAGS.model,
        "mode": FLAGS.mode,
        "batch": FLAGS.batch,
        "image_size": FLAGS.image_size,
        "dtype": FLAGS.dtype,
        "stem_stride": FLAGS.stem_stride or None,
        "augment": FLAGS.augment and FLAGS.mode == "train",
        "depthwise": _depthwise_ran(resolve_depthwise_impl(FLAGS.depthwise)),
        "params": count_params(state.params),
        "flops_per_image": flops / FLAGS.batch,
        "ms_per_step": round(1000 * med, 3),
        "images_per_s": round(FLAGS.batch / med, 1),
        "compile_s": round(compile_s, 2),
        "warmup_s": round(warmup, 2),
        "spread": round(max(times) / min(times), 3),
        "minor_faults_per_step": round(faults),
        "cpu_tuning": _cpu_tuned(),
    }


def bench_peak() -> dict:
    import jax.numpy as jnp

    dtype = jnp.dtype(FLAGS.dtype)
    result = {"mode": "peak", "device": str(jax.devices()[0].device_kind), "dtype": FLAGS.dtype, "jax": jax.__version__}
    for n in (1024, 2048):
        a = jnp.ones((n, n), dtype)
        b = jnp.ones((n, n), dtype)
        matmul = jax.jit(jnp.matmul)
        med = _timed(matmul, lambda a=a, b=b: (a, b)).median_s
        result[f"matmul_{n}_gflops"] = round(2 * n**3 / med / 1e9, 1)
    # 256 MB, far beyond any cache, updated in place: a fresh output each call would
    # time the kernel faulting in new pages (on CPU) rather than the memory.
    holder = [jnp.ones((64 << 20,), jnp.float32)]
    scale = jax.jit(lambda v: v * 1.5, donate_argnums=0)

    def scale_in_place(v):
        holder[0] = scale(v)
        return holder[0]

    med = _timed(scale_in_place, lambda: (holder[0],)).median_s
    result["stream_gb_per_s"] = round(2 * holder[0].nbytes / med / 1e9, 1)
    return result


def _cpu_tuned() -> bool:
    return FLAGS.cpu_tuning and FLAGS.mode == "train"


def main(argv):
    del argv
    if _cpu_tuned():
        from amobilenet_jax import runtime

        runtime.configure()
    modes = {"input": bench_input, "peak": bench_peak}
    print(json.dumps(modes.get(FLAGS.mode, bench_model)()))


if __name__ == "__main__":
    app.run(main)

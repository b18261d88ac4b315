"""The benchmark harness runs and reports what it measured (not how fast: timings live in experiments/)."""

import functools
import json
import subprocess
import sys

import pytest

from tests.conftest import REPO


@pytest.mark.parametrize("pipeline", ["device", "grain"])
def test_input_benchmark_reports_json(pipeline):
    args = ["--mode=input", f"--pipeline={pipeline}", "--image_size=32", "--batch=8", "--steps=2", "--repeats=2"]
    args += ["--workers=0"] if pipeline == "grain" else []
    proc = subprocess.run(
        [sys.executable, "-m", "amobilenet_jax.bench", *args], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["pipeline"] == pipeline and result["image_size"] == 32 and result["batch"] == 8
    assert result["images_per_s"] > 0 and result["ms_per_step"] > 0 and result["spread"] >= 1.0
    assert result["native_size"] == [48, 48, 1]


SMALL = ["--width=0.25", "--image_size=32", "--batch=4", "--steps=2", "--repeats=2"]


@pytest.mark.parametrize("mode", ["train", "infer"])
def test_model_benchmark_reports_the_peers_keys(mode):
    # The train step as the recipe measures it (test_recipe_benchmark_flags_stem_stride_and_augment): one run.
    flags = ("--stem_stride=1", "--augment") if mode == "train" else ()
    result = _bench(f"--mode={mode}", *flags, *SMALL)
    for key in ("images_per_s", "ms_per_step", "warmup_s", "spread", "compile_s", "device", "params"):
        assert key in result, key
    assert result["mode"] == mode and result["batch"] == 4 and result["params"] == 228_936
    assert result["flops_per_image"] > 0 and result["images_per_s"] > 0
    assert result["cpu_tuning"] is (mode == "train") and result["minor_faults_per_step"] >= 0


def test_peak_benchmark_reports_the_machine_limits():
    proc = subprocess.run(
        [sys.executable, "-m", "amobilenet_jax.bench", "--mode=peak", "--steps=1", "--repeats=1"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["mode"] == "peak" and result["dtype"] == "float32"
    assert result["matmul_1024_gflops"] > 0 and result["matmul_2048_gflops"] > 0 and result["stream_gb_per_s"] > 0


@functools.cache
def _bench(*args):
    """The JSON record of ``python -m amobilenet_jax.bench ARGS``; each command line runs once per session."""
    proc = subprocess.run(
        [sys.executable, "-m", "amobilenet_jax.bench", *args], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_recipe_benchmark_flags_stem_stride_and_augment():
    """experiments/ferplus_cpu/recipe_speed.sh: the CPU recipe's stem stride, and the step with its augmentation."""
    step = _bench("--mode=train", "--stem_stride=1", "--augment", *SMALL)
    assert step["stem_stride"] == 1 and step["augment"] is True and step["images_per_s"] > 0
    stem1 = _bench("--mode=infer", "--stem_stride=1", *SMALL)
    stem2 = _bench("--mode=infer", *SMALL)  # the run test_model_benchmark_reports_the_peers_keys made
    assert stem2["stem_stride"] is None and stem2["augment"] is False
    # The stem at stride 1 keeps twice the resolution in every later layer: about 4x the FLOPs.
    assert 3 < stem1["flops_per_image"] / stem2["flops_per_image"] < 4.5

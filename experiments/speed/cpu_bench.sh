#!/usr/bin/env bash
# Side-by-side CPU benchmark: the PyTorch peer (eager, channels_last) and
# amobilenet_jax, in one run on one machine, every row of experiments/speed/README.md.
#
#   bash experiments/speed/cpu_bench.sh [OUT_JSONL]      # default experiments/speed/benchmarks_cpu.jsonl
#
# Needs torch (pip install torch==2.13.0) and ../shared/bench/torch_peer.py (or
# PEER=path). Nothing else may run on the machine meanwhile: it times wall clock.
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${1:-experiments/speed/benchmarks_cpu.jsonl}
PEER=${PEER:-../shared/bench/torch_peer.py}
: > "$OUT"
jax_bench() { python -m amobilenet_jax.bench "$@" 2>/dev/null | tail -n 1 >> "$OUT"; }
peer() { python "$PEER" "$@" --channels-last | tail -n 1 >> "$OUT"; }

jax_bench --mode peak --steps 5 --repeats 3
# Inference at 224x224, batch 1 / 32 / 64. shift_autodiff and shift_ffi have shift's forward pass.
for b in 1 32 64; do
  steps=$([ "$b" = 1 ] && echo 20 || echo 3)
  peer --mode infer --batch "$b" --image-size 224 --steps "$steps" --repeats 5
  for impl in shift xla; do
    jax_bench --mode infer --batch "$b" --image_size 224 --depthwise "$impl" --steps "$steps" --repeats 5
  done
done
jax_bench --mode infer --batch 1 --image_size 224 --depthwise shift --dtype bfloat16 --steps 20 --repeats 5
# Training at 48x48 (FER's native size), batch 1 / 32 / 64.
for b in 1 32 64; do
  peer --mode train --batch "$b" --image-size 48 --steps 10 --repeats 5
  for impl in shift_ffi shift shift_autodiff xla; do
    steps=$([ "$impl" = xla ] && echo 5 || echo 10)
    jax_bench --mode train --batch "$b" --image_size 48 --depthwise "$impl" --steps "$steps" --repeats 5
  done
done
# bfloat16: shift_ffi's compiled kernel gradient is float32 only, so shift.
jax_bench --mode train --batch 64 --image_size 48 --depthwise shift --dtype bfloat16 --steps 10 --repeats 5
# Without amobilenet_jax.runtime (heap reuse, synchronous dispatch), as before it existed.
jax_bench --mode train --batch 64 --image_size 48 --depthwise shift_ffi --steps 10 --repeats 5 --nocpu_tuning
# The headline pair once more at the end, so drift of the machine during the run shows.
peer --mode train --batch 64 --image-size 48 --steps 10 --repeats 5
jax_bench --mode train --batch 64 --image_size 48 --depthwise shift_ffi --steps 10 --repeats 5
echo "wrote $OUT" >&2

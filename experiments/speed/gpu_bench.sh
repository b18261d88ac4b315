#!/usr/bin/env bash
# GPU training benchmark, one call on the device machine: amobilenet_jax against the
# PyTorch peer on the same card, 224x224, bfloat16, batch 64 and 256, each depthwise
# implementation; the peer with --bf16 --channels-last, eager and --compile.
#
# Prepare here (the GPU image lacks ml-collections & co., and ../shared does not travel):
#   bash ../shared/tools/device_wheels.sh
#   mkdir -p .peer && cp ../shared/bench/torch_peer.py .peer/ && echo /.peer/ >> .git/info/exclude
# Then, with the device tool:  run(command="bash experiments/speed/gpu_bench.sh", carry=[".whl", ".peer"],
# timeout_s=540); expect about 8 minutes (torch.compile's warm-up is the longest part).
# Results: $OUT/gpu_bench.jsonl (one JSON line per run) and $OUT/gpu_bench.log; commit
# them as experiments/speed/gpu_bench_<card>.jsonl.
#
# SMOKE=1 runs every step tiny (32x32, batch 4, one step) to check the script on a CPU.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/gpu_bench}
mkdir -p "$OUT"
RESULTS="$OUT/gpu_bench.jsonl"
LOG="$OUT/gpu_bench.log"
: > "$RESULTS"
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site:$PWD
fi
PEER=${PEER:-.peer/torch_peer.py}
[ -f "$PEER" ] || PEER=../shared/bench/torch_peer.py
SIZE=224; BATCHES="64 256"; STEPS=10; REPEATS=3; LIMIT=150  # seconds per JAX or eager run
if [ "${SMOKE:-0}" = 1 ]; then SIZE=32; BATCHES=4; STEPS=1; REPEATS=1; fi
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true; } | tee -a "$LOG"

record() {  # record LIMIT_S LABEL CMD...: run with a time limit, keep the last JSON line
  local limit=$1 label=$2; shift 2
  echo "== $label: $*" >> "$LOG"
  local line
  line=$(timeout "$limit" "$@" 2>> "$LOG" | tail -n 1)
  if [ -n "$line" ] && [ "${line:0:1}" = "{" ]; then
    echo "$line" >> "$RESULTS"; echo "$label $line" | tee -a "$LOG"
  else
    echo "{\"label\": \"$label\", \"failed\": true}" >> "$RESULTS"; echo "$label FAILED" | tee -a "$LOG"
  fi
}

for b in $BATCHES; do
  for impl in xla shift shift_autodiff; do
    record "$LIMIT" "jax-$impl-b$b" python3 -m amobilenet_jax.bench --mode train --batch "$b" --image_size "$SIZE" \
      --dtype bfloat16 --depthwise "$impl" --steps "$STEPS" --repeats "$REPEATS"
  done
  record "$LIMIT" "torch-eager-b$b" python3 "$PEER" --mode train --batch "$b" --image-size "$SIZE" --bf16 --channels-last \
    --steps "$STEPS" --repeats "$REPEATS"
  record $((2 * LIMIT)) "torch-compile-b$b" python3 "$PEER" --mode train --batch "$b" --image-size "$SIZE" --bf16 --channels-last \
    --compile --steps "$STEPS" --repeats "$REPEATS"
done
record "$LIMIT" "jax-peak" python3 -m amobilenet_jax.bench --mode peak --dtype bfloat16 --steps 10 --repeats 3
echo "results in $RESULTS" | tee -a "$LOG"

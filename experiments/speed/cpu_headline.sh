#!/usr/bin/env bash
# The two targets of issue 5, measured as interleaved pairs (peer, then JAX, REPS
# times) so that drift of a shared machine hits both sides alike:
#   inference, batch 1, 224x224  and  training, batch 64, 48x48; float32, CPU.
#
#   bash experiments/speed/cpu_headline.sh [OUT_JSONL] [REPS]   # default experiments/speed/headline_cpu.jsonl, 3
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${1:-experiments/speed/headline_cpu.jsonl}
REPS=${2:-3}
PEER=${PEER:-../shared/bench/torch_peer.py}
: > "$OUT"
for _ in $(seq "$REPS"); do
  python "$PEER" --mode infer --batch 1 --image-size 224 --channels-last --steps 20 --repeats 5 | tail -n 1 >> "$OUT"
  python -m amobilenet_jax.bench --mode infer --batch 1 --image_size 224 --steps 20 --repeats 5 2>/dev/null | tail -n 1 >> "$OUT"
  python "$PEER" --mode train --batch 64 --image-size 48 --channels-last --steps 10 --repeats 5 | tail -n 1 >> "$OUT"
  python -m amobilenet_jax.bench --mode train --batch 64 --image_size 48 --steps 10 --repeats 5 2>/dev/null | tail -n 1 >> "$OUT"
done
python - "$OUT" <<'PY'
import json, statistics, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
for mode, key, better in (("infer", "ms_per_step", "latency"), ("train", "images_per_s", "throughput")):
    peer = [r[key] for r in rows if r["mode"] == mode and r.get("peer")]
    jax = [r[key] for r in rows if r["mode"] == mode and not r.get("peer")]
    ratios = [j / p for j, p in zip(jax, peer)]
    print(f"{mode}: peer {peer}, jax {jax}, jax/peer {better} per pair "
          f"{[round(x, 2) for x in ratios]}, median {statistics.median(ratios):.2f}")
PY

#!/usr/bin/env bash
# Speed of the FERPlus CPU recipe (configs/ferplus_cpu.py: A-MobileNet, 48x48, stem stride 1,
# batch 64) where a run spends its time, JAX beside the PyTorch peer with the same stem:
#   train step (interleaved pairs, peer then JAX, REPS times), the real step with on-device
#   augmentation, evaluation's forward pass (batch 256), and the device input pipeline.
#
#   DATA=/data/ferplus bash experiments/ferplus_cpu/recipe_speed.sh [OUT_JSONL] [REPS]
#   # default experiments/ferplus_cpu/recipe_speed_cpu.jsonl, 3; without DATA the input row uses synthetic data
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${1:-experiments/ferplus_cpu/recipe_speed_cpu.jsonl}
REPS=${2:-3}
PEER_STEM1="python experiments/ferplus_cpu/torch_peer_stem1.py"
: > "$OUT"
for _ in $(seq "$REPS"); do
  $PEER_STEM1 --mode train --batch 64 --image-size 48 --channels-last --steps 10 --repeats 5 | tail -n 1 >> "$OUT"
  python -m amobilenet_jax.bench --mode train --batch 64 --image_size 48 --stem_stride 1 --steps 10 --repeats 5 2>/dev/null | tail -n 1 >> "$OUT"
done
python -m amobilenet_jax.bench --mode train --augment --batch 64 --image_size 48 --stem_stride 1 --steps 10 --repeats 5 2>/dev/null | tail -n 1 >> "$OUT"
$PEER_STEM1 --mode infer --batch 256 --image-size 48 --channels-last --steps 4 --repeats 5 | tail -n 1 >> "$OUT"
python -m amobilenet_jax.bench --mode infer --batch 256 --image_size 48 --stem_stride 1 --steps 4 --repeats 5 2>/dev/null | tail -n 1 >> "$OUT"
if [ -n "${DATA:-}" ]; then
  python -m amobilenet_jax.bench --mode input --pipeline device --dataset ferplus --data_dir "$DATA" \
    --cache_dir "${CACHE_DIR:-/tmp/amobilenet_jax_recipe_speed}" --balance none --image_size 48 --batch 64 2>/dev/null | tail -n 1 >> "$OUT"
else
  python -m amobilenet_jax.bench --mode input --pipeline device --balance none --image_size 48 --batch 64 2>/dev/null | tail -n 1 >> "$OUT"
fi
python - "$OUT" <<'PY'
import json, statistics, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
peer = [r["images_per_s"] for r in rows if r.get("peer") and r["mode"] == "train"]
jax = [r["images_per_s"] for r in rows if not r.get("peer") and r["mode"] == "train" and not r.get("augment")]
ratios = [j / p for j, p in zip(jax, peer)]
print(f"train step, stem stride 1, 48x48, batch 64: peer {peer} img/s, jax {jax} img/s, "
      f"jax/peer per pair {[round(x, 2) for x in ratios]}, median {statistics.median(ratios):.2f}")
for r in rows:
    if r.get("augment"):
        print(f"train step with on-device augmentation (jax): {r['images_per_s']} img/s")
    if r["mode"] == "infer":
        print(f"eval forward, batch 256 ({'peer' if r.get('peer') else 'jax'}): {r['images_per_s']} img/s")
    if r["mode"] == "input":
        print(f"input pipeline ({r['pipeline']}, {r['dataset']}): {r['images_per_s']} img/s")
PY

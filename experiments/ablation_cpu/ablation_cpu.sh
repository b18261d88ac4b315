#!/usr/bin/env bash
# The paper's three studies on real FERPlus at CPU scale (the `:cpu` variants: A-MobileNet at
# full width, 48x48, 4 epochs, two seeds a point), one after another, then their tables copied
# to experiments/ablation_cpu/<study>/ (cbam, linear_dw, lambda).
#
#   DATA=/data/ferplus bash experiments/ablation_cpu/ablation_cpu.sh [RUNS_DIR]   # default runs/
#
# Run it again after an interruption: finished points are skipped, an interrupted one resumes.
set -euo pipefail
cd "$(dirname "$0")/../.."
: "${DATA:?set DATA to the FERPlus directory (FER2013Train/, FER2013Valid/)}"
RUNS=${1:-runs}
for study in ablation_cbam ablation_linear_dw ablation_lambda; do
  python -m amobilenet_jax.main --config "configs/${study}.py:cpu" --workdir "${RUNS}/${study}_cpu" \
    --config.data.dir="$DATA" ${CACHE_DIR:+--config.data.cache_dir="$CACHE_DIR"}
  mkdir -p "experiments/ablation_cpu/${study#ablation_}"
  cp "${RUNS}/${study}_cpu"/ablation.{md,csv,tex,png} "experiments/ablation_cpu/${study#ablation_}/"
done

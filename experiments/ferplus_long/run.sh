#!/usr/bin/env bash
# The long recipe's studies on real FERPlus (issue: past every from-scratch FER+ model):
# `configs/ferplus_long.py:full` (the long recipe at stride 1, about four hours a seed) and
# `:screen` (one lever a point, stem at stride 2, about an hour each); many hours, run across sessions.
#
#   DATA=/data/ferplus bash experiments/ferplus_long/run.sh [RUNS_DIR]   # default runs
#
# Run it again after an interruption: finished points are skipped, an interrupted one resumes
# from its newest checkpoint. Points committed under experiments/ferplus_long/points/ (an
# earlier session, maybe on another machine) count as finished. After each point, harvest.py
# copies every finished point's results, config and Valid curve there, and `--mode table`
# rebuilds the study's table from them: commit them as they land.
set -euo pipefail
cd "$(dirname "$0")/../.."
: "${DATA:?set DATA to the FERPlus directory (FER2013Train/, FER2013Valid/)}"
RUNS=${1:-runs}
POINTS=experiments/ferplus_long/points
mkdir -p "${RUNS}/ferplus_long_points" "$POINTS"
for committed in "$POINTS"/*/; do
  [ -e "$committed/results.json" ] || continue
  name=$(basename "$committed")
  if [ ! -e "${RUNS}/ferplus_long_points/${name}" ]; then
    mkdir -p "${RUNS}/ferplus_long_points/${name}"
    cp "$committed"/results.json "$committed"/config.json "${RUNS}/ferplus_long_points/${name}/"
  fi
done
# The full-cost long recipe (`:full`, stride 1) first, then the screen's points not yet finished.
for variant in ${VARIANTS:-full screen}; do
  spec="configs/ferplus_long.py:${variant}"
  count=$(python -m amobilenet_jax.main --config "$spec" --workdir "${RUNS}/ferplus_long_${variant}" --mode list | wc -l)
  # One point a command, so that each point is harvested (results, config, Valid curve) and the
  # table rebuilt as soon as it lands.
  for ((i = 0; i < count; i++)); do
    python -m amobilenet_jax.main --config "$spec" --workdir "${RUNS}/ferplus_long_${variant}" --sweep_index="$i" \
      --points_dir "${RUNS}/ferplus_long_points" --config.data.dir="$DATA" ${CACHE_DIR:+--config.data.cache_dir="$CACHE_DIR"}
    python experiments/claims_at_convergence/harvest.py "${RUNS}/ferplus_long_points" --out "$POINTS"
    python -m amobilenet_jax.main --config "$spec" --workdir "experiments/ferplus_long/${variant}" \
      --points_dir "$POINTS" --mode table || echo "no table yet: no point of ${variant} has finished"
  done
done

#!/usr/bin/env bash
# The CPU recipe's full-length levers and its seed spread on real FERPlus (issue: time to
# accuracy, round two): `configs/ferplus_cpu.py:levers_full` (the recipe, a moving average of the
# weights, square-root class sampling, the coarse stem for the first 4 epochs) and `:seeds` (the
# final recipe, square-root class sampling, at seeds 0-2), sharing one points directory so its
# seed 0 runs once. Six runs of about an hour each on 2 cores.
#
#   DATA=/data/ferplus bash experiments/ferplus_cpu/run_levers.sh [RUNS_DIR]   # default runs
#
# Run it again after an interruption: finished points are skipped, an interrupted one resumes.
# Points committed under experiments/ferplus_cpu/points/ (an earlier session, maybe on another
# machine) count as finished. After each command, harvest.py copies every finished point's
# results, config and Valid curve there, and `--mode table` rebuilds the tables from them.
set -euo pipefail
cd "$(dirname "$0")/../.."
: "${DATA:?set DATA to the FERPlus directory (FER2013Train/, FER2013Valid/)}"
RUNS=${1:-runs}
POINTS=experiments/ferplus_cpu/points
mkdir -p "${RUNS}/ferplus_cpu_points" "$POINTS"
for committed in "$POINTS"/*/; do
  [ -e "$committed/results.json" ] || continue
  name=$(basename "$committed")
  if [ ! -e "${RUNS}/ferplus_cpu_points/${name}" ]; then
    mkdir -p "${RUNS}/ferplus_cpu_points/${name}"
    cp "$committed"/results.json "$committed"/config.json "${RUNS}/ferplus_cpu_points/${name}/"
  fi
done
for variant in levers_full seeds; do
  python -m amobilenet_jax.main --config "configs/ferplus_cpu.py:${variant}" --workdir "${RUNS}/ferplus_cpu_${variant}" \
    --points_dir "${RUNS}/ferplus_cpu_points" --config.data.dir="$DATA" ${CACHE_DIR:+--config.data.cache_dir="$CACHE_DIR"}
  python experiments/claims_at_convergence/harvest.py "${RUNS}/ferplus_cpu_points" --out "$POINTS"
  python -m amobilenet_jax.main --config "configs/ferplus_cpu.py:${variant}" --workdir "experiments/ferplus_cpu/${variant}" \
    --points_dir "$POINTS" --mode table
done

#!/usr/bin/env bash
# The paper's claims at convergence on real FERPlus (issue: full-length studies with seeds):
# the `:converged` variants of the three ablations and the baselines, one after another, all
# sharing one points directory so that the paper's model (A-MobileNet, lambda 0.01) runs once
# per seed for all four studies (24 runs of about 20 minutes each on 2 cores).
#
#   DATA=/data/ferplus bash experiments/claims_at_convergence/run.sh [RUNS_DIR]   # default runs/converged
#
# Run it again after an interruption: finished points are skipped, an interrupted one resumes.
# After each study, harvest.py copies every finished point's results, config and Valid curve
# into experiments/claims_at_convergence/points/, from where `--mode table` rebuilds the tables.
set -euo pipefail
cd "$(dirname "$0")/../.."
: "${DATA:?set DATA to the FERPlus directory (FER2013Train/, FER2013Valid/)}"
RUNS=${1:-runs/converged}
# Points already committed (an earlier session, maybe on another machine) count as finished: their
# results.json and config.json are copied into the runs directory, so the study skips them.
mkdir -p "${RUNS}/points"
for committed in experiments/claims_at_convergence/points/*/; do
  name=$(basename "$committed")
  if [ ! -e "${RUNS}/points/${name}" ]; then
    mkdir -p "${RUNS}/points/${name}"
    cp "$committed"/results.json "$committed"/config.json "${RUNS}/points/${name}/"
  fi
done
for study in ablation_cbam ablation_linear_dw ablation_lambda baselines; do
  python -m amobilenet_jax.main --config "configs/${study}.py:converged" --workdir "${RUNS}/${study}" \
    --points_dir "${RUNS}/points" --config.data.dir="$DATA" ${CACHE_DIR:+--config.data.cache_dir="$CACHE_DIR"}
  python experiments/claims_at_convergence/harvest.py "${RUNS}/points"
done

#!/bin/bash
# The comparison step of slurm/run.sh, submitted by its first array task with
# --dependency=afterany on the array (CPU only: it needs no GPU). Arguments: CONFIG [LOGS],
# LOGS being the tasks' log files as a pattern with {index}, to quote a failed model's error.
#SBATCH --job-name=vocabmap-compare
#SBATCH --output=logs/%x_%j.out
set -euo pipefail
ROOT=${VOCABMAP_HOME:-${SLURM_SUBMIT_DIR:-$PWD}}
# shellcheck disable=SC1091
source "$ROOT/.venv/bin/activate"
export PYTHONPATH=$ROOT${PYTHONPATH:+:$PYTHONPATH}
export HF_HUB_OFFLINE=${HF_HUB_OFFLINE:-1}
args=(compare --config "$1")
[ -n "${2:-}" ] && args+=(--logs "$2")
exec python -m job "${args[@]}"

#!/bin/bash
# vocabmap on a Slurm GPU cluster. Run from the vocabmap checkout (it needs .venv/ there).
#
#   sbatch slurm/run.sh [CONFIG]                  one job: every model in turn, then compare
#   sbatch --array=0-K slurm/run.sh [CONFIG]      one model per array task; one task submits
#                                                 the comparison, run after every task ended
#   bash slurm/run.sh [SBATCH FLAGS] [CONFIG]     on the login node: validate the config,
#                                                 then submit itself as an array of the right
#                                                 size (nothing is queued if it is invalid);
#                                                 flags as --long=value or -x value
#
# CONFIG defaults to configs/compare.toml. Partition, GPU type, time, memory: the usual sbatch
# flags (`sbatch -p a100 --gres=gpu:a100:1 --time=1:00:00 slurm/run.sh`), which override the
# #SBATCH lines below. Logs: logs/<job name>_<job id>_<array index>.out (logs/ must exist
# before sbatch, Slurm does not create it; `mkdir -p logs`). Models come from the HF cache:
# HF_HUB_OFFLINE=1 unless set otherwise (pre-download on the login node: `hf download ID`).
#
#SBATCH --job-name=vocabmap
#SBATCH --gres=gpu:1
#SBATCH --cpus-per-task=8
#SBATCH --mem=64G
#SBATCH --time=02:00:00
#SBATCH --output=logs/%x_%A_%a.out
#SBATCH --open-mode=append
set -euo pipefail

say() { echo "run.sh: $*" >&2; }

# Project folder: the script's own folder on the login node. Inside a job Slurm runs a copy
# of the script, so: VOCABMAP_HOME, else the folder sbatch was called from, else the folder
# of the submitted script as Slurm recorded it.
if [ -n "${SLURM_JOB_ID:-}" ]; then
  ROOT=${VOCABMAP_HOME:-${SLURM_SUBMIT_DIR:-$PWD}}
  if [ -z "${VOCABMAP_HOME:-}" ] && [ ! -f "$ROOT/job/cli.py" ]; then
    submitted=$(scontrol show job "$SLURM_JOB_ID" 2>/dev/null \
      | sed -n 's/^ *Command=\([^ ]*\).*/\1/p' | head -1)
    [ -n "$submitted" ] && ROOT=$(cd "$(dirname "$submitted")/.." 2>/dev/null && pwd || echo "$ROOT")
  fi
else
  ROOT=${VOCABMAP_HOME:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
fi
if [ ! -f "$ROOT/.venv/bin/activate" ] || [ ! -f "$ROOT/job/cli.py" ]; then
  say "no vocabmap checkout with .venv/ at $ROOT; run sbatch from the checkout (after" \
      "\`make install\`) or set VOCABMAP_HOME"
  exit 2
fi
# shellcheck disable=SC1091
source "$ROOT/.venv/bin/activate"
export PYTHONPATH=$ROOT${PYTHONPATH:+:$PYTHONPATH}
export HF_HUB_OFFLINE=${HF_HUB_OFFLINE:-1}

# ---- login node: validate, then submit ourselves -------------------------------------------
if [ -z "${SLURM_JOB_ID:-}" ]; then
  # sbatch flags first: --long=value, --long-switch, or a one-letter option and its value
  flags=()
  while [ $# -gt 0 ] && [ "${1#-}" != "$1" ]; do
    flags+=("$1")
    if [[ $1 =~ ^-[A-Za-z]$ && ! $1 =~ ^-[HQWhvVsOk]$ && $# -gt 1 ]]; then
      flags+=("$2")
      shift
    fi
    shift
  done
  CONFIG=${1:-configs/compare.toml}
  n=$(python -m job check --count --no-backend "$CONFIG") || exit 2
  python -m job compare --config "$CONFIG" --dry-run >/dev/null || exit 2
  mkdir -p logs
  say "$CONFIG is valid: $n model(s); submitting an array of $n task(s)"
  exec sbatch --array="0-$((n - 1))" "${flags[@]}" "$ROOT/slurm/run.sh" "$CONFIG"
fi

# ---- inside a job: validate first (seconds), so a bad config frees the GPU at once ---------
CONFIG=${1:-configs/compare.toml}
cancel_array() {  # a bad config fails every task the same way: cancel the pending ones
  if [ -n "${SLURM_ARRAY_JOB_ID:-}" ]; then
    say "cancelling the pending tasks of array job $SLURM_ARRAY_JOB_ID"
    scancel --state=PENDING "$SLURM_ARRAY_JOB_ID" || true
  fi
}
if ! n=$(python -m job check --count "$CONFIG") \
    || ! plan=$(python -m job compare --config "$CONFIG" --dry-run); then
  cancel_array
  exit 2
fi
say "job ${SLURM_JOB_ID} on $(hostname): $CONFIG, $n model(s); run dirs and comparison:"
echo "$plan" >&2

submit_compare() {  # DEPENDENCY LOG_PATTERN: the comparison as its own CPU-only job
  local extra=()
  [ -n "${SLURM_JOB_PARTITION:-}" ] && extra+=(--partition="$SLURM_JOB_PARTITION")
  [ -n "${SLURM_JOB_ACCOUNT:-}" ] && extra+=(--account="$SLURM_JOB_ACCOUNT")
  [ -n "${SLURM_CPUS_PER_TASK:-}" ] && extra+=(--cpus-per-task="$SLURM_CPUS_PER_TASK")
  [ -n "${SLURM_MEM_PER_NODE:-}" ] && extra+=(--mem="$SLURM_MEM_PER_NODE")
  [ -n "${SLURM_MEM_PER_CPU:-}" ] && extra+=(--mem-per-cpu="$SLURM_MEM_PER_CPU")
  # shellcheck disable=SC2206
  extra+=(${VOCABMAP_COMPARE_SBATCH:-})
  VOCABMAP_HOME=$ROOT sbatch --parsable --dependency="$1" --kill-on-invalid-dep=no \
    --job-name="${SLURM_JOB_NAME:-vocabmap}-compare" --output="logs/%x_%j.out" \
    "${extra[@]}" "$ROOT/slurm/compare.sh" "$CONFIG" "$2"
}

if [ -n "${SLURM_ARRAY_TASK_ID:-}" ]; then
  # One task (the lowest index, on its first start: a requeued task does not submit again)
  # submits the comparison. afterany, not afterok: it must also run when a model failed,
  # to compare the others and name the failed one.
  if [ "$SLURM_ARRAY_TASK_ID" = "${SLURM_ARRAY_TASK_MIN:-0}" ] \
      && [ "${SLURM_RESTART_COUNT:-0}" = 0 ] && [ "$n" -gt 1 ]; then
    if id=$(submit_compare "afterany:$SLURM_ARRAY_JOB_ID" \
        "logs/${SLURM_JOB_NAME}_${SLURM_ARRAY_JOB_ID}_{index}.out"); then
      say "comparison submitted as job $id (runs after array job $SLURM_ARRAY_JOB_ID ends)"
    else  # e.g. a partition that refuses jobs without a GPU: map the model anyway
      say "could not submit the comparison (set VOCABMAP_COMPARE_SBATCH, e.g. '-p cpu');" \
          "run it later: python -m job compare --config $CONFIG"
    fi
  fi
  exec python -m job run "$CONFIG" --index "$SLURM_ARRAY_TASK_ID"
fi

# One job for every model: each in turn (a failed model does not stop the others), then the
# comparison, in this job (it needs no GPU, but the job holds one anyway until the end).
failed=0
for ((i = 0; i < n; i++)); do
  python -m job run "$CONFIG" --index "$i" || { say "model $i failed"; failed=1; }
done
if [ "$n" -gt 1 ]; then
  python -m job compare --config "$CONFIG" || failed=1
fi
exit "$failed"

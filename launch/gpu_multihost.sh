#!/usr/bin/env bash
# Run one xprompt-jax command over one or several GPU hosts (one JAX process per host, or per GPU).
#
#   One GPU (or all GPUs of one host, one process):
#     launch/gpu_multihost.sh -- train --gin_file=models/t5_1_1.gin --gin_file=sizes/base.gin ...
#   SLURM (one task per node, or one per GPU; coordinator = first node, ids from SLURM_PROCID):
#     srun --nodes=2 --ntasks-per-node=1 --gpus-per-node=8 launch/gpu_multihost.sh -- train ...
#   By hand, on every host (process i of N; the coordinator is process 0's host):
#     launch/gpu_multihost.sh --coordinator=host0:12355 --num_processes=2 --process_id=I -- train ...
#   From one machine over ssh (process i on the i-th host, logs in --log_dir/process-i.log):
#     launch/gpu_multihost.sh --hosts=gpu0,gpu1 [--port=12355] [--repo_dir=/path/on/hosts] -- train ...
#
# The arguments after -- reach every process exactly as given. --dry_run prints the commands and runs
# nothing. MODEL_DIR must be a folder every host sees (NFS, a mounted bucket): orbax writes each
# process's shards of a checkpoint there. See xprompt_jax/distributed.py for how settings resolve.
set -euo pipefail

usage() { sed -n '2,17p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }
die() { echo "error: $*" >&2; exit 2; }

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
COORDINATOR="" NUM_PROCESSES="" PROCESS_ID="" LOCAL_DEVICE_IDS="" HOSTS="" PORT="12355"
REPO_DIR="$HERE" LOG_DIR="logs" DRY_RUN=0 SSH="${SSH:-ssh}"
ENVS=()

value() { # --name=value or --name value
  if [[ "$1" == *=* ]]; then echo "${1#*=}"; else [[ $# -ge 2 ]] || die "$1 needs a value"; echo "$2"; fi
}
while [[ $# -gt 0 ]]; do
  arg="$1"; step=1
  [[ "$arg" != *=* && "$arg" != "--" && "$arg" != "--dry_run" && "$arg" != "-h" && "$arg" != "--help" ]] && step=2
  case "$arg" in
    --) shift; break ;;
    --dry_run) DRY_RUN=1 ;;
    -h|--help) usage; exit 0 ;;
    --coordinator|--coordinator=*|--coordinator_address|--coordinator_address=*) COORDINATOR="$(value "$@")" ;;
    --num_processes|--num_processes=*) NUM_PROCESSES="$(value "$@")" ;;
    --process_id|--process_id=*) PROCESS_ID="$(value "$@")" ;;
    --local_device_ids|--local_device_ids=*) LOCAL_DEVICE_IDS="$(value "$@")" ;;
    --hosts|--hosts=*) HOSTS="$(value "$@")" ;;
    --port|--port=*) PORT="$(value "$@")" ;;
    --repo_dir|--repo_dir=*) REPO_DIR="$(value "$@")" ;;
    --log_dir|--log_dir=*) LOG_DIR="$(value "$@")" ;;
    --env|--env=*) ENVS+=("$(value "$@")") ;;
    *) die "unknown option $arg (the xprompt-jax command goes after --)" ;;
  esac
  shift "$step"
done
COMMAND=("$@")
[[ ${#COMMAND[@]} -gt 0 ]] || die "missing the xprompt-jax command after --, e.g. -- train --gin_file=runs/prompt_tune.gin ..."
[[ "${COMMAND[0]}" != -* ]] || die "the command after -- starts with the sub-command (train, xprompt, evaluate ...), not ${COMMAND[0]}"
for e in ${ENVS[@]+"${ENVS[@]}"}; do [[ "$e" =~ ^[A-Za-z_][A-Za-z0-9_]*= ]] || die "--env $e must be NAME=VALUE"; done

quoted() { local out="" a; for a in "$@"; do out+="$(printf '%q' "$a") "; done; echo "${out% }"; }

if [[ -n "$HOSTS" ]]; then
  # ---- from one machine: process i on host i, over ssh --------------------------------------------
  [[ -z "$COORDINATOR$NUM_PROCESSES$PROCESS_ID" ]] || die "--hosts sets the coordinator, process count and ids itself; drop --coordinator/--num_processes/--process_id"
  IFS=',' read -r -a HOST_LIST <<< "$HOSTS"
  N=${#HOST_LIST[@]}
  COORD="${HOST_LIST[0]}:$PORT"
  [[ "$DRY_RUN" == 1 ]] && echo "# dry run: nothing is executed"
  echo "# $N processes, coordinator $COORD; logs in $LOG_DIR/process-<i>.log"
  [[ "$DRY_RUN" == 1 ]] || mkdir -p "$LOG_DIR"
  PIDS=()
  for i in "${!HOST_LIST[@]}"; do
    host="${HOST_LIST[$i]}"
    extra=(--coordinator_address="$COORD" --num_processes="$N" --process_id="$i")
    [[ -n "$LOCAL_DEVICE_IDS" ]] && extra+=(--local_device_ids="$LOCAL_DEVICE_IDS")
    remote="cd $(printf '%q' "$REPO_DIR") && ${ENVS[*]+$(quoted "${ENVS[@]}") }$(quoted "$PYTHON" -m xprompt_jax.cli "${COMMAND[@]}" "${extra[@]}")"
    echo "$(quoted "$SSH" "$host" "$remote") > $(printf '%q' "$LOG_DIR/process-$i.log") 2>&1 &"
    if [[ "$DRY_RUN" != 1 ]]; then
      "$SSH" "$host" "$remote" > "$LOG_DIR/process-$i.log" 2>&1 &
      PIDS+=("$!")
    fi
  done
  [[ "$DRY_RUN" == 1 ]] && exit 0
  status=0
  for i in "${!PIDS[@]}"; do
    if ! wait "${PIDS[$i]}"; then echo "error: process $i on ${HOST_LIST[$i]} failed: see $LOG_DIR/process-$i.log" >&2; status=1; fi
  done
  exit "$status"
fi

# ---- this host's process (or the only one) ----------------------------------------------------------
given=0; for v in "$COORDINATOR" "$NUM_PROCESSES" "$PROCESS_ID"; do [[ -n "$v" ]] && given=$((given + 1)); done
if [[ "$given" -gt 0 && "$given" -lt 3 && -z "${JAX_COORDINATOR_ADDRESS:-}" ]]; then
  missing=()
  [[ -n "$COORDINATOR" ]] || missing+=("--coordinator (HOST:PORT of process 0)")
  [[ -n "$NUM_PROCESSES" ]] || missing+=("--num_processes")
  [[ -n "$PROCESS_ID" ]] || missing+=("--process_id")
  die "missing $(IFS=','; echo "${missing[*]}" | sed 's/,/, /g'): give all three, or none (SLURM, one process)"
fi
DIST=()
[[ -n "$COORDINATOR" ]] && DIST+=(--coordinator_address="$COORDINATOR")
[[ -n "$NUM_PROCESSES" ]] && DIST+=(--num_processes="$NUM_PROCESSES")
[[ -n "$PROCESS_ID" ]] && DIST+=(--process_id="$PROCESS_ID")
[[ -n "$LOCAL_DEVICE_IDS" ]] && DIST+=(--local_device_ids="$LOCAL_DEVICE_IDS")
RUN=("$PYTHON" -m xprompt_jax.cli "${COMMAND[@]}" ${DIST[@]+"${DIST[@]}"})
export PYTHONPATH="$HERE${PYTHONPATH:+:$PYTHONPATH}"  # this checkout's package, installed or not
if [[ "$DRY_RUN" == 1 ]]; then
  echo "# dry run: nothing is executed"
  # What xprompt_jax.distributed resolves here (flags, JAX_* variables, SLURM), without starting anything.
  echo "# $("$PYTHON" -m xprompt_jax.distributed ${DIST[@]+"${DIST[@]}"} 2>&1)"
  echo "$(for e in ${ENVS[@]+"${ENVS[@]}"}; do printf '%q ' "$e"; done)$(quoted "${RUN[@]}")"
  exit 0
fi
for e in ${ENVS[@]+"${ENVS[@]}"}; do export "${e?}"; done
exec "${RUN[@]}"

#!/usr/bin/env bash
# A throw-away one-node Slurm cluster on localhost, for the tests (no GPU, no systemd).
#
#   scripts/slurm-cluster.sh start DIR   # installs packages if missing, starts munged,
#                                        # slurmctld, slurmd; prints `export SLURM_CONF=...`
#   scripts/slurm-cluster.sh stop DIR    # cancels every job, stops the daemons by saved PID
#
# Everything (config, state, logs, PID files) lives under DIR, munge's key and socket in a
# /tmp/vocabmap-munge.* folder removed on stop; nothing is written to /etc. Client commands
# need SLURM_CONF=DIR/slurm.conf. Daemons run as the calling user (root in CI). Finished jobs are listed in DIR/jobcomp.txt (jobcomp/filetxt).
set -euo pipefail

die() { echo "slurm-cluster: $*" >&2; exit 1; }

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

write_conf() {  # DIR MUNGE_DIR
  local dir=$1 munge=$2 node ctld_port slurmd_port
  node=$(slurmd -C | head -1 | sed -e 's/^NodeName=[^ ]* //' -e 's/ *UpTime=.*//')
  ctld_port=$(free_port)
  slurmd_port=$(free_port)
  cat >"$dir/slurm.conf" <<EOF
ClusterName=vocabmap-test
SlurmctldHost=localhost
SlurmUser=$(id -un)
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$munge/munge.socket
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$dir/jobcomp.txt
MailProg=/bin/true
SchedulerParameters=sched_interval=1
MinJobAge=600
ReturnToService=2
NodeName=localhost NodeAddr=127.0.0.1 $node State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF
}

start_bg() {  # PIDFILE LOG CMD... : start CMD in its own session, keep its PID
  local pidfile=$1 log=$2
  shift 2
  setsid "$@" >>"$log" 2>&1 </dev/null &
  echo $! >"$pidfile"
}

start() {
  local dir=$1
  bash "$(dirname "$0")/system-deps.sh" >&2
  for cmd in slurmctld slurmd sbatch munged mungekey; do
    command -v "$cmd" >/dev/null || die "$cmd is missing; install slurmctld slurmd slurm-client munge"
  done
  mkdir -p "$dir"/{state,spool}
  dir=$(cd "$dir" && pwd)
  # munged wants every folder above its socket to be searchable by all users (and a short
  # path), which a private temp folder is not: its files go to their own folder in /tmp.
  local munge
  munge=$(mktemp -d /tmp/vocabmap-munge.XXXXXX)
  chmod 755 "$munge"
  echo "$munge" >"$dir/munge.dir"
  mungekey --create --keyfile="$munge/munge.key" --force
  chmod 600 "$munge/munge.key"
  start_bg "$dir/munged.pid.bg" "$dir/munged.out" munged --foreground \
    --socket="$munge/munge.socket" --key-file="$munge/munge.key" \
    --pid-file="$munge/munged.pid" --seed-file="$munge/munge.seed"
  for _ in $(seq 50); do [ -S "$munge/munge.socket" ] && break; sleep 0.1; done
  [ -S "$munge/munge.socket" ] || die "munged did not start; see $dir/munged.out"
  write_conf "$dir" "$munge"
  export SLURM_CONF=$dir/slurm.conf
  start_bg "$dir/slurmctld.pid.bg" "$dir/slurmctld.out" slurmctld -D -i -f "$SLURM_CONF"
  start_bg "$dir/slurmd.pid.bg" "$dir/slurmd.out" slurmd -D -N localhost -f "$SLURM_CONF"
  local state=""
  for _ in $(seq 150); do
    state=$(sinfo -h -n localhost -o %T 2>/dev/null || true)
    [ "$state" = idle ] && break
    sleep 0.2
  done
  [ "$state" = idle ] || die "node not idle after 30 s (state: '${state}'); see $dir/*.log"
  echo "export SLURM_CONF=$SLURM_CONF"
}

stop_pid() {  # PIDFILE: TERM, then KILL after 5 s
  local pidfile=$1 pid
  [ -f "$pidfile" ] || return 0
  pid=$(cat "$pidfile")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$pidfile"
}

stop() {
  local dir=$1
  [ -d "$dir" ] || die "no cluster folder $dir"
  dir=$(cd "$dir" && pwd)
  if [ -f "$dir/slurmctld.pid.bg" ]; then
    SLURM_CONF=$dir/slurm.conf scancel --full --quiet --user="$(id -un)" 2>/dev/null || true
    sleep 1
  fi
  stop_pid "$dir/slurmd.pid.bg"
  stop_pid "$dir/slurmctld.pid.bg"
  stop_pid "$dir/munged.pid.bg"
  if [ -f "$dir/munge.dir" ]; then
    rm -rf -- "$(cat "$dir/munge.dir")"
    rm -f "$dir/munge.dir"
  fi
}

case "${1:-}" in
  start) [ $# -eq 2 ] || die "usage: $0 start DIR"; start "$2" ;;
  stop) [ $# -eq 2 ] || die "usage: $0 stop DIR"; stop "$2" ;;
  *) die "usage: $0 start DIR | stop DIR" ;;
esac

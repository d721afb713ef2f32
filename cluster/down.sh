#!/usr/bin/env bash
# Stop the local cluster (what `make cluster-down` runs): exactly the processes whose pids
# cluster/up.sh (or cluster/taskmanager.sh) wrote under .cluster/pids/; waits for them to exit
# and removes the pid files. Safe to run when nothing is up.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

[[ -d $PIDS ]] || { say "nothing to stop"; exit 0; }
stopped=0

stop_pidfile() {   # name pidfile: SIGTERM every live pid listed, wait, SIGKILL after 20s
  local name=$1 f=$2 p pids=()
  [[ -f $f ]] || return 0
  while read -r p; do pid_alive "$p" && pids+=("$p"); done <"$f"
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do
    if ! wait_exit "$p" 20; then
      echo "cluster: $name (pid $p) did not stop in 20s; killing it" >&2
      kill -9 "$p" 2>/dev/null || true
      wait_exit "$p" 10 || echo "cluster: $name (pid $p) still alive" >&2
    fi
    say "stopped $name (pid $p)"
    stopped=1
  done
  rm -f "$f"
}

# clients before servers: expansion, job server, workers, then Flink TM/JM, Kafka, S3
stop_pidfile kafka-expansion "$PIDS/kafka-expansion.pid"
stop_pidfile jobserver "$PIDS/jobserver.pid"
stop_pidfile worker-pool "$PIDS/worker-pool.pid"
# Flink: pid files written by Flink's own daemon scripts (flink-daemon.sh), same pids it would stop
stop_pidfile flink-taskmanager "$TM_PIDFILE"
stop_pidfile flink-jobmanager "$JM_PIDFILE"
stop_pidfile kafka "$PIDS/kafka.pid"
stop_pidfile s3proxy "$PIDS/s3proxy.pid"

# Python SDK worker processes spawned by the pool are its children; they exit with it
# (atexit) or when their control channel (the TaskManager) closes.
[[ $stopped == 1 ]] && say "cluster down" || say "nothing was running"

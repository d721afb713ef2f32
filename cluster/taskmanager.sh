#!/usr/bin/env bash
# Flink TaskManager control for failure tests (pids in .cluster/pids/, Flink's own pid file):
#   cluster/taskmanager.sh kill9    SIGKILL every running TaskManager of this cluster, wait for exit
#   cluster/taskmanager.sh start    start a fresh TaskManager; waits until it registered (2 slots)
#   cluster/taskmanager.sh stop     graceful stop (SIGTERM)
#   cluster/taskmanager.sh status   print the live TaskManager pid(s); exit 1 if none
# After kill9 + start, Flink restarts running jobs from their latest completed checkpoint
# (restart-strategy fixed-delay, configured by cluster/up.sh).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

[[ -f $FLINK_CONF_DIR/config.yaml ]] || die "no Flink config in ${FLINK_CONF_DIR#"$ROOT"/}; run 'make cluster' first"

case ${1:-} in
  kill9)
    mapfile -t pids < <(tm_live_pids)
    [[ ${#pids[@]} -gt 0 ]] || { say "no TaskManager running"; exit 0; }
    for p in "${pids[@]}"; do kill -9 "$p"; done
    for p in "${pids[@]}"; do wait_exit "$p" 10 || die "TaskManager pid $p survived kill -9"; done
    # drop the dead pids from Flink's pid file (flink-daemon.sh appends one line per start)
    grep -vxF -f <(printf '%s\n' "${pids[@]}") "$TM_PIDFILE" >"$TM_PIDFILE.tmp" || true
    if [[ -s $TM_PIDFILE.tmp ]]; then mv "$TM_PIDFILE.tmp" "$TM_PIDFILE"; else rm -f "$TM_PIDFILE" "$TM_PIDFILE.tmp"; fi
    say "killed -9 TaskManager pid(s) ${pids[*]}"
    ;;
  start)
    if [[ -n $(tm_live_pids) ]]; then
      say "TaskManager already running (pid $(tm_live_pids | tr '\n' ' '))"
      exit 0
    fi
    flink_overview >/dev/null || die "Flink JobManager not answering on $HOST:$FLINK_REST_PORT; run 'make cluster'"
    before=$(flink_tm_ids)
    t0=$(now)
    "$FLINK_HOME/bin/taskmanager.sh" start >>"$LOGS/flink-taskmanager-start.log" 2>&1 ||
      die "TaskManager did not start; see ${LOGS#"$ROOT"/}/flink-taskmanager-start.log"
    for ((i = 0; i < 240; i++)); do
      new=$(comm -13 <(echo "$before") <(flink_tm_ids) | grep -c . || true)
      [[ $new -ge 1 ]] && break
      [[ -n $(tm_live_pids) ]] || die "TaskManager exited during startup; see ${FLINK_LOG_DIR#"$ROOT"/}/"
      sleep 0.5
    done
    [[ $new -ge 1 ]] || die "TaskManager did not register with the JobManager in 120s; see ${FLINK_LOG_DIR#"$ROOT"/}/"
    say "TaskManager pid $(tm_live_pids | tail -n1) registered in $(elapsed "$t0")s"
    ;;
  stop)
    mapfile -t pids < <(tm_live_pids)
    for p in "${pids[@]}"; do kill "$p"; done
    for p in "${pids[@]}"; do wait_exit "$p" 20 || { kill -9 "$p"; wait_exit "$p" 10 || true; }; done
    rm -f "$TM_PIDFILE"
    say "stopped TaskManager pid(s) ${pids[*]:-none}"
    ;;
  status)
    p=$(tm_live_pids)
    [[ -n $p ]] || { echo "no TaskManager running"; exit 1; }
    echo "$p"
    ;;
  *)
    echo "usage: cluster/taskmanager.sh start|kill9|stop|status" >&2
    exit 2
    ;;
esac

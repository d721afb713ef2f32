# shellcheck shell=bash
# Shared settings for cluster/*.sh (sourced, not run).
# Local loopback-only cluster: Flink session cluster + Beam Flink job server + Beam Python
# worker pool + Kafka (KRaft) + Beam Java expansion service (KafkaIO) + S3Proxy.

CLUSTER_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$CLUSTER_DIR/.." && pwd)
CACHE=${ACCESSLOG_CLUSTER_CACHE:-$ROOT/.cache/cluster}   # downloads (ignored by git)
STATE=$ROOT/.cluster                                    # runtime state (ignored by git)
PIDS=$STATE/pids
LOGS=$STATE/logs
CONF=$STATE/conf

# --- versions ---------------------------------------------------------------------------
# The registry reachable here serves neither the shaded beam-runners-flink-1.20-job-server
# nor beam-sdks-java-io-expansion-service jar (no version 2.61-2.78), nor
# beam-runners-flink-1.20 at all; the newest Beam whose plain Flink runner resolves with all
# its dependencies is 2.62.0 with Flink 1.19 (2.70.0 lacks beam-runners-java-job-service).
# So: Beam Java 2.62.0 (job server, KafkaIO) on a Flink 1.19.x cluster; the Python SDK (client and
# workers alike) stays at the project's apache-beam: the portable Fn API between them held in every test,
# and transforms/kafka.py sends KafkaIO its configuration as 2.62 defines it.
BEAM_JAVA_VERSION=2.62.0
FLINK_MINOR=1.19
FLINK_VERSION=1.19.3
KAFKA_VERSION=4.1.1
S3PROXY_VERSION=2.6.0

FLINK_HOME=$CACHE/flink-$FLINK_VERSION/pyflink
BEAM_LIB=$CACHE/beam-$BEAM_JAVA_VERSION-flink-$FLINK_MINOR/lib
KAFKA_LIB=$CACHE/kafka-$KAFKA_VERSION/lib
S3PROXY_LIB=$CACHE/s3proxy-$S3PROXY_VERSION/lib
LAUNCHER_CLASSES=$CACHE/launcher-$BEAM_JAVA_VERSION
M2_REPO=$CACHE/m2

# --- endpoints (loopback only) ------------------------------------------------------------
HOST=127.0.0.1
FLINK_REST_PORT=8081
FLINK_RPC_PORT=6123
FLINK_BLOB_PORT=6124
JOB_PORT=8099
ARTIFACT_PORT=8098
JOBSERVER_EXPANSION_PORT=8097
KAFKA_EXPANSION_PORT=8096
KAFKA_PORT=9092
KAFKA_CONTROLLER_PORT=9093
S3_PORT=9000
WORKER_POOL_PORT=50000

S3_IDENTITY=accesslog-local
S3_SECRET=accesslog-local-secret
S3_REGION=us-east-1
S3_BUCKET=accesslog

# Python that runs the Beam SDK workers: the same apache-beam as the submitting client (the project venv).
BEAM_PYTHON=${ACCESSLOG_CLUSTER_PYTHON:-$ROOT/.venv/bin/python}

# Flink daemon scripts: private conf/log/pid dirs, stable pid file names.
export FLINK_CONF_DIR=$CONF/flink
export FLINK_LOG_DIR=$LOGS/flink
export FLINK_PID_DIR=$PIDS
export FLINK_IDENT_STRING=accesslog
# private Flink lib dir: symlinks to the cached Flink lib jars + the Beam runner jars (see up.sh)
export FLINK_LIB_DIR=$STATE/flink-lib
JM_PIDFILE=$PIDS/flink-$FLINK_IDENT_STRING-standalonesession.pid
TM_PIDFILE=$PIDS/flink-$FLINK_IDENT_STRING-taskexecutor.pid

die() { echo "cluster: $*" >&2; exit 1; }
say() { echo "cluster: $*"; }

port_open() { (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }

pid_alive() { [[ -n "${1:-}" ]] && kill -0 "$1" 2>/dev/null; }

# first live pid in a pid file (Flink pid files may list several)
live_pid() {
  local f=$1 p
  [[ -f $f ]] || return 1
  while read -r p; do
    if pid_alive "$p"; then echo "$p"; return 0; fi
  done <"$f"
  return 1
}

# who listens on a port (for error messages)
port_owner() {
  ss -ltnpH "sport = :$1" 2>/dev/null | sed -n 's/.*users:((\("[^"]*",pid=[0-9]*\).*/\1/p' | head -n1
}

# wait until pid exits (seconds), return 1 if still alive
wait_exit() {
  local pid=$1 t=${2:-20} i
  for ((i = 0; i < t * 10; i++)); do
    pid_alive "$pid" || return 0
    sleep 0.1
  done
  return 1
}

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# JVM flags Flink 1.19 needs on Java 17 (taken from Flink's own default config).
java17_opens() {
  sed -n 's/^ *all: *\(--add-.*\)$/\1/p' "$FLINK_HOME/conf/config.yaml" 2>/dev/null | head -n1
}

# --- Flink helpers (shared by up.sh and taskmanager.sh) --------------------------------------
flink_overview() { curl -sf --max-time 3 "http://$HOST:$FLINK_REST_PORT/overview" 2>/dev/null; }
json_int() { sed -n "s/.*\"$1\":\([0-9]*\).*/\1/p"; }
flink_tm_ids() {
  curl -sf --max-time 3 "http://$HOST:$FLINK_REST_PORT/taskmanagers" 2>/dev/null |
    grep -o '"id":"[^"]*"' | sort || true
}
tm_live_pids() {
  local p
  [[ -f $TM_PIDFILE ]] || return 0
  while read -r p; do pid_alive "$p" && echo "$p"; done <"$TM_PIDFILE"
  return 0
}

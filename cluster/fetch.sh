#!/usr/bin/env bash
# Fetch everything the local cluster needs into .cache/cluster/ (idempotent: skips what is
# already complete). Sources: PyPI (apache-flink wheels = a complete FLINK_HOME) and Maven
# Central (Beam job server / expansion service, Kafka, S3Proxy jars via cluster/maven/*.pom.xml).
# On failure: one line on stderr saying what failed and what to do; exit non-zero.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

FETCH_LOGS=$CACHE/logs
mkdir -p "$CACHE" "$FETCH_LOGS"

command -v java >/dev/null || die "fetch failed: java not found; install a JDK 17 (apt-get install openjdk-17-jdk-headless)"
command -v mvn >/dev/null || die "fetch failed: mvn not found; install Maven (apt-get install maven)"

# the artifact Maven could not get, e.g. "org.apache.beam:beam-model-pipeline:pom:2.75.0 (not served)"
mvn_missing() {
  local a
  a=$(grep -oE "(Could not find artifact|Failure to find|Failed to read artifact descriptor for|Could not transfer artifact) [^ ]+" "$1" | tail -n1 | awk '{print $NF}')
  if [[ -n $a ]]; then echo "$a not available"; else first_error "$1"; fi
}
first_error() { grep -m1 -E '\[ERROR\]|ERROR:|error:' "$1" | sed 's/\x1b\[[0-9;]*m//g; s/^\[ERROR\] *//' | cut -c1-300; }

fetched=0

# --- Flink (FLINK_HOME = <target>/pyflink from the apache-flink + apache-flink-libraries wheels)
fetch_flink() {
  local dest=$CACHE/flink-$FLINK_VERSION log=$FETCH_LOGS/flink.log py
  if [[ -f $dest/.complete && -x $FLINK_HOME/bin/jobmanager.sh ]]; then return 0; fi
  py=$BEAM_PYTHON
  [[ -x $py ]] || py=$(command -v python3) || die "fetch failed: no python to run pip; run 'make setup' first"
  say "fetching Flink $FLINK_VERSION (apache-flink + apache-flink-libraries from PyPI) ..."
  rm -rf "$dest.tmp"
  if ! "$py" -m pip install --quiet --disable-pip-version-check --no-deps --no-compile \
      --target "$dest.tmp" "apache-flink==$FLINK_VERSION" "apache-flink-libraries==$FLINK_VERSION" >"$log" 2>&1; then
    die "fetch failed: pip could not install apache-flink==$FLINK_VERSION ($(first_error "$log")); check PyPI access or FLINK_VERSION in cluster/lib.sh; log: $log"
  fi
  [[ -x $dest.tmp/pyflink/bin/jobmanager.sh && -f $dest.tmp/pyflink/lib/flink-dist-$FLINK_VERSION.jar ]] ||
    die "fetch failed: apache-flink==$FLINK_VERSION wheels gave no complete FLINK_HOME (bin/ or lib/flink-dist missing); check $log"
  rm -rf "$dest"
  mv "$dest.tmp" "$dest"
  touch "$dest/.complete"
  fetched=1
}

# --- Maven: copy an artifact and its runtime dependencies into DEST (a lib/ folder)
mvn_copy() {
  local what=$1 pom=$2 dest=$3 log=$FETCH_LOGS/$1.log
  shift 3
  if [[ -f $dest/.complete ]]; then return 0; fi
  say "fetching $what jars (Maven Central) ..."
  rm -rf "$dest.tmp"
  if ! mvn -B -q -f "$CLUSTER_DIR/maven/$pom" -Dmaven.repo.local="$M2_REPO" "$@" \
      dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$dest.tmp" >"$log" 2>&1; then
    die "fetch failed: Maven could not get the $what jars ($(mvn_missing "$log")); check Maven Central access or the version in cluster/lib.sh; log: $log"
  fi
  rm -rf "$dest"
  mv "$dest.tmp" "$dest"
  touch "$dest/.complete"
  fetched=1
}

# --- expansion-service launcher (binds one address), compiled against the Beam jars
compile_launcher() {
  local src=$CLUSTER_DIR/java/LoopbackExpansionService.java cls=$LAUNCHER_CLASSES/LoopbackExpansionService.class
  if [[ -f $cls && $cls -nt $src ]]; then return 0; fi
  mkdir -p "$LAUNCHER_CLASSES"
  javac -nowarn -cp "$BEAM_LIB/*" -d "$LAUNCHER_CLASSES" "$src" >"$FETCH_LOGS/launcher.log" 2>&1 ||
    die "fetch failed: javac could not compile cluster/java/LoopbackExpansionService.java ($(first_error "$FETCH_LOGS/launcher.log")); a JDK 17 (javac) is needed"
  fetched=1
}

# --- Beam's default gRPC ServerFactory binds all interfaces (NettyServerBuilder.forPort); patch the
#     cached beam-sdks-java-core jar so it binds the requested address (loopback), see
#     cluster/java/PatchLoopbackBind.java. Applied once to the copy in $BEAM_LIB (not to m2).
patch_loopback_bind() {
  local core=$BEAM_LIB/beam-sdks-java-core-$BEAM_JAVA_VERSION.jar tmp=$CACHE/patch.tmp log=$FETCH_LOGS/patch.log
  local orig=$M2_REPO/org/apache/beam/beam-sdks-java-core/$BEAM_JAVA_VERSION/beam-sdks-java-core-$BEAM_JAVA_VERSION.jar
  if [[ -f $BEAM_LIB/.loopback-patched ]]; then return 0; fi
  [[ -f $orig ]] || die "fetch failed: $orig missing; delete ${BEAM_LIB#"$ROOT"/} and rerun"
  rm -rf "$tmp"
  mkdir -p "$tmp"
  { javac -nowarn -cp "$BEAM_LIB/*" -d "$tmp" "$CLUSTER_DIR/java/PatchLoopbackBind.java" &&
    java -cp "$tmp:$BEAM_LIB/*" PatchLoopbackBind "$orig" "$tmp/core.jar" &&
    mv "$tmp/core.jar" "$core"; } >"$log" 2>&1 ||
    die "fetch failed: could not patch Beam's ServerFactory for loopback binding ($(first_error "$log")); see $log"
  rm -rf "$tmp"
  touch "$BEAM_LIB/.loopback-patched"
  fetched=1
}

fetch_flink
mvn_copy beam beam.pom.xml "$BEAM_LIB" -Dbeam.version="$BEAM_JAVA_VERSION" -Dflink.minor="$FLINK_MINOR"
mvn_copy kafka kafka.pom.xml "$KAFKA_LIB" -Dkafka.version="$KAFKA_VERSION"
mvn_copy s3proxy s3proxy.pom.xml "$S3PROXY_LIB" -Ds3proxy.version="$S3PROXY_VERSION"
patch_loopback_bind
compile_launcher

if [[ $fetched == 1 ]]; then
  say "fetch complete: $(du -sh "$CACHE" | cut -f1) in ${CACHE#"$ROOT"/}"
else
  say "fetch: everything already in ${CACHE#"$ROOT"/} (Flink $FLINK_VERSION, Beam $BEAM_JAVA_VERSION, Kafka $KAFKA_VERSION, S3Proxy $S3PROXY_VERSION)"
fi

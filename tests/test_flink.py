"""The pipelines on the local Flink session cluster (`make cluster`): batch, streaming from Kafka
into the S3-compatible store, sessions, and a TaskManager killed mid-stream.

Keys come from ACCESSLOG_MASTER_KEY in the workers' environment (the cluster's worker pool has it),
never from a keystore file, and are never shipped with the pipeline.
"""
from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from accesslog.cli import main
from accesslog.stats import connect
from storage import warehouse as wh
from tests.cluster import ROOT, cluster_env, require
from tests.conftest import SAMPLE_NOW, SAMPLES

pytestmark = pytest.mark.cluster
INPUTS = [str(SAMPLES / "access.log.1.gz"), str(SAMPLES / "access.log")]
JOB_TIMEOUT = 300


@pytest.fixture
def flink(monkeypatch) -> dict[str, str]:
    """The cluster's variables, in this process's environment too (S3 credentials, master key)."""
    env = require("FLINK_REST", "JOB_ENDPOINT", "S3_ENDPOINT")
    for name in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION",
                 "ACCESSLOG_MASTER_KEY"):
        monkeypatch.setenv(name, env[name])
    monkeypatch.delenv("ACCESSLOG_KEYS", raising=False)
    return env


def beam_args(env: dict[str, str]) -> list[str]:
    return shlex.split(env["ACCESSLOG_BEAM_ARGS"])


def rest(env: dict[str, str], path: str, method: str = "GET") -> dict:
    """Flink's REST API; retried while the JobManager is busy (it answers slowly during a recovery)."""
    request = urllib.request.Request(env["FLINK_REST"] + path, method=method)
    for attempt in range(5):
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                body = response.read()
            return json.loads(body) if body else {}
        except (TimeoutError, ConnectionError, urllib.error.URLError):
            if attempt == 4:
                raise
            time.sleep(2)
    raise AssertionError("unreachable")


def all_rows(warehouse: str, table: str = "access") -> list[tuple]:
    con = connect(warehouse)
    return con.execute(f"SELECT * EXCLUDE (date) FROM {table} ORDER BY source, source_line").fetchall()


def test_batch_on_flink_equals_the_in_process_run(flink, tmp_path, capsys):
    """`accesslog run ... --runner=PortableRunner (Flink job server)` into s3://: every committed row
    (access, rejects and the sessions the run recomputes, also on Flink) equals the FnApiRunner
    run's, and read = parsed + rejected + expired per input."""
    on_flink = f"s3://{flink['S3_BUCKET']}/flink-batch-{uuid.uuid4().hex[:8]}"
    local = str(tmp_path / "local")
    flags = ["--log-format", "timed_combined", "--now", SAMPLE_NOW, "--chunk-bytes", "65536", "--sessions"]
    assert main(["run", *INPUTS, "--warehouse", local, *flags]) == 0
    name = f"test-batch-{uuid.uuid4().hex[:8]}"
    assert main(["run", *INPUTS, "--warehouse", on_flink, *flags, *beam_args(flink), f"--job_name={name}"]) == 0, \
        capsys.readouterr().err
    ran = [j for j in rest(flink, "/jobs/overview")["jobs"] if j["name"].startswith(name)]
    assert len(ran) == 2 and {j["state"] for j in ran} == {"FINISHED"}   # ingest and sessions, on Flink
    expected = all_rows(local)
    assert len(expected) == 5996 and all_rows(on_flink) == expected
    assert all_rows(on_flink, "rejects") == all_rows(local, "rejects")
    sessions = sorted(connect(local).execute("SELECT * FROM sessions").fetchall())
    assert len(sessions) > 500 and sorted(connect(on_flink).execute("SELECT * FROM sessions").fetchall()) == sessions
    [manifest] = wh.list_files(on_flink, "_runs", ".json")
    for summary in wh.read_json(on_flink, manifest)["inputs"]:
        assert summary["status"] == "committed"
        assert summary["read"] == summary["parsed"] + summary["rejected"] + summary["expired"] > 0


# -- streaming from Kafka -------------------------------------------------------------------------


def produce(env: dict[str, str], topic: str, lines: list[str]) -> None:
    """Send each line as one message (Kafka's own console producer, from the cluster's jars)."""
    lib = Path(env["KAFKA_LIB"])
    subprocess.run(["java", "-Xmx256m", "-cp", f"{lib}/*", "org.apache.kafka.tools.ConsoleProducer",
                    "--bootstrap-server", env["KAFKA_BOOTSTRAP"], "--topic", topic],
                   input="\n".join(lines) + "\n", text=True, check=True, timeout=120, capture_output=True)


def log_line(when: datetime, path: str, ip: str = "198.51.100.7") -> str:
    return (f'{ip} - - [{when:%d/%b/%Y:%H:%M:%S} +0000] "GET {path} HTTP/1.1" 200 512 "-" '
            f'"Mozilla/5.0 (X11; Linux x86_64) Firefox/120.0"')


def create_topic(env: dict[str, str], topic: str) -> None:
    """Before the job starts: KafkaIO looks up the topic's partitions when the job starts, so a topic
    that only appears later (auto-created by the first produce) may never be read."""
    subprocess.run(["java", "-Xmx128m", "-cp", f"{env['KAFKA_LIB']}/*", "org.apache.kafka.tools.TopicCommand",
                    "--bootstrap-server", env["KAFKA_BOOTSTRAP"], "--create", "--if-not-exists", "--topic", topic,
                    "--partitions", "1", "--replication-factor", "1"], check=True, timeout=60, capture_output=True)


def start_stream(env: dict[str, str], topic: str, warehouse: str, *extra: str) -> subprocess.Popen:
    """`accesslog stream --source kafka` in its own process (the job runs until cancelled)."""
    create_topic(env, topic)
    command = [sys.executable, "-m", "accesslog", "stream", "--source", "kafka", "--bootstrap-servers",
               env["KAFKA_BOOTSTRAP"], "--topic", topic, "--kafka-expansion-service", env["KAFKA_EXPANSION_SERVICE"],
               "--warehouse", warehouse, "--window-minutes", "0.1", "--allowed-lateness-minutes", "0.2",
               *extra, *beam_args(env), "--streaming", f"--job_name=test-{topic}",
               "--", "--checkpointing_interval=2000"]   # read by Flink's job server, not declared in Python
    return subprocess.Popen(command, cwd=ROOT, env={**os.environ}, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def running_job(env: dict[str, str], topic: str, timeout: float = 120) -> str:
    """The Flink job id of the stream of `topic` (its Beam job name), once it runs."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for job in rest(env, "/jobs/overview")["jobs"]:
            if job["name"].startswith(f"test-{topic}") and job["state"] == "RUNNING":
                return job["jid"]
        time.sleep(1)
    raise AssertionError("the streaming job did not start on Flink")


def cancel(env: dict[str, str], jid: str, proc: subprocess.Popen) -> None:
    """Cancel the Flink job (until Flink says it ended) and end the submitting process."""
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            state = rest(env, f"/jobs/{jid}")["state"]
            if state in ("CANCELED", "FAILED", "FINISHED"):
                break
            if state != "CANCELLING":
                rest(env, f"/jobs/{jid}?mode=cancel", method="PATCH")
            time.sleep(1)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


# A new job's first KafkaIO (splittable DoFn) read can stall on this 2-core cluster, and no line then
# arrives within the test's wait (README: known issues). Such a test runs once more, on a new topic
# and a new job; a real loss or duplicate fails both runs.
KAFKA_STALL = pytest.mark.flaky(reruns=1, reruns_delay=10)


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(2)
    raise AssertionError(f"timed out waiting for {what}")


def stream_rows(warehouse: str) -> tuple[list[str], dict[str, int]]:
    """(url paths of the access rows, reject reasons -> count) as readers see them (nothing yet
    before the job's first file)."""
    if not wh.list_files(warehouse, "", ".parquet", recursive=True):
        return [], {}
    con = connect(warehouse)
    paths = [r[0] for r in con.execute("SELECT url_path FROM access").fetchall()]
    reasons: dict[str, int] = {}
    for (reason,) in con.execute("SELECT reason FROM rejects").fetchall():
        kind = reason if reason in ("late", "expired") else "parse"
        reasons[kind] = reasons.get(kind, 0) + 1
    return paths, reasons


@pytest.fixture(scope="module")
def kafka_reading(tmp_path_factory) -> None:
    """Start (and cancel) one small stream before the streaming tests, until a line gets through.

    Known issue, seen in CI and on every freshly started cluster: the first streaming job's Kafka
    read (KafkaIO's splittable DoFn, Beam 2.62 on Flink 1.19) can stall before its reading consumer
    starts; the same job started again reads at once. KafkaIO's UnboundedSource
    (use_deprecated_read) did not stall, but lost lines after a TaskManager was killed, so the
    splittable read stays and the stall is worked around here and in the README."""
    env = {**require("FLINK_REST", "JOB_ENDPOINT", "S3_ENDPOINT", "KAFKA_BOOTSTRAP"), **cluster_env()}
    saved = {k: os.environ.get(k) for k in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                                           "AWS_REGION", "ACCESSLOG_MASTER_KEY")}
    os.environ.update({k: env[k] for k in saved})
    try:
        for attempt in range(3):
            topic = f"warm-{uuid.uuid4().hex[:8]}"
            warehouse = f"s3://{env['S3_BUCKET']}/stream-{topic}"
            proc = start_stream(env, topic, warehouse)
            jid = running_job(env, topic)
            try:
                produce(env, topic, [log_line(datetime.now(timezone.utc), "/warm-up")])
                wait_for(lambda w=warehouse: stream_rows(w)[0] == ["/warm-up"], 75, "the warm-up line")
                return
            except AssertionError:
                if attempt == 2:
                    raise
            finally:
                cancel(env, jid, proc)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@KAFKA_STALL
def test_streaming_from_kafka_on_flink_accounts_for_every_line(flink, kafka_reading, tmp_path):
    """On time, late (within the allowed lateness), beyond lateness, expired and malformed lines:
    each ends in exactly one of access / rejects late / rejects expired / rejects (parse)."""
    env = {**flink, **cluster_env()}
    topic = f"t-{uuid.uuid4().hex[:8]}"
    warehouse = f"s3://{env['S3_BUCKET']}/stream-{topic}"
    proc = start_stream(env, topic, warehouse, "--retention-days", "30", "--sessions", "--session-gap-minutes", "0.2")
    jid = running_job(env, topic)
    try:
        now = datetime.now(timezone.utc)
        on_time = [f"/on/{i}" for i in range(40)]
        produce(env, topic, [log_line(now, p) for p in on_time]
                + [log_line(now - timedelta(days=60), f"/old/{i}") for i in range(5)]
                + ["garbage line without a request", "\x16\x03\x01 binary"])
        # once the first windows have closed (6 s windows, 12 s lateness), later lines for them are late
        wait_for(lambda: len(stream_rows(warehouse)[0]) >= len(on_time), 120, "the on-time rows")
        time.sleep(20)
        late_run_at = datetime.now(timezone.utc).replace(microsecond=0)
        produce(env, topic, [log_line(now, f"/too-late/{i}") for i in range(7)]
                + [log_line(late_run_at, f"/on/late-run/{i}") for i in range(3)])
        expected_paths = sorted(on_time + [f"/on/late-run/{i}" for i in range(3)])
        wait_for(lambda: sorted(stream_rows(warehouse)[0]) == expected_paths
                 and stream_rows(warehouse)[1].get("late", 0) == 7, 120, "every line in its place")
        paths, reasons = stream_rows(warehouse)
        assert sorted(paths) == expected_paths                       # each once
        assert reasons == {"expired": 5, "parse": 2, "late": 7}
        # Sessions on Flink equal the in-process (batch) sessions of the rows the stream kept.
        kept = tmp_path / "kept.log"
        kept.write_text("\n".join(log_line(now, p) for p in on_time) + "\n"
                        + "\n".join(log_line(late_run_at, f"/on/late-run/{i}") for i in range(3)) + "\n")
        assert main(["run", str(kept), "--warehouse", str(tmp_path / "batch"), "--sessions",
                     "--session-gap-minutes", "0.2", "--retention-days", "30"]) == 0
        columns = "client_id, host, session_start, session_end, requests, pages, bytes_sent, entry_path, exit_path"
        expected_sessions = connect(str(tmp_path / "batch")).execute(f"SELECT {columns} FROM sessions").fetchall()
        assert len(expected_sessions) == 2   # the on-time lines, and the late run 20 s later
        wait_for(lambda: sorted(connect(warehouse).execute(f"SELECT {columns} FROM sessions").fetchall())
                 == sorted(expected_sessions), 120, "the streamed sessions")
        checkpoints = rest(env, f"/jobs/{jid}/checkpoints")["counts"]["completed"]
        assert checkpoints > 0                                       # Flink checkpointing is on
    finally:
        cancel(env, jid, proc)


@KAFKA_STALL
def test_a_taskmanager_killed_mid_stream_loses_and_duplicates_nothing(flink, kafka_reading, tmp_path):
    """kill -9 the TaskManager while lines are in flight, start a new one: the job restores from its
    last checkpoint, replays Kafka from the offsets saved there, and the committed rows are exactly
    the lines produced, each once (pane files have fixed names, so a replayed pane replaces itself)."""
    env = {**flink, **cluster_env()}
    topic = f"crash-{uuid.uuid4().hex[:8]}"
    warehouse = f"s3://{env['S3_BUCKET']}/stream-{topic}"
    proc = start_stream(env, topic, warehouse)
    jid = running_job(env, topic)
    taskmanager = [str(ROOT / "cluster" / "taskmanager.sh")]
    try:
        sent: list[str] = []

        def send(tag: str, n: int) -> None:
            paths = [f"/{tag}/{i}" for i in range(n)]
            produce(env, topic, [log_line(datetime.now(timezone.utc), p) for p in paths])
            sent.extend(paths)

        send("a", 300)
        wait_for(lambda: len(stream_rows(warehouse)[0]) >= 300, 120, "the first rows")
        completed = rest(env, f"/jobs/{jid}/checkpoints")["counts"]["completed"]
        wait_for(lambda: rest(env, f"/jobs/{jid}/checkpoints")["counts"]["completed"] > completed, 60,
                 "a checkpoint after the first rows")
        send("b", 300)
        subprocess.run(["bash", *taskmanager, "kill9"], check=True, timeout=60, capture_output=True)
        send("c", 200)                                      # produced while no TaskManager runs
        subprocess.run(["bash", *taskmanager, "start"], check=True, timeout=180, capture_output=True)
        wait_for(lambda: rest(env, f"/jobs/{jid}/checkpoints")["counts"]["restored"] >= 1, 180,
                 "the job to restore from its checkpoint")
        send("d", 200)
        wait_for(lambda: sorted(stream_rows(warehouse)[0]) == sorted(sent), 240, "every line, once")
        time.sleep(10)   # nothing more arrives later (no replayed duplicate)
        paths, reasons = stream_rows(warehouse)
        assert len(paths) == len(set(paths)) == len(sent) == 1000 and set(paths) == set(sent)
        assert reasons == {}
    finally:
        cancel(env, jid, proc)
        subprocess.run(["bash", *taskmanager, "start"], timeout=180, capture_output=True)

#!/usr/bin/env python3
"""Throughput and latency of accesslog on the local loopback cluster (`make cluster`): Flink vs in-process.

    .venv/bin/python benchmarks/cluster_throughput.py                      # 1M batch lines, 200k streamed
    .venv/bin/python benchmarks/cluster_throughput.py --lines 300000 --stream-lines 50000 --repeat 3

Reads the cluster's addresses and credentials from .cluster/env (S3 keys, ACCESSLOG_MASTER_KEY,
ACCESSLOG_BEAM_ARGS) and measures, in fresh child processes of the `accesslog` console script:

1. **Batch.** A ``--lines`` ``timed_combined`` log made by generate_logs.py (cached in
   benchmarks/work/, shared with nothing: the cluster's processes read it from this machine's disk)
   goes through ``accesslog run`` twice: on Flink (``$ACCESSLOG_BEAM_ARGS --parallelism=2``, keys
   derived from the master key, warehouse ``s3://$S3_BUCKET/bench-<uuid>``) and with the in-process
   FnApiRunner (no Beam options, a temporary keystore, a local warehouse). Wall time of the whole
   child (start-up, job submission, parsing, writing), lines/s over every line of the file, the
   Flink/FnApiRunner wall-time ratio, Flink's own job duration (REST), and a row check: committed
   access rows must equal the generator's well-formed lines. ``--repeat`` > 1 prints medians.
2. **Streaming.** ``accesslog stream --source kafka`` runs on Flink (6 s windows, 12 s allowed
   lateness, checkpoints every 5 s) reading a new topic into ``s3://$S3_BUCKET/bench-stream-<uuid>``.
   After a warm-up line is visible (so job start-up is not billed):
   (a) throughput: ``--stream-lines`` generated lines, re-stamped so that each one's event time is the
   current second (blank generated lines left out: Kafka has no use for empty messages), go to Kafka
   as fast as Kafka's ConsoleProducer can send them; the clock runs from the producer's start until
   the last row or reject appears (access rows counted from the committed Parquet footers, rejects
   likewise; polled every second, done when every line is accounted for or nothing changed for 30 s)
   -> committed lines/s, and a check that every well-formed line became exactly one row;
   (b) latency: 30 single lines ~1 s apart through one warm ConsoleProducer (linger.ms=0), each with a
   unique path; a reader thread opens ``accesslog.stats.connect(warehouse)`` (what ``accesslog stats``
   reads) every 0.25 s and records when each path shows up. End-to-end = visible - produced, split
   into the wait for the line's 6 s event-time window to end and what comes after it (watermark,
   firing, writing, the poll itself). The window and the watermark dominate by design.

Before every Flink job it waits (up to 10 min) until no other job is running on the shared cluster,
and it cancels the streaming job it started in a ``finally``. Its S3 warehouses, the Kafka topic and
the local outputs are removed at the end unless ``--keep``; the generated input stays cached.
Exits 1 with "run `make cluster` first" when the cluster is not up; otherwise it reports, it does not gate.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(1, str(ROOT))
import generate_logs  # noqa: E402  (sibling module)
import run_benchmark  # noqa: E402  (ensure_input, run_child)

ENV_FILE = ROOT / ".cluster" / "env"
WORK = HERE / "work"
ACCESSLOG = ROOT / ".venv" / "bin" / "accesslog"
NOW = run_benchmark.NOW                      # the batch's fixed --now (the generated log is Nov 2026)
FORMAT = "timed_combined"
BUSY = ("RUNNING", "RESTARTING", "INITIALIZING", "CREATED")
DONE = ("FINISHED", "CANCELED", "FAILED", "SUSPENDED")
WINDOW_S, LATENESS_S = 6.0, 12.0             # --window-minutes 0.1, --allowed-lateness-minutes 0.2
TIME_FIELD = re.compile(r"\[\d\d/[A-Z][a-z]{2}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\]")
UA = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"


def say(msg: str = "") -> None:
    print(msg, flush=True)


# ----------------------------------------------------------------------------- the cluster
def cluster_env() -> dict[str, str]:
    """The variables .cluster/env exports; exits when it is missing or Flink does not answer."""
    if not ENV_FILE.exists():
        sys.exit(f"run `make cluster` first ({ENV_FILE.relative_to(ROOT)} is missing)")
    env: dict[str, str] = {}
    for line in ENV_FILE.read_text().splitlines():
        if line.startswith("export ") and "=" in line:
            name, _, value = line[len("export "):].partition("=")
            env[name] = shlex.split(value)[0] if value else ""
    try:
        rest(env, "/overview", timeout=5)
    except Exception as exc:
        sys.exit(f"run `make cluster` first (Flink REST {env.get('FLINK_REST')} does not answer: {exc})")
    return env


def rest(env: dict[str, str], path: str, method: str = "GET", timeout: float = 10) -> dict:
    request = urllib.request.Request(env["FLINK_REST"] + path, method=method)
    with urllib.request.urlopen(request, timeout=timeout) as response:
        body = response.read()
    return json.loads(body) if body else {}


def jobs(env: dict[str, str]) -> list[dict]:
    return rest(env, "/jobs/overview")["jobs"]


def wait_idle(env: dict[str, str], timeout: float = 600) -> bool:
    """Wait until no job is running on the shared cluster (other engineers' tests); False on timeout."""
    deadline, told = time.monotonic() + timeout, set()
    while True:
        busy = [j for j in jobs(env) if j["state"] in BUSY]
        if not busy:
            return True
        names = {f"{j['name']} ({j['state']})" for j in busy}
        if names - told:
            say(f"  waiting for the cluster: {', '.join(sorted(names))}")
            told |= names
        if time.monotonic() > deadline:
            say(f"  cluster still busy after {timeout:.0f} s: skipping this Flink run")
            return False
        time.sleep(5)


def job_named(env: dict[str, str], name: str) -> dict | None:
    """The newest job with this name (we name ours with --job_name=<unique>)."""
    mine = [j for j in jobs(env) if j["name"] == name]
    return max(mine, key=lambda j: j["start-time"]) if mine else None


def cancel_job(env: dict[str, str], jid: str, timeout: float = 60) -> str:
    """Cancel our job and wait until Flink says it is over; its final state."""
    rest(env, f"/jobs/{jid}?mode=cancel", method="PATCH")
    deadline, state = time.monotonic() + timeout, "?"
    while time.monotonic() < deadline:
        state = rest(env, f"/jobs/{jid}").get("state", "?")
        if state in DONE:
            break
        time.sleep(1)
    return state


def child_env(env: dict[str, str], cluster: bool) -> dict[str, str]:
    """Environment of an accesslog child: the S3 credentials (and, on the cluster, the master key)."""
    out = {k: v for k, v in os.environ.items() if k not in ("ACCESSLOG_KEYS", "ACCESSLOG_MASTER_KEY")}
    for name in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION",
                 "AWS_DEFAULT_REGION"):
        if env.get(name):
            out[name] = env[name]
    if cluster:
        out["ACCESSLOG_MASTER_KEY"] = env["ACCESSLOG_MASTER_KEY"]
    return out


# ----------------------------------------------------------------------------- the warehouse
class RowCounter:
    """Rows of a warehouse table's committed files, from the Parquet footers (each file read once)."""

    def __init__(self, warehouse: str):
        self.warehouse = warehouse
        self.rows: dict[str, int] = {}

    def count(self, table: str = "access") -> int:
        import pyarrow.parquet as pq

        from storage import warehouse as wh
        total = 0
        for rel in wh.visible_files(self.warehouse, table):
            if rel not in self.rows:
                path, fs = wh.parquet_target(self.warehouse, rel)
                with fs.open_input_file(path) as fh:
                    self.rows[rel] = pq.ParquetFile(fh).metadata.num_rows
            total += self.rows[rel]
        return total


def safe_count(counter: RowCounter, table: str = "access") -> int | None:
    try:
        return counter.count(table)
    except Exception as exc:          # a file replaced while listed, S3 hiccup: next poll
        say(f"    (could not count {table}: {str(exc).splitlines()[0][:120]})")
        return None


def remove_warehouse(warehouse: str) -> None:
    from storage import warehouse as wh
    try:
        if warehouse.startswith("s3://"):
            wh.delete_tree(warehouse, "")
        else:
            shutil.rmtree(warehouse, ignore_errors=True)
    except Exception as exc:
        say(f"  (could not remove {warehouse}: {exc})")


def reject_reasons(warehouse: str) -> dict[str, int]:
    from accesslog.stats import connect
    con = connect(warehouse)
    try:
        out: dict[str, int] = {}
        for reason, n in con.execute("SELECT reason, count(*) FROM rejects GROUP BY reason").fetchall():
            kind = reason if reason in ("late", "expired") else "parse"
            out[kind] = out.get(kind, 0) + n
        return out
    finally:
        con.close()


# ----------------------------------------------------------------------------- Kafka
def producer_cmd(env: dict[str, str], topic: str, *props: str) -> list[str]:
    cmd = ["java", "-Xmx256m", "-cp", f"{env['KAFKA_LIB']}/*", "org.apache.kafka.tools.ConsoleProducer",
           "--bootstrap-server", env["KAFKA_BOOTSTRAP"], "--topic", topic]
    for prop in props:
        cmd += ["--producer-property", prop]
    return cmd


def produce(env: dict[str, str], topic: str, lines: list[str], timeout: float = 120) -> None:
    subprocess.run(producer_cmd(env, topic), input="\n".join(lines) + "\n", text=True, check=True,
                   timeout=timeout, capture_output=True)


def topic_command(env: dict[str, str], *args: str, check: bool = False) -> None:
    subprocess.run(["java", "-Xmx128m", "-cp", f"{env['KAFKA_LIB']}/*", "org.apache.kafka.tools.TopicCommand",
                    "--bootstrap-server", env["KAFKA_BOOTSTRAP"], *args], capture_output=True, timeout=60, check=check)


def create_topic(env: dict[str, str], topic: str) -> None:
    """Before the job starts: KafkaIO looks up the topic's partitions once, when the job starts, so a
    topic that only appears later (auto-created by the first produce) may never be read."""
    topic_command(env, "--create", "--if-not-exists", "--topic", topic, "--partitions", "1",
                  "--replication-factor", "1", check=True)


def delete_topic(env: dict[str, str], topic: str) -> None:
    topic_command(env, "--delete", "--topic", topic)


def clf_time(ts: float) -> str:
    tm = time.gmtime(ts)
    return (f"{tm.tm_mday:02d}/{generate_logs.MONTHS[tm.tm_mon]}/{tm.tm_year}:"
            f"{tm.tm_hour:02d}:{tm.tm_min:02d}:{tm.tm_sec:02d} +0000")


REQUEST_TIME = re.compile(r'" (\d+\.\d+) (?:-|\d[^"]*)$')


def restamp(line: str, now: int) -> str:
    """A generated line logged "now": its time field becomes now + ceil($request_time), so that its
    event time (logged time - $request_time) is the current second. Stamping every line with the same
    second instead would put the generator's slow requests (up to a minute) into windows that closed
    long ago: late rejects that say nothing about the pipeline."""
    m = REQUEST_TIME.search(line)
    logged = now + (math.ceil(float(m.group(1))) if m else 0)
    return TIME_FIELD.sub(f"[{clf_time(logged)}]", line, count=1)


def log_line(ts: float, path: str) -> str:
    return f'198.51.100.7 - - [{clf_time(ts)}] "GET {path} HTTP/1.1" 200 512 "-" "{UA}" 0.001 0.001'


# ----------------------------------------------------------------------------- helpers
def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (as follow_latency.py): p99 of 30 samples is their maximum."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)] if ordered else float("nan")


def tail(path: Path, lines: int = 12) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "    (no log)"
    return "\n".join("    " + x for x in text.rstrip().splitlines()[-lines:])


def median(xs: list[float]) -> float | None:
    return statistics.median(xs) if xs else None


# ----------------------------------------------------------------------------- 1. batch
def batch(args, env: dict[str, str], logfile: Path, meta: dict, logs: Path, cleanup: list[str]) -> dict:
    lines, well_formed = meta["lines"], meta["well_formed"]
    common = [str(ACCESSLOG), "run", str(logfile), "--log-format", FORMAT, "--now", NOW]
    res: dict = {"fnapi": [], "flink": [], "flink_job_s": [], "checks": []}

    def check(label: str, warehouse: str) -> None:
        rows = safe_count(RowCounter(warehouse))
        ok = rows == well_formed
        res["checks"].append((label, rows, ok))
        say(f"    {label}: access rows {rows if rows is None else f'{rows:,}'} vs well-formed lines "
            f"{well_formed:,}: {'OK' if ok else 'MISMATCH'}")

    keydir = Path(tempfile.mkdtemp(prefix="bench-keys-", dir=WORK))
    local = WORK / "fnapi-warehouse"
    try:
        for rep in range(1, args.repeat + 1):
            shutil.rmtree(local, ignore_errors=True)
            cmd = common + ["--warehouse", str(local), "--keys", str(keydir / "keys")]
            if rep == 1:
                say("FnApiRunner: " + " ".join(cmd))
            run = run_benchmark.run_child(cmd, logs / f"fnapi-{rep}", env=child_env(env, cluster=False),
                                          timeout=args.batch_timeout)
            say(f"[{rep}/{args.repeat}] FnApiRunner {run.seconds:8.2f} s {lines / run.seconds:>10,.0f} lines/s"
                f"  {'ok' if run.rc == 0 else f'FAILED rc={run.rc}'}")
            if run.rc != 0:
                say(tail(logs / f"fnapi-{rep}.stderr"))
                break
            res["fnapi"].append(run.seconds)
            check("FnApiRunner", str(local))
    finally:
        shutil.rmtree(local, ignore_errors=True)
        shutil.rmtree(keydir, ignore_errors=True)

    beam = shlex.split(env["ACCESSLOG_BEAM_ARGS"]) + ["--parallelism=2"]
    for rep in range(1, args.repeat + 1):
        if not wait_idle(env):
            break
        tag = uuid.uuid4().hex[:12]
        warehouse = f"s3://{env['S3_BUCKET']}/bench-{tag}"
        cleanup.append(warehouse)
        name = f"accesslog-bench-batch-{tag}"
        cmd = common + ["--warehouse", warehouse, *beam, f"--job_name={name}"]
        if rep == 1:
            say("Flink:       " + " ".join(cmd))
        try:
            run = run_benchmark.run_child(cmd, logs / f"flink-{rep}", env=child_env(env, cluster=True),
                                          timeout=args.batch_timeout)
        finally:
            job = job_named(env, name)
            if job and job["state"] not in DONE:          # the child was killed: do not leave it running
                say(f"  cancelling our batch job {job['jid']}: {cancel_job(env, job['jid'])}")
        job = job_named(env, name)
        job_s = job["duration"] / 1000 if job and job.get("duration", -1) >= 0 else None
        say(f"[{rep}/{args.repeat}] Flink p=2   {run.seconds:8.2f} s {lines / run.seconds:>10,.0f} lines/s"
            f"  {'ok' if run.rc == 0 else f'FAILED rc={run.rc}'}  (Flink job "
            f"{job['state'] if job else 'not found'}{f', {job_s:.1f} s' if job_s is not None else ''})")
        if run.rc != 0:
            say(tail(logs / f"flink-{rep}.stderr"))
            break
        res["flink"].append(run.seconds)
        if job_s is not None:
            res["flink_job_s"].append(job_s)
        check("Flink", warehouse)
        if not args.keep:
            remove_warehouse(warehouse)
    return res


# ----------------------------------------------------------------------------- 2. streaming
class Watcher(threading.Thread):
    """Opens the stats reader every `period` s; first time each latency path is visible."""

    def __init__(self, warehouse: str, prefix: str, period: float = 0.25):
        super().__init__(daemon=True)
        self.warehouse, self.prefix, self.period = warehouse, prefix, period
        self.seen: dict[str, float] = {}
        self.poll_seconds: list[float] = []
        self.errors = 0
        self.stop = threading.Event()

    def run(self) -> None:
        from accesslog.stats import connect
        sql = "SELECT url_path FROM access WHERE starts_with(url_path, $prefix)"
        while not self.stop.is_set():
            started = time.time()
            try:
                con = connect(self.warehouse)
                try:
                    found = [p for (p,) in con.execute(sql, {"prefix": self.prefix}).fetchall()]
                finally:
                    con.close()
            except Exception:    # no file yet, a file replaced while read: next poll
                found = []
                self.errors += 1
            now = time.time()
            self.poll_seconds.append(now - started)
            for path in found:
                self.seen.setdefault(path, now)
            self.stop.wait(max(0.0, self.period - (now - started)))


def wait_for_rows(counter: RowCounter, target: int, timeout: float, what: str) -> float | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = safe_count(counter)
        if rows is not None and rows >= target:
            return time.monotonic()
        time.sleep(1)
    say(f"  timed out after {timeout:.0f} s waiting for {what}")
    return None


def streaming(args, env: dict[str, str], logs: Path, cleanup: list[str]) -> dict:
    res: dict = {}
    if not wait_idle(env):
        res["skipped"] = "cluster busy"
        return res
    tag = uuid.uuid4().hex[:12]
    topic, name = f"bench-{tag}", f"accesslog-bench-stream-{tag}"
    warehouse = f"s3://{env['S3_BUCKET']}/bench-stream-{tag}"
    cleanup += [warehouse, f"kafka:{topic}"]
    cmd = [str(ACCESSLOG), "stream", "--source", "kafka", "--bootstrap-servers", env["KAFKA_BOOTSTRAP"],
           "--topic", topic, "--kafka-expansion-service", env["KAFKA_EXPANSION_SERVICE"], "--warehouse", warehouse,
           "--log-format", FORMAT, "--window-minutes", "0.1", "--allowed-lateness-minutes", "0.2",
           *shlex.split(env["ACCESSLOG_BEAM_ARGS"]), "--streaming",
           f"--job_name={name}", "--", "--checkpointing_interval=5000"]   # Flink's, not declared in Python
    say("stream:      " + " ".join(cmd))
    create_topic(env, topic)
    out = open(logs / "stream.log", "wb")
    t_submit = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=child_env(env, cluster=True), stdout=out, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL)
    jid = None
    try:
        # -- the job runs -------------------------------------------------------------------
        deadline = time.monotonic() + 240
        while jid is None and time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"accesslog stream exited (rc={proc.returncode}) before its job ran:\n"
                                   + tail(logs / "stream.log"))
            job = job_named(env, name)
            if job and job["state"] == "RUNNING":
                jid = job["jid"]
            else:
                time.sleep(1)
        if jid is None:
            raise RuntimeError("the streaming job did not reach RUNNING within 240 s:\n" + tail(logs / "stream.log"))
        while time.monotonic() < deadline and any(
                v["status"] != "RUNNING" for v in rest(env, f"/jobs/{jid}").get("vertices", [])):
            time.sleep(0.5)                          # every task deployed
        res["job_running_s"] = time.monotonic() - t_submit
        say(f"  job {jid} RUNNING (all tasks) {res['job_running_s']:.1f} s after submission")
        counter = RowCounter(warehouse)
        t = time.monotonic()
        produce(env, topic, [log_line(time.time(), f"/bench-warmup/{tag}")])
        seen = wait_for_rows(counter, 1, 240, "the warm-up line")
        if seen is None:
            raise RuntimeError("the warm-up line never became visible:\n" + tail(logs / "stream.log"))
        res["warmup_s"] = seen - t
        say(f"  warm-up line visible {res['warmup_s']:.1f} s after producing it")

        # -- (a) throughput -----------------------------------------------------------------
        m = args.stream_lines
        stats: dict = {}
        now = int(time.time())
        body = [restamp(line, now) for line in generate_logs.generate(m, FORMAT, seed=7, stats=stats)]
        blank = sum(1 for line in body if not line.strip())
        body = [line for line in body if line.strip()]          # see restamp() and the docstring
        sent = len(body)
        burst = WORK / f"stream-{m}.log"
        burst.write_text("\n".join(body) + "\n")
        del body
        expected = 1 + stats["well_formed"]           # + the warm-up row
        total = 1 + sent                              # every message: an access row or a reject
        res.update(stream_lines=m, stream_sent=sent, stream_blank=blank, stream_well_formed=stats["well_formed"],
                   stream_malformed=stats["malformed"])
        say(f"  producing {sent:,} lines ({stats['well_formed']:,} well-formed; {blank} blank generated lines "
            f"left out) stamped {clf_time(now)} ...")
        t0 = time.monotonic()
        with open(burst, "rb") as fh:
            subprocess.run(producer_cmd(env, topic, "linger.ms=20", "batch.size=262144"), stdin=fh, check=True,
                           capture_output=True, timeout=300)
        res["produce_s"] = time.monotonic() - t0
        say(f"  produced in {res['produce_s']:.1f} s; waiting for the rows (timeout {args.stream_timeout:.0f} s, "
            f"or {args.settle:.0f} s without change)")
        deadline, last, changed = t0 + args.stream_timeout, (0, 0), time.monotonic()
        complete = settled = False
        while time.monotonic() < deadline:
            rows, rej = safe_count(counter), safe_count(counter, "rejects")
            now_m = time.monotonic()
            if rows is not None and rej is not None:
                if (rows, rej) != last:
                    last, changed = (rows, rej), now_m
                if rows + rej >= total:               # every line accounted for
                    complete = True
                    break
                if rows + rej > 1 and now_m - changed >= args.settle:
                    settled = True                    # nothing moves any more: lines are missing
                    break
            time.sleep(1)
        res["access_rows"], res["reject_rows"] = last
        res["accounted_s"] = changed - t0             # when the last row/reject appeared
        res["throughput_complete"], res["throughput_settled"] = complete, settled
        res["rows_expected"], res["lines_total"] = expected, total
        say(f"  access rows {last[0]:,} / {expected:,} expected, rejects {last[1]:,}; last change "
            f"{res['accounted_s']:.1f} s after the produce started"
            + ("" if complete else f" ({total - sum(last):,} lines unaccounted; "
               + ("no change for {:.0f} s)".format(args.settle) if settled else "TIMED OUT)")))
        try:
            res["reject_reasons"] = reject_reasons(warehouse)
        except Exception as exc:
            res["reject_reasons"] = {"?": str(exc)[:80]}
        burst.unlink(missing_ok=True)

        # -- (b) latency --------------------------------------------------------------------
        k = args.latency_lines
        prefix = f"/bench-latency/{tag}/"
        watcher = Watcher(warehouse, prefix, period=0.25)
        producer = subprocess.Popen(producer_cmd(env, topic, "linger.ms=0"), stdin=subprocess.PIPE,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True)
        produced: dict[str, float] = {}
        try:
            producer.stdin.write(log_line(time.time(), f"/bench-latency-prime/{tag}") + "\n")
            producer.stdin.flush()
            time.sleep(3)                            # JVM start, metadata: not part of any line's latency
            watcher.start()
            say(f"  latency: {k} lines ~1 s apart ...")
            for i in range(k):
                path = f"{prefix}{i}"
                now = time.time()
                producer.stdin.write(log_line(now, path) + "\n")
                producer.stdin.flush()
                produced[path] = now
                time.sleep(max(0.0, now + 1.0 - time.time()))
            deadline = time.monotonic() + args.latency_timeout
            while len(watcher.seen) < k and time.monotonic() < deadline:
                time.sleep(0.25)
        finally:
            watcher.stop.set()
            if watcher.is_alive():
                watcher.join(timeout=30)
            try:
                producer.stdin.close()
                producer.wait(timeout=30)
            except Exception:
                producer.kill()
        lat, win_wait, after = [], [], []
        for path, t_prod in produced.items():
            t_vis = watcher.seen.get(path)
            if t_vis is None:
                continue
            # event time = logged second - request_time (1 ms); FixedWindows are aligned to the epoch
            received = int(t_prod) - 0.001
            window_end = (received // WINDOW_S + 1) * WINDOW_S
            lat.append(t_vis - t_prod)
            win_wait.append(window_end - t_prod)
            after.append(t_vis - window_end)
        res.update(latency=lat, window_wait=win_wait, after_window=after, latency_sent=len(produced),
                   poll_s=watcher.poll_seconds, poll_errors=watcher.errors)
        try:
            res["checkpoints"] = rest(env, f"/jobs/{jid}/checkpoints")["counts"]["completed"]
        except Exception:
            pass
    finally:
        if jid is None:                              # started late, or we gave up waiting: still ours
            job = job_named(env, name)
            jid = job["jid"] if job and job["state"] not in DONE else None
        if jid:
            try:
                res["cancelled"] = cancel_job(env, jid)
                say(f"  cancelled our streaming job {jid}: {res['cancelled']}")
            except Exception as exc:
                say(f"  could not cancel our streaming job {jid}: {exc}")
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        out.close()
    return res


# ----------------------------------------------------------------------------- 3. report
def report(args, meta: dict, logfile: Path, b: dict, s: dict) -> None:
    lines = meta["lines"]
    agg = "median" if args.repeat > 1 else "wall"
    say()
    say(f"== accesslog on the local cluster ({os.cpu_count()} CPUs): batch {lines:,} {FORMAT} lines "
        f"({logfile.stat().st_size / 2**20:.0f} MiB), {args.repeat} repeat(s)")
    head = f"{'batch':34s} {'runs':>4s} {agg + ' s':>9s} {'min s':>7s} {'lines/s':>10s}  rows check"
    say(head)
    say("-" * len(head))
    for label, key, check in (("FnApiRunner (in-process, context)", "fnapi", "FnApiRunner"),
                              ("Flink (PortableRunner, p=2, s3://)", "flink", "Flink")):
        runs = b[key]
        if not runs:
            say(f"{label:34s} {0:>4d} {'-':>9s} {'-':>7s} {'-':>10s}  did not run")
            continue
        med = median(runs)
        oks = [ok for lbl, _, ok in b["checks"] if lbl == check]
        verdict = "?" if not oks else "OK" if all(oks) else "MISMATCH"
        say(f"{label:34s} {len(runs):>4d} {med:>9.2f} {min(runs):>7.2f} {lines / med:>10,.0f}  {verdict}")
    if b["fnapi"] and b["flink"]:
        ratio = median(b["flink"]) / median(b["fnapi"])
        say(f"Flink / FnApiRunner wall time: {ratio:.2f}x  (throughput {1 / ratio:.2f}x)"
            + (f"; Flink's own job duration {agg} {median(b['flink_job_s']):.2f} s "
               f"({lines / median(b['flink_job_s']):,.0f} lines/s), the rest is client start-up and submission"
               if b["flink_job_s"] else ""))
    say()
    say("streaming: accesslog stream, Kafka -> Flink (p=1) -> s3://, 6 s windows, 12 s allowed lateness, "
        "checkpoints 5 s")
    if s.get("skipped") or s.get("error"):
        say(f"  did not complete: {s.get('skipped') or s.get('error')}")
    if "job_running_s" in s:
        say(f"  start-up: job RUNNING after {s['job_running_s']:.1f} s, warm-up line visible after "
            f"{s.get('warmup_s', float('nan')):.1f} s more")
    if "accounted_s" in s:
        sent, rows, rej, exp, total = s["stream_sent"], s["access_rows"], s["reject_rows"], s["rows_expected"], \
            s["lines_total"]
        secs = s["accounted_s"]
        say(f"  throughput: {sent:,} lines produced in {s['produce_s']:.1f} s; last row visible after {secs:.1f} s "
            f"-> {rows - 1:,} rows committed = {(rows - 1) / secs:,.0f} committed lines/s "
            f"({(rows + rej - 1) / secs:,.0f} lines/s incl. rejects)")
        missing = exp - rows
        say(f"              access rows {rows:,} of {exp:,} expected (incl. 1 warm-up)"
            f"{f', {missing:,} MISSING' if missing > 0 else ''}{f', {-missing:,} EXTRA' if missing < 0 else ''}; "
            f"rejects {rej:,} (malformed sent: {s['stream_malformed'] - s['stream_blank']}; by reason "
            f"{s.get('reject_reasons')}); "
            + ("every line accounted for" if s["throughput_complete"] else
               f"{total - rows - rej:,} lines UNACCOUNTED ("
               + ("nothing changed any more" if s["throughput_settled"] else "timed out") + ")"))
    lat = s.get("latency")
    if lat is not None:
        poll = s["poll_s"]
        say(f"  latency (produce -> visible to accesslog.stats.connect, polled every 0.25 s): "
            f"{len(lat)}/{s['latency_sent']} lines seen")
        if lat:
            say(f"    end-to-end       p50 {percentile(lat, 50):6.2f} s   p99 {percentile(lat, 99):6.2f} s   "
                f"min {min(lat):6.2f} s   max {max(lat):6.2f} s")
            say(f"    window wait      p50 {percentile(s['window_wait'], 50):6.2f} s   p99 "
                f"{percentile(s['window_wait'], 99):6.2f} s   (produce -> end of the line's 6 s event-time window)")
            say(f"    after window end p50 {percentile(s['after_window'], 50):6.2f} s   p99 "
                f"{percentile(s['after_window'], 99):6.2f} s   (watermark passing it, firing, writing, polling)")
        if poll:
            say(f"    one poll (connect + query on s3://) median {median(poll):.2f} s, max {max(poll):.2f} s, "
                f"{len(poll)} polls, {s['poll_errors']} failed")
        say("    note: a line first waits for its 6 s event-time window to end (~3 s on average), then for the")
        say("    watermark to pass that end (Kafka processing-time watermark, Flink watermark propagation, bundle")
        say("    flushes) before its pane is written; parsing and the S3 write are a small part.")
        if lat and percentile(s["after_window"], 50) > 2 * max(percentile(s["window_wait"], 50), 1.0):
            say("    UNEXPECTED: here the time after the window end dominates, i.e. the watermark lags far behind")
            say("    processing time (not the window itself).")
        if lat and len(lat) >= 20:
            say(f"    p99 of {len(lat)} samples (nearest rank) is the maximum.")
    if "checkpoints" in s:
        say(f"  checkpoints completed by the streaming job: {s['checkpoints']}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lines", type=int, default=1_000_000, help="batch log lines (default %(default)s)")
    ap.add_argument("--stream-lines", type=int, default=200_000, help="lines of the streaming burst")
    ap.add_argument("--repeat", type=int, default=1, help="batch repeats per runner; medians when > 1")
    ap.add_argument("--latency-lines", type=int, default=30, help=argparse.SUPPRESS)
    ap.add_argument("--batch-timeout", type=float, default=900, help="seconds before a batch child is killed")
    ap.add_argument("--stream-timeout", type=float, default=420, help="seconds to wait for the streamed rows")
    ap.add_argument("--settle", type=float, default=30, help=argparse.SUPPRESS)
    ap.add_argument("--latency-timeout", type=float, default=90, help=argparse.SUPPRESS)
    ap.add_argument("--skip-batch", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--skip-stream", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--keep", action="store_true", help="keep the S3 warehouses, Kafka topic and child logs")
    args = ap.parse_args(argv)

    env = cluster_env()
    for name in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION"):
        os.environ[name] = env[name]                 # this process reads the s3:// warehouses too
    if not ACCESSLOG.exists():
        sys.exit(f"console script not found: {ACCESSLOG} (make setup)")
    WORK.mkdir(parents=True, exist_ok=True)
    logs = WORK / "logs"
    logs.mkdir(exist_ok=True)
    started = time.monotonic()
    logfile, meta = run_benchmark.ensure_input(argparse.Namespace(lines=args.lines, format=FORMAT, seed=42), WORK)
    cleanup: list[str] = []
    b: dict = {"fnapi": [], "flink": [], "flink_job_s": [], "checks": []}
    s: dict = {}
    try:
        if not args.skip_batch:
            b = batch(args, env, logfile, meta, logs, cleanup)
        if not args.skip_stream:
            try:
                s = streaming(args, env, logs, cleanup)
            except Exception as exc:
                s = {"error": str(exc)}
                say(f"streaming failed: {exc}")
    finally:
        if not args.keep:
            for item in cleanup:
                if item.startswith("kafka:"):
                    delete_topic(env, item[len("kafka:"):])
                else:
                    remove_warehouse(item)
            shutil.rmtree(logs, ignore_errors=True)
    report(args, meta, logfile, b, s)
    say(f"\n(total {time.monotonic() - started:.0f} s" + (f"; kept {', '.join(cleanup)} and {logs})" if args.keep
                                                         else ")"))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)

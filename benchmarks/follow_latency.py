"""Follow latency: from nginx's HTTP response to the row being queryable in DuckDB.

    .venv/bin/python benchmarks/follow_latency.py [--requests 100] [--spacing 0.05] [--interval 1s]

Same topology as tests/test_nginx_e2e.py: a private nginx in a temp folder logging with a custom
`log_format timed` that `accesslog follow --log-format CONF:timed --interval 1s` reads from its
nginx.conf. After a warm-up request has reached the warehouse (so Beam's start-up is not counted),
it sends N requests ~50 ms apart, each with a unique marker (`/?probe=<n>`), and records when each
response arrived. A separate thread queries

    SELECT url_query FROM read_parquet('W/access/**/*.parquet', hive_partitioning = true)
    WHERE url_query LIKE 'probe=%'

every 50 ms and records when each marker first shows up. Latency = first seen - response received.
Prints p50/p95/max and PASS/FAIL for "p95 <= 5 s" (exit code 0 / 1; 2 when nginx is missing).
"""
from __future__ import annotations

import argparse
import contextlib
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.test_nginx_e2e import NGINX, NginxServer, follow_command, follow_env, get  # noqa: E402

TARGET_P95 = 5.0
PROBE = re.compile(r"(?:^|&)probe=(\d+)(?:&|$)")


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


class Watcher(threading.Thread):
    """Polls the warehouse with DuckDB every `period` seconds; first time each probe is seen."""

    def __init__(self, warehouse: Path, period: float = 0.05):
        super().__init__(daemon=True)
        import duckdb

        self.con = duckdb.connect()
        self.glob = str(warehouse / "access" / "**" / "*.parquet").replace("'", "''")
        self.period = period
        self.seen: dict[int, float] = {}
        self.warmup_seen: float | None = None
        self.queries = 0
        self.query_seconds = 0.0
        self.stop = threading.Event()

    def run(self) -> None:
        sql = (f"SELECT url_query FROM read_parquet('{self.glob}', hive_partitioning = true) "
               "WHERE url_query LIKE 'probe=%' OR url_query LIKE 'warmup=%'")
        while not self.stop.is_set():
            started = time.monotonic()
            try:
                found = [q for (q,) in self.con.execute(sql).fetchall()]
            except Exception:   # no file yet, or a file replaced while being read: next poll
                found = []
            now = time.monotonic()
            self.queries += 1
            self.query_seconds += now - started
            for query in found:
                if query.startswith("warmup=") and self.warmup_seen is None:
                    self.warmup_seen = now
                m = PROBE.search(query)
                if m and int(m.group(1)) not in self.seen:
                    self.seen[int(m.group(1))] = now
            self.stop.wait(max(0.0, self.period - (time.monotonic() - started)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--spacing", type=float, default=0.05, help="seconds between requests (default 0.05)")
    parser.add_argument("--interval", default="1s", help="follow --interval (default 1s)")
    parser.add_argument("--settle", type=float, default=60.0, help="max seconds to wait for the last rows")
    parser.add_argument("--keep", action="store_true", help="keep the temp folder (nginx, logs, warehouse)")
    args = parser.parse_args(argv)
    if NGINX is None:
        print("follow_latency: nginx is not installed (Debian: apt-get install nginx-light or nginx)",
              file=sys.stderr)
        return 2

    folder = Path(tempfile.mkdtemp(prefix="accesslog-follow-latency-"))
    nginx = NginxServer(folder / "nginx")
    nginx.folder.mkdir()
    warehouse, keys = folder / "wh", folder / "keys"
    follower: subprocess.Popen | None = None
    watcher: Watcher | None = None
    try:
        nginx.start()
        base = nginx.urls()[0]
        with open(folder / "follow.stderr", "wb") as err:
            follower = subprocess.Popen(follow_command(nginx.access_log, warehouse, keys, nginx.conf, args.interval),
                                        cwd=ROOT, env=follow_env(), stdin=subprocess.DEVNULL,
                                        stdout=subprocess.DEVNULL, stderr=err, start_new_session=True)
        watcher = Watcher(warehouse)
        watcher.start()

        t0 = time.monotonic()
        get(base + "/?warmup=1")
        while watcher.warmup_seen is None:
            if follower.poll() is not None or time.monotonic() - t0 > 120:
                raise SystemExit(f"follow_latency: the follower did not start: "
                                 f"{(folder / 'follow.stderr').read_text(errors='replace')[-2000:]}")
            time.sleep(0.05)
        print(f"warm-up: follower started and first row queryable after {watcher.warmup_seen - t0:.2f} s")

        responded: dict[int, float] = {}
        start = time.monotonic()
        for n in range(args.requests):
            status = get(f"{base}/?probe={n}")
            responded[n] = time.monotonic()
            if status != 200:
                raise SystemExit(f"follow_latency: nginx answered {status} to probe {n}")
            time.sleep(max(0.0, start + (n + 1) * args.spacing - time.monotonic()))
        sent_seconds = time.monotonic() - start

        deadline = time.monotonic() + args.settle
        while len(watcher.seen) < args.requests and time.monotonic() < deadline and follower.poll() is None:
            time.sleep(0.05)
    finally:
        if watcher is not None:
            watcher.stop.set()
            watcher.join(timeout=10)
        if follower is not None and follower.poll() is None:
            follower.send_signal(signal.SIGTERM)
            try:
                follower.wait(timeout=30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(follower.pid, signal.SIGKILL)
                follower.wait(timeout=10)
        nginx.stop()
        if args.keep:
            print(f"kept {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)

    latencies = [watcher.seen[n] - responded[n] for n in responded if n in watcher.seen]
    missing = sorted(set(responded) - set(watcher.seen))
    print(f"requests: {len(responded)} sent over {sent_seconds:.2f} s (every {args.spacing * 1000:.0f} ms), "
          f"follow --interval {args.interval}; DuckDB polls: {watcher.queries}, "
          f"mean query {watcher.query_seconds / max(1, watcher.queries) * 1000:.1f} ms")
    if not latencies:
        print(f"FAIL: no probe became queryable within {args.settle:.0f} s")
        return 1
    p50, p95, worst = percentile(latencies, 50), percentile(latencies, 95), max(latencies)
    print(f"response -> queryable in DuckDB: min {min(latencies):.3f} s, p50 {p50:.3f} s, "
          f"p95 {p95:.3f} s, max {worst:.3f} s ({len(latencies)} rows)")
    if missing:
        print(f"missing after {args.settle:.0f} s: {len(missing)} probes ({missing[:10]}...)")
    ok = not missing and p95 <= TARGET_P95
    print(f"{'PASS' if ok else 'FAIL'}: p95 <= {TARGET_P95:.0f} s" + ("" if not missing else " and every probe queryable"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

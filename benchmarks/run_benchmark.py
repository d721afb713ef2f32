#!/usr/bin/env python3
"""Benchmark `accesslog run` against a DuckDB regex-SQL baseline (and GoAccess when installed).

    python benchmarks/run_benchmark.py                       # 1M lines, 3 repeats, all tools
    python benchmarks/run_benchmark.py --only duckdb --repeat 5
    python benchmarks/run_benchmark.py -- --direct_running_mode=multi_processing --direct_num_workers=2

Everything after ``--`` is passed to ``accesslog run`` unchanged.

What is measured, per tool and repeat, in a fresh child process:
  * wall time of the whole child (interpreter start, imports, reading, parsing, writing Parquet);
  * peak RSS: ``ru_maxrss`` from ``os.wait4`` on that child. Linux folds waited-for descendants
    into it, so for a multi-process run it is the largest *single* process, not the sum; the
    "tree MiB" column is the sum over the process tree sampled every 50 ms from /proc (it can miss
    short spikes).
The input (``--lines`` lines of ``--format``, made by generate_logs.py with ``--seed``) is generated
once and cached in ``--workdir``; the lines/s figures count every line of the file, malformed ones
included. The warehouse is wiped before each accesslog repeat; the keystore is created by accesslog
on first use and reused across repeats. Without ``--keep`` the outputs, logs and keystore are removed
at the end (the cached input stays, so the next run skips generation).

The DuckDB baseline is the "what would I do without this project" pipeline: read the file as one
VARCHAR column, ``regexp_extract`` the fields, ``strptime`` the time, ``COPY ... TO`` zstd Parquet
with ``SET threads=2``. It also proves the input: its row count must equal the generator's number of
well-formed lines. The target for accesslog is >= 300k lines/s and at least as fast as that baseline.

Always exits 0: a benchmark reports, it does not gate.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import generate_logs  # noqa: E402  (sibling module)

TARGET_LINES_PER_S = 300_000
NOW = "2026-12-01T00:00:00Z"
PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


# ----------------------------------------------------------------------------- measuring a child
def _children_map() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as fh:
                stat = fh.read()
        except OSError:
            continue
        # pid (comm) state ppid ...; comm may contain spaces/parens: split after the last ')'
        try:
            ppid = int(stat[stat.rindex(b")") + 2:].split()[1])
        except (ValueError, IndexError):
            continue
        kids.setdefault(ppid, []).append(int(entry.name))
    return kids


def _tree_rss(root: int) -> int:
    """Sum of resident set sizes (bytes) of root and all its descendants, from /proc."""
    kids = _children_map()
    total, todo, seen = 0, [root], set()
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        try:
            with open(f"/proc/{pid}/statm", "rb") as fh:
                total += int(fh.read().split()[1]) * PAGE
        except (OSError, ValueError, IndexError):
            pass
        todo.extend(kids.get(pid, ()))
    return total


@dataclass
class Run:
    seconds: float
    rc: int
    maxrss_kib: int
    tree_peak_bytes: int
    stdout: str
    stderr: str


def run_child(cmd: list[str], log_prefix: Path, env: dict | None = None, timeout: float | None = None) -> Run:
    """Run cmd, wait with os.wait4 for its rusage, sample the tree RSS meanwhile."""
    out_path, err_path = log_prefix.with_suffix(".stdout"), log_prefix.with_suffix(".stderr")
    # Flush the previous tool's dirty pages first, so its writeback is not billed to this one.
    os.sync()
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=env)
        peak = [0]
        done = threading.Event()

        def sample() -> None:
            if not os.path.isdir("/proc"):
                return
            while not done.is_set():
                try:
                    peak[0] = max(peak[0], _tree_rss(proc.pid))
                except Exception:        # a process vanished mid-scan; keep sampling
                    pass
                done.wait(0.05)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        killer = None
        if timeout:
            killer = threading.Timer(timeout, proc.kill)
            killer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            if killer:
                killer.cancel()
            done.set()
        seconds = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)   # we reaped it, tell Popen
        sampler.join()
    return Run(seconds, proc.returncode, int(usage.ru_maxrss), peak[0],
               out_path.read_text(errors="replace"), err_path.read_text(errors="replace"))


def _tail(text: str, lines: int = 15) -> str:
    return "\n".join("    " + x for x in text.rstrip().splitlines()[-lines:])


# ----------------------------------------------------------------------------- the DuckDB baseline
# Runs in a child interpreter: argv = file, outdir, format, threads, partitioned(0/1).
# Prints one JSON line: rows written and the time spent inside DuckDB.
DUCKDB_SCRIPT = r'''
import json, sys, time
t_start = time.perf_counter()
import duckdb
path, outdir, fmt, threads, partitioned = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5] == "1"
HEAD = (r'^(\S+) \S+ (\S+) \[([^\]]+)\] "(?:([A-Z]+) (\S+) (HTTP/[0-9.]+)|[^"]*)" ([0-9]{3}) ([0-9]+|-) '
        r'"([^"]*)" "([^"]*)"')
TAIL = {"combined": "", "main": r' "([^"]*)"', "timed_combined": r" (-|[0-9]+\.[0-9]+) (.+)"}
names = ["ip", "remote_user", "time_local", "method", "target", "protocol", "status", "bytes", "referrer", "user_agent"]
names += {"combined": [], "main": ["xff"], "timed_combined": ["request_time", "upstream_time"]}[fmt]
extra = ""
if fmt == "timed_combined":
    extra = (", TRY_CAST(NULLIF(m.request_time, '-') AS DOUBLE) * 1000 AS duration_ms"
             ", NULLIF(m.upstream_time, '-') AS upstream_time")
elif fmt == "main":
    extra = ", NULLIF(m.xff, '-') AS x_forwarded_for"
ts = "strptime(m.time_local, '%d/%b/%Y:%H:%M:%S %z')"
if partitioned:
    extra += f", strftime({ts} AT TIME ZONE 'UTC', '%Y-%m-%d') AS date"
names_sql = "[" + ", ".join("'%s'" % n for n in names) + "]"
# One VARCHAR column per line: delimiter \x01 (never in a log line), no quoting, no escaping.
query = f"""
COPY (
  WITH raw AS (
    SELECT regexp_extract(line, $pattern, {names_sql}) AS m
    FROM read_csv($path, columns = {{'line': 'VARCHAR'}}, delim = '\x01', quote = '', escape = '',
                  header = false, auto_detect = false, strict_mode = false)
  )
  SELECT m.ip AS ip,
         {ts} AS responded_at,
         NULLIF(m.method, '') AS method,
         NULLIF(split_part(m.target, '?', 1), '') AS url_path,
         CASE WHEN strpos(m.target, '?') > 0 THEN substr(m.target, strpos(m.target, '?') + 1) END AS url_query,
         NULLIF(m.protocol, '') AS protocol,
         CAST(m.status AS SMALLINT) AS status,
         TRY_CAST(m.bytes AS BIGINT) AS bytes_sent,
         NULLIF(m.referrer, '-') AS referrer,
         NULLIF(m.user_agent, '-') AS user_agent,
         NULLIF(m.remote_user, '-') AS remote_user
         {extra}
  FROM raw
  WHERE m.status <> ''
) TO '{outdir}' (FORMAT parquet, COMPRESSION zstd, {"PARTITION_BY (date)" if partitioned else "PER_THREAD_OUTPUT true"})
"""
con = duckdb.connect()
con.execute(f"SET threads = {threads}")
t = time.perf_counter()
rows = con.execute(query, {"pattern": HEAD + TAIL[fmt] + "$", "path": path}).fetchone()[0]
print(json.dumps({"rows": rows, "copy_seconds": time.perf_counter() - t,
                  "process_seconds": time.perf_counter() - t_start, "duckdb": duckdb.__version__}))
'''


def count_parquet_rows(pattern: str) -> int | None:
    try:
        import duckdb
        con = duckdb.connect()
        try:
            return con.execute(f"SELECT count(*) FROM read_parquet('{pattern}', hive_partitioning = true)").fetchone()[0]
        finally:
            con.close()
    except Exception as exc:        # no files, or duckdb missing in this interpreter
        print(f"    (could not count rows in {pattern}: {str(exc).splitlines()[0]})")
        return None


# ----------------------------------------------------------------------------- tools
@dataclass
class Tool:
    name: str
    runs: list[Run] = field(default_factory=list)
    skipped: str | None = None      # why the tool did not run at all
    failed: str | None = None       # why the last attempt failed
    note: str = ""

    @property
    def ok_runs(self) -> list[Run]:
        return [r for r in self.runs if r.rc == 0]


def ensure_input(args, workdir: Path) -> tuple[Path, dict]:
    path = workdir / f"access-{args.format}-{args.lines}-seed{args.seed}.log"
    meta_path = path.with_suffix(".json")
    if path.exists() and meta_path.exists():
        meta = json.loads(meta_path.read_text())
        if meta.get("lines") == args.lines and path.stat().st_size == meta.get("bytes"):
            print(f"input: {path} (cached: {meta['lines']:,} lines, {meta['well_formed']:,} well-formed)")
            return path, meta
    print(f"input: generating {args.lines:,} {args.format} lines (seed {args.seed}) -> {path} ...", flush=True)
    t = time.perf_counter()
    meta = generate_logs.write(path, args.lines, args.format, args.seed)
    meta["generate_seconds"] = round(time.perf_counter() - t, 2)
    meta["bytes"] = path.stat().st_size
    meta_path.write_text(json.dumps(meta, indent=1))
    print(f"input: {meta['lines']:,} lines ({meta['well_formed']:,} well-formed, {meta['malformed']} malformed, "
          f"{meta['distinct_ips']:,} distinct IPs, {meta['bytes'] / 2**20:.0f} MiB) in {meta['generate_seconds']} s")
    return path, meta


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra: list[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, extra = argv[:i], argv[i + 1:]
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 epilog="Arguments after -- are passed to `accesslog run`.")
    ap.add_argument("--lines", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "accesslog-bench")
    ap.add_argument("--keep", action="store_true", help="keep outputs, child logs and keystore in the workdir")
    ap.add_argument("--only", action="append", choices=("accesslog", "duckdb", "goaccess"),
                    help="run only this tool (repeatable)")
    ap.add_argument("--format", default="timed_combined", choices=sorted(generate_logs.FORMATS))
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--threads", type=int, default=2, help="DuckDB threads (default %(default)s)")
    ap.add_argument("--duckdb-partitioned", action="store_true",
                    help="baseline writes hive partitions by date, like the warehouse (slower)")
    ap.add_argument("--accesslog", default=str(Path(sys.executable).parent / "accesslog"),
                    help="the accesslog console script (default: next to this interpreter)")
    ap.add_argument("--runner", default="FnApiRunner",
                    help="Beam runner passed to accesslog unless the args after -- name one; '' passes "
                         "none (DirectRunner would try to download Prism; see docs/architecture.md)")
    ap.add_argument("--timeout", type=float, default=1800, help="seconds before a child is killed")
    ap.add_argument("--json", type=Path, help="also write the results to this JSON file")
    args = ap.parse_args(argv)
    only = set(args.only or ("accesslog", "duckdb", "goaccess"))

    workdir = args.workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    logfile, meta = ensure_input(args, workdir)
    lines, well_formed = meta["lines"], meta["well_formed"]

    warehouse = workdir / "warehouse"
    keystore = workdir / "keystore"
    duck_out = workdir / "duckdb-out"
    logs = workdir / "logs"
    logs.mkdir(exist_ok=True)

    tools: dict[str, Tool] = {}
    accesslog_cmd = None
    if "accesslog" in only:
        tools["accesslog"] = Tool("accesslog")
        exe = Path(args.accesslog)
        if not (exe.exists() and os.access(exe, os.X_OK)):
            tools["accesslog"].skipped = f"console script not found: {exe} (pip install -e . ?)"
        else:
            runner = [] if (not args.runner or any(a.startswith("--runner") for a in extra)) \
                else [f"--runner={args.runner}"]
            accesslog_cmd = [str(exe), "run", str(logfile), "--warehouse", str(warehouse), "--keys", str(keystore),
                             "--log-format", args.format, "--retention-days", "36500", "--now", NOW,
                             *runner, *extra]
            print("accesslog: " + " ".join(accesslog_cmd))
    if "duckdb" in only:
        tools["duckdb"] = Tool("duckdb")
        tools["duckdb"].note = f"threads={args.threads}" + (", partitioned" if args.duckdb_partitioned else "")
    goaccess = shutil.which("goaccess")
    if "goaccess" in only:
        tools["goaccess"] = Tool("goaccess")
        if not goaccess:
            tools["goaccess"].skipped = "not installed"
            print("goaccess: not installed (skipped)")

    for rep in range(1, args.repeat + 1):
        for name, tool in tools.items():
            if tool.skipped or (tool.failed and not tool.ok_runs):
                continue                       # failed on its first try: repeating will not help
            prefix = logs / f"{name}-{rep}"
            if name == "accesslog":
                shutil.rmtree(warehouse, ignore_errors=True)
                run = run_child(accesslog_cmd, prefix, timeout=args.timeout)
            elif name == "duckdb":
                shutil.rmtree(duck_out, ignore_errors=True)
                run = run_child([sys.executable, "-c", DUCKDB_SCRIPT, str(logfile), str(duck_out), args.format,
                                 str(args.threads), "1" if args.duckdb_partitioned else "0"], prefix,
                                timeout=args.timeout)
            else:
                # COMBINED ignores trailing fields, so it reads main and timed_combined too.
                run = run_child([goaccess, str(logfile), "--log-format=COMBINED", "--no-global-config",
                                 "--no-progress", "-o", str(workdir / "goaccess.json")], prefix,
                                timeout=args.timeout)
            tool.runs.append(run)
            status = "ok" if run.rc == 0 else f"FAILED rc={run.rc}"
            print(f"[{rep}/{args.repeat}] {name:9s} {run.seconds:7.2f} s  {lines / run.seconds:>10,.0f} lines/s  "
                  f"peak {run.maxrss_kib / 1024:7.0f} MiB  tree {run.tree_peak_bytes / 2**20:7.0f} MiB  {status}",
                  flush=True)
            if run.rc != 0:
                tool.failed = f"exit code {run.rc}"
                print(f"  {name} failed; stderr tail:\n{_tail(run.stderr) or '    (empty)'}")
                if run.stdout.strip():
                    print(f"  stdout tail:\n{_tail(run.stdout, 5)}")
                continue
            # Correctness checks (not timed).
            if name == "duckdb":
                try:
                    info = json.loads(run.stdout.strip().splitlines()[-1])
                except (ValueError, IndexError):
                    info = {}
                rows = info.get("rows")
                files = count_parquet_rows(str(duck_out / "**" / "*.parquet"))
                verdict = "OK" if rows == well_formed == files else "MISMATCH"
                print(f"    duckdb rows written {rows:,} / in parquet {files:,} vs well-formed lines "
                      f"{well_formed:,}: {verdict} (inside DuckDB {info.get('copy_seconds', 0):.2f} s)"
                      if rows is not None and files is not None else
                      f"    duckdb rows: could not verify (stdout: {run.stdout.strip()[-200:]!r})")
            elif name == "goaccess":
                try:
                    general = json.loads((workdir / "goaccess.json").read_text())["general"]
                    print(f"    goaccess valid requests {general['valid_requests']:,} vs well-formed lines "
                          f"{well_formed:,}: {'OK' if general['valid_requests'] == well_formed else 'MISMATCH'}")
                except (OSError, ValueError, KeyError) as exc:
                    print(f"    goaccess: could not read its JSON report ({exc})")
            elif name == "accesslog":
                rows = count_parquet_rows(str(warehouse / "access" / "**" / "*.parquet"))
                rejects = None
                if (warehouse / "rejects").exists():
                    rejects = count_parquet_rows(str(warehouse / "rejects" / "**" / "*.parquet"))
                if rows is not None:
                    verdict = "OK" if rows == well_formed else "MISMATCH"
                    print(f"    accesslog access rows {rows:,} vs well-formed lines {well_formed:,}: {verdict}; "
                          f"rejects {rejects if rejects is not None else '?'} vs malformed {meta['malformed']}")

    # ------------------------------------------------------------------------- report
    def median(tool: Tool) -> float | None:
        ok = tool.ok_runs
        return statistics.median(r.seconds for r in ok) if ok else None

    duck_median = median(tools["duckdb"]) if "duckdb" in tools else None
    print()
    print(f"{lines:,} lines ({args.format}, {logfile.stat().st_size / 2**20:.0f} MiB), {args.repeat} repeat(s), "
          f"{os.cpu_count()} CPUs")
    header = f"{'tool':10s} {'runs':>4s} {'median s':>9s} {'min s':>7s} {'lines/s':>10s} {'vs DuckDB':>9s} " \
             f"{'peak RSS MiB':>12s} {'tree MiB':>8s}  note"
    print(header)
    print("-" * len(header))
    results = {}
    for name, tool in tools.items():
        med = median(tool)
        if med is None:
            why = tool.skipped or tool.failed or "no successful run"
            print(f"{name:10s} {len(tool.runs):>4d} {'-':>9s} {'-':>7s} {'-':>10s} {'-':>9s} {'-':>12s} {'-':>8s}  {why}")
            results[name] = {"skipped": tool.skipped, "failed": tool.failed}
            continue
        ok = tool.ok_runs
        best = min(r.seconds for r in ok)
        rate = lines / med
        ratio = f"{duck_median / med:.2f}x" if duck_median else "-"
        peak = max(r.maxrss_kib for r in ok) / 1024
        tree = max(r.tree_peak_bytes for r in ok) / 2**20
        print(f"{name:10s} {len(ok):>4d} {med:>9.2f} {best:>7.2f} {rate:>10,.0f} {ratio:>9s} {peak:>12.0f} "
              f"{tree:>8.0f}  {tool.note}")
        results[name] = {"runs": [r.seconds for r in ok], "median_s": med, "min_s": best, "lines_per_s": rate,
                         "vs_duckdb": (duck_median / med) if duck_median else None,
                         "peak_rss_mib": peak, "tree_rss_mib": tree}
    print()
    if "accesslog" in tools:
        med = median(tools["accesslog"])
        if med is None:
            verdict = f"FAIL (accesslog did not run: {tools['accesslog'].skipped or tools['accesslog'].failed})"
        else:
            rate = lines / med
            reasons = []
            if rate < TARGET_LINES_PER_S:
                reasons.append(f"{rate:,.0f} lines/s < {TARGET_LINES_PER_S:,}")
            if duck_median is None:
                reasons.append("DuckDB baseline not measured")
            elif duck_median / med < 1.0:
                reasons.append(f"{duck_median / med:.2f}x DuckDB < 1.0x")
            verdict = "PASS" if not reasons else "FAIL (" + "; ".join(reasons) + ")"
        print(f"accesslog target >= {TARGET_LINES_PER_S // 1000}k lines/s and >= 1.0x DuckDB: {verdict}")
        results["target"] = verdict

    if args.json:
        args.json.write_text(json.dumps({"lines": lines, "format": args.format, "input": meta, "tools": results,
                                         "extra_args": extra}, indent=1))
    if not args.keep:
        for p in (warehouse, duck_out, logs, workdir / "goaccess.json", *workdir.glob(keystore.name + "*")):
            if p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
            elif p.exists():
                p.unlink()
    else:
        print(f"kept outputs in {workdir}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)

#!/usr/bin/env python3
"""Benchmark `accesslog run` against GoAccess and a DuckDB regex-SQL baseline, side by side.

    python benchmarks/run_benchmark.py --dirty --rss-lines 10000000   # the README's figures
    python benchmarks/run_benchmark.py                                # 1M clean lines, 3 repeats
    python benchmarks/run_benchmark.py --only accesslog --only duckdb --repeat 5

Everything after ``--`` is passed to ``accesslog run`` unchanged.

Tools, each run ``--repeat`` times in turn (so machine noise hits them alike), medians compared:
  * ``accesslog``: in-process (Beam's FnApiRunner);
  * ``accesslog-2p``: the same with two worker processes
    (``--direct_running_mode=multi_processing --direct_num_workers=2``), the file split into byte ranges;
  * ``accesslog-clean`` (``--dirty`` only): in-process on the clean copy of the log, the same lines
    without the damaged ones, to show what damage costs;
  * ``goaccess`` (when installed): ``--log-format=COMBINED``, JSON report;
  * ``duckdb``: the "what would I do without this project" pipeline: read the file as one VARCHAR
    column, ``regexp_extract`` the fields, ``strptime`` the time, ``COPY ... TO`` zstd Parquet with
    ``SET threads=2`` (``ignore_errors``: it refuses bytes that are not UTF-8 otherwise).

``--dirty``: the log carries realistic damage at ``--dirty-ratio`` (0.1 %): carriage returns inside
lines and CRLF ends, runs of NUL bytes, invalid UTF-8, binary garbage, truncated writes, garbage
text, TLS handshakes on the HTTP port (``"\\x16\\x03\\x01..." 400``) and HTTP/0.9 requests (status 009).
``--rss-lines N``: one more accesslog run over N lines of the same kind, for peak RSS and linearity.

What is measured, per run, in a fresh child process:
  * wall time of the whole child (interpreter start, imports, reading, parsing, writing Parquet);
  * peak RSS: ``ru_maxrss`` from ``os.wait4`` on that child. Linux folds waited-for descendants
    into it, so for a multi-process run it is the largest *single* process, not the sum; the
    "tree MiB" column is the sum over the process tree sampled every 50 ms from /proc (it can miss
    short spikes).
The inputs are generated once and cached in ``--workdir``; lines/s counts every line of the file,
damaged ones included. accesslog's rows + rejects must equal the lines (checked on the first repeat).
The warehouse is wiped before each accesslog run; the keystore is made on first use and reused.
Without ``--keep`` the outputs, logs and keystore are removed at the end (the inputs stay).

The targets printed at the end (issue 11): the best accesslog mode >= 4x GoAccess and >= 1.0x DuckDB,
two worker processes >= 1.7x in-process, the dirty log within 10 % of its clean copy, peak RSS <= 1 GiB
at 10M lines. Always exits 0: a benchmark reports, it does not gate.
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
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import generate_logs  # noqa: E402  (sibling module)

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
    cpu_seconds: float = 0.0     # user + system of the child and the descendants it waited for


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
               out_path.read_text(errors="replace"), err_path.read_text(errors="replace"),
               usage.ru_utime + usage.ru_stime)


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
# One VARCHAR column per line: delimiter \x01 (never in a log line), no quoting, no escaping;
# ignore_errors: DuckDB refuses a file with bytes that are not UTF-8 otherwise (it drops such lines).
query = f"""
COPY (
  WITH raw AS (
    SELECT regexp_extract(line, $pattern, {names_sql}) AS m
    FROM read_csv($path, columns = {{'line': 'VARCHAR'}}, delim = '\x01', quote = '', escape = '',
                  header = false, auto_detect = false, strict_mode = false, ignore_errors = true)
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
con.execute("SET enable_progress_bar = false")
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
    cmd: list[str] | None = None
    log: Path | None = None           # the input it reads
    runs: list[Run] = field(default_factory=list)
    skipped: str | None = None      # why the tool did not run at all
    failed: str | None = None       # why the last attempt failed
    note: str = ""

    @property
    def ok_runs(self) -> list[Run]:
        return [r for r in self.runs if r.rc == 0]

    @property
    def median(self) -> float | None:
        ok = self.ok_runs
        return statistics.median(r.seconds for r in ok) if ok else None

    @property
    def median_cpu(self) -> float | None:
        ok = self.ok_runs
        return statistics.median(r.cpu_seconds for r in ok) if ok else None


def ensure_input(args, workdir: Path, lines: int | None = None) -> tuple[Path, dict]:
    """The benchmark log (generated once, then cached); with --dirty also its clean copy, the same
    lines without the damaged ones (meta["clean_path"])."""
    lines = lines or args.lines
    kind = f"dirty{args.dirty_ratio:g}" if args.dirty else "std"
    path = workdir / f"access-{args.format}-{lines}-seed{args.seed}-{kind}.log"
    meta_path = path.with_suffix(".json")
    clean = path.with_name(path.stem + ".clean.log") if args.dirty else None
    if path.exists() and meta_path.exists() and (clean is None or clean.exists()):
        meta = json.loads(meta_path.read_text())
        if meta.get("lines") == lines and path.stat().st_size == meta.get("bytes"):
            print(f"input: {path} (cached: {meta['lines']:,} lines, {meta['malformed']:,} damaged)")
            return path, meta
    print(f"input: generating {lines:,} {args.format} lines (seed {args.seed}{', dirty' if args.dirty else ''}) "
          f"-> {path} ...", flush=True)
    t = time.perf_counter()
    extra = dict(dirty=True, malformed_ratio=args.dirty_ratio, clean_copy=clean) if args.dirty else {}
    meta = generate_logs.write(path, lines, args.format, args.seed, **extra)
    meta["generate_seconds"] = round(time.perf_counter() - t, 2)
    meta["bytes"] = path.stat().st_size
    if clean:
        meta["clean_path"] = str(clean)
    meta_path.write_text(json.dumps(meta, indent=1))
    kinds = f" ({', '.join(f'{k} {n}' for k, n in meta['dirty_kinds'].items())})" if args.dirty else ""
    print(f"input: {meta['lines']:,} lines ({meta['malformed']:,} damaged{kinds}, {meta['distinct_ips']:,} distinct "
          f"IPs, {meta['bytes'] / 2**20:.0f} MiB) in {meta['generate_seconds']} s")
    return path, meta


MULTI = ["--direct_running_mode=multi_processing", "--direct_num_workers=2"]


def accesslog_cmd(args, exe: Path, logfile: Path, warehouse: Path, keystore: Path, extra: list[str]) -> list[str]:
    runner = [] if (not args.runner or any(a.startswith("--runner") for a in extra)) else [f"--runner={args.runner}"]
    return [str(exe), "run", str(logfile), "--warehouse", str(warehouse), "--keys", str(keystore),
            "--log-format", args.format, "--retention-days", "36500", "--now", NOW, *runner, *extra]


def check_accesslog(warehouse: Path, lines: int) -> None:
    """Every line is a row or a reject (a benchmark that lost lines would measure nothing)."""
    rows = count_parquet_rows(str(warehouse / "access" / "**" / "*.parquet"))
    rejects = count_parquet_rows(str(warehouse / "rejects" / "**" / "*.parquet")) \
        if (warehouse / "rejects").exists() else 0
    if rows is not None and rejects is not None:
        verdict = "OK" if rows + rejects == lines else "MISMATCH"
        print(f"    accesslog rows {rows:,} + rejects {rejects:,} = {rows + rejects:,} vs {lines:,} lines: {verdict}")


def rss_run(args, exe: Path, workdir: Path, keystore: Path, extra: list[str]) -> dict:
    """One accesslog run over --rss-lines lines (dirty like the main input): peak RSS and lines/s."""
    logfile, meta = ensure_input(args, workdir, args.rss_lines)
    warehouse = workdir / "warehouse-rss"
    shutil.rmtree(warehouse, ignore_errors=True)
    run = run_child(accesslog_cmd(args, exe, logfile, warehouse, keystore, extra), workdir / "logs" / "rss",
                    timeout=args.timeout)
    shutil.rmtree(warehouse, ignore_errors=True)
    out = {"lines": meta["lines"], "seconds": run.seconds, "rc": run.rc, "peak_rss_mib": run.maxrss_kib / 1024,
           "tree_rss_mib": run.tree_peak_bytes / 2**20, "lines_per_s": meta["lines"] / run.seconds}
    print(f"{meta['lines']:,} lines: {run.seconds:.1f} s, {out['lines_per_s']:,.0f} lines/s, peak RSS "
          f"{out['peak_rss_mib']:.0f} MiB (largest process), tree {out['tree_rss_mib']:.0f} MiB"
          + ("" if run.rc == 0 else f"  FAILED rc={run.rc}\n{_tail(run.stderr)}"))
    return out


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
    ap.add_argument("--only", action="append", choices=TOOLS, help="run only this tool (repeatable)")
    ap.add_argument("--format", default="timed_combined", choices=sorted(generate_logs.FORMATS))
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--dirty", action="store_true",
                    help="a realistic dirty log (CR, NUL runs, invalid UTF-8, binary, truncated writes, TLS "
                         "handshakes, HTTP/0.9 at --dirty-ratio), and accesslog also on its clean copy")
    ap.add_argument("--dirty-ratio", type=float, default=0.001, help="damaged lines with --dirty (default 0.1%%)")
    ap.add_argument("--rss-lines", type=int, default=0,
                    help="after the repeats, one accesslog run over this many lines for peak RSS (e.g. 10000000)")
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
    only = set(args.only or TOOLS)

    workdir = args.workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    logfile, meta = ensure_input(args, workdir)
    lines = meta["lines"]
    keystore = workdir / "keystore"
    duck_out = workdir / "duckdb-out"
    logs = workdir / "logs"
    logs.mkdir(exist_ok=True)
    exe = Path(args.accesslog)
    have_exe = exe.exists() and os.access(exe, os.X_OK)

    tools: dict[str, Tool] = {}
    for name, log, more in (("accesslog", logfile, []), ("accesslog-2p", logfile, MULTI),
                            ("accesslog-clean", Path(meta.get("clean_path", logfile)), [])):
        if name not in only or (name == "accesslog-clean" and not args.dirty):
            continue
        tool = tools[name] = Tool(name, log=log)
        tool.note = {"accesslog": "in-process", "accesslog-2p": "2 worker processes",
                     "accesslog-clean": f"clean copy ({meta.get('well_formed', 0):,} lines)"}[name]
        if not have_exe:
            tool.skipped = f"console script not found: {exe} (pip install -e . ?)"
            continue
        tool.cmd = accesslog_cmd(args, exe, log, workdir / f"warehouse-{name}", keystore, [*more, *extra])
        print(f"{name}: " + " ".join(tool.cmd))
    if "duckdb" in only:
        tools["duckdb"] = Tool("duckdb", log=logfile)
        tools["duckdb"].note = f"threads={args.threads}" + (", partitioned" if args.duckdb_partitioned else "")
    if "goaccess" in only:
        tools["goaccess"] = Tool("goaccess", log=logfile, note="1 thread (its default), --log-format=COMBINED")
        if not shutil.which("goaccess"):
            tools["goaccess"].skipped = "not installed (apt-get install goaccess)"
            print("goaccess: not installed (skipped)")

    if any(name.startswith("accesslog") and tool.cmd for name, tool in tools.items()):
        warm_up(args, exe, workdir, keystore, extra)
    for rep in range(1, args.repeat + 1):
        # Every other repeat in reverse order: no tool always runs right after the same other one.
        for name, tool in (tools.items() if rep % 2 else reversed(tools.items())):
            if tool.skipped or (tool.failed and not tool.ok_runs):
                continue                       # failed on its first try: repeating will not help
            prefix = logs / f"{name}-{rep}"
            if name.startswith("accesslog"):
                warehouse = workdir / f"warehouse-{name}"
                shutil.rmtree(warehouse, ignore_errors=True)
                run = run_child(tool.cmd, prefix, timeout=args.timeout)
            elif name == "duckdb":
                shutil.rmtree(duck_out, ignore_errors=True)
                run = run_child([sys.executable, "-c", DUCKDB_SCRIPT, str(logfile), str(duck_out), args.format,
                                 str(args.threads), "1" if args.duckdb_partitioned else "0"], prefix,
                                timeout=args.timeout)
            else:
                # COMBINED ignores trailing fields, so it reads main and timed_combined too.
                run = run_child([shutil.which("goaccess"), str(logfile), "--log-format=COMBINED",
                                 "--no-global-config", "--no-progress", "-o", str(workdir / "goaccess.json")],
                                prefix, timeout=args.timeout)
            tool.runs.append(run)
            status = "ok" if run.rc == 0 else f"FAILED rc={run.rc}"
            print(f"[{rep}/{args.repeat}] {name:15s} {run.seconds:7.2f} s  cpu {run.cpu_seconds:6.2f} s  "
                  f"{lines / run.seconds:>10,.0f} lines/s  "
                  f"peak {run.maxrss_kib / 1024:7.0f} MiB  tree {run.tree_peak_bytes / 2**20:7.0f} MiB  {status}",
                  flush=True)
            if run.rc != 0:
                tool.failed = f"exit code {run.rc}"
                print(f"  {name} failed; stderr tail:\n{_tail(run.stderr) or '    (empty)'}")
                continue
            if rep > 1:
                continue
            # Correctness checks (not timed), on the first repeat.
            if name == "duckdb":
                try:
                    info = json.loads(run.stdout.strip().splitlines()[-1])
                except (ValueError, IndexError):
                    info = {}
                files = count_parquet_rows(str(duck_out / "**" / "*.parquet"))
                print(f"    duckdb rows {info.get('rows')} (in Parquet {files}) of {meta['well_formed']:,} well-formed "
                      f"lines; damaged lines it could not read are dropped without a word")
            elif name == "goaccess":
                try:
                    general = json.loads((workdir / "goaccess.json").read_bytes().decode("utf-8", "replace"))["general"]
                    print(f"    goaccess valid requests {general['valid_requests']:,}, failed "
                          f"{general.get('failed_requests', 0):,} of {lines:,} lines")
                except (OSError, ValueError, KeyError) as exc:
                    print(f"    goaccess: could not read its JSON report ({exc})")
            else:
                check_accesslog(workdir / f"warehouse-{name}", meta["well_formed"] if name == "accesslog-clean"
                                else lines)

    # ------------------------------------------------------------------------- report
    duck, goaccess = (tools[n].median if n in tools else None for n in ("duckdb", "goaccess"))
    print()
    print(f"{lines:,} lines ({args.format}{', dirty' if args.dirty else ''}, {logfile.stat().st_size / 2**20:.0f} MiB), "
          f"{args.repeat} repeat(s), {os.cpu_count()} CPUs, {datetime.now(timezone.utc):%Y-%m-%d}")
    header = (f"{'tool':16s} {'runs':>4s} {'median s':>9s} {'min s':>7s} {'lines/s':>10s} {'vs GoAccess':>11s} "
              f"{'vs DuckDB':>9s} {'peak RSS MiB':>12s} {'tree MiB':>8s}  note")
    print(header)
    print("-" * len(header))
    results: dict = {}
    for name, tool in tools.items():
        med = tool.median
        if med is None:
            why = tool.skipped or tool.failed or "no successful run"
            print(f"{name:16s} {len(tool.runs):>4d} {'-':>9s} {'-':>7s} {'-':>10s} {'-':>11s} {'-':>9s} {'-':>12s} "
                  f"{'-':>8s}  {why}")
            results[name] = {"skipped": tool.skipped, "failed": tool.failed}
            continue
        ok = tool.ok_runs
        n_lines = meta["well_formed"] if name == "accesslog-clean" else lines
        row = {"runs": [r.seconds for r in ok], "median_s": med, "cpu_s": [r.cpu_seconds for r in ok], "min_s": min(r.seconds for r in ok),
               "lines_per_s": n_lines / med, "vs_goaccess": goaccess / med if goaccess else None,
               "vs_duckdb": duck / med if duck else None, "peak_rss_mib": max(r.maxrss_kib for r in ok) / 1024,
               "tree_rss_mib": max(r.tree_peak_bytes for r in ok) / 2**20}
        results[name] = row
        print(f"{name:16s} {len(ok):>4d} {med:>9.2f} {row['min_s']:>7.2f} {row['lines_per_s']:>10,.0f} "
              f"{_ratio(row['vs_goaccess']):>11s} {_ratio(row['vs_duckdb']):>9s} {row['peak_rss_mib']:>12.0f} "
              f"{row['tree_rss_mib']:>8.0f}  {tool.note}")
    print()
    verdicts = targets(tools, args.dirty)
    for line in verdicts:
        print(line)
    results["targets"] = verdicts
    if args.rss_lines and "accesslog" in tools and tools["accesslog"].cmd:
        print()
        results["rss"] = rss_run(args, exe, workdir, keystore, extra)
        one = tools["accesslog"].median
        if one and results["rss"]["rc"] == 0:
            per_line = (results["rss"]["seconds"] / results["rss"]["lines"]) / (one / lines)
            print(f"time per line at {results['rss']['lines']:,} lines / at {lines:,}: {per_line:.2f} "
                  f"(1.00 = linear); peak RSS <= 1024 MiB: "
                  f"{'PASS' if results['rss']['peak_rss_mib'] <= 1024 else 'FAIL'}")

    if args.json:
        args.json.write_text(json.dumps({"lines": lines, "format": args.format, "dirty": args.dirty, "input": meta,
                                         "tools": results, "extra_args": extra}, indent=1, default=str))
    if not args.keep:
        for p in (duck_out, logs, workdir / "goaccess.json", *workdir.glob("warehouse*"),
                  *workdir.glob(keystore.name + "*")):
            if p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
            elif p.exists():
                p.unlink()
    else:
        print(f"kept outputs in {workdir}")
    return 0


def warm_up(args, exe: Path, workdir: Path, keystore: Path, extra: list[str]) -> None:
    """One untimed accesslog run over a one-line log: the keystore is made and the libraries are
    read from disk before the first timed run, not during it."""
    one = workdir / "warm-up.log"
    one.write_text('192.0.2.1 - - [01/Nov/2026:00:00:00 +0000] "GET / HTTP/1.1" 200 1 "-" "-" 0.001 -\n')
    warehouse = workdir / "warehouse-warm-up"
    subprocess.run(accesslog_cmd(args, exe, one, warehouse, keystore, extra),
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    shutil.rmtree(warehouse, ignore_errors=True)
    one.unlink()


def _ratio(value: float | None) -> str:
    return f"{value:.2f}x" if value else "-"


TOOLS = ("accesslog", "accesslog-2p", "accesslog-clean", "duckdb", "goaccess")


def targets(tools: dict[str, Tool], dirty: bool) -> list[str]:
    """The issue's targets, each with PASS/FAIL and its figures (medians)."""
    med = {name: tool.median for name, tool in tools.items()}
    one, two = med.get("accesslog"), med.get("accesslog-2p")
    best_name = min((n for n in ("accesslog", "accesslog-2p") if med.get(n)), key=lambda n: med[n], default=None)
    best = med.get(best_name) if best_name else None
    out = []

    def verdict(label: str, ok: bool | None, figure: str) -> None:
        out.append(f"{label}: {'-' if ok is None else 'PASS' if ok else 'FAIL'} ({figure})")
    if best and med.get("goaccess"):
        verdict(f"{best_name} >= 4x GoAccess", med["goaccess"] / best >= 4, f"{med['goaccess'] / best:.2f}x")
    if best and med.get("duckdb"):
        verdict(f"{best_name} >= 1.0x DuckDB", med["duckdb"] / best >= 1.0, f"{med['duckdb'] / best:.2f}x")
    if one and two:
        verdict("2 worker processes >= 1.7x in-process", one / two >= 1.7, f"{one / two:.2f}x")
    if dirty and one and med.get("accesslog-clean"):
        cpu = tools["accesslog"].median_cpu / tools["accesslog-clean"].median_cpu
        pairs = [d.seconds / c.seconds for d, c in zip(tools["accesslog"].runs, tools["accesslog-clean"].runs)
                 if d.rc == 0 and c.rc == 0]
        verdict("dirty log within 10% of its clean copy", one / med["accesslog-clean"] <= 1.10,
                f"{one / med['accesslog-clean']:.3f}x the clean copy's time; CPU {cpu:.3f}x; "
                f"median of the run-by-run ratios {statistics.median(pairs):.3f}x")
    return out


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)

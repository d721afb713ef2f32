"""Does a compiled custom log_format parse as fast as the built-in combined preset?

    python benchmarks/format_speed.py [--lines 1000000] [--repeat 5]

Generates one realistic timed_combined log (benchmarks/generate_logs.py), derives from
it, line by line, the same requests in two formats:

  combined   the nginx preset
  custom     '$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent
              "$http_referer" "$http_user_agent" rt=$request_time urt="$upstream_response_time"
              $host $request_id' (a typical custom format: prefixed and quoted timings, extra fields)

and times `accesslog run` end to end on each, interleaved, printing medians, lines/s and
the ratio custom/combined (target: >= 0.80). The custom lines are longer and carry more
fields, so the ratio is also a floor for formats of similar size.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import generate_logs  # noqa: E402

CUSTOM = ('$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" '
          '"$http_user_agent" rt=$request_time urt="$upstream_response_time" $host $request_id')
# timed_combined line: everything up to the user agent's closing quote, then the two timings.
_TIMED = re.compile(r'^(.*") (\S+) (.+)$')


def derive(timed: Path, combined: Path, custom: Path) -> int:
    n = 0
    with open(timed) as src, open(combined, "w") as c_out, open(custom, "w") as x_out:
        for line in src:
            line = line.rstrip("\n")
            m = _TIMED.match(line)
            if not m:   # a malformed line: keep it malformed in both
                c_out.write(line + "\n")
                x_out.write(line + "\n")
                continue
            head, rt, urt = m.groups()
            rid = hashlib.blake2b(str(n).encode(), digest_size=16).hexdigest()
            c_out.write(head + "\n")
            x_out.write(f'{head} rt={rt} urt="{urt}" www.example.com {rid}\n')
            n += 1
    return n


def time_run(exe: str, log: Path, fmt: str, work: Path) -> float:
    wh = work / "wh"
    shutil.rmtree(wh, ignore_errors=True)
    os.sync()
    started = time.perf_counter()
    proc = subprocess.run([exe, "run", str(log), "--warehouse", str(wh), "--keys", str(work / "keys"),
                           "--log-format", fmt, "--retention-days", "36500", "--now", "2026-12-01T00:00:00Z"],
                          capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        sys.exit(f"accesslog failed on {fmt!r}:\n{proc.stderr[-2000:]}")
    return seconds


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lines", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--workdir", default=None)
    args = ap.parse_args()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="accesslog-formats-"))
    work.mkdir(parents=True, exist_ok=True)
    timed, combined, custom = work / "timed.log", work / "combined.log", work / "custom.log"
    if not custom.exists():
        generate_logs.write(timed, args.lines, "timed_combined")
        derive(timed, combined, custom)
    exe = str(Path(sys.executable).parent / "accesslog")
    runs: dict[str, list[float]] = {"combined": [], "custom": []}
    for rep in range(args.repeat):
        for name, log, fmt in (("combined", combined, "combined"), ("custom", custom, CUSTOM)):
            runs[name].append(time_run(exe, log, fmt, work))
            print(f"[{rep + 1}/{args.repeat}] {name:8s} {runs[name][-1]:.2f} s", flush=True)
    print(f"\n{args.lines:,} lines, {args.repeat} interleaved runs each")
    rates = {}
    for name, seconds in runs.items():
        med = statistics.median(seconds)
        rates[name] = args.lines / med
        print(f"{name:8s} median {med:.2f} s  min {min(seconds):.2f} s  {rates[name]:>9,.0f} lines/s")
    ratio = rates["custom"] / rates["combined"]
    print(f"custom / combined = {ratio:.2f} (target >= 0.80): {'PASS' if ratio >= 0.8 else 'FAIL'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

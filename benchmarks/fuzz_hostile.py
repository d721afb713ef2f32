"""Fuzz the product as a hostile tester would, and print the figures.

    python benchmarks/fuzz_hostile.py [--lines 100000] [--seed 1]

1. `--lines` hostile lines (tests/fuzzing.py: server lines damaged by crashes, disks and scanners,
   values at the calendar's edges, NUL bytes, 70 KB lines), spread over the five log kinds, each
   kind through `accesslog run` and `accesslog parse` in a subprocess: exit codes (3 = a crash, a bug
   of ours), and every line accounted for (read = parsed + rejected + expired).
2. The planted-secret scan of tests/test_leak_scan.py over every preset: lines, planted values, and
   planted values found in any output byte.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.fuzzing import FORMATS, fuzzed_log  # noqa: E402

ACCESSLOG = [sys.executable, "-m", "accesslog"]


def fuzz(total: int, seed: int) -> dict:
    per_kind = total // len(FORMATS)
    figures = {"lines": 0, "crashes": 0, "unaccounted": 0, "rejected": 0, "parsed": 0, "expired": 0}
    with tempfile.TemporaryDirectory() as tmp:
        for kind, preset in FORMATS.items():
            log = Path(tmp, f"{kind}.log")
            log.write_bytes(fuzzed_log(seed, kind, per_kind))
            wh, keys = Path(tmp, f"wh-{kind}"), str(Path(tmp, "keys.json"))
            started = time.perf_counter()
            run = subprocess.run([*ACCESSLOG, "run", str(log), "--warehouse", str(wh), "--keys", keys,
                                  "--log-format", preset, "--now", "2026-11-21T00:00:00Z",
                                  "--retention-days", "400000", "--max-reject-ratio", "1"],
                                 capture_output=True, text=True, cwd=ROOT)
            parse = subprocess.run([*ACCESSLOG, "parse", str(log), "--keys", keys, "--log-format", preset],
                                   capture_output=True, text=True, cwd=ROOT)
            seconds = time.perf_counter() - started
            crashed = [c for c in (run, parse) if c.returncode not in (0, 1)]
            figures["crashes"] += len(crashed)
            summary = {}
            if run.returncode == 0:
                summary = json.loads(next(wh.joinpath("_runs").glob("*.json")).read_text())["inputs"][0]
                for key in ("parsed", "rejected", "expired"):
                    figures[key] += summary[key]
                figures["unaccounted"] += summary["read"] - summary["parsed"] - summary["rejected"] - summary["expired"]
            figures["lines"] += per_kind
            print(f"{kind:13} {per_kind:>7} lines  run exit {run.returncode}  parse exit {parse.returncode}  "
                  f"parsed {summary.get('parsed', '?')}  rejected {summary.get('rejected', '?')}  "
                  f"expired {summary.get('expired', '?')}  {seconds:.1f} s", flush=True)
            for c in crashed:
                print("   ", c.stderr.strip().splitlines()[-1:], flush=True)
    return figures


def planted() -> dict:
    """Run tests/test_leak_scan.py and count its planted values."""
    from tests.test_leak_scan import PRESETS, planted_log
    lines = sum(len(planted_log(p)[0]) for p in PRESETS)
    values = sum(len(planted_log(p)[1]) for p in PRESETS)
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                             "tests/test_leak_scan.py"], capture_output=True, text=True, cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    return {"formats": len(PRESETS), "lines": lines, "planted values": values,
            "presets with a value found": result.stdout.count("FAILED"),
            "scan": result.stdout.strip().splitlines()[-1]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    figures = fuzz(args.lines, args.seed)
    print(f"fuzzed {figures['lines']} lines: {figures['crashes']} crashes, {figures['unaccounted']} lines "
          f"unaccounted; {figures['parsed']} parsed, {figures['rejected']} rejected, {figures['expired']} expired")
    scan = planted()
    print(f"planted-secret scan: {scan['formats']} formats, {scan['lines']} lines, {scan['planted values']} "
          f"planted values; presets leaking: {scan['presets with a value found']} ({scan['scan']})")


if __name__ == "__main__":
    main()

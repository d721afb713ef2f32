"""`accesslog run --sessions`: the sessions table (policy 7.2) from the Beam Sessionize transform."""
from __future__ import annotations

import glob
from collections import defaultdict
from datetime import timedelta

import pyarrow as pa
import pyarrow.parquet as pq

from accesslog.cli import main
from tests.logfiles import render, sample_requests, write_log


def read(wh, table):
    files = sorted(glob.glob(str(wh / table / "date=*" / "*.parquet")))
    return pa.concat_tables(pq.read_table(f, partitioning=None) for f in files)


def independent_sessions(access: pa.Table, gap=timedelta(minutes=30)) -> list[tuple]:
    """Plain Python: per (client, host, UTC day), split at gaps of more than `gap`."""
    by_key = defaultdict(list)
    for row in access.to_pylist():
        by_key[(row["client_id"], row["host"], row["received_at"].date())].append(row["received_at"])
    sessions = []
    for key, times in by_key.items():
        times.sort()
        start = prev = times[0]
        count = 1
        for t in times[1:]:
            if t - prev > gap:
                sessions.append((key[0], start, prev, count))
                start, count = t, 0
            prev = t
            count += 1
        sessions.append((key[0], start, prev, count))
    return sorted(sessions)


def test_run_with_sessions_writes_one_file_per_day_idempotently(tmp_path, capsys):
    # Requests every 5-25 minutes from few clients: multi-request visits and real gaps.
    requests = sample_requests(400)
    for i, r in enumerate(requests):
        r.when = requests[0].when + timedelta(minutes=sum(5 + (j * 7) % 21 for j in range(i)) / 4)
    log = write_log(tmp_path / "access.log", [render(r) for r in requests])
    wh = tmp_path / "wh"
    argv = ["run", str(log), "--warehouse", str(wh), "--keys", str(tmp_path / "k"), "--log-format", "timed_combined",
            "--now", "2026-11-30T00:00:00Z", "--sessions"]
    assert main(argv) == 0, capsys.readouterr().err
    sessions = read(wh, "sessions")
    access = read(wh, "access")
    got = sorted((r["client_id"], r["session_start"], r["session_end"], r["requests"]) for r in sessions.to_pylist())
    assert got == independent_sessions(access)
    assert sum(sessions["requests"].to_pylist()) == access.num_rows
    assert any(n > 1 for n in sessions["requests"].to_pylist())
    files = sorted(glob.glob(str(wh / "sessions" / "date=*" / "*.parquet")))
    assert all(f.endswith("/sessions.parquet") for f in files)
    for f in files:   # each day's sessions start that day
        day = f.split("date=")[1][:10]
        assert {t.date().isoformat() for t in pq.read_table(f)["session_start"].to_pylist()} == {day}
    assert main(argv) == 0
    assert read(wh, "sessions").to_pylist() == sessions.to_pylist()
    assert sorted(glob.glob(str(wh / "sessions" / "date=*" / "*.parquet"))) == files

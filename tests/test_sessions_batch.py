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


def _sessions(rows):
    from datetime import datetime, timezone

    from schemas import SESSIONS
    base = datetime(2026, 11, 20, 10, 0, tzinfo=timezone.utc)
    return pa.Table.from_pylist([
        {"client_id": c, "host": h, "session_start": base + timedelta(minutes=s),
         "session_end": base + timedelta(minutes=e), "requests": n, "pages": n, "bytes_sent": 0,
         "entry_path": None, "exit_path": None} for c, h, s, e, n in rows], schema=SESSIONS)


def _key(table):
    return sorted((r["client_id"], r["host"], r["session_start"].minute + 60 * (r["session_start"].hour - 10),
                   r["requests"]) for r in table.to_pylist())


def test_supersede_keeps_the_latest_pane_of_each_session():
    from pipelines.sessions import supersede
    table = _sessions([
        ("c1", "a.example", 0, 10, 2),     # on-time pane ...
        ("c1", "a.example", 0, 20, 3),     # ... extended by a late pane
        ("c1", "a.example", 60, 70, 2),    # second half of a merge ...
        ("c1", "a.example", 0, 70, 6),     # ... the merged session
        ("c1", "a.example", 100, 110, 1),  # a later session, untouched
        ("c1", "a.example", 100, 110, 1),  # exact duplicate (a replay)
        ("c1", "b.example", 0, 10, 2),     # same client, other host: its own session
        ("c2", "a.example", 5, 6, 1),      # late request inside the range: same range,
        ("c2", "a.example", 5, 6, 2),      # more requests
        ("c3", None, 0, 1, 1),             # no host
        ("c3", None, 0, 1, 1),
    ])
    assert _key(supersede(table)) == [
        ("c1", "a.example", 0, 6), ("c1", "a.example", 100, 1), ("c1", "b.example", 0, 2),
        ("c2", "a.example", 5, 2), ("c3", None, 0, 1)]
    # order of arrival does not matter
    assert _key(supersede(table.take(list(reversed(range(table.num_rows)))))) == _key(supersede(table))


def test_supersede_never_drops_a_row_with_more_requests_than_its_cover():
    from pipelines.sessions import supersede
    # not produced by Sessionize (sessions of a client never overlap), but must not lose data
    table = _sessions([("c1", "a", 0, 30, 2), ("c1", "a", 5, 10, 5)])
    assert _key(supersede(table)) == [("c1", "a", 0, 2), ("c1", "a", 5, 5)]

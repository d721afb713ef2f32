"""accesslog.stats over a small warehouse written directly with schemas.ACCESS.

Expected values are recomputed here in plain Python (and numpy for percentiles)
from the same rows that were written, never read back from DuckDB.
"""
from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import schemas
from accesslog.errors import AccesslogError
from accesslog.stats import REPORTS, REQUESTS_PER_DAY_SQL, StatsFilter, connect, render, usage_stats

UTC = dt.timezone.utc
DAY1, DAY2 = dt.date(2024, 3, 1), dt.date(2024, 3, 2)


def access_row(**overrides) -> dict:
    """One `access` record with plausible defaults; every schema column is present."""
    received_at = overrides.pop("received_at", dt.datetime(2024, 3, 1, 12, 0, tzinfo=UTC))
    row = {
        "received_at": received_at, "responded_at": received_at, "duration_ms": None,
        "method": "GET", "url_path": "/", "url_query": None, "protocol": "HTTP/1.1",
        "status": 200, "bytes_sent": 100, "referrer": None, "user_agent": "Mozilla/5.0",
        "browser": "Firefox", "browser_version": "120", "os": "Linux", "device": "desktop",
        "is_bot": False, "language": "en", "client_id": "client-1", "client_network": "192.0.2.0/24",
        "country": None, "asn": None, "user_id": None, "host": "example.org",
        "upstream_status": None, "upstream_ms": None, "source": "access.log", "source_line": 1,
        "key_id": received_at.date().isoformat(),
    }
    row = {name: row.get(name) for name in schemas.ACCESS.names}  # columns this test does not set: null
    unknown = set(overrides) - set(row)
    assert not unknown, f"not access columns: {unknown}"
    row.update(overrides)
    return row


def write_access(warehouse: Path, rows: list[dict]) -> None:
    """Write rows as the pipeline does: one Parquet file per UTC day under access/date=YYYY-MM-DD/."""
    by_day = defaultdict(list)
    for row in rows:
        by_day[row["received_at"].astimezone(UTC).date()].append(row)
    for day, day_rows in by_day.items():
        folder = warehouse / "access" / f"date={day.isoformat()}"
        folder.mkdir(parents=True, exist_ok=True)
        table = pa.Table.from_pylist(day_rows, schema=schemas.ACCESS).sort_by("received_at")
        pq.write_table(table, folder / "part-0.parquet", compression="zstd")


def at(day: dt.date, hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, hour, minute, tzinfo=UTC)


ROWS = [
    # day 1: three clients, two hosts, statuses 2xx/3xx/4xx/5xx, one row without a duration
    access_row(received_at=at(DAY1, 8), client_id="c1", url_path="/", status=200, bytes_sent=1000, duration_ms=12.0),
    access_row(received_at=at(DAY1, 9), client_id="c1", url_path="/about", status=200, bytes_sent=500, duration_ms=30.5),
    access_row(received_at=at(DAY1, 10), client_id="c2", url_path="/", status=304, bytes_sent=0, duration_ms=2.0),
    access_row(received_at=at(DAY1, 11), client_id="c2", url_path="/missing", status=404, bytes_sent=120, duration_ms=1.5),
    access_row(received_at=at(DAY1, 12), client_id="c3", url_path="/", status=500, bytes_sent=None, duration_ms=None,
               host="api.example.org"),
    access_row(received_at=at(DAY1, 13), client_id="c3", url_path="/", status=200, bytes_sent=800, duration_ms=250.0,
               host="o'reilly.example"),
    # day 2: client ids rotate with the daily key, so c1 here is a different visitor in principle
    access_row(received_at=at(DAY2, 7), client_id="c1", url_path="/about", status=200, bytes_sent=500, duration_ms=40.0),
    access_row(received_at=at(DAY2, 8), client_id="c4", url_path="/about", status=200, bytes_sent=500, duration_ms=45.0),
    access_row(received_at=at(DAY2, 9), client_id="c4", url_path="/", status=301, bytes_sent=0, duration_ms=900.0),
    access_row(received_at=at(DAY2, 23, 59), client_id="c5", url_path="/", status=200, bytes_sent=1000, duration_ms=8.0,
               host=None),
]


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory) -> Path:
    # A single quote in the folder name proves the path is escaped inside the view SQL.
    root = tmp_path_factory.mktemp("stats") / "ware'house"
    write_access(root, ROWS)
    return root


@pytest.fixture(scope="module")
def reports(warehouse):
    return usage_stats(connect(warehouse))


def selected(rows, flt: StatsFilter) -> list[dict]:
    """The reference filter, in Python."""
    return [r for r in rows
            if (flt.date_from is None or r["received_at"].date() >= flt.date_from)
            and (flt.date_to is None or r["received_at"].date() <= flt.date_to)
            and (flt.host is None or r["host"] == flt.host)]


def test_report_names_and_order(reports):
    assert list(reports) == list(REPORTS) == ["totals", "requests_per_day", "status_classes", "top_paths", "latency"]
    assert all(isinstance(t, pa.Table) for t in reports.values())


def test_requests_unique_clients_and_bytes_per_day(reports):
    per_day = reports["requests_per_day"].to_pylist()
    expected = []
    for day in sorted({r["received_at"].date() for r in ROWS}):
        day_rows = [r for r in ROWS if r["received_at"].date() == day]
        expected.append({
            "date": day,
            "requests": len(day_rows),
            "unique_clients": len({r["client_id"] for r in day_rows}),
            "bytes": sum(r["bytes_sent"] or 0 for r in day_rows),
        })
    assert per_day == expected
    assert [d["requests"] for d in per_day] == [6, 4]
    assert [d["unique_clients"] for d in per_day] == [3, 3]
    assert reports["requests_per_day"].schema.field("date").type == pa.date32()
    assert reports["requests_per_day"].schema.field("bytes").type == pa.int64()


def test_totals_sum_daily_unique_clients(reports):
    (totals,) = reports["totals"].to_pylist()
    daily_uniques = sum(len({r["client_id"] for r in ROWS if r["received_at"].date() == d}) for d in (DAY1, DAY2))
    assert totals["requests"] == len(ROWS)
    # c1 appears on both days and is counted once per day (pseudonyms are per-day keys).
    assert totals["unique_clients"] == daily_uniques == 6
    assert totals["unique_clients"] > len({r["client_id"] for r in ROWS})
    assert totals["bytes"] == sum(r["bytes_sent"] or 0 for r in ROWS)
    assert totals["days"] == 2
    assert totals["first_received_at"] == min(r["received_at"] for r in ROWS)
    assert totals["last_received_at"] == max(r["received_at"] for r in ROWS)


def test_status_classes(reports):
    counts = Counter(f"{r['status'] // 100}xx" for r in ROWS)
    got = reports["status_classes"].to_pylist()
    assert [g["status_class"] for g in got] == sorted(counts)
    for g in got:
        assert g["requests"] == counts[g["status_class"]]
        assert g["share"] == pytest.approx(counts[g["status_class"]] / len(ROWS))
    assert sum(g["share"] for g in got) == pytest.approx(1.0)


def test_top_paths_ordered_by_requests(reports):
    got = reports["top_paths"].to_pylist()
    counts = Counter(r["url_path"] for r in ROWS)
    expected = sorted(counts, key=lambda p: (-counts[p], p))
    assert [g["url_path"] for g in got] == expected == ["/", "/about", "/missing"]
    for g in got:
        assert g["requests"] == counts[g["url_path"]]
        assert g["unique_clients"] == len({r["client_id"] for r in ROWS if r["url_path"] == g["url_path"]})


def test_top_paths_keeps_ten_by_default(tmp_path):
    # path /p00 is requested 12 times, /p01 11 times, ... so the top 10 are /p00../p09.
    rows = [access_row(url_path=f"/p{i:02d}", client_id=f"c{j}", received_at=at(DAY1, 0, j))
            for i in range(12) for j in range(12 - i)]
    write_access(tmp_path, rows)
    con = connect(tmp_path)
    got = usage_stats(con)["top_paths"].to_pylist()
    assert [g["url_path"] for g in got] == [f"/p{i:02d}" for i in range(10)]
    assert [g["requests"] for g in got] == list(range(12, 2, -1))
    assert usage_stats(con, top_n=3)["top_paths"].num_rows == 3


def test_latency_percentiles_match_numpy(reports):
    durations = [r["duration_ms"] for r in ROWS if r["duration_ms"] is not None]
    (latency,) = reports["latency"].to_pylist()
    p50, p95, p99 = np.percentile(durations, [50, 95, 99])  # linear interpolation, as quantile_cont
    assert latency["timed_requests"] == len(durations) == len(ROWS) - 1
    assert latency["p50_ms"] == pytest.approx(p50)
    assert latency["p95_ms"] == pytest.approx(p95)
    assert latency["p99_ms"] == pytest.approx(p99)


def test_latency_without_durations_is_null(tmp_path):
    write_access(tmp_path, [access_row(duration_ms=None), access_row(duration_ms=None, status=404)])
    (latency,) = usage_stats(connect(tmp_path))["latency"].to_pylist()
    assert latency == {"timed_requests": 0, "p50_ms": None, "p95_ms": None, "p99_ms": None}


@pytest.mark.parametrize("flt", [
    StatsFilter(date_from=DAY2),
    StatsFilter(date_to=DAY1),
    StatsFilter(date_from=DAY1, date_to=DAY1),
    StatsFilter(date_from=dt.date(2024, 3, 3)),
])
def test_date_filter_excludes_other_days(warehouse, flt):
    expected = selected(ROWS, flt)
    reports = usage_stats(connect(warehouse), flt)
    assert [d["date"] for d in reports["requests_per_day"].to_pylist()] == sorted({r["received_at"].date() for r in expected})
    assert reports["totals"].column("requests").to_pylist() == [len(expected)]
    assert sum(reports["status_classes"].column("requests").to_pylist()) == len(expected)
    assert reports["latency"].column("timed_requests").to_pylist() == [
        sum(r["duration_ms"] is not None for r in expected)]


def test_date_filter_prunes_partitions_with_bound_values(warehouse):
    # The filter's dates are bound parameters; DuckDB must still turn them into a
    # partition filter so the excluded day's file is never scanned.
    con = connect(warehouse)
    flt = StatsFilter(date_from=DAY2)
    [(_, plan)] = con.execute("EXPLAIN ANALYZE " + REQUESTS_PER_DAY_SQL, flt.params()).fetchall()
    scanned = re.search(r"Scanning Files: (\d+)/(\d+)", plan)
    assert scanned, plan
    assert scanned.groups() == ("1", "2")


def test_host_filter(warehouse):
    flt = StatsFilter(host="api.example.org")
    expected = selected(ROWS, flt)
    assert len(expected) == 1
    reports = usage_stats(connect(warehouse), flt)
    (totals,) = reports["totals"].to_pylist()
    assert totals["requests"] == 1
    assert reports["status_classes"].to_pylist() == [{"status_class": "5xx", "requests": 1, "share": 1.0}]
    assert reports["top_paths"].column("url_path").to_pylist() == ["/"]


def test_host_with_single_quote_is_a_bound_value(warehouse):
    con = connect(warehouse)
    quoted = usage_stats(con, StatsFilter(host="o'reilly.example"))
    assert quoted["totals"].column("requests").to_pylist() == [len(selected(ROWS, StatsFilter(host="o'reilly.example")))]
    assert quoted["totals"].column("requests").to_pylist() == [1]
    # An injection attempt matches nothing instead of widening the filter or failing.
    injected = usage_stats(con, StatsFilter(host="x' OR '1'='1"))
    assert injected["totals"].column("requests").to_pylist() == [0]
    assert injected["requests_per_day"].num_rows == 0


def test_from_after_to_is_a_user_error(warehouse):
    with pytest.raises(AccesslogError, match="--from"):
        usage_stats(connect(warehouse), StatsFilter(date_from=DAY2, date_to=DAY1))


def test_empty_warehouse_gives_empty_reports(tmp_path):
    (tmp_path / "access").mkdir()  # a run that wrote nothing yet
    con = connect(tmp_path)
    reports = usage_stats(con, StatsFilter(date_from=DAY1, host="example.org"))
    for name in ("requests_per_day", "status_classes", "top_paths"):
        assert reports[name].num_rows == 0, name
    assert reports["totals"].to_pylist() == [{"requests": 0, "unique_clients": 0, "bytes": 0, "days": 0,
                                              "first_received_at": None, "last_received_at": None}]
    assert reports["latency"].column("timed_requests").to_pylist() == [0]
    # Every table still has a view with the contract's columns plus the partition date.
    for table, schema in schemas.TABLES.items():
        columns = [row[0] for row in con.execute(f"DESCRIBE {table}").fetchall()]
        assert columns == schema.names + ["date"], table
    render(reports, "table")  # renders without crashing
    assert "(no rows)" in render(reports, "table")


def test_missing_warehouse_is_a_user_error(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(AccesslogError, match="--warehouse") as err:
        connect(missing)
    assert str(missing) in str(err.value)


def test_view_types_follow_the_schema(warehouse):
    con = connect(warehouse)
    types = dict(con.execute("SELECT column_name, column_type FROM (DESCRIBE access)").fetchall())
    assert types["received_at"] == "TIMESTAMP WITH TIME ZONE"
    assert types["status"] == "SMALLINT"
    assert types["date"] == "DATE"


def test_render_json_round_trips(reports):
    parsed = json.loads(render(reports, "json"))
    assert list(parsed) == list(reports)
    assert parsed["requests_per_day"] == [
        {**row, "date": row["date"].isoformat()} for row in reports["requests_per_day"].to_pylist()]
    first = dt.datetime.fromisoformat(parsed["totals"][0]["first_received_at"])
    assert first == min(r["received_at"] for r in ROWS)
    assert parsed["latency"][0]["p50_ms"] == pytest.approx(reports["latency"].column("p50_ms")[0].as_py())


def test_render_csv_blocks(reports):
    text = render(reports, "csv")
    blocks = {}
    current = None
    for row in csv.reader(io.StringIO(text)):
        if not row:
            continue
        if row[0].startswith("# "):
            current = row[0][2:]
            blocks[current] = []
        else:
            blocks[current].append(row)
    assert list(blocks) == list(reports)
    for name, table in reports.items():
        header, *rows = blocks[name]
        assert header == table.column_names
        assert len(rows) == table.num_rows
    assert blocks["requests_per_day"][1] == ["2024-03-01", "6", "3", "2420"]


def test_render_table_titles_and_alignment(reports):
    text = render(reports, "table")
    lines = text.splitlines()
    for name in reports:
        assert name in lines, f"title {name} missing"
    header = lines[lines.index("requests_per_day") + 2]
    day_row = lines[lines.index("requests_per_day") + 4]
    assert header.split() == ["date", "requests", "unique_clients", "bytes"]
    # numbers are right-aligned under their header; thousands separators are used
    assert day_row.endswith("2,420") and len(day_row) == len(header)
    assert "2024-03-01" in day_row


def test_render_rejects_unknown_format(reports):
    with pytest.raises(ValueError, match="table, json, csv"):
        render(reports, "xml")

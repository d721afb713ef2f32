"""accesslog.stats over small warehouses written directly with the schemas.

Each test writes the few rows that prove one rule and states the expected figures by hand
(or recomputes them in plain Python). tests/test_stats_correctness.py compares every report
with an independent Python implementation over a larger random warehouse.
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
from accesslog import daily_aggregates as daily
from accesslog import stats
from accesslog.cli import main as cli_main
from accesslog.stats import (
    DEFAULT_REPORTS,
    REPORTS,
    SCANNING_REPORTS,
    StatsFilter,
    connect,
    render,
    select_reports,
    usage_stats,
)
from pipelines.entry import flag_name
from schemas.errors import AccesslogError, SettingError

UTC = dt.timezone.utc
DAY1, DAY2 = dt.date(2024, 3, 1), dt.date(2024, 3, 2)


def at(day: dt.date, hour: int, minute: int = 0, second: int = 0) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, hour, minute, second, tzinfo=UTC)


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
    return _complete("access", row, overrides)


def error_row(**overrides) -> dict:
    logged_at = overrides.pop("logged_at", at(DAY1, 12))
    row = {"logged_at": logged_at, "level": "error", "message": "something failed", "host": "example.org",
           "source": "error.log", "source_line": 1}
    return _complete("errors", row, overrides)


def session_row(**overrides) -> dict:
    start = overrides.pop("session_start", at(DAY1, 12))
    row = {"client_id": "s1", "host": "example.org", "session_start": start, "session_end": start,
           "requests": 1, "pages": 1, "bytes_sent": 100, "entry_path": "/", "exit_path": "/"}
    return _complete("sessions", row, overrides)


def _complete(table: str, row: dict, overrides: dict) -> dict:
    names = schemas.TABLES[table].names
    unknown = set(overrides) - set(names)
    assert not unknown, f"not {table} columns: {unknown}"
    row = {name: row.get(name) for name in names}   # columns a test does not set: null
    row.update(overrides)
    return row


def write_rows(warehouse: Path, table: str, rows: list[dict], name: str = "part-0.parquet") -> None:
    """Write rows as the pipeline does: per UTC day a file under <table>/date=YYYY-MM-DD/, sorted by time."""
    time_column = schemas.PARTITION_TIME_COLUMN[table]
    by_day = defaultdict(list)
    for row in rows:
        by_day[row[time_column].astimezone(UTC).date()].append(row)
    for day, day_rows in by_day.items():
        folder = warehouse / table / f"date={day.isoformat()}"
        folder.mkdir(parents=True, exist_ok=True)
        data = pa.Table.from_pylist(day_rows, schema=schemas.TABLES[table]).sort_by(time_column)
        pq.write_table(data, folder / name, compression="zstd")


def write_access(warehouse: Path, rows: list[dict], name: str = "part-0.parquet") -> None:
    write_rows(warehouse, "access", rows, name)


def one(table: pa.Table) -> dict:
    (row,) = table.to_pylist()
    return row


ROWS = [
    # day 1: three clients, three hosts, statuses 2xx/3xx/4xx/5xx, one row without a duration
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
# page views of ROWS: GET answered 2xx/304 (none is an asset or a bot)
PAGE_ROWS = [r for r in ROWS if r["status"] < 300 or r["status"] == 304]


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory) -> Path:
    # A single quote in the folder name proves the path is escaped inside the view SQL.
    root = tmp_path_factory.mktemp("stats") / "ware'house"
    write_access(root, ROWS)
    return root


@pytest.fixture(scope="module")
def reports(warehouse):
    return usage_stats(connect(warehouse), reports=["all"])


def selected(rows, flt: StatsFilter) -> list[dict]:
    """The reference row filter, in Python."""
    return [r for r in rows
            if (flt.date_from is None or r["received_at"].date() >= flt.date_from)
            and (flt.date_to is None or r["received_at"].date() <= flt.date_to)
            and (flt.host is None or r["host"] == flt.host)
            and (flt.path_prefix is None or (r["url_path"] or "").startswith(flt.path_prefix))]


# -- registry and report selection --------------------------------------------------------------

def test_report_registry_and_default_set(warehouse):
    assert list(REPORTS) == [
        "totals", "traffic", "top_pages", "entry_pages", "exit_pages", "referrer_hosts", "sessions",
        "status_classes", "error_rate", "top_failing_paths", "latency", "latency_by_path", "browsers",
        "operating_systems", "devices", "bot_share", "countries", "asns", "languages", "errors_by_level",
        "error_patterns", "status_codes", "not_found", "hours_of_day", "weekdays", "virtual_hosts",
        "browser_versions", "methods", "protocols", "tls_protocols", "static_files", "channels", "referrer_urls",
        "campaigns", "cache_statuses", "mime_types"]
    assert SCANNING_REPORTS == ("latency_by_path", "not_found", "methods", "protocols", "tls_protocols",
                                "referrer_urls", "campaigns", "cache_statuses", "mime_types")
    assert DEFAULT_REPORTS == tuple(n for n in REPORTS if n not in SCANNING_REPORTS)
    default = usage_stats(connect(warehouse))
    assert list(default) == list(DEFAULT_REPORTS)
    assert all(isinstance(t, pa.Table) for t in default.values())
    assert all(REPORTS[name].__name__ == name for name in REPORTS)


def test_select_reports():
    assert select_reports(None) == select_reports([]) == list(DEFAULT_REPORTS)
    assert select_reports(["top_pages", "totals,latency", "top_pages"]) == ["top_pages", "totals", "latency"]
    assert select_reports(["all"]) == list(REPORTS)
    assert select_reports([" latency_by_path ", ""]) == ["latency_by_path"]
    with pytest.raises(AccesslogError, match="unknown report 'top_paths'") as err:
        select_reports(["totals", "top_paths"])
    assert "totals, traffic, top_pages" in str(err.value)


def test_usage_stats_runs_the_named_reports(warehouse):
    got = usage_stats(connect(warehouse), StatsFilter(), ["latency", "totals"], top_n=1, granularity="week")
    assert list(got) == ["latency", "totals"]
    assert usage_stats(connect(warehouse), reports=["traffic"], granularity="week")["traffic"].column_names[0] == "week"
    assert usage_stats(connect(warehouse), reports=["top_pages"], top_n=1)["top_pages"].num_rows == 1


# -- totals and traffic ---------------------------------------------------------------------------

def test_totals_sum_daily_visitors(reports):
    totals = one(reports["totals"])
    daily_visitors = sum(len({r["client_id"] for r in PAGE_ROWS if r["received_at"].date() == d}) for d in (DAY1, DAY2))
    assert totals == {
        "requests": len(ROWS), "pages": len(PAGE_ROWS), "bytes": sum(r["bytes_sent"] or 0 for r in ROWS),
        # c1 has page views on both days and is counted once per day (pseudonyms are per-day keys)
        "visitor_days": daily_visitors, "days": 2,
        "first_received_at": min(r["received_at"] for r in ROWS),
        "last_received_at": max(r["received_at"] for r in ROWS),
    }
    assert totals["visitor_days"] == 6 > len({r["client_id"] for r in PAGE_ROWS})
    assert reports["totals"].schema.field("bytes").type == pa.int64()


def test_traffic_per_day(reports):
    assert reports["traffic"].to_pylist() == [
        {"date": DAY1, "requests": 6, "pages": 4, "unique_visitors": 3},
        {"date": DAY2, "requests": 4, "pages": 3, "unique_visitors": 3},
    ]
    assert reports["traffic"].schema.field("date").type == pa.date32()


def test_traffic_per_hour_counts_distinct_clients_per_hour(tmp_path):
    rows = [access_row(received_at=at(DAY1, 10, 5), client_id="a"), access_row(received_at=at(DAY1, 10, 50), client_id="a"),
            access_row(received_at=at(DAY1, 10, 55), client_id="b", status=404),
            access_row(received_at=at(DAY1, 11, 0), client_id="a"), access_row(received_at=at(DAY2, 0, 1), client_id="a")]
    write_access(tmp_path, rows)
    got = stats.traffic(connect(tmp_path), granularity="hour").to_pylist()
    assert got == [
        {"hour": at(DAY1, 10), "requests": 3, "pages": 2, "unique_visitors": 1},   # b only got a 404: no page
        {"hour": at(DAY1, 11), "requests": 1, "pages": 1, "unique_visitors": 1},
        {"hour": at(DAY2, 0), "requests": 1, "pages": 1, "unique_visitors": 1},
    ]


def test_traffic_per_week_sums_visitor_days(tmp_path):
    # 2024-03-03 is a Sunday, 2024-03-04 a Monday: two ISO weeks
    days = [dt.date(2024, 3, 2), dt.date(2024, 3, 3), dt.date(2024, 3, 4)]
    write_access(tmp_path, [access_row(received_at=at(d, 9), client_id="same-id") for d in days])
    got = stats.traffic(connect(tmp_path), granularity="week").to_pylist()
    assert got == [{"week": dt.date(2024, 2, 26), "requests": 2, "pages": 2, "unique_visitors": 2},
                   {"week": dt.date(2024, 3, 4), "requests": 1, "pages": 1, "unique_visitors": 1}]


def test_unknown_granularity_is_a_user_error(warehouse):
    with pytest.raises(AccesslogError, match="hour, day, week"):
        stats.traffic(connect(warehouse), granularity="month")


# -- what a page view is ----------------------------------------------------------------------------

@pytest.mark.parametrize("overrides, page, page_with_bots, page_with_assets", [
    ({}, True, True, True),
    ({"method": "HEAD"}, True, True, True),
    ({"method": "POST"}, False, False, False),
    ({"method": None}, False, False, False),
    ({"status": 204}, True, True, True),
    ({"status": 304}, True, True, True),
    ({"status": 301}, False, False, False),
    ({"status": 404}, False, False, False),
    ({"status": 500}, False, False, False),
    ({"url_path": "/static/site.CSS"}, False, False, True),
    ({"url_path": "/robots.txt"}, False, False, True),
    ({"url_path": "/fonts/a.woff2"}, False, False, True),
    ({"url_path": "/v1.2/report"}, True, True, True),     # a dot, but not an asset extension
    ({"url_path": "/data.json/"}, True, True, True),      # the extension must end the path
    ({"url_path": "/download.pdf"}, True, True, True),
    ({"is_bot": True}, False, True, False),
    ({"is_bot": None}, True, True, True),                 # unknown user agent: a person
    ({"is_bot": True, "url_path": "/app.js"}, False, False, False),
])
def test_page_rule(tmp_path, overrides, page, page_with_bots, page_with_assets):
    write_access(tmp_path, [access_row(**overrides)])
    con = connect(tmp_path)
    assert one(stats.totals(con))["pages"] == int(page)
    assert one(stats.totals(con, StatsFilter(exclude_bots=False)))["pages"] == int(page_with_bots)
    assert one(stats.totals(con, StatsFilter(exclude_assets=False)))["pages"] == int(page_with_assets)
    assert one(stats.totals(con))["requests"] == 1   # every request counts as a request


def test_top_pages_count_page_views_and_daily_visitors(tmp_path):
    # /p00 is viewed 12 times, /p01 11 times, ...; the asset and the 404 are not pages
    rows = [access_row(url_path=f"/p{i:02d}", client_id=f"c{j % 3}", received_at=at(DAY1, 0, j))
            for i in range(12) for j in range(12 - i)]
    rows += [access_row(url_path="/big.png", client_id="x", received_at=at(DAY1, 1, j)) for j in range(30)]
    rows += [access_row(url_path="/gone", client_id="x", status=404, received_at=at(DAY1, 2, j)) for j in range(30)]
    rows += [access_row(url_path="/p11", client_id="c0", received_at=at(DAY2, 1))]
    write_access(tmp_path, rows)
    con = connect(tmp_path)
    got = stats.top_pages(con).to_pylist()
    assert [g["url_path"] for g in got] == [f"/p{i:02d}" for i in range(10)]
    assert [g["pages"] for g in got] == list(range(12, 2, -1))
    assert got[0]["visitors"] == 3 and got[-1]["visitors"] == 3
    assert stats.top_pages(con, top_n=3).num_rows == 3
    everything = {g["url_path"]: g for g in stats.top_pages(con, top_n=None).to_pylist()}
    assert len(everything) == 12 and "/big.png" not in everything and "/gone" not in everything
    assert everything["/p11"] == {"url_path": "/p11", "pages": 2, "visitors": 2}   # c0 on two days: 2 visitor-days
    assert "/big.png" in {g["url_path"] for g in stats.top_pages(con, StatsFilter(exclude_assets=False)).to_pylist()}


# -- visits --------------------------------------------------------------------------------------------

H1, H2 = "example.org", "shop.example.org"
VISIT_ROWS = [
    # client a on H1: /a, an asset (not a page), /b 29 min later, /c exactly 30 min later (same visit),
    # then /d 30 min and 1 s later (a new visit)
    access_row(received_at=at(DAY1, 10, 0), client_id="a", host=H1, url_path="/a"),
    access_row(received_at=at(DAY1, 10, 10), client_id="a", host=H1, url_path="/style.css"),
    access_row(received_at=at(DAY1, 10, 29), client_id="a", host=H1, url_path="/b"),
    access_row(received_at=at(DAY1, 10, 59), client_id="a", host=H1, url_path="/c"),
    access_row(received_at=at(DAY1, 11, 29, 1), client_id="a", host=H1, url_path="/d"),
    # the same client on another host: another visit, although it falls inside the first one
    access_row(received_at=at(DAY1, 10, 5), client_id="a", host=H2, url_path="/x"),
    # b: one page and a failed request (not a page): a bounce
    access_row(received_at=at(DAY1, 12, 0), client_id="b", host=H1, url_path="/a"),
    access_row(received_at=at(DAY1, 12, 1), client_id="b", host=H1, url_path="/nope", status=404),
    # a bot's page views are no visit
    access_row(received_at=at(DAY1, 13, 0), client_id="bot", host=H1, url_path="/a", is_bot=True),
    access_row(received_at=at(DAY1, 13, 1), client_id="bot", host=H1, url_path="/b", is_bot=True),
]


def test_entry_and_exit_pages_follow_the_30_minute_rule(tmp_path):
    write_access(tmp_path, VISIT_ROWS)
    con = connect(tmp_path)
    assert stats.entry_pages(con).to_pylist() == [
        {"url_path": "/a", "visits": 2}, {"url_path": "/d", "visits": 1}, {"url_path": "/x", "visits": 1}]
    assert stats.exit_pages(con).to_pylist() == [
        {"url_path": "/a", "visits": 1}, {"url_path": "/c", "visits": 1}, {"url_path": "/d", "visits": 1},
        {"url_path": "/x", "visits": 1}]
    # visits: [/a /b /c] 59 min, [/d], [/x], [/a]: 6 pages, 3 bounces, durations 3540 s, 0, 0, 0
    assert one(stats.sessions(con)) == {"visits": 4, "pages_per_visit": 1.5, "bounce_rate": 0.75,
                                        "median_duration_s": 0.0}
    with_bots = one(stats.sessions(con, StatsFilter(exclude_bots=False)))
    assert with_bots["visits"] == 5 and with_bots["pages_per_visit"] == pytest.approx(8 / 5)


def test_median_visit_duration_interpolates(tmp_path):
    rows = []
    for i, minutes in enumerate([0, 10, 20, 25]):   # visit lengths in minutes
        rows += [access_row(received_at=at(DAY1, 8 + i), client_id=f"v{i}", url_path="/"),
                 access_row(received_at=at(DAY1, 8 + i, minutes), client_id=f"v{i}", url_path="/next")]
    write_access(tmp_path, rows)
    got = one(stats.sessions(connect(tmp_path)))
    assert got["median_duration_s"] == pytest.approx(15 * 60)   # between 10 and 20 minutes
    assert got["bounce_rate"] == 0.0   # two page views each (the 0-minute one too)


def test_sessions_table_replaces_derived_visits_on_its_days(tmp_path):
    write_access(tmp_path, VISIT_ROWS + [access_row(received_at=at(DAY2, 9), client_id="z", url_path="/derived")])
    # DAY1 has a sessions partition: its visits come from there; DAY2 is derived from access
    write_rows(tmp_path, "sessions", [
        session_row(session_start=at(DAY1, 9), session_end=at(DAY1, 9, 10), pages=3, requests=5,
                    entry_path="/s-entry", exit_path="/s-exit"),
        session_row(session_start=at(DAY1, 10), session_end=at(DAY1, 10), pages=None, requests=1,
                    entry_path="/s-entry", exit_path="/s-entry"),
        session_row(session_start=at(DAY1, 11), session_end=at(DAY1, 11), pages=0, requests=4,
                    entry_path=None, exit_path=None),   # assets only: not a visit
        session_row(session_start=at(DAY1, 12), host="other.example", entry_path="/elsewhere",
                    exit_path="/elsewhere"),
    ])
    con = connect(tmp_path)
    assert stats.entry_pages(con).to_pylist() == [
        {"url_path": "/s-entry", "visits": 2}, {"url_path": "/derived", "visits": 1},
        {"url_path": "/elsewhere", "visits": 1}]
    assert stats.exit_pages(con, StatsFilter(date_to=DAY1)).to_pylist() == [
        {"url_path": "/elsewhere", "visits": 1}, {"url_path": "/s-entry", "visits": 1},
        {"url_path": "/s-exit", "visits": 1}]
    # DAY1 from sessions: 3 visits (3, 1, 1 pages), durations 600, 0, 0; DAY2: one bounce
    assert one(stats.sessions(con)) == {"visits": 4, "pages_per_visit": 6 / 4, "bounce_rate": 3 / 4,
                                        "median_duration_s": 0.0}
    # host filter: a host without a session row that day falls back to the access rows
    assert stats.entry_pages(con, StatsFilter(host=H2)).to_pylist() == [{"url_path": "/x", "visits": 1}]
    assert stats.entry_pages(con, StatsFilter(host=H1, date_to=DAY1)).to_pylist() == [
        {"url_path": "/s-entry", "visits": 2}]
    # a path prefix cannot cut sessions: visits are derived from the access rows under it
    assert stats.entry_pages(con, StatsFilter(path_prefix="/")).column("url_path").to_pylist() == [
        "/a", "/d", "/derived", "/x"]


# -- statuses, errors, latency --------------------------------------------------------------------

def test_status_classes(reports):
    counts = Counter(f"{r['status'] // 100}xx" for r in ROWS)
    got = reports["status_classes"].to_pylist()
    assert [g["status_class"] for g in got] == sorted(counts)
    for g in got:
        assert g["requests"] == counts[g["status_class"]]
        assert g["share"] == pytest.approx(counts[g["status_class"]] / len(ROWS))


def test_error_rate(reports):
    assert one(reports["error_rate"]) == pytest.approx(
        {"requests": 10, "status_4xx": 1, "status_5xx": 1, "share_4xx": 0.1, "share_5xx": 0.1, "error_share": 0.2})


def test_top_failing_paths(tmp_path):
    rows = ([access_row(url_path="/a", status=500)] * 3 + [access_row(url_path="/a", status=404)]
            + [access_row(url_path="/a")] * 4 + [access_row(url_path="/b", status=403)] * 4
            + [access_row(url_path="/ok")] * 9 + [access_row(url_path="/c", status=502, method="POST")])
    write_access(tmp_path, rows)
    assert stats.top_failing_paths(connect(tmp_path)).to_pylist() == [
        {"url_path": "/a", "failed_requests": 4, "status_4xx": 1, "status_5xx": 3, "requests": 8, "failure_share": 0.5},
        {"url_path": "/b", "failed_requests": 4, "status_4xx": 4, "status_5xx": 0, "requests": 4, "failure_share": 1.0},
        {"url_path": "/c", "failed_requests": 1, "status_4xx": 0, "status_5xx": 1, "requests": 1, "failure_share": 1.0},
    ]


def test_latency_percentiles_match_numpy(reports):
    durations = [r["duration_ms"] for r in ROWS if r["duration_ms"] is not None]
    got = one(reports["latency"])
    assert got["timed_requests"] == len(durations) == len(ROWS) - 1
    for q in (50, 90, 95, 99):   # numpy's default is linear interpolation, as quantile_cont
        assert got[f"p{q}_ms"] == pytest.approx(np.percentile(durations, q))


def test_latency_with_repeated_durations_is_exact(tmp_path):
    durations = [5.0] * 7 + [10.0] * 2 + [11.0, 400.0] + [3.0] * 5
    write_access(tmp_path, [access_row(duration_ms=d, received_at=at(DAY1 if i % 2 else DAY2, 9))
                            for i, d in enumerate(durations)])
    got = one(stats.latency(connect(tmp_path)))
    for q in (50, 90, 95, 99):
        assert got[f"p{q}_ms"] == pytest.approx(np.percentile(durations, q))
    single = tmp_path / "single"
    write_access(single, [access_row(duration_ms=42.0)])
    assert one(stats.latency(connect(single))) == {"timed_requests": 1, "p50_ms": 42.0, "p90_ms": 42.0,
                                                   "p95_ms": 42.0, "p99_ms": 42.0}


def test_latency_without_durations_is_null(tmp_path):
    write_access(tmp_path, [access_row(duration_ms=None), access_row(duration_ms=None, status=404)])
    assert one(stats.latency(connect(tmp_path))) == {
        "timed_requests": 0, "p50_ms": None, "p90_ms": None, "p95_ms": None, "p99_ms": None}
    assert stats.latency_by_path(connect(tmp_path)).num_rows == 0


def test_latency_by_path(reports):
    by_path = defaultdict(list)
    for r in ROWS:
        if r["duration_ms"] is not None:
            by_path[r["url_path"]].append(r["duration_ms"])
    got = reports["latency_by_path"].to_pylist()
    assert [g["url_path"] for g in got] == ["/", "/about", "/missing"]
    for g in got:
        assert g["timed_requests"] == len(by_path[g["url_path"]])
        for q in (50, 90, 95, 99):
            assert g[f"p{q}_ms"] == pytest.approx(np.percentile(by_path[g["url_path"]], q))


def test_latency_by_path_keeps_top_n(warehouse):
    got = stats.latency_by_path(connect(warehouse), top_n=1)
    assert got.column("url_path").to_pylist() == ["/"]


# -- audience -------------------------------------------------------------------------------------

def test_referrer_hosts(tmp_path):
    rows = [access_row(client_id=f"c{i}", referrer=ref, received_at=at(DAY1, 9, i), host=host)
            for i, (ref, host) in enumerate([
                (None, "example.org"), ("", "example.org"), ("-", "example.org"),
                ("https://www.Google.com/search?q=x", "example.org"), ("http://user:pw@www.google.com:8080/", "example.org"),
                ("https://example.org/blog/", "example.org"),       # the site itself
                ("https://shop.example.org/cart", "shop.example.org"),   # another host of the site
                ("android-app://com.example.mail/", "example.org"), ("not a url", "example.org"),
                ("https://news.example.net/a@b", "example.org")])]
    rows.append(access_row(client_id="c0", referrer="https://www.google.com/", received_at=at(DAY1, 10)))
    rows.append(access_row(client_id="bot", referrer="https://bots.example/", is_bot=True))
    write_access(tmp_path, rows)
    con = connect(tmp_path)
    assert stats.referrer_hosts(con).to_pylist() == [
        {"referrer_host": "(direct)", "visitors": 3, "pages": 3},
        {"referrer_host": "www.google.com", "visitors": 3, "pages": 3},
        {"referrer_host": "(other)", "visitors": 1, "pages": 1},
        {"referrer_host": "com.example.mail", "visitors": 1, "pages": 1},
        {"referrer_host": "news.example.net", "visitors": 1, "pages": 1},
    ]
    # the shop's page view is filtered out with host=example.org
    main_site = stats.referrer_hosts(con, StatsFilter(host="example.org")).column("referrer_host").to_pylist()
    assert "shop.example.org" not in main_site and "www.google.com" in main_site
    assert "bots.example" in stats.referrer_hosts(con, StatsFilter(exclude_bots=False)).column("referrer_host").to_pylist()


def test_referrer_from_sibling_host_counts_under_a_host_filter(tmp_path):
    write_access(tmp_path, [
        access_row(host="shop.example.org", referrer="https://example.org/", client_id="a"),
        access_row(host="example.org", referrer="https://example.org/x", client_id="b")])
    con = connect(tmp_path)
    assert stats.referrer_hosts(con).num_rows == 0   # both hosts are the site's
    assert stats.referrer_hosts(con, StatsFilter(host="shop.example.org")).to_pylist() == [
        {"referrer_host": "example.org", "visitors": 1, "pages": 1}]


def test_browsers_systems_devices_countries_languages_asns(tmp_path):
    rows = [
        access_row(client_id="a", browser="Firefox", os="Linux", device="desktop", country="DE", language="de",
                   asn=3320, as_org="Deutsche Telekom AG"),
        access_row(client_id="a", browser="Firefox", os="Linux", device="desktop", country="DE", language="de",
                   asn=3320, as_org="Deutsche Telekom AG", url_path="/2"),
        access_row(client_id="b", browser="Safari", os="iOS", device="mobile", country="FR", language="fr",
                   asn=3215, as_org="Orange"),
        access_row(client_id="c", browser=None, os=None, device=None, country=None, language=None, asn=None),
        access_row(client_id="d", browser="Firefox", os="Windows", device="desktop", country="DE", language="en",
                   asn=3320, as_org="Deutsche Telekom AG", status=404),   # not a page view
        access_row(client_id="bot", browser="Googlebot", os="Other", device="bot", is_bot=True, country="US"),
    ]
    write_access(tmp_path, rows)
    con = connect(tmp_path)
    assert stats.browsers(con).to_pylist() == [
        {"browser": "Firefox", "visitors": 1, "pages": 2},
        {"browser": "(unknown)", "visitors": 1, "pages": 1}, {"browser": "Safari", "visitors": 1, "pages": 1}]
    assert stats.operating_systems(con).column("os").to_pylist() == ["Linux", "(unknown)", "iOS"]
    assert stats.devices(con).to_pylist() == [{"device": "desktop", "visitors": 1, "pages": 2},
                                              {"device": "(unknown)", "visitors": 1, "pages": 1},
                                              {"device": "mobile", "visitors": 1, "pages": 1}]
    assert stats.countries(con).column("country").to_pylist() == ["DE", "(unknown)", "FR"]
    assert stats.languages(con).column("language").to_pylist() == ["de", "(unknown)", "fr"]
    assert stats.asns(con).to_pylist() == [
        {"asn": 3320, "as_org": "Deutsche Telekom AG", "visitors": 1, "pages": 2},
        {"asn": 3215, "as_org": "Orange", "visitors": 1, "pages": 1},
        {"asn": None, "as_org": None, "visitors": 1, "pages": 1}]
    with_bots = stats.browsers(con, StatsFilter(exclude_bots=False)).column("browser").to_pylist()
    assert "Googlebot" in with_bots and "Googlebot" not in stats.browsers(con).column("browser").to_pylist()
    assert stats.devices(con, top_n=1).num_rows == 1


def test_bot_share_counts_requests(tmp_path):
    write_access(tmp_path, [access_row(is_bot=True), access_row(is_bot=True, status=404), access_row(is_bot=None),
                            access_row(is_bot=False, method="POST")])
    con = connect(tmp_path)
    assert one(stats.bot_share(con)) == {"requests": 4, "bot_requests": 2, "share": 0.5}
    assert one(stats.bot_share(con, StatsFilter(exclude_bots=False))) == one(stats.bot_share(con))


# -- error logs --------------------------------------------------------------------------------------

ERROR_ROWS = [
    error_row(level="error", message='open() "/var/www/html/favicon.ico" failed (2: No such file or directory)'),
    error_row(level="error", message='open() "/var/www/html/robots.txt" failed (2: No such file or directory)'),
    error_row(level="error", message="upstream timed out (110: Connection timed out) while reading response header "
                                     "from upstream, client: ip:0f3a9c2d4e5b6a7980112233445566ff"),
    error_row(level="error", message="upstream timed out (110: Connection timed out) while reading response header "
                                     "from upstream, client: ip:aa3a9c2d4e5b6a7980112233445566ff"),
    error_row(level="warn", message='limiting requests, excess: 10.520 by zone "one"', logged_at=at(DAY2, 1)),
    error_row(level="crit", message="SSL_do_handshake() failed (SSL: error:0A00006C:SSL routines::bad key share)",
              host="api.example.org"),
    error_row(level="warn", message="AH01630: client denied by server configuration: /srv/app/.env",
              request="GET /.env HTTP/1.1"),
    error_row(level=None, message=None),
]


def test_errors_by_level(tmp_path):
    write_rows(tmp_path, "errors", ERROR_ROWS)
    con = connect(tmp_path)   # no access rows at all: error reports still work
    assert stats.errors_by_level(con).to_pylist() == [
        {"level": "crit", "entries": 1, "share": 1 / 8}, {"level": "error", "entries": 4, "share": 4 / 8},
        {"level": "warn", "entries": 2, "share": 2 / 8}, {"level": "(unknown)", "entries": 1, "share": 1 / 8}]
    assert one(stats.totals(con))["requests"] == 0
    assert stats.errors_by_level(con, StatsFilter(host="api.example.org")).column("level").to_pylist() == ["crit"]
    assert stats.errors_by_level(con, StatsFilter(date_from=DAY2)).column("entries").to_pylist() == [1]
    assert stats.errors_by_level(con, StatsFilter(path_prefix="/.e")).column("level").to_pylist() == ["warn"]


def test_error_patterns_normalize_messages(tmp_path):
    write_rows(tmp_path, "errors", ERROR_ROWS)
    got = stats.error_patterns(connect(tmp_path)).to_pylist()
    assert got == [
        {"pattern": "open() <str> failed (<n>: No such file or directory)", "level": "error", "entries": 2},
        {"pattern": "upstream timed out (<n>: Connection timed out) while reading response header from upstream, "
                    "client: <ip>", "level": "error", "entries": 2},
        {"pattern": "", "level": "(unknown)", "entries": 1},
        {"pattern": "AH01630: client denied by server configuration: <path>", "level": "warn", "entries": 1},
        {"pattern": "SSL_do_handshake() failed (SSL: error:0A00006C:SSL routines::bad key share)", "level": "crit",
         "entries": 1},
        {"pattern": "limiting requests, excess: <n> by zone <str>", "level": "warn", "entries": 1},
    ]
    assert stats.error_patterns(connect(tmp_path), top_n=2).num_rows == 2


# -- filters ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("flt", [
    StatsFilter(date_from=DAY2),
    StatsFilter(date_to=DAY1),
    StatsFilter(date_from=DAY1, date_to=DAY1),
    StatsFilter(date_from=dt.date(2024, 3, 3)),
])
def test_date_filter_excludes_other_days(warehouse, flt):
    expected = selected(ROWS, flt)
    reports = usage_stats(connect(warehouse), flt, ["all"])
    assert [d["date"] for d in reports["traffic"].to_pylist()] == sorted({r["received_at"].date() for r in expected})
    assert reports["totals"].column("requests").to_pylist() == [len(expected)]
    assert sum(reports["status_classes"].column("requests").to_pylist()) == len(expected)
    assert reports["latency"].column("timed_requests").to_pylist() == [
        sum(r["duration_ms"] is not None for r in expected)]
    assert sum(reports["latency_by_path"].column("timed_requests").to_pylist()) == sum(
        r["duration_ms"] is not None for r in expected)


def _scanned_files(con, sql: str, params: dict) -> tuple[str, str]:
    [(_, plan)] = con.execute("EXPLAIN ANALYZE " + sql, params).fetchall()
    scanned = re.search(r"Scanning Files: (\d+)/(\d+)", plan)
    assert scanned, plan
    return scanned.groups()


def test_date_filter_prunes_partitions_with_bound_values(warehouse):
    # The dates are bound parameters; DuckDB must still turn them into a partition filter so
    # the excluded day's file is never opened: in the query that fills the per-day cache...
    con = connect(warehouse)
    fill = f"WITH {daily.FILTERED_ACCESS_SQL} SELECT date, count(*) FROM filtered GROUP BY date"
    # EXPLAIN ANALYZE (DuckDB 2.0.1) neither takes nor goes without a parameter that only the pruned is_page
    # column uses; it plays no part in partition pruning, so it is spelled out here.
    fill = fill.replace("$not_pages_re::VARCHAR", "NULL::VARCHAR")
    params = {"date_lo": DAY2, "date_hi": DAY2, "host": None, "path_prefix": None, "exclude_bots": True,
              "exclude_assets": True, "exclude_re": None}
    assert _scanned_files(con, fill, params) == ("1", "2")
    # ... and in the one report that reads the files itself
    stats.latency_by_path(con, StatsFilter(date_from=DAY2))   # fills the cache it ranks paths by
    sql = stats.LATENCY_BY_PATH_SQL.replace("{cache}", daily.cache_schema(con))
    flt = StatsFilter(date_from=DAY2)
    params = daily.bound_params(sql, {**flt.params(), "scope": daily.scope_key(flt), "top_n": 10})
    assert _scanned_files(con, sql, params) == ("1", "2")


def test_cache_fill_reads_only_the_requested_days(warehouse, monkeypatch):
    filled = []
    real_fill = daily._fill
    monkeypatch.setattr(daily, "_fill", lambda con, schema, scope, flt, lo, hi: (
        filled.append((lo, hi)), real_fill(con, schema, scope, flt, lo, hi)))
    con = connect(warehouse)
    usage_stats(con, StatsFilter(date_from=DAY2))
    assert filled == [(DAY2, DAY2)]


def test_host_filter(warehouse):
    flt = StatsFilter(host="api.example.org")
    assert len(selected(ROWS, flt)) == 1
    reports = usage_stats(connect(warehouse), flt)
    assert one(reports["totals"])["requests"] == 1
    assert reports["status_classes"].to_pylist() == [{"status_class": "5xx", "requests": 1, "share": 1.0}]
    assert reports["top_failing_paths"].column("url_path").to_pylist() == ["/"]


def test_host_with_single_quote_is_a_bound_value(warehouse):
    con = connect(warehouse)
    quoted = usage_stats(con, StatsFilter(host="o'reilly.example"))
    assert quoted["totals"].column("requests").to_pylist() == [1]
    # An injection attempt matches nothing instead of widening the filter or failing.
    injected = usage_stats(con, StatsFilter(host="x' OR '1'='1"))
    assert injected["totals"].column("requests").to_pylist() == [0]
    assert injected["traffic"].num_rows == 0


@pytest.mark.parametrize("prefix, expected", [
    ("/a_b", ["/a_b/x"]),              # '_' is not a one-character wildcard
    ("/a%", ["/a%b"]),                 # '%' is not a wildcard
    ("/it's", ["/it's/z"]),            # a quote is a character, not SQL
    ("/a", ["/a%b", "/a_b/x", "/axb/y"]),
    ("", ["/", "/a%b", "/a_b/x", "/axb/y", "/it's/z"]),
    ("/nothing", []),
])
def test_path_prefix_matches_literally(tmp_path, prefix, expected):
    paths = ["/a_b/x", "/axb/y", "/a%b", "/it's/z", "/"]
    write_access(tmp_path, [access_row(url_path=p, client_id=p, status=200 if i % 2 else 404)
                            for i, p in enumerate(paths)])
    reports = usage_stats(connect(tmp_path), StatsFilter(path_prefix=prefix), ["totals", "top_failing_paths",
                                                                                 "top_pages", "latency_by_path"])
    assert one(reports["totals"])["requests"] == len(expected)
    got = reports["top_failing_paths"].column("url_path").to_pylist() + reports["top_pages"].column("url_path").to_pylist()
    assert sorted(got) == expected


def test_top_n_below_one_is_a_user_error(warehouse):
    con = connect(warehouse)
    with pytest.raises(AccesslogError, match="at least 1"):
        usage_stats(con, top_n=0)
    with pytest.raises(AccesslogError, match="at least 1"):
        stats.browsers(con, top_n=-1)


def test_from_after_to_is_a_user_error(warehouse, capsys):
    con = connect(warehouse)
    with pytest.raises(SettingError) as err:
        usage_stats(con, StatsFilter(date_from=DAY2, date_to=DAY1))
    assert err.value.settings == ("date_from", "date_to")
    # the CLI says it with its own flags
    assert cli_main(["stats", "--warehouse", str(warehouse), "--from", str(DAY2), "--to", str(DAY1)]) == 2
    assert f"--from {DAY2} is after --to {DAY1}" in capsys.readouterr().err
    with pytest.raises(AccesslogError, match="swap"):
        stats.top_pages(con, StatsFilter(date_from=DAY2, date_to=DAY1))


# -- empty and missing warehouses --------------------------------------------------------------------

ONE_ROW_REPORTS = {"totals", "error_rate", "latency", "bot_share", "sessions"}


def test_empty_warehouse_gives_empty_reports(tmp_path):
    (tmp_path / "access").mkdir()  # a run that wrote nothing yet
    con = connect(tmp_path)
    reports = usage_stats(con, StatsFilter(date_from=DAY1, host="example.org"), ["all"])
    for name, table in reports.items():
        assert table.num_rows == (1 if name in ONE_ROW_REPORTS else 0), name
    assert one(reports["totals"]) == {"requests": 0, "pages": 0, "bytes": 0, "visitor_days": 0, "days": 0,
                                      "first_received_at": None, "last_received_at": None}
    assert one(reports["error_rate"])["share_4xx"] is None
    assert one(reports["sessions"]) == {"visits": 0, "pages_per_visit": None, "bounce_rate": None,
                                        "median_duration_s": None}
    assert one(reports["bot_share"]) == {"requests": 0, "bot_requests": 0, "share": None}
    # Every table still has a view with the contract's columns plus the partition date.
    for table, schema in schemas.TABLES.items():
        columns = [row[0] for row in con.execute(f"DESCRIBE {table}").fetchall()]
        assert columns == schema.names + ["date"], table
    assert "(no rows)" in render(reports, "table")
    for granularity in ("hour", "week"):
        assert stats.traffic(con, granularity=granularity).num_rows == 0


def test_missing_warehouse_is_a_user_error(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(SettingError) as err:
        connect(missing)
    assert "--warehouse" in err.value.render(flag_name)
    assert str(missing) in str(err.value)


def test_view_types_follow_the_schema(warehouse):
    con = connect(warehouse)
    types = dict(con.execute("SELECT column_name, column_type FROM (DESCRIBE access)").fetchall())
    assert types["received_at"] == "TIMESTAMP WITH TIME ZONE"
    assert types["status"] == "SMALLINT"
    assert types["date"] == "DATE"


# -- the per-day cache ---------------------------------------------------------------------------------

@pytest.fixture
def fills(monkeypatch):
    """The (first, last) day ranges computed from the files, in order."""
    calls = []
    real_fill = daily._fill

    def counting(con, schema, scope, flt, lo, hi):
        calls.append((lo, hi))
        real_fill(con, schema, scope, flt, lo, hi)
    monkeypatch.setattr(daily, "_fill", counting)
    return calls


def test_cache_is_reused_and_follows_file_changes(tmp_path, fills):
    write_access(tmp_path, ROWS)
    con = connect(tmp_path)
    first = usage_stats(con)
    assert fills == [(DAY1, DAY2)]
    assert usage_stats(con) == first and fills == [(DAY1, DAY2)]   # warm: nothing recomputed
    # a new file in DAY2's partition (a later run): only DAY2 is computed again
    write_access(tmp_path, [access_row(received_at=at(DAY2, 20), client_id="new")], name="part-1.parquet")
    assert one(stats.totals(con))["requests"] == len(ROWS) + 1
    assert fills == [(DAY1, DAY2), (DAY2, DAY2)]
    # a deleted partition (retention): its day disappears from every report
    for f in (tmp_path / "access" / f"date={DAY1}").iterdir():
        f.unlink()
    (tmp_path / "access" / f"date={DAY1}").rmdir()
    assert stats.traffic(con).column("date").to_pylist() == [DAY2]
    assert fills == [(DAY1, DAY2), (DAY2, DAY2)]


def test_cache_keeps_scopes_apart_and_evicts_old_ones(tmp_path, fills):
    write_access(tmp_path, ROWS)
    con = connect(tmp_path)
    hosts = [f"h{i}.example" for i in range(daily.MAX_SCOPES + 1)]
    assert one(stats.totals(con, StatsFilter(host="example.org")))["requests"] == 7
    assert one(stats.totals(con))["requests"] == 10
    assert one(stats.totals(con, StatsFilter(exclude_bots=False)))["requests"] == 10
    assert len(fills) == 3
    for host in hosts:
        stats.totals(con, StatsFilter(host=host))
    scopes = con.execute(f"SELECT count(*) FROM {daily.cache_schema(con)}.cached_scopes").fetchall()
    assert scopes == [(daily.MAX_SCOPES,)]
    before = len(fills)
    assert one(stats.totals(con, StatsFilter(host="example.org")))["requests"] == 7   # evicted: computed again
    assert len(fills) == before + 1


def test_table_that_gets_its_first_files_after_connect(tmp_path):
    write_access(tmp_path, ROWS)
    con = connect(tmp_path)
    assert stats.errors_by_level(con).num_rows == 0
    write_rows(tmp_path, "errors", [error_row(logged_at=at(DAY1, 3))])
    assert stats.errors_by_level(con).to_pylist() == [{"level": "error", "entries": 1, "share": 1.0}]


def test_cache_file_survives_the_connection(tmp_path, fills):
    wh, cache = tmp_path / "wh", tmp_path / "stats-cache.duckdb"
    write_access(wh, ROWS)
    con = connect(wh, cache_file=cache)
    first = usage_stats(con)
    con.close()
    assert fills == [(DAY1, DAY2)]
    con = connect(wh, cache_file=cache)
    assert usage_stats(con) == first
    assert fills == [(DAY1, DAY2)]   # the second process starts warm
    assert cache.stat().st_mode & 0o777 == 0o600
    # a second connection cannot share the file while this one has it
    with pytest.raises(AccesslogError, match="stats cache"):
        connect(wh, cache_file=cache)
    con.close()
    # the cache belongs to one warehouse: another one starts from scratch
    other = tmp_path / "other"
    write_access(other, ROWS[:1])
    assert one(stats.totals(connect(other, cache_file=cache)))["requests"] == 1


# -- rendering -----------------------------------------------------------------------------------------

def test_render_every_report_in_every_format(reports):
    assert set(reports) == set(REPORTS)
    for fmt in ("table", "json", "csv"):
        text = render(reports, fmt)
        for name in REPORTS:
            assert name in text


def test_render_json_round_trips(reports):
    parsed = json.loads(render(reports, "json"))
    assert list(parsed) == list(reports)
    assert parsed["traffic"] == [{**row, "date": row["date"].isoformat()} for row in reports["traffic"].to_pylist()]
    first = dt.datetime.fromisoformat(parsed["totals"][0]["first_received_at"])
    assert first == min(r["received_at"] for r in ROWS)
    assert parsed["latency"][0]["p50_ms"] == pytest.approx(reports["latency"].column("p50_ms")[0].as_py())


def test_render_hourly_traffic_as_json_and_table(warehouse):
    hourly = {"traffic": stats.traffic(connect(warehouse), granularity="hour")}
    parsed = json.loads(render(hourly, "json"))
    assert dt.datetime.fromisoformat(parsed["traffic"][0]["hour"]) == at(DAY1, 8)
    assert "2024-03-01 08:00:00+00:00" in render(hourly, "table")


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
    assert blocks["traffic"][1] == ["2024-03-01", "6", "4", "3"]


def test_render_table_titles_and_alignment(reports):
    text = render(reports, "table")
    lines = text.splitlines()
    for name in reports:
        assert name in lines, f"title {name} missing"
    header = lines[lines.index("totals") + 2]
    row = lines[lines.index("totals") + 4]
    assert header.split()[:4] == ["requests", "pages", "bytes", "visitor_days"]
    # numbers are right-aligned under their header; thousands separators are used
    assert "4,420" in row and row.index("4,420") + len("4,420") == header.index("bytes") + len("bytes")


def test_render_codes_without_thousands_separators(tmp_path):
    write_access(tmp_path, [access_row(asn=64500, as_org="Example Net")])
    text = render({"asns": stats.asns(connect(tmp_path))}, "table")
    assert "64500" in text and "64,500" not in text


def test_render_rejects_unknown_format(reports):
    with pytest.raises(ValueError, match="table, json, csv"):
        render(reports, "xml")


def test_files_of_an_older_layout_read_as_nulls_in_the_missing_columns(tmp_path, reports):
    """A warehouse written before columns were added (language, country, asn, upstream_*, extra, ...)
    still answers every report: the missing columns read as nulls."""
    newer = ["language", "country", "asn", "as_org", "region", "city", "upstream_status", "upstream_ms",
             "upstream_addr", "error_count", "error_level", "request_length", "response_bytes", "scheme",
             "tls_protocol", "request_id", "connection_id", "extra"]
    old = tmp_path / "old"
    write_access(old, ROWS)
    for f in old.glob("access/date=*/*.parquet"):
        table = pq.read_table(f)
        pq.write_table(table.drop_columns([c for c in newer if c in table.column_names]), f)
    assert "language" not in pq.read_table(next(old.glob("access/date=*/*.parquet"))).column_names
    got = usage_stats(connect(old), reports=["all"])
    assert set(got) == set(reports)
    for name in ("totals", "traffic", "status_classes", "top_pages", "latency", "browsers"):
        assert got[name].equals(reports[name]), name
    assert got["languages"]["language"].to_pylist() == ["(unknown)"]
    assert "(unknown)" not in reports["languages"]["language"].to_pylist()

"""Every report of accesslog.stats against an independent plain-Python computation.

A seeded random warehouse (access rows over a week boundary, several hosts, bots, assets,
every status class, repeated and missing durations, odd referrers and paths; a sessions
partition on one day; error-log entries) is written with the schemas. Each statistic is then
recomputed here from the rows in memory, with Python's own tools (str methods, urllib,
statistics, numpy for percentiles), never by DuckDB, and compared for several filters.
"""
from __future__ import annotations

import datetime as dt
import random
import re
import statistics
from collections import Counter, defaultdict
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest

from accesslog import stats
from accesslog.stats import StatsFilter, connect, usage_stats
from tests.test_stats import access_row, error_row, session_row, write_rows

UTC = dt.timezone.utc
FIRST = dt.date(2024, 2, 29)   # a Thursday: the days span two ISO weeks
DAYS = [FIRST + dt.timedelta(days=i) for i in range(6)]
SESSION_DAY = DAYS[2]          # this day has a sessions partition (for example.org only)
HOSTS = ["example.org", "example.org", "shop.example.org", "o'reilly.example", None]
ASSET_EXTENSIONS = {"css", "js", "png", "jpg", "jpeg", "gif", "svg", "ico", "webp", "woff", "woff2", "ttf", "map",
                    "txt", "xml", "json"}
PATHS = ["/", "/", "/", "/blog/", "/blog/post-1", "/blog/post-2", "/blog_x", "/about", "/pricing", "/a%b", "/it's",
         "/v1.2/report", "/data.json/", "/download.pdf", "/static/site.css", "/static/APP.JS", "/img/logo.Svg",
         "/favicon.ico", "/robots.txt", "/feed.xml", "/fonts/f.woff2", "/api/items", None]
REFERRERS = [None, None, None, "", "-", "https://www.google.com/?q=1", "HTTPS://WWW.Google.com:443/",
             "http://u:p@news.example.net/x", "https://example.org/page", "https://Shop.Example.org/cart",
             "android-app://com.example.mail/", "not a url", "https://o'reilly.example/x", "https://t.co/abc"]
AGENTS = [("Firefox", "Linux", "desktop", False), ("Chrome", "Windows", "desktop", False),
          ("Mobile Safari", "iOS", "mobile", False), ("Chrome Mobile", "Android", "mobile", False),
          ("Safari", "iOS", "tablet", False), (None, None, None, None), ("Googlebot", "Other", "bot", True),
          ("curl", None, "bot", True)]
NETWORKS = [(3320, "Deutsche Telekom AG"), (3215, "Orange"), (7922, "Comcast"), (None, None)]
STATUSES = [200] * 12 + [204, 206, 301, 302, 304, 304, 400, 403, 404, 404, 499, 500, 502, 503]
METHODS = ["GET"] * 16 + ["HEAD", "POST", "POST", "PUT", None]
VISIT_GAP = dt.timedelta(minutes=30)


def make_access_rows(rng: random.Random) -> list[dict]:
    rows, line = [], 0
    for day in DAYS:
        for k in range(30):
            client = f"c{k}"   # the same ids every day: only per-day counting may merge them
            browser, os_, device, is_bot = rng.choice(AGENTS)
            asn, as_org = rng.choice(NETWORKS)
            home = rng.choice(HOSTS)
            t = dt.datetime(day.year, day.month, day.day, tzinfo=UTC) + dt.timedelta(seconds=rng.uniform(0, 80_000))
            for _ in range(rng.randint(1, 14)):
                gap = rng.choice([0, 0, 5, 40, 300, 600, 1799, 1800, 1800, 1801, 2500, 7200])
                t = t + dt.timedelta(seconds=gap, microseconds=rng.choice([0, 0, 250_000]))
                if t.date() != day:
                    break
                line += 1
                duration = None if rng.random() < 0.1 else round(rng.lognormvariate(3, 1), rng.choice([0, 1]))
                rows.append(access_row(
                    received_at=t, responded_at=t, client_id=client, host=home if rng.random() < 0.9 else rng.choice(HOSTS),
                    method=rng.choice(METHODS), url_path=rng.choice(PATHS), status=rng.choice(STATUSES),
                    bytes_sent=None if rng.random() < 0.05 else rng.randint(0, 50_000), duration_ms=duration,
                    referrer=rng.choice(REFERRERS), browser=browser, os=os_, device=device,
                    is_bot=is_bot if rng.random() < 0.97 else None,
                    language=rng.choice(["en", "de", "fr", None]), country=rng.choice(["DE", "US", "FR", None]),
                    asn=asn, as_org=as_org, source=rng.choice(["a.log", "b.log"]), source_line=line))
    return rows


def make_session_rows(rng: random.Random) -> list[dict]:
    rows = []
    for i in range(40):
        start = dt.datetime(SESSION_DAY.year, SESSION_DAY.month, SESSION_DAY.day, tzinfo=UTC) + dt.timedelta(
            seconds=rng.uniform(0, 80_000))
        pages = rng.choice([None, 0, 1, 1, 2, 5])
        rows.append(session_row(
            client_id=f"s{i}", host="example.org" if i % 8 else "shop.example.org", session_start=start,
            session_end=start + dt.timedelta(seconds=rng.choice([0, 0, 30, 95.5, 600])),
            requests=rng.randint(1, 9), pages=pages, entry_path=rng.choice(["/", "/blog/", None]),
            exit_path=rng.choice(["/", "/about", None])))
    return rows


MESSAGES = [
    lambda r: f'open() "/var/www/html/{r.choice(["a", "b"])}.png" failed (2: No such file or directory)',
    lambda r: (f"upstream timed out ({r.choice([110, 104])}: Connection timed out) while reading response header "
               f"from upstream, client: ip:{r.getrandbits(128):032x}"),
    lambda r: f'limiting requests, excess: {r.randint(1, 30)}.{r.randint(0, 999):03d} by zone "one"',
    lambda r: f"AH01630: client denied by server configuration: /srv/app/{r.choice(['.env', '.git/config'])}",
    lambda r: "SSL_do_handshake() failed (SSL: error:0A00006C:SSL routines::bad key share)",
    lambda r: f"worker process {r.randint(100, 9999)} exited on signal 9",
    lambda r: None,
]


def make_error_rows(rng: random.Random) -> list[dict]:
    rows = []
    for i in range(120):
        day = rng.choice(DAYS)
        logged = dt.datetime(day.year, day.month, day.day, tzinfo=UTC) + dt.timedelta(seconds=rng.uniform(0, 86_000))
        rows.append(error_row(
            logged_at=logged, level=rng.choice(["error", "error", "warn", "crit", "notice", None]),
            message=rng.choice(MESSAGES)(rng), host=rng.choice(HOSTS),
            request=rng.choice([None, "GET /blog/post-1 HTTP/1.1", "POST /api/items HTTP/2.0", "GET / HTTP/1.1"]),
            source_line=i + 1))
    return rows


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    rng = random.Random(20240229)
    root: Path = tmp_path_factory.mktemp("correctness") / "wh"
    access, sessions, errors = make_access_rows(rng), make_session_rows(rng), make_error_rows(rng)
    # two files per day, as two inputs of a run would leave
    write_rows(root, "access", access[::2], "part-a.parquet")
    write_rows(root, "access", access[1::2], "part-b.parquet")
    write_rows(root, "sessions", sessions)
    write_rows(root, "errors", errors)
    return {"root": root, "access": access, "sessions": sessions, "errors": errors}


@pytest.fixture(scope="module")
def con(data):
    return connect(data["root"])


FILTERS = {
    "everything": StatsFilter(),
    "dates": StatsFilter(date_from=DAYS[1], date_to=DAYS[3]),
    "host": StatsFilter(host="example.org"),
    "quoted host": StatsFilter(host="o'reilly.example"),
    "path prefix": StatsFilter(path_prefix="/blog"),
    "bots and assets too": StatsFilter(exclude_bots=False, exclude_assets=False),
    "dates, host, no bots excluded": StatsFilter(date_from=DAYS[2], date_to=DAYS[4], host="shop.example.org",
                                                 exclude_bots=False),
}


@pytest.fixture(scope="module", params=list(FILTERS), ids=list(FILTERS))
def case(request, data, con):
    flt = FILTERS[request.param]
    reports = usage_stats(con, flt, ["all"], top_n=None)
    return flt, Reference(data, flt), reports


# -- the reference implementation ----------------------------------------------------------------

def is_asset(path: str) -> bool:
    last = path.rsplit("/", 1)[-1]
    return "." in last and last.rsplit(".", 1)[1].lower() in ASSET_EXTENSIONS


def referrer_host(referrer: str | None) -> str:
    if referrer in (None, "", "-"):
        return "(direct)"
    parts = urlsplit(referrer)
    return parts.hostname if parts.scheme and parts.hostname else "(other)"


def error_pattern(message: str | None) -> str:
    text = message or ""
    text = re.sub(r"ip:[0-9a-fA-F]+", "<ip>", text)
    text = re.sub(r'"[^"]*"', "<str>", text)
    text = re.sub(r"(^|[\s(\[=,:])/[^\s,;()\[\]\"]*", r"\1<path>", text)
    return re.sub(r"\b\d+(\.\d+)*\b", "<n>", text)


def ranked(counts: dict, key) -> list:
    return sorted(counts, key=key)


class Reference:
    def __init__(self, data: dict, flt: StatsFilter):
        self.flt = flt
        self.rows = [r for r in data["access"] if self.in_dates(r["received_at"].date())
                     and (flt.host is None or r["host"] == flt.host)
                     and (flt.path_prefix is None or (r["url_path"] is not None
                                                      and r["url_path"].startswith(flt.path_prefix)))]
        self.pages = [r for r in self.rows if self.is_page(r)]
        self.errors = [e for e in data["errors"] if self.in_dates(e["logged_at"].date())
                       and (flt.host is None or e["host"] == flt.host)
                       and (flt.path_prefix is None or (e["request"] is not None
                                                        and e["request"].split(" ")[1].startswith(flt.path_prefix)))]
        sessions = [s for s in data["sessions"] if self.in_dates(s["session_start"].date())
                    and (flt.host is None or s["host"] == flt.host)] if flt.path_prefix is None else []
        self.session_days = {s["session_start"].date() for s in sessions}
        self.visits = self.derive_visits() + [
            {"entry": s["entry_path"], "exit": s["exit_path"],
             "pages": s["pages"] if s["pages"] is not None else s["requests"],
             "duration": (s["session_end"] - s["session_start"]).total_seconds()}
            for s in sessions if (s["pages"] if s["pages"] is not None else s["requests"]) > 0]

    def in_dates(self, day: dt.date) -> bool:
        return (self.flt.date_from is None or day >= self.flt.date_from) and (
            self.flt.date_to is None or day <= self.flt.date_to)

    def is_page(self, r: dict) -> bool:
        return (r["method"] in ("GET", "HEAD") and (200 <= r["status"] <= 299 or r["status"] == 304)
                and r["url_path"] is not None
                and not (self.flt.exclude_assets and is_asset(r["url_path"]))
                and not (self.flt.exclude_bots and r["is_bot"] is True))

    def derive_visits(self) -> list[dict]:
        by_client = defaultdict(list)
        for r in self.pages:
            if r["received_at"].date() not in self.session_days:
                by_client[(r["received_at"].date(), r["client_id"], r["host"])].append(r)
        visits = []
        for views in by_client.values():
            views.sort(key=lambda r: (r["received_at"], r["source"], r["source_line"]))
            current = [views[0]]
            for previous, view in zip(views, views[1:]):
                if view["received_at"] - previous["received_at"] > VISIT_GAP:
                    visits.append(current)
                    current = []
                current.append(view)
            visits.append(current)
        return [{"entry": v[0]["url_path"], "exit": v[-1]["url_path"], "pages": len(v),
                 "duration": (v[-1]["received_at"] - v[0]["received_at"]).total_seconds()} for v in visits]

    def visitor_days(self, rows) -> int:
        return len({(r["received_at"].date(), r["client_id"]) for r in rows})

    def breakdown(self, value) -> dict:
        """value -> (visitors [visitor-days], page views) over page views."""
        groups = defaultdict(list)
        for r in self.pages:
            groups[value(r)].append(r)
        return {v: (self.visitor_days(rows), len(rows)) for v, rows in groups.items()}


def as_breakdown(table, column: str) -> dict:
    return {r[column]: (r["visitors"], r["pages"]) for r in table.to_pylist()}


def assert_breakdown_order(table, column: str) -> None:
    rows = table.to_pylist()
    keys = [(-r["visitors"], -r["pages"], r[column]) for r in rows]
    assert keys == sorted(keys)


# -- the comparisons -----------------------------------------------------------------------------

def test_the_data_covers_the_rules(data):
    rows = data["access"]
    assert len(rows) > 1000
    assert {r["status"] // 100 for r in rows} == {2, 3, 4, 5}
    assert any(r["is_bot"] for r in rows) and any(r["is_bot"] is None for r in rows)
    assert any(b["received_at"] - a["received_at"] == VISIT_GAP for a, b in zip(rows, rows[1:]))
    ref = Reference(data, StatsFilter())
    assert SESSION_DAY in ref.session_days and len(ref.visits) > 100
    assert sum(1 for v in ref.visits if v["pages"] == 1) not in (0, len(ref.visits))


def test_totals(case):
    flt, ref, reports = case
    (got,) = reports["totals"].to_pylist()
    assert got == {
        "requests": len(ref.rows), "pages": len(ref.pages),
        "bytes": sum(r["bytes_sent"] or 0 for r in ref.rows), "visitor_days": ref.visitor_days(ref.pages),
        "days": len({r["received_at"].date() for r in ref.rows}),
        "first_received_at": min((r["received_at"] for r in ref.rows), default=None),
        "last_received_at": max((r["received_at"] for r in ref.rows), default=None),
    }


@pytest.mark.parametrize("granularity", ["hour", "day", "week"])
def test_traffic(case, con, granularity):
    flt, ref, _ = case
    bucket = {"hour": lambda t: t.replace(minute=0, second=0, microsecond=0),
              "day": lambda t: t.date(),
              "week": lambda t: t.date() - dt.timedelta(days=t.weekday())}[granularity]
    requests, pages = Counter(), defaultdict(list)
    for r in ref.rows:
        requests[bucket(r["received_at"])] += 1
    for r in ref.pages:
        pages[bucket(r["received_at"])].append(r)
    visitors = {b: (len({r["client_id"] for r in p}) if granularity != "week" else ref.visitor_days(p))
                for b, p in pages.items()}
    expected = [{granularity if granularity != "day" else "date": b, "requests": requests[b],
                 "pages": len(pages.get(b, [])), "unique_visitors": visitors.get(b, 0)} for b in sorted(requests)]
    assert stats.traffic(con, flt, granularity=granularity).to_pylist() == expected


def test_top_pages(case):
    flt, ref, reports = case
    by_path = defaultdict(list)
    for r in ref.pages:
        by_path[r["url_path"]].append(r)
    expected = {p: (len(rows), ref.visitor_days(rows)) for p, rows in by_path.items()}
    got = reports["top_pages"].to_pylist()
    assert {g["url_path"]: (g["pages"], g["visitors"]) for g in got} == expected
    assert [g["url_path"] for g in got] == ranked(expected, lambda p: (-expected[p][0], -expected[p][1], p))


@pytest.mark.parametrize("kind", ["entry", "exit"])
def test_entry_and_exit_pages(case, kind):
    flt, ref, reports = case
    expected = Counter(v[kind] for v in ref.visits if v[kind] is not None)
    got = reports[f"{kind}_pages"].to_pylist()
    assert {g["url_path"]: g["visits"] for g in got} == dict(expected)
    assert [g["url_path"] for g in got] == ranked(expected, lambda p: (-expected[p], p))


def test_sessions(case):
    flt, ref, reports = case
    (got,) = reports["sessions"].to_pylist()
    visits = ref.visits
    assert got["visits"] == len(visits)
    if not visits:
        assert got == {"visits": 0, "pages_per_visit": None, "bounce_rate": None, "median_duration_s": None}
        return
    assert got["pages_per_visit"] == pytest.approx(sum(v["pages"] for v in visits) / len(visits))
    assert got["bounce_rate"] == pytest.approx(sum(v["pages"] == 1 for v in visits) / len(visits))
    assert got["median_duration_s"] == pytest.approx(statistics.median(v["duration"] for v in visits))


def test_status_classes_and_error_rate(case):
    flt, ref, reports = case
    classes = Counter(f"{r['status'] // 100}xx" for r in ref.rows)
    got = reports["status_classes"].to_pylist()
    assert [g["status_class"] for g in got] == sorted(classes)
    for g in got:
        assert g["requests"] == classes[g["status_class"]]
        assert g["share"] == pytest.approx(classes[g["status_class"]] / len(ref.rows))
    (rate,) = reports["error_rate"].to_pylist()
    n4 = sum(400 <= r["status"] <= 499 for r in ref.rows)
    n5 = sum(r["status"] >= 500 for r in ref.rows)
    assert rate == pytest.approx({"requests": len(ref.rows), "status_4xx": n4, "status_5xx": n5,
                                  "share_4xx": n4 / len(ref.rows), "share_5xx": n5 / len(ref.rows),
                                  "error_share": (n4 + n5) / len(ref.rows)})


def test_top_failing_paths(case):
    flt, ref, reports = case
    by_path = defaultdict(list)
    for r in ref.rows:
        by_path[r["url_path"]].append(r)
    expected = {}
    for path, rows in by_path.items():
        n4 = sum(400 <= r["status"] <= 499 for r in rows)
        n5 = sum(r["status"] >= 500 for r in rows)
        if n4 + n5:
            expected[path] = {"url_path": path, "failed_requests": n4 + n5, "status_4xx": n4, "status_5xx": n5,
                              "requests": len(rows), "failure_share": pytest.approx((n4 + n5) / len(rows))}
    got = reports["top_failing_paths"].to_pylist()
    assert got == [expected[p] for p in ranked(expected, lambda p: (-expected[p]["failed_requests"], p is None, p or ""))]


def test_latency(case):
    flt, ref, reports = case
    durations = [r["duration_ms"] for r in ref.rows if r["duration_ms"] is not None]
    (got,) = reports["latency"].to_pylist()
    assert got["timed_requests"] == len(durations)
    for q in (50, 90, 95, 99):
        assert got[f"p{q}_ms"] == pytest.approx(np.percentile(durations, q))   # numpy: linear interpolation


def test_latency_by_path(case, con):
    flt, ref, _ = case
    by_path = defaultdict(list)
    for r in ref.rows:
        if r["duration_ms"] is not None:
            by_path[r["url_path"]].append(r["duration_ms"])
    top = ranked(by_path, lambda p: (-len(by_path[p]), p is None, p or ""))[:10]
    got = stats.latency_by_path(con, flt).to_pylist()
    assert [g["url_path"] for g in got] == top
    for g in got:
        assert g["timed_requests"] == len(by_path[g["url_path"]])
        for q in (50, 90, 95, 99):
            assert g[f"p{q}_ms"] == pytest.approx(np.percentile(by_path[g["url_path"]], q))


def test_referrer_hosts(case):
    flt, ref, reports = case
    own = {r["host"].split(":")[0].lower() for r in ref.rows if r["host"] is not None}
    expected = {k: v for k, v in ref.breakdown(lambda r: referrer_host(r["referrer"])).items() if k not in own}
    assert as_breakdown(reports["referrer_hosts"], "referrer_host") == expected
    assert_breakdown_order(reports["referrer_hosts"], "referrer_host")


@pytest.mark.parametrize("report, column", [
    ("browsers", "browser"), ("operating_systems", "os"), ("devices", "device"), ("countries", "country"),
    ("languages", "language")])
def test_audience_breakdowns(case, report, column):
    flt, ref, reports = case
    expected = ref.breakdown(lambda r: r[column] if r[column] is not None else "(unknown)")
    assert as_breakdown(reports[report], column) == expected
    assert_breakdown_order(reports[report], column)


def test_asns(case):
    flt, ref, reports = case
    expected = ref.breakdown(lambda r: r["asn"])
    got = reports["asns"].to_pylist()
    assert {g["asn"]: (g["visitors"], g["pages"]) for g in got} == expected
    names = {r["asn"]: r["as_org"] for r in ref.pages}
    assert all(g["as_org"] == names[g["asn"]] for g in got)


def test_bot_share(case):
    flt, ref, reports = case
    bots = sum(r["is_bot"] is True for r in ref.rows)
    (got,) = reports["bot_share"].to_pylist()
    assert got == {"requests": len(ref.rows), "bot_requests": bots,
                   "share": pytest.approx(bots / len(ref.rows)) if ref.rows else None}


def test_errors_by_level(case):
    flt, ref, reports = case
    levels = Counter(e["level"] or "(unknown)" for e in ref.errors)
    severity = ["emerg", "alert", "crit", "error", "warn", "notice", "info", "debug"]
    order = sorted(levels, key=lambda lv: (severity.index(lv) if lv in severity else 99, lv))
    assert reports["errors_by_level"].to_pylist() == [
        {"level": lv, "entries": levels[lv], "share": pytest.approx(levels[lv] / len(ref.errors))} for lv in order]


def test_error_patterns(case):
    flt, ref, reports = case
    patterns = Counter((error_pattern(e["message"]), e["level"] or "(unknown)") for e in ref.errors)
    got = reports["error_patterns"].to_pylist()
    assert {(g["pattern"], g["level"]): g["entries"] for g in got} == dict(patterns)
    assert [(g["pattern"], g["level"]) for g in got] == ranked(patterns, lambda k: (-patterns[k], *k))


def test_error_patterns_merge_what_differs_only_in_values(data, con):
    got = {g["pattern"] for g in stats.error_patterns(con, top_n=None).to_pylist()}
    assert "open() <str> failed (<n>: No such file or directory)" in got
    assert "worker process <n> exited on signal <n>" in got
    assert "AH01630: client denied by server configuration: <path>" in got
    assert len(got) <= len(MESSAGES) + 1

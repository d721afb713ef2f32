"""The GoAccess-level reports (status codes, 404 paths, hour of day, weekday, virtual hosts, browser
versions, methods, protocols, TLS) against the same counts taken from the rows themselves, and
--min-visitors suppression."""
from __future__ import annotations

from collections import Counter

import pyarrow as pa
import pytest

from accesslog.cli import main
from accesslog.report import build_report
from accesslog.stats import StatsFilter, connect, suppress_small, usage_stats
from tests.conftest import SAMPLE_NOW, vhost_warehouse


@pytest.fixture(scope="module")
def rows(sample_warehouse) -> list[dict]:
    con = connect(sample_warehouse)
    try:
        return con.sql("SELECT date, received_at, status, url_path, client_id, method, protocol, tls_protocol, host "
                       "FROM access").to_arrow_table().to_pylist()
    finally:
        con.close()


@pytest.fixture(scope="module")
def reports(sample_warehouse) -> dict[str, pa.Table]:
    con = connect(sample_warehouse)
    try:
        return usage_stats(con, StatsFilter(), ["status_codes", "not_found", "hours_of_day", "weekdays",
                                               "virtual_hosts", "browser_versions", "browsers", "methods",
                                               "protocols", "tls_protocols"], top_n=1000)
    finally:
        con.close()


def as_dict(table: pa.Table, key: str, value: str = "requests") -> dict:
    return dict(zip(table[key].to_pylist(), table[value].to_pylist()))


def test_status_codes(rows, reports):
    assert as_dict(reports["status_codes"], "status") == Counter(r["status"] for r in rows)
    assert abs(sum(reports["status_codes"]["share"].to_pylist()) - 1) < 1e-9


def test_not_found_paths(rows, reports):
    expected = Counter(r["url_path"] for r in rows if r["status"] == 404)
    assert expected and as_dict(reports["not_found"], "url_path") == expected
    clients = {p: len({(r["date"], r["client_id"]) for r in rows if r["status"] == 404 and r["url_path"] == p})
               for p in expected}
    assert as_dict(reports["not_found"], "url_path", "client_days") == clients


def test_hours_of_day_and_weekdays(rows, reports):
    assert as_dict(reports["hours_of_day"], "hour_utc") == Counter(r["received_at"].hour for r in rows)
    assert as_dict(reports["weekdays"], "weekday") == Counter(r["date"].strftime("%A") for r in rows)
    order = reports["weekdays"]["weekday"].to_pylist()
    days = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
    assert order == [d for d in days if d in order]                   # Monday first


def test_methods_protocols_and_tls(rows, reports):
    assert as_dict(reports["methods"], "method") == Counter(r["method"] or "(none)" for r in rows)
    assert as_dict(reports["protocols"], "protocol") == Counter(r["protocol"] or "(none)" for r in rows)
    assert as_dict(reports["tls_protocols"], "tls_protocol") == Counter(r["tls_protocol"] or "(none)" for r in rows)


def test_browser_versions_refine_the_browsers(reports):
    families = as_dict(reports["browsers"], "browser", "pages")
    by_family: Counter = Counter()
    for name, pages in as_dict(reports["browser_versions"], "browser_version", "pages").items():
        family = next(f for f in sorted(families, key=len, reverse=True) if name == f or name.startswith(f + " "))
        by_family[family] += pages
    assert by_family == Counter(families)                             # versions split each family's pages
    assert any(name.split()[-1].isdigit() for name in reports["browser_versions"]["browser_version"].to_pylist())


def test_virtual_hosts_rank_the_hosts(tmp_path):
    con = connect(vhost_warehouse(tmp_path, ["b.example", "a.example", "a.example"]))
    try:
        table = usage_stats(con, StatsFilter(), ["virtual_hosts"])["virtual_hosts"]
    finally:
        con.close()
    assert table.select(["host", "requests"]).to_pylist() == [{"host": "a.example", "requests": 2},
                                                              {"host": "b.example", "requests": 1}]


def test_suppress_small_merges_the_rare_rows():
    table = pa.table({"url_path": ["/", "/a", "/rare", "/rarer"], "pages": [50, 9, 3, 1], "visitors": [40, 5, 2, 1]})
    out = suppress_small(table, 5).to_pylist()
    assert out == [{"url_path": "/", "pages": 50, "visitors": 40}, {"url_path": "/a", "pages": 9, "visitors": 5},
                   {"url_path": "(fewer than 5 visitors)", "pages": 4, "visitors": 3}]
    assert suppress_small(table, 1) == table
    asns = pa.table({"asn": pa.array([1, 2], pa.int64()), "as_org": ["Big", "Small"], "visitors": [9, 1],
                     "pages": [9, 1]})
    assert suppress_small(asns, 2).to_pylist()[-1] == {"asn": None, "as_org": "(fewer than 2 visitors)",
                                                       "visitors": 1, "pages": 1}


def test_min_visitors_leaves_no_rare_row_in_stats_or_the_page(sample_warehouse, capsys):
    assert main(["stats", "--warehouse", str(sample_warehouse), "--json", "--top", "50", "--min-visitors", "3",
                 "--report", "top_pages,referrer_hosts,browsers,browser_versions,countries,not_found"]) == 0
    import json
    data = json.loads(capsys.readouterr().out)
    merged = 0
    for name, table in data.items():
        for row in table:
            seen = row.get("visitors", row.get("client_days"))
            label = next(v for v in row.values() if isinstance(v, str))
            if label == "(fewer than 3 visitors)":
                merged += 1
            else:
                assert seen >= 3, (name, row)
    assert merged                                                    # the samples do have rare paths
    page = build_report(sample_warehouse, min_visitors=3)
    assert 'id="min-visitors"' in page and "fewer than 3 distinct visitors" in page
    assert 'id="min-visitors"' not in build_report(sample_warehouse)
    assert main(["stats", "--warehouse", str(sample_warehouse), "--min-visitors", "0"]) == 2


# -- channels, referrer URLs, campaigns, static files, cache and MIME, path rules ---------------------

FORMAT = ('$host $remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" '
          '"$http_user_agent" $upstream_cache_status "$sent_http_content_type"')
UA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36"
LINES = [  # (path, referrer, cache, mime)
    ("/", "-", "HIT", "text/html; charset=utf-8"),
    ("/", "https://www.google.com/search?q=hats", "MISS", "text/html"),
    ("/about", "https://news.google.de/x", "HIT", "text/html"),
    ("/about", "https://l.facebook.com/l.php?u=x", "-", "text/html"),
    ("/shop?utm_source=news%20letter&utm_medium=email&utm_campaign=winter", "https://mail.google.com/mail/u/0/",
     "BYPASS", "text/html"),
    ("/shop?utm_source=news+letter&utm_medium=email&utm_campaign=winter", "https://shop.example/cart", "HIT",
     "text/html"),
    ("/api/v1/cart", "https://shop.example/shop", "-", "application/json"),
    ("/api/v1/cart", "https://shop.example/shop", "-", "application/json"),
    ("/healthz", "-", "-", "text/plain"),
    ("/healthz", "-", "-", "text/plain"),
    ("/static/app.js", "https://shop.example/", "HIT", "application/javascript"),
    ("/blog/", "https://blog.other.example/post", "-", "text/html"),
]


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    root = tmp_path_factory.mktemp("shop")
    log = root / "access.log"
    log.write_text("".join(
        f'shop.example 198.51.100.{i} - - [20/Nov/2026:10:{i:02d}:00 +0000] "GET {path} HTTP/2.0" 200 100 '
        f'"{ref}" "{UA}" {cache} "{mime}"\n' for i, (path, ref, cache, mime) in enumerate(LINES)), encoding="utf-8")
    assert main(["run", str(log), "--log-format", FORMAT, "--warehouse", str(root / "wh"), "--keys", str(root / "k"),
                 "--now", SAMPLE_NOW]) == 0
    return root / "wh"


def run_reports(warehouse, names, **flt):
    con = connect(warehouse)
    try:
        return usage_stats(con, StatsFilter(**flt), names, top_n=100)
    finally:
        con.close()


def test_channels_from_the_shipped_list(shop):
    got = as_dict(run_reports(shop, ["channels"])["channels"], "channel", "pages")
    # pages: '/', '/about' x2, '/shop' x2, '/api' x2 and '/blog/' (the asset and health checks are pages too:
    # no rule says otherwise; /static/app.js is an asset)
    assert got == {"direct": 3, "search": 2, "social": 1, "email": 1, "internal": 3, "other": 1}


def test_site_hosts_make_a_hostless_sites_own_referrers_internal(shop):
    """A log format without $host cannot tell the site's own referrers: --site-host names them."""
    plain = run_reports(shop, ["channels", "referrer_hosts", "referrer_urls"])
    told = run_reports(shop, ["channels", "referrer_hosts", "referrer_urls"], site_hosts=("Blog.Other.Example:443",))
    channels, before = as_dict(told["channels"], "channel", "pages"), as_dict(plain["channels"], "channel", "pages")
    assert before["other"] == 1   # blog.other.example, the only "other" referrer
    assert channels == {**{k: v for k, v in before.items() if k != "other"}, "internal": before["internal"] + 1}
    assert "blog.other.example" in as_dict(plain["referrer_hosts"], "referrer_host", "visitors")
    assert "blog.other.example" not in as_dict(told["referrer_hosts"], "referrer_host", "visitors")
    assert not [u for u in as_dict(told["referrer_urls"], "referrer") if "blog.other.example" in u]


def test_referrer_urls_leave_the_site_out(shop):
    urls = as_dict(run_reports(shop, ["referrer_urls"])["referrer_urls"], "referrer")
    assert "https://www.google.com/search?q=hats" in urls and "https://blog.other.example/post" in urls
    assert not any("shop.example" in u for u in urls)


def test_campaigns_keep_utm_through_scrubbing(shop):
    table = run_reports(shop, ["campaigns"])["campaigns"]
    assert table.select(["utm_source", "utm_medium", "utm_campaign", "requests"]).to_pylist() == [
        {"utm_source": "news letter", "utm_medium": "email", "utm_campaign": "winter", "requests": 2}]


def test_static_files_cache_and_mime(shop):
    got = run_reports(shop, ["static_files", "cache_statuses", "mime_types"])
    assert as_dict(got["static_files"], "url_path") == {"/static/app.js": 1}
    assert as_dict(got["cache_statuses"], "cache_status") == {"HIT": 4, "MISS": 1, "BYPASS": 1, "(none)": 6}
    assert as_dict(got["mime_types"], "mime_type") == {"text/html": 7, "application/json": 2, "text/plain": 2,
                                                       "application/javascript": 1}


def test_exclude_path_and_not_page(shop):
    plain = run_reports(shop, ["totals", "top_pages"])
    assert as_dict(plain["top_pages"], "url_path", "pages")["/api/v1/cart"] == 2
    ruled = run_reports(shop, ["totals", "top_pages", "status_codes"], exclude_paths=("/healthz",),
                        not_pages=("/api/*",))
    assert ruled["totals"]["requests"][0].as_py() == plain["totals"]["requests"][0].as_py() - 2   # health checks gone
    assert ruled["totals"]["pages"][0].as_py() == plain["totals"]["pages"][0].as_py() - 4        # ... and API calls
    assert "/api/v1/cart" not in as_dict(ruled["top_pages"], "url_path", "pages")
    assert "/healthz" not in as_dict(ruled["top_pages"], "url_path", "pages")
    assert sum(as_dict(ruled["status_codes"], "status").values()) == len(LINES) - 2

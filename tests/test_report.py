"""accesslog.report: the static HTML usage report, checked as markup and in a real browser.

The sample warehouse comes from the real pipeline over the bundled samples (conftest). The
browser tests run Debian's headless chromium on the file: a screenshot that must show the
charts' colours, and the DOM chromium built, which must hold the same chart marks.
"""
from __future__ import annotations

import argparse
import base64
import datetime as dt
import hashlib
import os
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from accesslog.charts import PALETTE
from accesslog.cli.query import register_report as register
from accesslog.report import (
    CHART_ROWS,
    CSS,
    HEADER_REPORTS,
    PAGE_TOP,
    REPORT_NAMES,
    SCRIPT,
    SECTIONS,
    build_report,
    content_security_policy,
)
from accesslog.stats import REPORTS, StatsFilter, connect, usage_stats
from schemas.errors import AccesslogError
from tests.conftest import build_warehouse

EVIL_PATH = "/<script>alert(1)</script>"
# nginx writes a `"` inside a field as \x22; the pipeline decodes it back.
EVIL_ACCESS_LOG = r"""198.51.100.7 - - [20/Nov/2026:10:00:00 +0100] "GET /<script>alert(1)</script> HTTP/1.1" 200 512 "https://evil.example/\x22><img src=x onerror=alert(2)>" "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0" 0.010 0.010
198.51.100.7 - - [20/Nov/2026:10:00:05 +0100] "GET /a\x22b'c&d<e>f HTTP/1.1" 200 512 "http://a\x22><svg/onload=alert(3)>/" "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0" 0.020 0.020
198.51.100.8 - - [20/Nov/2026:10:00:09 +0100] "GET /x?utm_source=%3Cscript%3Ealert(5)%3C/script%3E&utm_campaign=\x22><img/src=x/onerror=alert(6)> HTTP/1.1" 404 9 "javascript:alert(7)//<b>x</b>" "<script>alert(8)</script> Mozilla/5.0 (Windows NT 10.0) Chrome/126.0.0.0 <img src=x onerror=alert(9)>" 0.030 0.030
"""
EVIL_ERROR_LOG = """2026/11/20 10:00:01 [error] 12#12: *7 open() "/srv/<script>alert(4)</script>" failed (2: No such file or directory), client: 198.51.100.7, server: shop, request: "GET /<script>alert(1)</script> HTTP/1.1", host: "shop"
2026/11/20 10:00:02 [warn] 12#12: *8 an upstream response is buffered to a temporary file <b>bold</b>
"""
RESOURCE_ATTRIBUTES = {"src", "href", "xlink:href", "srcset", "action", "formaction", "poster", "data", "background",
                       "manifest", "ping", "cite", "longdesc", "usemap"}


class Markup(HTMLParser):
    """Elements of a page as (tag, attributes) in document order, plus figure captions."""

    def __init__(self, page: str) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict[str, str | None]]] = []
        self.captions: list[str] = []
        self._in_caption = False
        self.feed(page)
        self.close()

    def handle_starttag(self, tag, attrs):
        self.elements.append((tag, dict(attrs)))
        self._in_caption = self._in_caption or tag == "figcaption"
        if tag == "figcaption":
            self.captions.append("")

    def handle_endtag(self, tag):
        if tag == "figcaption":
            self._in_caption = False

    def handle_data(self, data):
        if self._in_caption:
            self.captions[-1] += data

    def marks(self, series: str, tag: str = "rect") -> list[tuple[str, float]]:
        """(data-label, data-value) of every chart mark of `series`."""
        return [(a["data-label"], float(a["data-value"])) for t, a in self.elements
                if t == tag and a.get("data-series") == series]

    def tags(self, tag: str) -> list[dict]:
        return [a for t, a in self.elements if t == tag]


@pytest.fixture(scope="module")
def sample_stats(sample_warehouse):
    con = connect(sample_warehouse)
    try:
        return usage_stats(con, StatsFilter(), REPORT_NAMES, top_n=PAGE_TOP)
    finally:
        con.close()


@pytest.fixture(scope="module")
def sample_page(sample_warehouse) -> str:
    return build_report(sample_warehouse)


@pytest.fixture(scope="module")
def evil_warehouse(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("evil")
    (root / "access.log").write_text(EVIL_ACCESS_LOG, encoding="utf-8")
    (root / "error.log").write_text(EVIL_ERROR_LOG, encoding="utf-8")
    build_warehouse(root, [str(root / "error.log")], log_format="nginx_error")
    return build_warehouse(root, [str(root / "access.log")])


# -- the page against the statistics -------------------------------------------------------

def test_chart_marks_match_the_statistics(sample_page, sample_stats):
    page = Markup(sample_page)
    traffic = sample_stats["traffic"].to_pylist()
    assert len(traffic) == 6
    assert page.marks("requests", "circle") == [(r["date"].isoformat(), r["requests"]) for r in traffic]
    assert page.marks("unique visitors", "circle") == [(r["date"].isoformat(), r["unique_visitors"]) for r in traffic]
    assert page.marks("status_classes") == [(r["status_class"], r["requests"])
                                            for r in sample_stats["status_classes"].to_pylist()]
    latency = sample_stats["latency"].to_pylist()[0]
    assert page.marks("latency") == [(p, latency[f"{p}_ms"]) for p in ("p50", "p90", "p95", "p99")]
    for series, label, value in [("top_pages", "url_path", "pages"), ("browsers", "browser", "visitors"),
                                 ("devices", "device", "visitors"), ("countries", "country", "visitors"),
                                 ("referrer_hosts", "referrer_host", "visitors"), ("channels", "channel", "visitors"),
                                 ("operating_systems", "os", "visitors"), ("weekdays", "weekday", "requests"),
                                 ("not_found", "url_path", "requests")]:
        rows = sample_stats[series].to_pylist()
        assert rows, series
        assert page.marks(series) == [(r[label], r[value]) for r in rows[:CHART_ROWS]], series
    hours = {r["hour_utc"]: r["requests"] for r in sample_stats["hours_of_day"].to_pylist()}
    assert page.marks("hours_of_day") == [(f"{h:02d}", hours.get(h, 0)) for h in range(24)]


def test_traffic_chart_gives_visitors_their_own_axis(sample_page, sample_stats):
    """Visitors are ~10 % of requests: on the requests axis they were a flat line at the bottom."""
    page = Markup(sample_page)
    visitors = [a for a in page.tags("circle") if a.get("data-series") == "unique visitors"]
    requests = [a for a in page.tags("circle") if a.get("data-series") == "requests"]
    assert {a["data-axis"] for a in visitors} == {"right"} and {a["data-axis"] for a in requests} == {"left"}
    svg = next(a for a in page.tags("svg") if "unique visitors" in a["aria-label"])
    height = float(svg["height"])
    for marks in (visitors, requests):   # each series spans most of the plot's height, its top near the top
        heights = [float(a["cy"]) for a in marks]
        assert max(heights) - min(heights) > 0.2 * height
        assert min(heights) < 0.35 * height
    assert "visitors per day" in sample_page and "requests per day" in sample_page


def test_every_report_has_a_panel(sample_page, sample_stats):
    page = Markup(sample_page)
    panels = [a["id"] for t, a in page.elements if t == "details"]
    assert panels == [name for _, _, names in SECTIONS for name in names]
    assert set(panels) | set(HEADER_REPORTS) == set(REPORTS) and len(panels) == len(set(panels))
    assert all(a.get("class") == "panel" for a in page.tags("details"))
    # every report with rows shows them all (up to --top) in a table the script can sort and filter
    tables = {a["data-report"]: a for a in page.tags("table")}
    for name in panels:
        rows = sample_stats[name].num_rows
        if name in ("sessions", "latency"):
            continue
        assert (name in tables) == (rows > 0), name
    assert sample_page.count('data-report="top_pages"') == 1
    top_rows = sample_page.split('data-report="top_pages"', 1)[1].split("</table>", 1)[0].count("<tr>") - 1
    assert top_rows == sample_stats["top_pages"].num_rows == PAGE_TOP
    assert all(a.get("data-type") in ("num", "text") for a in page.tags("th"))
    totals = sample_stats["totals"].to_pylist()[0]
    assert "Period: <strong>2026-11-17 to 2026-11-22 (UTC days)</strong>" in sample_page
    assert f"<dd>{totals['requests']:,}</dd>" in sample_page and f"<dd>{totals['pages']:,}</dd>" in sample_page
    assert page.tags("svg") and all(svg.get("role") == "img" and svg.get("aria-label") for svg in page.tags("svg"))
    sessions = sample_stats["sessions"].to_pylist()[0]
    assert f"<dd>{sessions['visits']:,}</dd>" in sample_page
    assert "No error-log entries." in sample_page  # the samples hold no error log
    # shares read as percentages, raw values stay in data-v for sorting
    share = sample_stats["status_codes"].column("share")[0].as_py()
    assert f'data-v="{share}">{share:.1%}</td>' in sample_page


def test_filter_narrows_the_page(sample_warehouse):
    day = dt.date(2026, 11, 20)
    page = build_report(sample_warehouse, StatsFilter(date_from=day, date_to=day), title="One day")
    assert [label for label, _ in Markup(page).marks("requests", "circle")] == ["2026-11-20"]
    assert "Period: <strong>2026-11-20 to 2026-11-20 (UTC days)</strong>" in page
    assert "<title>One day</title>" in page


def test_no_external_resources(sample_page):
    page = Markup(sample_page)
    scripts = page.tags("script")
    assert len(scripts) == 1 and not scripts[0]   # the page's own script, inline, no attributes
    for tag, attrs in page.elements:
        assert tag not in {"link", "img", "iframe", "object", "embed", "image", "use", "base", "form"}, tag
        for name, value in attrs.items():
            if tag == "a" and name == "href":
                assert value.startswith("#"), value   # the section links stay on the page
                continue
            assert name not in RESOURCE_ATTRIBUTES, (tag, name, value)
            assert not name.startswith("on"), (tag, name)
            assert name != "style", tag   # the policy allows no style attribute
    lowered = sample_page.lower()
    assert "url(" not in lowered and "@import" not in lowered and "@font-face" not in lowered
    assert "http:" not in (CSS + SCRIPT).lower() and "https:" not in (CSS + SCRIPT).lower()
    # URLs on the page are referrer URLs, as table text: never in an attribute
    assert not [value for _, attrs in page.elements for value in attrs.values() if value and "//" in value]
    csp = [a["content"] for a in page.tags("meta") if a.get("http-equiv") == "Content-Security-Policy"]
    assert csp == [content_security_policy()]
    assert "default-src 'none'" in csp[0] and "unsafe" not in csp[0] and "connect-src 'none'" in csp[0]
    digest = base64.b64encode(hashlib.sha256(SCRIPT.encode()).digest()).decode()
    assert f"script-src 'sha256-{digest}'" in csp[0] and f"<script>{SCRIPT}</script>" in sample_page


# -- hostile values --------------------------------------------------------------------------

def test_user_values_are_escaped(evil_warehouse):
    page_text = build_report(evil_warehouse, title="<script>alert('title')</script>")
    page = Markup(page_text)
    markup = page_text.replace(f"<script>{SCRIPT}</script>", "")   # the page's own script, once
    assert "<script" not in markup and "<img" not in markup and "<svg/" not in markup and "<b>" not in markup
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page_text
    assert [t for t, _ in page.elements if t in {"script", "img", "b"}] == ["script"]
    assert not [name for _, attrs in page.elements for name in attrs if name.startswith("on")]
    # the values come back intact from the attributes: escaped, not mangled
    assert (EVIL_PATH, 1.0) in page.marks("top_pages")
    assert ("/a\"b'c&d<e>f", 1.0) in page.marks("top_pages")
    assert any(label.startswith('a"><svg') for label, _ in page.marks("referrer_hosts"))
    assert [label for label, _ in page.marks("errors_by_level")] == ["error", "warn"]
    # error patterns: the message's markup and the pattern's own <str> placeholders are text
    assert "temporary file &lt;b&gt;bold&lt;/b&gt;</td>" in page_text and "open() &lt;str&gt; failed" in page_text
    assert "javascript:" not in page_text.lower() or "javascript:alert(7)//&lt;b&gt;" in page_text


def test_empty_warehouse_says_so(tmp_path):
    (tmp_path / "_runs").mkdir()   # a warehouse whose runs wrote nothing (all expired, say)
    page_text = build_report(tmp_path)
    page = Markup(page_text)
    assert [a for t, a in page.elements if a.get("id") == "no-data"]
    assert "No data" in page_text and not page.tags("svg") and not page.tags("details")


def test_missing_warehouse_is_a_user_error(tmp_path):
    with pytest.raises(AccesslogError, match="not found"):
        build_report(tmp_path / "nowhere")
    with pytest.raises(AccesslogError, match="is no accesslog warehouse"):
        build_report(tmp_path)   # a folder, but not one `accesslog run` wrote


# -- the command ---------------------------------------------------------------------------------

def run_command(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="accesslog")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def test_command_writes_the_page(sample_warehouse, tmp_path, capsys):
    out = tmp_path / "report.html"
    assert run_command(["report", "--warehouse", str(sample_warehouse), "-o", str(out), "--from", "2026-11-21",
                        "--title", "Weekend"]) == 0
    page = out.read_text(encoding="utf-8")
    assert "<title>Weekend</title>" in page and "2026-11-21 to 2026-11-22" in page
    assert str(out) in capsys.readouterr().out
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]  # no temp file left behind


def test_command_user_errors(sample_warehouse, tmp_path):
    with pytest.raises(AccesslogError, match="does not exist"):
        run_command(["report", "--warehouse", str(sample_warehouse), "-o", str(tmp_path / "no" / "r.html")])
    with pytest.raises(AccesslogError, match="swap"):
        run_command(["report", "--warehouse", str(sample_warehouse), "-o", str(tmp_path / "r.html"),
                     "--from", "2026-11-22", "--to", "2026-11-20"])
    with pytest.raises(SystemExit):
        run_command(["report", "--warehouse", str(sample_warehouse), "-o", "x.html", "--from", "someday"])


def test_accesslog_report_command(sample_warehouse, tmp_path, capsys):
    from accesslog.cli import main

    out = tmp_path / "report.html"
    assert main(["report", "--warehouse", str(sample_warehouse), "-o", str(out), "--host", "nowhere.example"]) == 0
    assert 'id="no-data"' in out.read_text(encoding="utf-8")  # no request has that host
    assert "no requests for host 'nowhere.example'" in capsys.readouterr().err   # ... and the terminal says so
    assert main(["report", "--warehouse", str(tmp_path / "missing"), "-o", str(out)]) == 2
    assert capsys.readouterr().err.count("\n") == 1  # one line saying how to fix it


# -- in a real browser -----------------------------------------------------------------------------

def find_chromium() -> str | None:
    return next((found for name in ("/usr/bin/chromium", "chromium", "chromium-browser")
                 if (found := shutil.which(name))), None)


def chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    """Headless chromium with everything that could reach the network switched off."""
    binary = find_chromium()
    if binary is None:
        pytest.skip("chromium is not installed (Debian: apt-get install chromium; .ci/run does this)")
    profile = tmp_path / "chromium-profile"
    command = [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               "--disable-dev-shm-usage", f"--user-data-dir={profile}", *args]
    env = {**os.environ, "HOME": str(tmp_path)}  # chromium writes caches and crash dumps under HOME
    return subprocess.run(command, capture_output=True, text=True, timeout=120, env=env, check=False)


@pytest.fixture(scope="module")
def sample_file(sample_page, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("report") / "report.html"
    path.write_text(sample_page, encoding="utf-8")
    return path


def test_browser_screenshot_shows_the_charts(sample_file, tmp_path, record_property):
    from PIL import Image

    shot = tmp_path / "report.png"
    done = chromium(tmp_path, f"--screenshot={shot}", "--window-size=1280,2400", sample_file.as_uri())
    assert shot.is_file(), f"no screenshot; chromium exited {done.returncode}: {done.stderr[-2000:]}"
    print(f"\nreport screenshot: {shot}")
    record_property("screenshot", str(shot))
    with Image.open(shot) as image:
        assert image.size == (1280, 2400)
        colours = image.convert("RGB").getcolors(maxcolors=1 << 20)
    assert colours is not None and len(colours) > 16, "the screenshot is (nearly) blank"
    seen = {rgb for _, rgb in colours}
    for expected in (PALETTE[0], PALETTE[1]):  # both traffic lines and the hour bars (first screen) were painted
        assert tuple(int(expected[i:i + 2], 16) for i in (1, 3, 5)) in seen, expected


def test_browser_dom_holds_the_charts(sample_file, sample_page, tmp_path):
    done = chromium(tmp_path, "--dump-dom", sample_file.as_uri())
    assert done.returncode == 0 and "<html" in done.stdout, done.stderr[-2000:]
    dom, source = Markup(done.stdout), Markup(sample_page)
    assert len(dom.tags("svg")) == len(source.tags("svg")) >= 12
    assert len(dom.tags("details")) == len(source.tags("details"))
    for series in ("status_classes", "latency", "top_pages", "browsers", "devices", "countries", "referrer_hosts",
                   "hours_of_day", "channels"):
        assert dom.marks(series) == source.marks(series) and dom.marks(series), series
    assert dom.marks("requests", "circle") == source.marks("requests", "circle")
    assert len(dom.tags("polyline")) == 2
    # the script ran under the page's policy: each table got its filter box
    assert len([a for a in dom.tags("input") if a.get("class") == "filter"]) == len(source.tags("table"))

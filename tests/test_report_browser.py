"""The report page in real headless Chromium (Debian's, driven by Playwright): sorting, filtering,
panels, hostile values, and `accesslog serve` updating an open page when a run commits.

Every test watches what the page does: the requests it makes, Content-Security-Policy violations
(reported by a listener Playwright adds before the page's own script), script errors and dialogs
(an `alert` from a log line would be one). Without chromium or Playwright the tests skip, saying
why; .ci/run installs both and sets ACCESSLOG_REQUIRE_BROWSER, which turns a skip into a failure.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from accesslog.report import build_report
from tests.conftest import ROOT, SAMPLE_NOW, build_warehouse
from tests.test_report import EVIL_PATH, find_chromium

FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
LIVE_PATH = "/live/<script>alert(10)</script>"
TOKEN = "browser-test-token-0123456789"
WATCH = """
window.__violations = [];
document.addEventListener("securitypolicyviolation",
  e => window.__violations.push(e.violatedDirective + " " + e.blockedURI));
"""


def unavailable(reason: str):
    if os.environ.get("ACCESSLOG_REQUIRE_BROWSER"):
        pytest.fail(f"{reason} (ACCESSLOG_REQUIRE_BROWSER is set)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("playwright is not installed (pip install -e '.[test]')")
    binary = find_chromium()
    if binary is None:
        unavailable("chromium is not installed (Debian: apt-get install chromium; .ci/run does this)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=binary,
            args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"])
        yield browser
        browser.close()


@dataclass
class Watched:
    page: object
    requests: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)

    def violations(self) -> list[str]:
        return self.page.evaluate("window.__violations")

    def assert_quiet(self) -> None:
        """Nothing ran that should not, nothing was blocked, nothing broke."""
        assert self.dialogs == [], self.dialogs
        assert self.violations() == []
        assert self.errors == []


@pytest.fixture()
def open_page(browser):
    contexts = []

    def opener(url: str) -> Watched:
        context = browser.new_context(viewport={"width": 1320, "height": 1000})
        contexts.append(context)
        page = context.new_page()
        page.add_init_script(WATCH)
        watched = Watched(page)
        page.on("request", lambda request: watched.requests.append(request.url))
        page.on("pageerror", lambda error: watched.errors.append(str(error)))
        page.on("console", lambda m: watched.errors.append(m.text) if m.type == "error" else None)
        page.on("dialog", lambda dialog: (watched.dialogs.append(dialog.message), dialog.dismiss()))
        page.goto(url)
        return watched

    yield opener
    for context in contexts:
        context.close()


@pytest.fixture(scope="module")
def sample_file(sample_warehouse, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("page") / "report.html"
    path.write_text(build_report(sample_warehouse), encoding="utf-8")
    return path


def wait_for(condition, seconds: float) -> None:
    """Poll from Python: the page's policy forbids the eval that Playwright's wait_for_function needs."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"not true after {seconds} s"
        time.sleep(0.1)


def column(page, report: str, index: int) -> list:
    """The values of a table's column in DOM order: data-v (numbers) or the text."""
    return page.evaluate("""([report, index]) => Array.from(
        document.querySelector(`table[data-report="${report}"]`).tBodies[0].rows).map(row => {
            const cell = row.cells[index];
            return cell.hasAttribute("data-v") ? Number(cell.getAttribute("data-v")) : cell.textContent; })""",
                         [report, index])


def visible_rows(page, report: str) -> list[str]:
    return page.locator(f'table[data-report="{report}"] tbody tr:visible').all_inner_texts()


def sort_button(page, report: str, index: int):
    return page.locator(f'table[data-report="{report}"] thead th').nth(index).locator("button.sort")


def test_static_page_runs_its_script_and_loads_nothing(open_page, sample_file):
    watched = open_page(sample_file.as_uri())
    page = watched.page
    assert watched.requests == [sample_file.as_uri()]
    tables = page.locator("table.data").count()
    assert tables > 20 and page.locator("input.filter").count() == tables   # the hashed script ran
    assert len(visible_rows(page, "top_pages")) == 10 and page.locator('table[data-report="top_pages"] tbody tr').count() == 50
    watched.assert_quiet()


def test_sorting(open_page, sample_file):
    watched = open_page(sample_file.as_uri())
    page = watched.page
    header = page.locator('table[data-report="top_pages"] thead th').nth(2)
    assert header.inner_text().startswith("visitors")
    sort_button(page, "top_pages", 2).click()
    visitors = column(page, "top_pages", 2)
    assert visitors == sorted(visitors, reverse=True) and header.get_attribute("aria-sort") == "descending"
    shown = [int(row.split("\t")[2].replace(",", "")) for row in visible_rows(page, "top_pages")]
    assert shown == visitors[:10]   # the ten rows shown are the ten largest
    sort_button(page, "top_pages", 2).click()
    visitors = column(page, "top_pages", 2)
    assert visitors == sorted(visitors) and header.get_attribute("aria-sort") == "ascending"
    sort_button(page, "top_pages", 0).click()
    paths = column(page, "top_pages", 0)
    assert paths == sorted(paths, key=str.lower) and header.get_attribute("aria-sort") is None
    # numbers sort as numbers, not as their text ("1,234" after "999")
    sort_button(page, "status_codes", 1).click()
    requests = column(page, "status_codes", 1)
    assert requests == sorted(requests, reverse=True) and len(set(requests)) > 3
    watched.assert_quiet()


def test_filtering(open_page, sample_file):
    watched = open_page(sample_file.as_uri())
    page = watched.page
    paths = column(page, "top_pages", 0)
    wanted = paths[30]                  # beyond the first ten: hidden until filtered
    query = wanted[len(wanted) // 3:]
    box = page.locator('table[data-report="top_pages"]').locator("xpath=preceding-sibling::div[1]//input")
    box.fill(query.upper())             # case-insensitive
    rows = visible_rows(page, "top_pages")
    expected = [p for p in paths if query.lower() in p.lower()]
    assert [row.split("\t")[0] for row in rows] == expected[:10] and wanted in "\n".join(rows)
    count = page.locator('table[data-report="top_pages"]').locator("xpath=preceding-sibling::div[1]//span")
    assert count.inner_text() == f"{min(len(expected), 10)} of 50 rows ({len(expected)} match)"
    box.fill("no such path at all")
    assert visible_rows(page, "top_pages") == [] and "0 of 50 rows" in count.inner_text()
    box.fill("")
    assert len(visible_rows(page, "top_pages")) == 10
    watched.assert_quiet()


def test_panels_expand_and_show_all_rows(open_page, sample_file):
    watched = open_page(sample_file.as_uri())
    page = watched.page
    methods = page.locator('table[data-report="methods"]')
    assert not methods.is_visible()      # a closed panel
    page.locator("details#methods > summary").click()
    assert methods.is_visible() and page.locator("details#methods").evaluate("d => d.open")
    page.locator("details#top_pages > summary").click()
    assert not page.locator('table[data-report="top_pages"]').is_visible()
    page.locator("details#top_pages > summary").click()
    more = page.locator('table[data-report="top_pages"]').locator("xpath=preceding-sibling::div[1]//button")
    assert more.inner_text() == "Show all 50"
    more.click()
    assert len(visible_rows(page, "top_pages")) == 50 and more.inner_text() == "Show the first 10"
    more.click()
    assert len(visible_rows(page, "top_pages")) == 10
    page.locator('nav a[href="#errors-section"]').click()   # the section links stay on the page
    assert page.url.endswith("#errors-section") and watched.requests == [sample_file.as_uri()]
    watched.assert_quiet()


def test_hostile_values_are_inert(open_page, tmp_path):
    from tests.test_report import EVIL_ACCESS_LOG, EVIL_ERROR_LOG

    (tmp_path / "access.log").write_text(EVIL_ACCESS_LOG, encoding="utf-8")
    (tmp_path / "error.log").write_text(EVIL_ERROR_LOG, encoding="utf-8")
    build_warehouse(tmp_path, [str(tmp_path / "error.log")], log_format="nginx_error")
    warehouse = build_warehouse(tmp_path, [str(tmp_path / "access.log")])
    file = tmp_path / "evil.html"
    file.write_text(build_report(warehouse, title="<img src=x onerror=alert(0)>"), encoding="utf-8")
    watched = open_page(file.as_uri())
    page = watched.page
    for name in ("referrer_urls", "campaigns", "methods", "browser_versions", "error_patterns"):
        page.locator(f"details#{name} > summary").click()   # open every panel that shows the hostile values
    assert page.evaluate("document.querySelectorAll('script').length") == 1
    assert page.evaluate("document.querySelectorAll('img, iframe, object, embed, b').length") == 0
    assert page.locator("td", has_text=EVIL_PATH).count() >= 1          # shown as text
    assert page.locator("td", has_text="javascript:alert(7)//<b>x</b>").count() == 1
    assert page.title() == "<img src=x onerror=alert(0)>"
    box = page.locator("input.filter").first
    box.fill("<img src=x onerror=alert(11)>")                           # typed markup stays text too
    sort_button(page, "top_pages", 0).click()
    assert page.evaluate("document.querySelectorAll('img').length") == 0
    assert watched.requests == [file.as_uri()]
    watched.assert_quiet()


def test_serve_updates_an_open_page_when_a_run_commits(open_page, tmp_path):
    from accesslog.cli import main

    def log_lines(day: int, requests: list[tuple[str, str]]) -> str:
        return "".join(f'{host}:443 192.0.2.{i} - - [{day}/Nov/2026:09:00:{i:02d} +0000] "GET {path} HTTP/1.1" 200 5 '
                       f'"-" "{FIREFOX}"\n' for i, (host, path) in enumerate(requests))

    (tmp_path / "first.log").write_text(log_lines(20, [("shop.example", "/")] * 3 + [("blog.example", "/")] * 2))
    warehouse = build_warehouse(tmp_path, [str(tmp_path / "first.log")], "vhost_combined")
    env = {**os.environ, "ACCESSLOG_SERVE_TOKEN": TOKEN}
    server = subprocess.Popen([sys.executable, "-m", "accesslog", "serve", "--warehouse", str(warehouse),
                               "--port", "0", "--refresh", "0.5"], cwd=ROOT, env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        line = server.stdout.readline()
        assert " at http://127.0.0.1:" in line, server.stderr.read()
        origin = line.split(" at ", 1)[1].split("/;", 1)[0].split("/ ", 1)[0].rstrip("/")
        watched = open_page(f"{origin}/?host=shop.example&from=2026-11-20&token={TOKEN}")
        page = watched.page
        assert page.url == f"{origin}/?host=shop.example&from=2026-11-20"   # the token left the URL
        assert "host shop.example" in page.locator("#period").inner_text()
        assert page.locator("#totals dd").first.inner_text() == "3"
        page.evaluate("window.__same_page = true")
        page.locator("details#hours_of_day > summary").click()          # closed by the viewer
        sort_button(page, "top_pages", 0).click()                        # sorted by the viewer

        log = tmp_path / "live.log"
        log.write_text(log_lines(21, [("shop.example", LIVE_PATH)] * 30 + [("blog.example", "/b")] * 5))
        assert main(["follow", str(log), "--once", "--log-format", "vhost_combined", "--warehouse", str(warehouse),
                     "--keys", str(tmp_path / "keys"), "--now", SAMPLE_NOW]) == 0

        wait_for(lambda: page.locator("#totals dd").first.inner_text() == "33", 60)
        assert page.evaluate("window.__same_page") is True                 # swapped in place, not reloaded
        assert page.locator('table[data-report="top_pages"] td', has_text=LIVE_PATH).count() == 1
        assert page.locator("#live-status").inner_text().startswith("Updated")
        assert not page.locator("details#hours_of_day").evaluate("d => d.open")
        assert page.locator('table[data-report="top_pages"] thead th').nth(0).get_attribute("aria-sort") == "ascending"
        assert page.locator("input.filter").count() == page.locator("table.data").count()

        # the filter form puts the selection in the URL
        page.locator('input[name="host"]').fill("blog.example")
        page.locator('input[name="from"]').fill("")
        page.locator("form#filters button").click()
        page.wait_for_url("**host=blog.example**")
        assert page.locator("#totals dd").first.inner_text() == "7"
        assert {request.split("?")[0] for request in watched.requests} <= {f"{origin}/", f"{origin}/version"}
        assert any(request.startswith(f"{origin}/version") for request in watched.requests)
        watched.assert_quiet()
    finally:
        server.terminate()
        server.wait(30)
    assert "Traceback" not in server.stderr.read()

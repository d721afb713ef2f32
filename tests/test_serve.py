"""accesslog serve over HTTP (the browser tests are in test_report_browser.py): the page and its
version, URL filters, what it refuses (other hosts, methods, paths, bad values), the token when
it is bound beyond loopback, and a new version once a run commits."""
from __future__ import annotations

import http.client
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from accesslog.serve import ReportSource, ServeSettings, is_loopback, make_server, read_token, url_of
from schemas.errors import AccesslogError
from tests.conftest import ROOT, SAMPLE_NOW, vhost_warehouse

TOKEN = "t0ken-for-tests-0123456789"


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory) -> Path:
    return vhost_warehouse(tmp_path_factory.mktemp("serve"), ["shop.example"] * 3 + ["blog.example"] * 2)


def serving(settings: ServeSettings):
    server = make_server(settings)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    return server, thread


@pytest.fixture()
def server(warehouse):
    server, thread = serving(ServeSettings(str(warehouse), port=0, poll_seconds=0.2))
    yield server
    server.shutdown()
    server.server_close()
    server.source.close()
    thread.join(5)


def get(server, path: str, headers: dict | None = None, method: str = "GET") -> tuple[int, dict, str]:
    host, port = server.server_address[:2]
    con = http.client.HTTPConnection(host, port, timeout=30)
    try:
        con.request(method, path, headers=headers or {})
        response = con.getresponse()
        return response.status, dict(response.getheaders()), response.read().decode("utf-8")
    finally:
        con.close()


def requests_figure(page: str) -> str:
    return page.split("<dt>Requests</dt><dd>", 1)[1].split("</dd>", 1)[0]


def test_page_version_and_headers(server):
    status, headers, page = get(server, "/")
    assert status == 200 and headers["Content-Type"] == "text/html; charset=utf-8"
    assert 'data-live="1"' in page and requests_figure(page) == "5"
    csp = headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp and "connect-src 'self'" in csp
    assert headers["X-Content-Type-Options"] == "nosniff" and headers["Cache-Control"] == "no-store"
    status, _, body = get(server, "/version")
    assert status == 200 and f'data-version="{json.loads(body)["version"]}"' in page
    status, headers, body = get(server, "/", method="HEAD")
    assert status == 200 and body == "" and int(headers["Content-Length"]) > 1000


def test_filters_come_from_the_url(server):
    _, _, shop = get(server, "/?host=shop.example")
    assert requests_figure(shop) == "3" and 'name="host" list="hosts" value="shop.example"' in shop
    assert '<option value="blog.example">' in shop   # the form offers the other hosts
    _, _, day = get(server, "/?from=2026-11-20&to=2026-11-20")
    assert requests_figure(day) == "5" and "2026-11-20 to 2026-11-20" in day
    _, _, none = get(server, "/?from=2026-11-21")
    assert 'id="no-data"' in none


@pytest.mark.parametrize("query, message", [
    ("from=someday", "from: 'someday' is not a date"),
    ("from=2026-11-22&to=2026-11-20", "swap them"),
    ("last=7d&from=-7d", "last cannot be combined"),
    ("last=zero", "not a span of days"),
    ("hots=shop.example", "unknown parameter 'hots'"),
])
def test_bad_url_values_are_one_line_400s(server, query, message):
    status, _, body = get(server, f"/?{query}")
    assert status == 400 and message in body and body.count("\n") == 1


def test_refuses_other_hosts_paths_and_methods(server):
    status, _, body = get(server, "/", headers={"Host": "attacker.example"})  # DNS rebinding
    assert status == 403 and "loopback" in body
    assert get(server, "/", headers={"Host": f"localhost:{server.server_address[1]}"})[0] == 200
    assert get(server, "/../etc/passwd")[0] == 404
    assert get(server, "/", method="POST")[0] == 405


def test_token_required_beyond_loopback(warehouse, monkeypatch, tmp_path):
    with pytest.raises(AccesslogError, match="reachable from other machines.*token"):
        make_server(ServeSettings(str(warehouse), bind="0.0.0.0", port=0))
    assert is_loopback("127.0.0.2") and is_loopback("::1") and not is_loopback("0.0.0.0")
    monkeypatch.delenv("ACCESSLOG_SERVE_TOKEN", raising=False)
    assert read_token(None) is None
    (tmp_path / "short").write_text("abc\n")
    with pytest.raises(AccesslogError, match="at least 16 characters"):
        read_token(str(tmp_path / "short"))
    (tmp_path / "token").write_text(TOKEN + "\n")
    assert read_token(str(tmp_path / "token")) == TOKEN
    monkeypatch.setenv("ACCESSLOG_SERVE_TOKEN", TOKEN)
    assert read_token(None) == TOKEN


def test_token_cookie_and_bearer(warehouse):
    server, thread = serving(ServeSettings(str(warehouse), port=0, token=TOKEN))
    try:
        status, _, body = get(server, "/")
        assert status == 401 and "token" in body
        assert get(server, "/version", headers={"Host": "attacker.example"})[0] == 401
        assert get(server, "/?token=wrong-token-0123456789")[0] == 401
        status, headers, _ = get(server, f"/?host=shop.example&token={TOKEN}")
        assert status == 303 and headers["Location"] == "/?host=shop.example"   # the token leaves the URL
        cookie = headers["Set-Cookie"]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
        status, _, page = get(server, "/?host=shop.example", headers={"Cookie": cookie.split(";")[0]})
        assert status == 200 and requests_figure(page) == "3" and TOKEN not in page
        assert get(server, "/version", headers={"Authorization": f"Bearer {TOKEN}"})[0] == 200
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_version_changes_when_a_run_commits(tmp_path):
    from accesslog.cli import main

    warehouse = vhost_warehouse(tmp_path, ["shop.example"])
    source = ReportSource(ServeSettings(str(warehouse), poll_seconds=0.01))
    try:
        before, page = source.version(), source.page("")
        assert source.page("") is page   # cached per version and selection
        log = tmp_path / "more.log"
        log.write_text('shop.example:443 192.0.2.9 - - [21/Nov/2026:10:00:00 +0000] "GET /new HTTP/1.1" 200 5 '
                       '"-" "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"\n')
        assert main(["follow", str(log), "--once", "--log-format", "vhost_combined", "--warehouse",
                     str(warehouse), "--keys", str(tmp_path / "keys"), "--now", SAMPLE_NOW]) == 0
        time.sleep(0.02)
        assert source.version() != before
        fresh = source.page("").decode()
        assert requests_figure(fresh) == "2" and "/new" in fresh
    finally:
        source.close()


def test_command_serves_until_interrupted(warehouse, tmp_path):
    command = [sys.executable, "-m", "accesslog", "serve", "--warehouse", str(warehouse), "--port", "0"]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline()
        assert line.startswith("accesslog: serving") and "http://127.0.0.1:" in line, process.stderr.read()
        url = line.split(" at ", 1)[1].split("/;", 1)[0]
        host, port = url.removeprefix("http://").split(":")
        con = http.client.HTTPConnection(host, int(port), timeout=30)
        con.request("GET", "/")
        assert con.getresponse().status == 200
        con.close()
    finally:
        process.send_signal(2)
        assert process.wait(30) == 130
    assert "Traceback" not in process.stderr.read()


@pytest.mark.parametrize("argv, message", [
    (["--bind", "0.0.0.0"], "reachable from other machines"),
    (["--port", "70000"], "is no TCP port"),
    (["--min-visitors", "0"], "at least 1"),
    (["--token-file", "/nonexistent/token"], "cannot read the token file"),
])
def test_command_user_errors(warehouse, argv, message, capsys, monkeypatch):
    from accesslog.cli import main

    monkeypatch.delenv("ACCESSLOG_SERVE_TOKEN", raising=False)
    assert main(["serve", "--warehouse", str(warehouse), "--port", "0", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_port_in_use_is_a_user_error(server, warehouse):
    with pytest.raises(AccesslogError, match="cannot listen on 127.0.0.1 port"):
        make_server(ServeSettings(str(warehouse), port=server.server_address[1]))
    assert url_of(server).startswith("http://127.0.0.1:")


def test_a_page_built_while_files_change_is_tried_again_then_a_503(server, monkeypatch):
    import duckdb

    real, calls = server.source._build, []

    def flaky(*args):
        calls.append(1)
        if len(calls) == 1:
            raise duckdb.IOException("No files found that match the pattern")   # a partition replaced mid-read
        return real(*args)
    monkeypatch.setattr(server.source, "_build", flaky)
    assert get(server, "/?host=blog.example")[0] == 200 and len(calls) == 2

    def broken(*args):
        raise duckdb.IOException("gone")
    monkeypatch.setattr(server.source, "_build", broken)
    status, _, body = get(server, "/?host=nobody.example")
    assert status == 503 and "reload the page" in body and body.count("\n") == 1

"""`accesslog serve`: the report page (accesslog.report) served live from a warehouse.

`ReportSource` turns a warehouse into pages: one DuckDB connection (its per-day aggregates stay
warm between pages), a *version* of the warehouse (a hash of every committed day's file names,
sizes and times, as the aggregates' own fingerprints), and pages cached per version and filter.
When `accesslog run`, `follow` or `stream` commit, the version changes; the page's script polls
`/version` and swaps in the new content.

`serve` runs a small HTTP server (standard library, threads) on 127.0.0.1 by default:

* `GET /?from=&to=&last=&host=` the page for that selection (dates as the CLI takes them:
  2026-11-01, today, -7d; `last=7d`); a bad value is a 400 with one line that says what to fix.
* `GET /version` `{"version": "..."}`.

It answers nothing else (404, 405 for other methods) and sends the page's Content-Security-
Policy as a header too, with `frame-ancestors 'none'`. Bound to loopback without a token it
accepts only requests whose Host is a loopback name (a page on another site cannot reach it
through DNS rebinding). Bound anywhere else it needs a token, given once as `?token=` (it then
sets an HttpOnly, SameSite=Strict cookie and redirects to the URL without it) or as
`Authorization: Bearer`. It writes no access log of its own: its viewers' addresses are
personal data too.
"""
from __future__ import annotations

import argparse
import hashlib
import hmac
import http.server
import ipaddress
import json
import os
import socket
import socketserver
import sys
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from http import HTTPStatus
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import duckdb

from accesslog import daily_aggregates as daily
from accesslog.cli.flags import cli_date, cli_days, last_days
from accesslog.report import PAGE_TOP, REPORT_NAMES, Live, content_security_policy, default_title, render_page
from accesslog.stats import StatsFilter, check_min_visitors, connect, usage_stats
from schemas.errors import AccesslogError
from storage.warehouse import existing

TOKEN_ENV = "ACCESSLOG_SERVE_TOKEN"
TOKEN_COOKIE = "accesslog_token"
MIN_TOKEN_CHARS = 16
PAGES_CACHED = 16
LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1"}


@dataclass(frozen=True)
class ServeSettings:
    """What `accesslog serve` was told: the warehouse, where to listen, the token (None: loopback
    only), the poll interval and the figures' rules that every page keeps (a URL cannot lower
    min_visitors or drop an excluded path)."""

    warehouse: str
    bind: str = "127.0.0.1"
    port: int = 8765
    token: str | None = None
    poll_seconds: float = 2.0
    title: str | None = None
    top_n: int = PAGE_TOP
    min_visitors: int | None = None
    base_filter: StatsFilter = field(default_factory=StatsFilter)


class BadRequest(ValueError):
    """A URL parameter that cannot be used: the message says what to fix."""


def is_loopback(address: str) -> bool:
    if address.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(address.strip("[]")).is_loopback
    except ValueError:
        return False


def read_token(token_file: str | None) -> str | None:
    """The token from `token_file` (its first line) or from $ACCESSLOG_SERVE_TOKEN; None when neither."""
    if token_file:
        try:
            text = Path(token_file).expanduser().read_text(encoding="utf-8")
        except OSError as e:
            raise AccesslogError(f"cannot read the token file {token_file} ({e.strerror}): pass a readable file "
                                 "whose first line is the token") from None
        token = (text.splitlines() or [""])[0].strip()
    else:
        token = os.environ.get(TOKEN_ENV, "").strip() or None
        if token is None:
            return None
    if len(token) < MIN_TOKEN_CHARS:
        raise AccesslogError(f"the serve token must have at least {MIN_TOKEN_CHARS} characters: make one with "
                             "python3 -c 'import secrets; print(secrets.token_urlsafe())'")
    return token


class ReportSource:
    """Pages of one warehouse: thread-safe, cached per (warehouse version, selection)."""

    def __init__(self, settings: ServeSettings) -> None:
        check_min_visitors(settings.min_visitors)   # now, not at the first page
        self.settings = settings
        self.root = existing(settings.warehouse)
        self._lock = threading.Lock()
        self._con: duckdb.DuckDBPyConnection | None = None
        self._views_version: str | None = None
        self._version: tuple[float, str] | None = None
        self._pages: OrderedDict[tuple, bytes] = OrderedDict()

    def close(self) -> None:
        with self._lock:
            if self._con is not None:
                self._con.close()
                self._con = None

    def version(self) -> str:
        """A hash of every committed file of the warehouse (names, sizes, times); cached for half
        a poll interval so that many open pages cost one listing."""
        now = time.monotonic()
        cached = self._version
        if cached and now - cached[0] < self.settings.poll_seconds / 2:
            return cached[1]
        for attempt in range(3):
            try:
                days = daily.day_fingerprints(self.root, None, None)
                break
            except FileNotFoundError:   # a file went away between listing and stat: a commit in progress
                if attempt == 2:
                    raise
                time.sleep(0.05)
        digest = hashlib.sha256(json.dumps(sorted((d.isoformat(), f) for d, f in days.items())).encode())
        version = digest.hexdigest()[:20]
        self._version = (now, version)
        return version

    def selection(self, query: str) -> tuple[StatsFilter, Live]:
        """The filter and the form's values of a page URL's query string (raises BadRequest)."""
        params = {k: v[-1] for k, v in parse_qs(query, keep_blank_values=True).items()}
        unknown = sorted(set(params) - {"from", "to", "last", "host", "token"})
        if unknown:
            raise BadRequest(f"unknown parameter {unknown[0]!r}: the page takes from, to, last and host")
        date_from, date_to = (self._date(params, name) for name in ("from", "to"))
        if params.get("last", "").strip():
            if date_from or date_to:
                raise BadRequest("last cannot be combined with from or to: pass one or the other")
            try:
                days = cli_days(params["last"])
            except argparse.ArgumentTypeError as e:
                raise BadRequest(str(e)) from None
            date_from, date_to = last_days(days)
        if date_from and date_to and date_from > date_to:
            raise BadRequest(f"from {date_from} is after to {date_to}: swap them")
        host = params.get("host", "").strip() or None
        flt = replace(self.settings.base_filter, date_from=date_from, date_to=date_to, host=host)
        live = Live(version="", poll_ms=int(self.settings.poll_seconds * 1000), date_from=params.get("from", ""),
                    date_to=params.get("to", ""), host=host or "")
        return flt, live

    @staticmethod
    def _date(params: dict[str, str], name: str):
        text = params.get(name, "").strip()
        if not text:
            return None
        try:
            return cli_date(text)
        except argparse.ArgumentTypeError as e:
            raise BadRequest(f"{name}: {e}") from None

    def page(self, query: str) -> bytes:
        """The page of a URL's query string: built once per warehouse version and selection."""
        flt, live = self.selection(query)
        version = self.version()
        key = (version, flt, live)
        with self._lock:
            if key in self._pages:
                self._pages.move_to_end(key)
                return self._pages[key]
            try:
                page = self._build(version, flt, live)
            except (duckdb.IOException, duckdb.InvalidInputException, OSError):
                # a file read while a commit, retention or erase replaced it: look at the warehouse again, once
                self._views_version = None
                try:
                    page = self._build(version, flt, live)
                except (duckdb.IOException, duckdb.InvalidInputException, OSError) as e:
                    raise AccesslogError(f"the warehouse changed while the page was built ({type(e).__name__}); "
                                         "reload the page") from None
            self._pages[key] = page
            while len(self._pages) > PAGES_CACHED:
                self._pages.popitem(last=False)
            return page

    def _build(self, version: str, flt: StatsFilter, live: Live) -> bytes:
        if self._con is None:
            self._con = connect(self.root)
        if self._views_version != version:
            daily.reattach_views(self._con)   # tables that had no file, object-store file lists
            self._views_version = version
        settings = self.settings
        reports = usage_stats(self._con, flt, REPORT_NAMES, top_n=settings.top_n, min_visitors=settings.min_visitors)
        hosts = usage_stats(self._con, replace(flt, host=None), ["virtual_hosts"], top_n=100)["virtual_hosts"]
        live = replace(live, version=version,
                       hosts=tuple(h for h in hosts.column("host").to_pylist() if h is not None))
        return render_page(reports, flt, default_title(settings.title, flt), settings.min_visitors,
                           live=live).encode("utf-8")


class _Handler(http.server.BaseHTTPRequestHandler):
    server: ReportServer
    server_version = "accesslog"
    sys_version = ""
    protocol_version = "HTTP/1.1"
    _head = False

    def log_message(self, format, *args):  # noqa: A002 - the viewers' addresses are personal data: no log
        pass

    def do_HEAD(self):
        self._answer(head=True)

    def do_GET(self):
        self._answer(head=False)

    def _not_allowed(self):
        self._send(HTTPStatus.METHOD_NOT_ALLOWED, b"only GET and HEAD\n", "text/plain", extra={"Allow": "GET, HEAD"})

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _not_allowed

    def _answer(self, head: bool) -> None:
        self._head = head
        url = urlsplit(self.path)
        if not self._authorized(url):
            return
        source = self.server.source
        try:
            if url.path == "/":
                self._send(HTTPStatus.OK, source.page(url.query), "text/html; charset=utf-8")
            elif url.path == "/version":
                body = json.dumps({"version": source.version()}).encode()
                self._send(HTTPStatus.OK, body, "application/json")
            else:
                self._send(HTTPStatus.NOT_FOUND, b"not found: the report is at /\n", "text/plain")
        except BadRequest as e:
            self._send(HTTPStatus.BAD_REQUEST, f"bad request: {e}\n".encode(), "text/plain; charset=utf-8")
        except AccesslogError as e:
            self._send(HTTPStatus.SERVICE_UNAVAILABLE, f"{e}\n".encode(), "text/plain; charset=utf-8")
        except Exception as e:   # our bug: say so once on stderr (no address, no URL), answer 500, keep serving
            print(f"accesslog serve: internal error ({type(e).__name__}) while building a page; please report this",
                  file=sys.stderr, flush=True)
            self._send(HTTPStatus.INTERNAL_SERVER_ERROR, b"internal error: see the server's output\n", "text/plain")

    def _authorized(self, url) -> bool:
        token = self.server.source.settings.token
        if token is None:
            host = (self.headers.get("Host") or "").rsplit(":", 1)[0].strip("[]").lower()
            if host not in LOOPBACK_NAMES and not is_loopback(host):
                self._send(HTTPStatus.FORBIDDEN, b"forbidden: this server answers only loopback names "
                                                 b"(http://127.0.0.1:PORT/)\n", "text/plain")
                return False
            return True
        cookie = f"{TOKEN_COOKIE}_{self.server.server_address[1]}"   # cookies ignore ports: one per server
        given = parse_qs(url.query).get("token", [None])[-1]
        if given is not None and hmac.compare_digest(given.encode(), token.encode()):
            rest = urlencode([(k, v) for k, vs in parse_qs(url.query, keep_blank_values=True).items()
                              if k != "token" for v in vs])
            self._send(HTTPStatus.SEE_OTHER, b"", "text/plain",
                       extra={"Location": url.path + (f"?{rest}" if rest else ""),
                              "Set-Cookie": f"{cookie}={token}; HttpOnly; SameSite=Strict; Path=/"})
            return False
        supplied = _cookie(self.headers.get("Cookie") or "", cookie)
        authorization = self.headers.get("Authorization") or ""
        if authorization.startswith("Bearer "):
            supplied = authorization[len("Bearer "):].strip()
        if supplied is not None and hmac.compare_digest(supplied.encode(), token.encode()):
            return True
        self._send(HTTPStatus.UNAUTHORIZED, b"unauthorized: open the address with ?token=<the serve token>\n",
                   "text/plain", extra={"WWW-Authenticate": 'Bearer realm="accesslog"'})
        return False

    def _send(self, status: HTTPStatus, body: bytes, content_type: str, extra: dict | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        self.send_header("Content-Security-Policy", content_security_policy(live=True) + "; frame-ancestors 'none'")
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if not self._head:
            self.wfile.write(body)


def _cookie(header: str, name: str) -> str | None:
    for part in header.split(";"):
        key, _, value = part.strip().partition("=")
        if key == name:
            return value
    return None


class ReportServer(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request, client_address):
        """A connection that failed (the viewer went away): no traceback, and no address in any output."""

    def __init__(self, source: ReportSource, address: tuple[str, int]) -> None:
        self.source = source
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)


def make_server(settings: ServeSettings) -> ReportServer:
    """A server bound as `settings` say (not yet serving). Raises AccesslogError for a non-loopback
    address without a token, and for an address or port that cannot be bound."""
    if settings.token is None and not is_loopback(settings.bind):
        raise AccesslogError(f"--bind {settings.bind} is reachable from other machines: give a token "
                             f"(--token-file FILE or ${TOKEN_ENV}, at least {MIN_TOKEN_CHARS} characters)")
    source = ReportSource(settings)
    try:
        return ReportServer(source, (settings.bind, settings.port))
    except OSError as e:
        source.close()
        raise AccesslogError(f"cannot listen on {settings.bind} port {settings.port} ({e.strerror}): pass another "
                             "--port (0 picks a free one) or --bind address") from None


def url_of(server: ReportServer) -> str:
    host, port = server.server_address[:2]
    return f"http://{f'[{host}]' if ':' in host else host}:{port}/"

r"""Conformance: real-world lines of every supported log format -> the access columns the
servers' documentation says they mean.

Each case is a format (preset name, nginx `log_format` body, Apache `LogFormat` string),
one log line, and the value of every access column (a column not named must be null),
every `_x_<var>` extra, or the reject reason. Text formats are checked on both parser
paths (Arrow's tokenizer and the line regex) against the same expectation.

Facts the expectations rely on:

nginx (ngx_http_log_module, ngx_http_core_module, ngx_http_upstream_module,
ngx_http_realip_module):
* $time_local (CLF), $time_iso8601 and $msec (seconds with millisecond resolution) are
  taken at the log write, i.e. when the response has been sent; $request_time is seconds
  with millisecond resolution since the first bytes were read from the client. So
  responded_at is the logged time and received_at is $request_time earlier.
* $body_bytes_sent is body bytes (like Apache's %B); $bytes_sent all bytes sent to the
  client; $request_length the request line, header and body.
* $upstream_response_time / $upstream_status / $upstream_addr: several servers are
  separated by ", ", internal redirects to another upstream group by " : "; "-" for a
  server that produced no response time.
* escape=default writes '"', '\\', bytes < 0x20 and > 0x7e as \xHH; escape=json writes
  \" \\ \n \r \t \b \f and \u00XX; escape=none writes values raw. A variable without a
  value is written as '-' (escape=json: nothing).
* $binary_remote_addr is 4 or 16 raw bytes (escaped as above; a 0x20 byte stays a space).
* realip with real_ip_recursive on: walking X-Forwarded-For from the right, starting at
  the peer, the client is the first address that is not a trusted proxy; an entry that is
  not an address stops the walk at the last good address.
* $request_id: 16 random bytes in hex; $connection: the connection serial number;
  $pipe: "p" if pipelined, "." otherwise; $ssl_protocol e.g. "TLSv1.3".

Apache httpd (mod_log_config):
* %t is the time the request was received, [10/Oct/2000:13:55:36 -0700]; %{format}t is
  strftime of the same time (end: the time the log entry is written); %{sec}t, %{msec}t,
  %{usec}t are epoch numbers; %{msec_frac}t / %{usec_frac}t the fraction. So received_at
  is the logged time and responded_at is %D (microseconds) / %T (seconds) later.
* %b is body bytes in CLF ('-' for zero), %B the number; %O bytes sent incl. headers
  (mod_logio), %I bytes received incl. request line and headers.
* %>s the final status; %v the canonical ServerName, %V the server name per
  UseCanonicalName; %{Header}i request headers, %{Header}o response headers, %{Name}C cookies.
* %r, %i, %o, %u: '"' and '\\' get a backslash, whitespace controls are written \n \t \v ...,
  other non-printable bytes \xhh. %u is "" for an empty user name.
* %X: 'X' aborted, '+' may be kept alive, '-' will be closed.

Caddy (http.log.access): `ts` epoch seconds at the log write, `duration` seconds,
`size` body bytes, `request` object with `client_ip`, `proto`, `headers` (lists of values),
`tls.version` the TLS version number (0x0304 = 772 = TLS 1.3).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import pytest

from transforms.chunks import LogChunk
from transforms.fields import parse_trusted_proxies
from transforms.formats import resolve_format
from transforms.lines import MAX_LINE_BYTES, TOO_LONG
from transforms.parse import parse_chunk

UTC = timezone.utc
COLUMNS = ("received_at", "responded_at", "duration_ms", "method", "url_path", "url_query", "protocol", "status",
           "bytes_sent", "response_bytes", "request_length", "referrer", "user_agent", "language", "host",
           "upstream_status", "upstream_ms", "upstream_addr", "scheme", "request_id", "connection_id",
           "tls_protocol", "_client_ip", "_remote_user")


def utc(text: str) -> datetime:
    """'2000-10-10T20:55:36.123' (UTC) -> aware datetime."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def at(text: str, **duration) -> dict:
    """received_at = responded_at = `text` (UTC), or with `duration` the pair and duration_ms."""
    t = utc(text)
    if not duration:
        return {"received_at": t, "responded_at": t}
    return {"received_at": t, "responded_at": t + timedelta(**duration),
            "duration_ms": timedelta(**duration) / timedelta(milliseconds=1)}


def ended(text: str, **duration) -> dict:
    """responded_at = `text` (UTC) and the request arrived `duration` earlier."""
    t = utc(text)
    return {"received_at": t - timedelta(**duration), "responded_at": t,
            "duration_ms": timedelta(**duration) / timedelta(milliseconds=1)}


def get(path="/", query=None, protocol="HTTP/1.1", method="GET") -> dict:
    return {"method": method, "url_path": path, "url_query": query, "protocol": protocol}


@dataclass(frozen=True)
class Case:
    id: str
    fmt: str
    line: str | bytes
    expect: dict = field(default_factory=dict)   # non-null columns and `_x_` extras
    reject: str | None = None
    trusted: str | None = None                   # --trusted-proxies
    bug: str | None = None                       # a known discrepancy: xfail(strict) with this reason
    bug_on: tuple[str, ...] = ("tokenizer", "regex")   # ... on these parser paths


def _both_plans(cases):
    """Text formats with a token plan are checked on the tokenizer and on the regex path."""
    for case in cases:
        plans = ["tokenizer", "regex"] if resolve_format(case.fmt).columns is not None else ["regex"]
        for plan in plans:
            marks = [pytest.mark.xfail(reason=case.bug, strict=True)] if case.bug and plan in case.bug_on else []
            yield pytest.param(case, plan, id=f"{case.id}-{plan}", marks=marks)


T = "[10/Oct/2000:13:55:36 -0700]"   # 2000-10-10T20:55:36Z
T_UTC = "2000-10-10T20:55:36"
DOC_AGENT = "Mozilla/4.08 [en] (Win98; I ;Nav)"
FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"

# -- nginx presets --------------------------------------------------------------------------

COMBINED_CASES = [
    Case("combined", "combined",
         f'203.0.113.7 - frank {T} "GET /apache_pb.gif?lang=en&x=1 HTTP/1.0" 200 2326 '
         f'"http://www.example.com/start.html" "{DOC_AGENT}"',
         {**at(T_UTC), **get("/apache_pb.gif", "lang=en&x=1", "HTTP/1.0"), "status": 200, "bytes_sent": 2326,
          "referrer": "http://www.example.com/start.html", "user_agent": DOC_AGENT,
          "_client_ip": "203.0.113.7", "_remote_user": "frank"}),
    Case("combined-ipv6-compressed", "combined",
         f'2001:db8::7 - - {T} "GET / HTTP/2.0" 304 0 "-" "curl/8.4.0"',
         {**at(T_UTC), **get(protocol="HTTP/2.0"), "status": 304, "bytes_sent": 0, "user_agent": "curl/8.4.0",
          "_client_ip": "2001:db8::7"}),
    Case("combined-ipv6-loopback", "combined", f'::1 - - {T} "HEAD /health HTTP/1.1" 200 0 "-" "-"',
         {**at(T_UTC), **get("/health", method="HEAD"), "status": 200, "bytes_sent": 0, "_client_ip": "::1"}),
    Case("combined-ipv4-mapped-ipv6", "combined", f'::ffff:192.0.2.1 - - {T} "GET / HTTP/1.1" 200 5 "-" "-"',
         {**at(T_UTC), **get(), "status": 200, "bytes_sent": 5, "_client_ip": "192.0.2.1"}),
    Case("combined-empty-request", "combined", f'198.51.100.4 - - {T} "" 400 0 "-" "-"',
         {**at(T_UTC), "status": 400, "bytes_sent": 0, "_client_ip": "198.51.100.4"}),
    Case("combined-http09-request-without-protocol", "combined", f'198.51.100.4 - - {T} "GET /" 200 12 "-" "-"',
         {**at(T_UTC), **get(protocol=None), "status": 200, "bytes_sent": 12, "_client_ip": "198.51.100.4"}),
    Case("combined-tls-handshake-on-http-port", "combined",
         f'198.51.100.4 - - {T} "\\x16\\x03\\x01\\x02\\x00\\x01\\x00\\x01\\xFC\\x03\\x03" 400 157 "-" "-"',
         {**at(T_UTC), "status": 400, "bytes_sent": 157, "_client_ip": "198.51.100.4",
          "_x_request": "\\x16\\x03\\x01\\x02\\x00\\x01\\x00\\x01\\xFC\\x03\\x03"}),   # kept as logged
    Case("combined-escaped-quote-and-backslash", "combined",
         f'203.0.113.7 - - {T} "GET /q?s=\\x22a\\x22 HTTP/1.1" 200 1 "-" "say \\x22hi\\x22 C:\\x5Cx"',
         {**at(T_UTC), **get("/q", 's="a"'), "status": 200, "bytes_sent": 1, "user_agent": 'say "hi" C:\\x',
          "_client_ip": "203.0.113.7"}),
    Case("combined-two-quotes-is-a-value", "combined",
         f'203.0.113.7 - - {T} "GET / HTTP/1.1" 200 1 "\\x22\\x22" "\\x22\\x22"',   # the header was '""'
         {**at(T_UTC), **get(), "status": 200, "bytes_sent": 1, "referrer": '""', "user_agent": '""',
          "_client_ip": "203.0.113.7"}),
    Case("combined-escaped-utf8-and-invalid-byte", "combined",
         f'203.0.113.7 - - {T} "GET /caf\\xC3\\xA9 HTTP/1.1" 200 1 "-" "bad \\xFF byte"',
         {**at(T_UTC), **get("/café"), "status": 200, "bytes_sent": 1, "user_agent": "bad \ufffd byte",
          "_client_ip": "203.0.113.7"}),
    Case("combined-raw-non-utf8-bytes", "combined",
         b'203.0.113.7 - - [10/Oct/2000:13:55:36 -0700] "GET /caf\xe9 HTTP/1.1" 200 1 "-" "agent \xff\xfe"',
         {**at(T_UTC), **get("/caf\ufffd"), "status": 200, "bytes_sent": 1, "user_agent": "agent \ufffd\ufffd",
          "_client_ip": "203.0.113.7"}),
    Case("combined-dash-in-every-optional-field", "combined", f'203.0.113.7 - - {T} "-" 400 - "-" "-"',
         {**at(T_UTC), "status": 400, "_client_ip": "203.0.113.7"}),
    Case("combined-user-with-space", "combined", f'203.0.113.7 - John Smith {T} "GET / HTTP/1.1" 401 0 "-" "-"',
         {**at(T_UTC), **get(), "status": 401, "bytes_sent": 0, "_client_ip": "203.0.113.7",
          "_remote_user": "John Smith"}),
    Case("combined-space-in-target", "combined", f'203.0.113.7 - - {T} "GET /my file?q=a b HTTP/1.1" 400 0 "-" "-"',
         {**at(T_UTC), **get("/my file", "q=a b"), "status": 400, "bytes_sent": 0, "_client_ip": "203.0.113.7"}),
    Case("combined-fractional-seconds", "combined",
         '203.0.113.7 - - [10/Oct/2000:13:55:36.123 +0530] "GET / HTTP/1.1" 200 1 "-" "-"',
         {**at("2000-10-10T08:25:36.123"), **get(), "status": 200, "bytes_sent": 1, "_client_ip": "203.0.113.7"}),
    Case("combined-unix-socket-client", "combined", f'unix: - - {T} "GET / HTTP/1.1" 200 1 "-" "-"',
         {**at(T_UTC), **get(), "status": 200, "bytes_sent": 1, "_client_ip": "name:unix:"}),
    Case("combined-dash-client-is-rejected", "combined", f'- - - {T} "GET / HTTP/1.1" 200 1 "-" "-"',
         reject="invalid $remote_addr"),
    # Apache writes '-' when no status was set; a log rewritten into nginx's layout keeps it
    Case("combined-dash-status-is-kept-as-null", "combined", f'203.0.113.7 - - {T} "GET / HTTP/1.1" - 1 "-" "-"',
         {**at(T_UTC), **get(), "status": None, "bytes_sent": 1, "_client_ip": "203.0.113.7"}),
    Case("combined-word-status-is-rejected", "combined", f'203.0.113.7 - - {T} "GET / HTTP/1.1" ok 1 "-" "-"',
         reject="invalid $status"),
    Case("combined-dash-time-is-rejected", "combined", '203.0.113.7 - - [-] "GET / HTTP/1.1" 200 1 "-" "-"',
         reject="line does not match log format 'combined'"),
    Case("combined-impossible-date-is-rejected", "combined",
         '203.0.113.7 - - [31/Feb/2000:13:55:36 -0700] "GET / HTTP/1.1" 200 1 "-" "-"',
         reject="invalid $time_local"),
    Case("combined-truncated-user-agent-is-kept-and-marked", "combined",
         f'203.0.113.7 - - {T} "GET / HTTP/1.1" 200 1 "-" "Moz',
         {**at(T_UTC), **get(), "status": 200, "bytes_sent": 1, "user_agent": "Moz", "_client_ip": "203.0.113.7",
          "_x_truncated": "http_user_agent"}),
    Case("combined-cut-before-the-status-is-rejected", "combined", f'203.0.113.7 - - {T} "GET / HT',
         reject="line does not match log format 'combined'"),
]

XFF_LINE = f'10.0.0.5 - - {T} "GET / HTTP/1.1" 200 1 "-" "-" "%s"'
MAIN_CASES = [
    Case("main-forwarded-for-untrusted-by-default", "main", XFF_LINE % "203.0.113.9",
         {**at(T_UTC), **get(), "status": 200, "bytes_sent": 1, "_client_ip": "10.0.0.5"}),
    Case("main-trusted-proxy", "main", XFF_LINE % "203.0.113.9, 10.0.0.2", trusted="10.0.0.0/8",
         expect={**at(T_UTC), **get(), "status": 200, "bytes_sent": 1, "_client_ip": "203.0.113.9"}),
    Case("main-right-most-untrusted-wins", "main", XFF_LINE % "198.51.100.1, 203.0.113.9, 10.1.1.1",
         trusted="10.0.0.0/8",
         expect={**at(T_UTC), **get(), "status": 200, "bytes_sent": 1, "_client_ip": "203.0.113.9"}),
    Case("main-forwarded-ipv6-with-port-in-brackets", "main", XFF_LINE % "[2001:db8::1]:8443", trusted="10.0.0.0/8",
         expect={**at(T_UTC), **get(), "status": 200, "bytes_sent": 1, "_client_ip": "2001:db8::1"}),
    Case("main-forwarded-ipv4-with-port", "main", XFF_LINE % "203.0.113.9:1234, 10.0.0.3", trusted="10.0.0.0/8",
         expect={**at(T_UTC), **get(), "status": 200, "bytes_sent": 1, "_client_ip": "203.0.113.9"}),
    Case("main-forwarded-without-spaces", "main", XFF_LINE % "203.0.113.9,10.0.0.3", trusted="10.0.0.0/8",
         expect={**at(T_UTC), **get(), "status": 200, "bytes_sent": 1, "_client_ip": "203.0.113.9"}),
    Case("main-all-trusted-gives-left-most", "main", XFF_LINE % "10.9.9.9, 10.0.0.3", trusted="10.0.0.0/8",
         expect={**at(T_UTC), **get(), "status": 200, "bytes_sent": 1, "_client_ip": "10.9.9.9"}),
    Case("main-untrusted-peer-ignores-forwarded-for", "main",
         f'192.0.2.5 - - {T} "GET / HTTP/1.1" 200 1 "-" "-" "203.0.113.9"', trusted="10.0.0.0/8",
         expect={**at(T_UTC), **get(), "status": 200, "bytes_sent": 1, "_client_ip": "192.0.2.5"}),
    Case("main-no-forwarded-for-header", "main", XFF_LINE % "-", trusted="10.0.0.0/8",
         expect={**at(T_UTC), **get(), "status": 200, "bytes_sent": 1, "_client_ip": "10.0.0.5"}),
    Case("main-ipv6-proxy", "main", f'fd00::1 - - {T} "GET / HTTP/1.1" 200 1 "-" "-" "2001:db8::5, fd00::2"',
         trusted="10.0.0.0/8,fd00::/8",
         expect={**at(T_UTC), **get(), "status": 200, "bytes_sent": 1, "_client_ip": "2001:db8::5"}),
    Case("main-garbage-entry-stops-the-walk", "main", XFF_LINE % "unknown, 10.0.0.3", trusted="10.0.0.0/8",
         expect={**at(T_UTC), **get(), "status": 200, "bytes_sent": 1, "_client_ip": "10.0.0.3"}),
]

TIMED_CASES = [
    Case("timed-combined-upstream-list", "timed_combined",
         f'192.0.2.1 - - {T} "GET /api HTTP/1.1" 502 157 "-" "curl/8" 0.105 0.001, 0.002 : 0.003',
         {**ended(T_UTC, milliseconds=105), **get("/api"), "status": 502, "bytes_sent": 157, "user_agent": "curl/8",
          "upstream_ms": 6.0, "_client_ip": "192.0.2.1"}),
    Case("timed-combined-no-upstream", "timed_combined",
         f'192.0.2.1 - - {T} "GET / HTTP/1.1" 200 612 "-" "curl/8" 0.000 -',
         {**ended(T_UTC, milliseconds=0), **get(), "status": 200, "bytes_sent": 612, "user_agent": "curl/8",
          "_client_ip": "192.0.2.1"}),
    Case("timed-combined-failed-then-answered", "timed_combined",
         f'192.0.2.1 - - {T} "GET / HTTP/1.1" 200 612 "-" "curl/8" 60.007 -, 0.250',
         {**ended(T_UTC, milliseconds=60007), **get(), "status": 200, "bytes_sent": 612, "user_agent": "curl/8",
          "upstream_ms": 250.0, "_client_ip": "192.0.2.1"}),
    Case("timed-combined-request-time-dash", "timed_combined",
         f'192.0.2.1 - - {T} "GET / HTTP/1.1" 200 612 "-" "curl/8" - -',
         {**at(T_UTC), **get(), "status": 200, "bytes_sent": 612, "user_agent": "curl/8", "_client_ip": "192.0.2.1"}),
    Case("timed-combined-bad-request-time-is-rejected", "timed_combined",
         f'192.0.2.1 - - {T} "GET / HTTP/1.1" 200 612 "-" "curl/8" fast -', reject="invalid $request_time"),
]

# -- nginx custom formats, variable by variable --------------------------------------------

EVERY_VARIABLE = (
    '$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent $bytes_sent $request_length '
    '"$http_referer" "$http_user_agent" "$http_accept_language" rt=$request_time urt="$upstream_response_time" '
    'us="$upstream_status" ua="$upstream_addr" $host $scheme $request_id $connection $pipe $ssl_protocol '
    '"$http_x_custom" $cookie_session "$sent_http_content_type"')
NGINX_CASES = [
    Case("nginx-every-variable", EVERY_VARIABLE,
         '2001:db8::1 - alice [10/Oct/2000:13:55:36 +0530] "POST /api/v1/items?x=1&y=2 HTTP/2.0" 201 15 321 987 '
         '"https://shop.example/cart" "curl/8.4.0" "de-CH,de;q=0.9,en;q=0.8" rt=0.250 '
         'urt="0.001, 0.002 : 0.003" us="502, 504 : 201" ua="10.0.0.1:80, 10.0.0.2:80 : unix:/tmp/app.sock" '
         'shop.example https 0123456789abcdef0123456789abcdef 12345 p TLSv1.3 "hello world" abc123 '
         '"application/json; charset=utf-8"',
         {**ended("2000-10-10T08:25:36", milliseconds=250), **get("/api/v1/items", "x=1&y=2", "HTTP/2.0", "POST"),
          "status": 201, "bytes_sent": 15, "response_bytes": 321, "request_length": 987,
          "referrer": "https://shop.example/cart", "user_agent": "curl/8.4.0", "language": "de",
          "upstream_ms": 6.0, "upstream_status": "502, 504 : 201",
          "upstream_addr": "10.0.0.1:80, 10.0.0.2:80 : unix:/tmp/app.sock", "host": "shop.example",
          "scheme": "https", "request_id": "0123456789abcdef0123456789abcdef", "connection_id": 12345,
          "tls_protocol": "TLSv1.3", "_client_ip": "2001:db8::1", "_remote_user": "alice",
          "_x_pipe": "p", "_x_http_x_custom": "hello world", "_x_cookie_session": "abc123",
          "_x_sent_http_content_type": "application/json; charset=utf-8"}),
    Case("nginx-not-tls-not-pipelined", '$remote_addr [$time_local] "$request" $status $pipe $ssl_protocol $scheme',
         f'192.0.2.1 {T} "GET / HTTP/1.1" 200 . - http',
         {**at(T_UTC), **get(), "status": 200, "scheme": "http", "_client_ip": "192.0.2.1", "_x_pipe": "."}),
    Case("nginx-binary-remote-addr-ipv4", '$binary_remote_addr [$time_local] "$request" $status',
         f'\\xCB\\x00q\\x07 {T} "GET / HTTP/1.1" 200',   # 203.0.113.7: 0x71 is a printable 'q'
         {**at(T_UTC), **get(), "status": 200, "_client_ip": "203.0.113.7"}),
    Case("nginx-binary-remote-addr-ipv6-with-space-byte", '$binary_remote_addr [$time_local] "$request" $status',
         f' \\x01\\x0D\\xB8\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x01 {T} "GET / HTTP/1.1" 200',
         {**at(T_UTC), **get(), "status": 200, "_client_ip": "2001:db8::1"}),   # 0x20 0x01 ...: a raw space
    Case("nginx-binary-remote-addr-escaped-quote-and-backslash", '$binary_remote_addr [$time_local] "$request" $status',
         f'\\x5C\\x22AB {T} "GET / HTTP/1.1" 200',
         {**at(T_UTC), **get(), "status": 200, "_client_ip": "92.34.65.66"}),
    Case("nginx-realip-remote-addr-alone", '$realip_remote_addr [$time_local] "$request" $status',
         f'198.51.100.8 {T} "GET / HTTP/1.1" 200',
         {**at(T_UTC), **get(), "status": 200, "_client_ip": "198.51.100.8"}),
    Case("nginx-remote-addr-is-the-client-after-realip", '$remote_addr $realip_remote_addr [$time_local] "$request" '
         '$status', f'203.0.113.9 10.0.0.5 {T} "GET / HTTP/1.1" 200',
         {**at(T_UTC), **get(), "status": 200, "_client_ip": "203.0.113.9"}),
    Case("nginx-time-iso8601", '$remote_addr $time_iso8601 "$request" $status',
         '192.0.2.1 2000-10-10T13:55:36+05:45 "GET / HTTP/1.1" 200',
         {**at("2000-10-10T08:10:36"), **get(), "status": 200, "_client_ip": "192.0.2.1"}),
    Case("nginx-time-iso8601-utc", '$remote_addr $time_iso8601 "$request" $status rt=$request_time',
         '192.0.2.1 2026-01-01T00:00:00+00:00 "GET / HTTP/1.1" 200 rt=1.007',
         {**ended("2026-01-01T00:00:00", milliseconds=1007), **get(), "status": 200, "_client_ip": "192.0.2.1"}),
    Case("nginx-msec", '$remote_addr $msec "$request" $status $request_time',
         '192.0.2.1 971186136.123 "GET / HTTP/1.1" 200 1.500',
         {**ended("2000-10-10T13:55:36.123", milliseconds=1500), **get(), "status": 200, "_client_ip": "192.0.2.1"}),
    Case("nginx-request-parts", '$remote_addr [$time_local] "$request_method $uri" "$args" $server_protocol $status',
         f'192.0.2.1 {T} "PUT /a/b" "x=1&y=%20" HTTP/1.1 204',
         {**at(T_UTC), **get("/a/b", "x=1&y=%20", method="PUT"), "status": 204, "_client_ip": "192.0.2.1"}),
    Case("nginx-request-parts-no-args", '$remote_addr [$time_local] "$request_method $uri" "$query_string" '
         '$server_protocol $status', f'192.0.2.1 {T} "GET /a" "-" HTTP/2.0 200',
         {**at(T_UTC), **get("/a", protocol="HTTP/2.0"), "status": 200, "_client_ip": "192.0.2.1"}),
    Case("nginx-request-uri", '$remote_addr [$time_local] "$request_method $request_uri" $status',
         f'192.0.2.1 {T} "GET /search?q=beam&page=2" 200',
         {**at(T_UTC), **get("/search", "q=beam&page=2", protocol=None), "status": 200, "_client_ip": "192.0.2.1"}),
    Case("nginx-host-before-server-name-before-http-host", '$remote_addr [$time_local] "$request" $status '
         '$http_host $server_name $host', f'192.0.2.1 {T} "GET / HTTP/1.1" 200 Example.org:8080 _ example.org',
         {**at(T_UTC), **get(), "status": 200, "host": "example.org", "_client_ip": "192.0.2.1"}),
    Case("nginx-server-name", '$remote_addr [$time_local] "$request" $status $server_name',
         f'192.0.2.1 {T} "GET / HTTP/1.1" 200 www.example.org',
         {**at(T_UTC), **get(), "status": 200, "host": "www.example.org", "_client_ip": "192.0.2.1"}),
    Case("nginx-http-host-keeps-port", '$remote_addr [$time_local] "$request" $status "$http_host"',
         f'192.0.2.1 {T} "GET / HTTP/1.1" 200 "example.org:8080"',
         {**at(T_UTC), **get(), "status": 200, "host": "example.org:8080", "_client_ip": "192.0.2.1"}),
    Case("nginx-accept-language-wildcard-only", '$remote_addr [$time_local] "$request" $status "$http_accept_language"',
         f'192.0.2.1 {T} "GET / HTTP/1.1" 200 "*"', {**at(T_UTC), **get(), "status": 200, "_client_ip": "192.0.2.1"}),
    Case("nginx-accept-language-by-quality", '$remote_addr [$time_local] "$request" $status "$http_accept_language"',
         f'192.0.2.1 {T} "GET / HTTP/1.1" 200 "en;q=0.5, fr-CH, fr;q=0.9, *;q=0.1"',
         {**at(T_UTC), **get(), "status": 200, "language": "fr", "_client_ip": "192.0.2.1"}),
    Case("nginx-upstream-group-name-when-no-server", '$remote_addr [$time_local] "$request" $status '
         '"$upstream_addr" "$upstream_status" "$upstream_response_time"',
         f'192.0.2.1 {T} "GET / HTTP/1.1" 502 "backend" "502" "-"',
         {**at(T_UTC), **get(), "status": 502, "upstream_addr": "backend", "upstream_status": "502",
          "_client_ip": "192.0.2.1"}),
    Case("nginx-prefixed-tokens", '$remote_addr [$time_local] "$request" $status rt=$request_time '
         'urt="$upstream_response_time" us="$upstream_status" ua="$upstream_addr"',
         f'192.0.2.1 {T} "GET / HTTP/1.1" 200 rt=0.004 urt="0.003" us="200" ua="10.0.0.1:8080"',
         {**ended(T_UTC, milliseconds=4), **get(), "status": 200, "upstream_ms": 3.0, "upstream_status": "200",
          "upstream_addr": "10.0.0.1:8080", "_client_ip": "192.0.2.1"}),
    Case("nginx-time-local-and-msec", '$remote_addr [$time_local] $msec "$request" $status',
         '192.0.2.1 [10/Oct/2000:13:55:36 +0000] 971186136.789 "GET / HTTP/1.1" 200',
         {**at("2000-10-10T13:55:36.789"), **get(), "status": 200, "_client_ip": "192.0.2.1"}),
    Case("nginx-tab-separated", "$remote_addr\t$time_iso8601\t$request\t$status\t$body_bytes_sent\t$http_user_agent",
         "203.0.113.7\t2000-10-10T13:55:36-07:00\tGET /a?b=1 HTTP/1.1\t200\t5\tMozilla/5.0 (X11; Linux)",
         {**at(T_UTC), **get("/a", "b=1"), "status": 200, "bytes_sent": 5, "user_agent": "Mozilla/5.0 (X11; Linux)",
          "_client_ip": "203.0.113.7"}),
    Case("nginx-pipe-separated", "$msec|$remote_addr|$status|$request|$request_time|$http_user_agent",
         "971186136.250|192.0.2.1|200|GET / HTTP/1.1|0.250|curl/8 (x)",
         {**ended("2000-10-10T13:55:36.250", milliseconds=250), **get(), "status": 200, "user_agent": "curl/8 (x)",
          "_client_ip": "192.0.2.1"}),
    Case("nginx-escape-json-body", 'escape=json $remote_addr [$time_local] "$request" $status "$http_referer" '
         '"$http_user_agent"', f'203.0.113.7 {T} "GET /a?q=\\"x\\" HTTP/1.1" 200 "" '
         '"Mozilla \\"quoted\\" \\\\ back \\u00e9 \\t tab"',
         {**at(T_UTC), **get("/a", 'q="x"'), "status": 200, "user_agent": 'Mozilla "quoted" \\ back é \t tab',
          "_client_ip": "203.0.113.7"}),
    Case("nginx-escape-none-body", 'escape=none $remote_addr [$time_local] "$request" $status "$http_user_agent"',
         f'203.0.113.7 {T} "GET / HTTP/1.1" 200 "Mozilla "x" é"',
         {**at(T_UTC), **get(), "status": 200, "user_agent": 'Mozilla "x" é', "_client_ip": "203.0.113.7"}),
    Case("nginx-uri-is-args-args", '$remote_addr [$time_local] "$request_method $uri$is_args$args" $status',
         f'192.0.2.1 {T} "GET /a/b?x=1" 200',
         {**at(T_UTC), **get("/a/b", "x=1", protocol=None), "status": 200, "_client_ip": "192.0.2.1"}),
]

# -- Apache httpd ---------------------------------------------------------------------------

APACHE_CASES = [
    Case("apache-combined-doc-example", "apache_combined",
         f'127.0.0.1 - frank {T} "GET /apache_pb.gif HTTP/1.0" 200 2326 "http://www.example.com/start.html" '
         f'"{DOC_AGENT}"',
         {**at(T_UTC), **get("/apache_pb.gif", protocol="HTTP/1.0"), "status": 200, "bytes_sent": 2326,
          "referrer": "http://www.example.com/start.html", "user_agent": DOC_AGENT, "_client_ip": "127.0.0.1",
          "_remote_user": "frank"}),
    Case("apache-common-no-body-is-dash", "common", f'192.0.2.1 - - {T} "GET / HTTP/1.0" 304 -',
         {**at(T_UTC), **get(protocol="HTTP/1.0"), "status": 304, "bytes_sent": 0, "_client_ip": "192.0.2.1"}),
    Case("apache-combinedio", "combinedio", f'192.0.2.1 - - {T} "GET / HTTP/1.1" 200 2326 "-" "curl/8" 512 2600',
         {**at(T_UTC), **get(), "status": 200, "bytes_sent": 2326, "request_length": 512, "response_bytes": 2600,
          "user_agent": "curl/8", "_client_ip": "192.0.2.1"}),
    Case("apache-vhost-combined", "vhost_combined",
         f'www.example.com:443 2001:db8::1 - - {T} "GET / HTTP/1.1" 200 2600 "-" "curl/8"',
         {**at(T_UTC), **get(), "status": 200, "response_bytes": 2600, "user_agent": "curl/8",
          "host": "www.example.com", "_client_ip": "2001:db8::1"}),
    Case("apache-escapes", "apache_combined",
         f'192.0.2.1 - - {T} "GET /a\\\\b\\x7f HTTP/1.1" 200 1 "-" "say \\"hi\\" tab\\there nl\\n \\xc3\\xa9"',
         {**at(T_UTC), **get("/a\\b\x7f"), "status": 200, "bytes_sent": 1, "user_agent": 'say "hi" tab\there nl\n é',
          "_client_ip": "192.0.2.1"}),
    Case("apache-two-quotes-is-a-value", "apache_combined",
         f'192.0.2.1 - - {T} "GET / HTTP/1.1" 200 1 "\\"\\"" "\\"\\""',   # the header was '""'
         {**at(T_UTC), **get(), "status": 200, "bytes_sent": 1, "referrer": '""', "user_agent": '""',
          "_client_ip": "192.0.2.1"}),
    Case("apache-escaped-backslash-before-x", "apache_combined",
         f'192.0.2.1 - - {T} "GET /a\\\\x41 HTTP/1.1" 200 1 "-" "-"',   # the client sent \x41 literally
         {**at(T_UTC), **get("/a\\x41"), "status": 200, "bytes_sent": 1, "_client_ip": "192.0.2.1"}),
    Case("apache-vertical-tab", "apache_combined", f'192.0.2.1 - - {T} "GET / HTTP/1.1" 200 1 "-" "a\\vb"',
         {**at(T_UTC), **get(), "status": 200, "bytes_sent": 1, "user_agent": "a\x0bb", "_client_ip": "192.0.2.1"}),
    Case("apache-tls-handshake-on-http-port", "apache_combined",
         f'192.0.2.1 - - {T} "\\x16\\x03\\x01\\x00\\xa5\\x01\\x00\\x00\\xa1\\x03\\x03" 400 226 "-" "-"',
         {**at(T_UTC), "status": 400, "bytes_sent": 226, "_client_ip": "192.0.2.1",
          "_x_request": "\\x16\\x03\\x01\\x00\\xa5\\x01\\x00\\x00\\xa1\\x03\\x03"}),
    Case("apache-http09", "apache_combined", f'192.0.2.1 - - {T} "GET /" 200 10 "-" "-"',
         {**at(T_UTC), **get(protocol=None), "status": 200, "bytes_sent": 10, "_client_ip": "192.0.2.1"}),
    Case("apache-empty-user", "apache_combined", f'192.0.2.1 - "" {T} "GET / HTTP/1.0" 200 1 "-" "-"',
         {**at(T_UTC), **get(protocol="HTTP/1.0"), "status": 200, "bytes_sent": 1, "_client_ip": "192.0.2.1"}),
    Case("apache-empty-user-with-escaped-quote-in-line", "apache_combined",
         f'192.0.2.1 - "" {T} "GET / HTTP/1.0" 200 1 "-" "a \\"q\\""',
         {**at(T_UTC), **get(protocol="HTTP/1.0"), "status": 200, "bytes_sent": 1, "user_agent": 'a "q"',
          "_client_ip": "192.0.2.1"}),
    Case("apache-user-with-space-and-quote", "apache_combined",
         f'192.0.2.1 - John \\"J\\" Smith {T} "GET / HTTP/1.0" 200 1 "-" "-"',
         {**at(T_UTC), **get(protocol="HTTP/1.0"), "status": 200, "bytes_sent": 1, "_client_ip": "192.0.2.1",
          "_remote_user": 'John "J" Smith'}),
    Case("apache-hostname-lookups", "common", f'crawl-66-249-66-1.googlebot.com - - {T} "GET / HTTP/1.1" 200 1',
         {**at(T_UTC), **get(), "status": 200, "bytes_sent": 1, "_client_ip": "name:crawl-66-249-66-1.googlebot.com"}),
    Case("apache-duration-microseconds", '%h %l %u %t "%r" %>s %b %D', f'192.0.2.1 - - {T} "GET / HTTP/1.1" 200 - 1234567',
         {**at(T_UTC, microseconds=1234567), **get(), "status": 200, "bytes_sent": 0, "_client_ip": "192.0.2.1"}),
    Case("apache-duration-microseconds-rounding", '%h %t "%r" %>s %b %D', f'192.0.2.1 {T} "GET / HTTP/1.1" 200 1 43',
         {**at(T_UTC, microseconds=43), **get(), "status": 200, "bytes_sent": 1, "_client_ip": "192.0.2.1"}),
    Case("apache-duration-seconds", '%h %t "%r" %>s %B %T', f'192.0.2.1 {T} "GET / HTTP/1.1" 200 0 2',
         {**at(T_UTC, seconds=2), **get(), "status": 200, "bytes_sent": 0, "_client_ip": "192.0.2.1"}),
    Case("apache-duration-milliseconds", '%h %t "%r" %>s %B %{ms}T', f'192.0.2.1 {T} "GET / HTTP/1.1" 200 0 250',
         {**at(T_UTC, milliseconds=250), **get(), "status": 200, "bytes_sent": 0, "_client_ip": "192.0.2.1"}),
    Case("apache-microseconds-win-over-seconds", '%h %t "%r" %>s %B %T %D',
         f'192.0.2.1 {T} "GET / HTTP/1.1" 200 0 1 1500000',
         {**at(T_UTC, microseconds=1500000), **get(), "status": 200, "bytes_sent": 0, "_client_ip": "192.0.2.1"}),
    Case("apache-v-and-V", '%h %t "%r" %>s %b %v %V', f'192.0.2.1 {T} "GET / HTTP/1.1" 200 1 canonical.example '
         'vhost.example', {**at(T_UTC), **get(), "status": 200, "bytes_sent": 1, "host": "vhost.example",
                           "_client_ip": "192.0.2.1"}),
    Case("apache-forwarded-for-trusted", '%h %t "%r" %>s %b "%{X-Forwarded-For}i"',
         f'10.0.0.5 {T} "GET / HTTP/1.1" 200 1 "198.51.100.1, [2001:db8::9]:443, 10.0.0.2"', trusted="10.0.0.0/8",
         expect={**at(T_UTC), **get(), "status": 200, "bytes_sent": 1, "_client_ip": "2001:db8::9"}),
    Case("apache-forwarded-for-untrusted", '%h %t "%r" %>s %b "%{X-Forwarded-For}i"',
         f'10.0.0.5 {T} "GET / HTTP/1.1" 200 1 "198.51.100.1"',
         {**at(T_UTC), **get(), "status": 200, "bytes_sent": 1, "_client_ip": "10.0.0.5"}),
    Case("apache-strftime-with-msec-frac", '%h [%{%d/%b/%Y:%H:%M:%S}t.%{msec_frac}t %{%z}t] "%r" %>s %B %D',
         '192.0.2.1 [10/Oct/2000:13:55:36.123 +0545] "GET / HTTP/1.1" 200 0 1500',
         {**at("2000-10-10T08:10:36.123", microseconds=1500), **get(), "status": 200, "bytes_sent": 0,
          "_client_ip": "192.0.2.1"}),
    Case("apache-strftime-iso-with-usec-frac", '%h %{%Y-%m-%dT%H:%M:%S}t.%{usec_frac}t%{%z}t "%r" %>s %B',
         '192.0.2.1 2000-10-10T13:55:36.123456-1200 "GET / HTTP/1.1" 200 0',
         {**at("2000-10-11T01:55:36.123456"), **get(), "status": 200, "bytes_sent": 0, "_client_ip": "192.0.2.1"}),
    Case("apache-sec", '%h %{sec}t "%r" %>s %B', '192.0.2.1 971186136 "GET / HTTP/1.1" 200 0',
         {**at("2000-10-10T13:55:36"), **get(), "status": 200, "bytes_sent": 0, "_client_ip": "192.0.2.1"}),
    Case("apache-sec-usec-frac", '%h %{sec}t.%{usec_frac}t "%r" %>s %B', '192.0.2.1 971186136.000250 "GET / HTTP/1.1" '
         '200 0', {**at("2000-10-10T13:55:36.000250"), **get(), "status": 200, "bytes_sent": 0,
                   "_client_ip": "192.0.2.1"}),
    Case("apache-msec", '%h %{msec}t "%r" %>s %B', '192.0.2.1 971186136123 "GET / HTTP/1.1" 200 0',
         {**at("2000-10-10T13:55:36.123"), **get(), "status": 200, "bytes_sent": 0, "_client_ip": "192.0.2.1"}),
    Case("apache-usec", '%h %{usec}t "%r" %>s %B', '192.0.2.1 971186136123456 "GET / HTTP/1.1" 200 0',
         {**at("2000-10-10T13:55:36.123456"), **get(), "status": 200, "bytes_sent": 0, "_client_ip": "192.0.2.1"}),
    Case("apache-end-time", '%h %{end:%d/%b/%Y:%H:%M:%S %z}t "%r" %>s %B %D',
         '192.0.2.1 10/Oct/2000:13:55:36 +1400 "GET / HTTP/1.1" 200 0 250000',
         {**ended("2000-10-09T23:55:36", milliseconds=250), **get(), "status": 200, "bytes_sent": 0,
          "_client_ip": "192.0.2.1"}),
    Case("apache-end-sec", '%h %{end:sec}t "%r" %>s %B %D', '192.0.2.1 971186136 "GET / HTTP/1.1" 200 0 250000',
         {**ended("2000-10-10T13:55:36", milliseconds=250), **get(), "status": 200, "bytes_sent": 0,
          "_client_ip": "192.0.2.1"}),
    Case("apache-begin-prefix", '%h %{begin:%d/%b/%Y:%H:%M:%S %z}t "%r" %>s %B %D',
         '192.0.2.1 10/Oct/2000:13:55:36 +0000 "GET / HTTP/1.1" 200 0 250000',
         {**at("2000-10-10T13:55:36", milliseconds=250), **get(), "status": 200, "bytes_sent": 0,
          "_client_ip": "192.0.2.1"}),
    Case("apache-begin-and-end-times", '%h %t %{end:sec}t "%r" %>s %b',
         '192.0.2.1 [10/Oct/2000:13:55:36 +0000] 971186137 "GET / HTTP/1.1" 200 5',
         {"received_at": utc("2000-10-10T13:55:36"), "responded_at": utc("2000-10-10T13:55:37"), **get(),
          "status": 200, "bytes_sent": 5, "_client_ip": "192.0.2.1"}),
    Case("apache-original-and-final-status", '%h %t "%r" %s %>s %b',
         f'192.0.2.1 {T} "GET /old HTTP/1.1" 302 200 5',
         {**at(T_UTC), **get("/old"), "status": 200, "bytes_sent": 5, "_client_ip": "192.0.2.1"}),
    Case("apache-request-parts", '%h %t "%m %U %q %H" %>s %b', f'192.0.2.1 {T} "GET /a/b ?x=1 HTTP/1.1" 200 5',
         {**at(T_UTC), **get("/a/b", "x=1"), "status": 200, "bytes_sent": 5, "_client_ip": "192.0.2.1"}),
    Case("apache-U-q-adjacent", '%h %t "%m %U%q %H" %>s %b', f'192.0.2.1 {T} "GET /a/b?x=1 HTTP/1.1" 200 5',
         {**at(T_UTC), **get("/a/b", "x=1"), "status": 200, "bytes_sent": 5, "_client_ip": "192.0.2.1"}),
    Case("apache-headers-cookies-and-ids", '%a %t "%r" %>s %B "%{Accept-Language}i" %L %{session}C '
         '"%{Content-Type}o" %k', f'192.0.2.1 {T} "GET / HTTP/1.1" 200 0 "en-GB,en;q=0.9" YJ8Cv38AAQEAAAp-GpQAAAAA '
         'abc123 "text/html; charset=UTF-8" 3',
         {**at(T_UTC), **get(), "status": 200, "bytes_sent": 0, "language": "en",
          "request_id": "YJ8Cv38AAQEAAAp-GpQAAAAA", "_client_ip": "192.0.2.1", "_x_cookie_session": "abc123",
          "_x_sent_http_content_type": "text/html; charset=UTF-8", "_x_keepalive_requests": "3"}),
    Case("apache-connection-status-close", '%h %t "%r" %>s %b %X', f'192.0.2.1 {T} "GET / HTTP/1.1" 200 1 -',
         {**at(T_UTC), **get(), "status": 200, "bytes_sent": 1, "_client_ip": "192.0.2.1",
          "_x_connection_status": "-"}),
    Case("apache-bad-time-is-rejected", "apache_combined",
         '192.0.2.1 - - [10/Oct/2000:13:55:36] "GET / HTTP/1.1" 200 1 "-" "-"',
         reject="line does not match log format 'apache_combined'"),
]

# -- JSON (nginx escape=json, Caddy) --------------------------------------------------------

CADDY = ('{"level":"info","ts":1700000000.5,"logger":"http.log.access","msg":"handled request",'
         '"request":{"remote_ip":"10.0.0.2","remote_port":"51234","client_ip":"2001:db8::1","proto":"HTTP/2.0",'
         '"method":"GET","host":"example.com","uri":"/a?b=1","headers":{"User-Agent":["curl/8.4.0"],'
         '"Accept-Language":["fr-CH, fr;q=0.9"],"Referer":["https://example.com/"]}%s},"bytes_read":0,'
         '"user_id":"","duration":0.25,"size":512,"status":200,"resp_headers":{"Server":["Caddy"]}}')
CADDY_ROW = {**ended("2023-11-14T22:13:20.500", milliseconds=250), **get("/a", "b=1", "HTTP/2.0"), "status": 200,
             "bytes_sent": 512, "user_agent": "curl/8.4.0", "referrer": "https://example.com/", "language": "fr",
             "host": "example.com", "_client_ip": "2001:db8::1", "_x_level": "info", "_x_logger": "http.log.access",
             "_x_msg": "handled request", "_x_bytes_read": "0"}
JSON_CASES = [
    Case("json-nginx-escape-json", "json",
         '{"time_local":"10/Oct/2000:13:55:36 -0700","remote_addr":"2001:db8::7","remote_user":"",'
         '"request":"GET /s?q=\\"x\\" HTTP/1.1","status": "404","body_bytes_sent":"0","request_time":"0.012",'
         '"http_referrer":"","http_user_agent":"Mozilla/5.0 (X11) \\"quoted\\" \\\\ \\u00e9",'
         '"upstream_response_time":"0.004, 0.006 : 0.001","http_x_custom":"v"}',
         {**ended(T_UTC, milliseconds=12), **get("/s", 'q="x"'), "status": 404, "bytes_sent": 0,
          "user_agent": 'Mozilla/5.0 (X11) "quoted" \\ é', "upstream_ms": 11.0, "_client_ip": "2001:db8::7",
          "_x_http_x_custom": "v"}),
    Case("json-nginx-numbers-iso-time", "json",
         '{"time_iso8601":"2000-10-10T13:55:36+05:30","remote_addr":"192.0.2.1","request_method":"POST",'
         '"request_uri":"/api?id=3","server_protocol":"HTTP/1.1","status":201,"body_bytes_sent":15,'
         '"bytes_sent":321,"request_length":987,"request_time":0.25,"upstream_status":"201",'
         '"upstream_addr":"10.0.0.1:80","host":"api.example","scheme":"https",'
         '"request_id":"0123456789abcdef0123456789abcdef","connection":12345,"ssl_protocol":"TLSv1.2"}',
         {**ended("2000-10-10T08:25:36", milliseconds=250), **get("/api", "id=3", method="POST"), "status": 201,
          "bytes_sent": 15, "response_bytes": 321, "request_length": 987, "upstream_status": "201",
          "upstream_addr": "10.0.0.1:80", "host": "api.example", "scheme": "https",
          "request_id": "0123456789abcdef0123456789abcdef", "connection_id": 12345, "tls_protocol": "TLSv1.2",
          "_client_ip": "192.0.2.1"}),
    Case("json-nginx-msec-number", "json",
         '{"msec":971186136.123,"remote_addr":"192.0.2.1","request":"GET / HTTP/1.1","status":200}',
         {**at("2000-10-10T13:55:36.123"), **get(), "status": 200, "_client_ip": "192.0.2.1"}),
    Case("json-raw-non-utf8-byte", "json",
         b'{"time_local":"10/Oct/2000:13:55:36 -0700","remote_addr":"192.0.2.1","request":"GET / HTTP/1.1",'
         b'"status":"200","http_user_agent":"bad \xff byte"}',
         {**at(T_UTC), **get(), "status": 200, "user_agent": "bad \ufffd byte", "_client_ip": "192.0.2.1"}),
    Case("json-caddy-plain-http", "json", CADDY % "", CADDY_ROW),
    Case("json-caddy-tls", "json",
         CADDY % ',"tls":{"resumed":false,"version":772,"cipher_suite":4865,"proto":"h2","server_name":"example.com"}',
         {**CADDY_ROW, "tls_protocol": "TLSv1.3"}),
    Case("json-not-an-object-is-rejected", "json", '["GET", "/"]', reject="JSON value is not an object"),
    Case("json-no-status-is-rejected", "json", '{"msec":971186136.123,"remote_addr":"192.0.2.1"}',
         reject="JSON object has no status field"),
]

# Lines real servers write that do not fit `METHOD URI PROTOCOL` or the configured format exactly
# (issue: real-world tolerance). Rows are kept; what could not be read is null, and what would
# otherwise be lost is kept, scrubbed later, in an extra: `request` (a request line with no method),
# `trailing` (fields after the format), `truncated` (the variable a cut line ends inside).
OK = {**at(T_UTC), "bytes_sent": 1, "_client_ip": "192.0.2.1"}
TOLERANCE_CASES = [
    # 1. the identd field: Apache's %l writes identd's answer; nginx keeps the CLF layout
    Case("combined-ident-token", "combined", f'192.0.2.1 frank - {T} "GET / HTTP/1.1" 200 1 "-" "-"',
         {**OK, **get(), "status": 200}),
    Case("combined-ident-number-and-user", "combined",
         f'192.0.2.1 12345 alice {T} "GET / HTTP/1.1" 200 1 "-" "-"',
         {**OK, **get(), "status": 200, "_remote_user": "alice"}),
    Case("apache-ident-token", "apache_combined", f'192.0.2.1 user-identifier frank {T} "GET / HTTP/1.0" 200 1 "-" "-"',
         {**OK, **get(protocol="HTTP/1.0"), "status": 200, "_remote_user": "frank"}),
    Case("common-ident-token", "common", f'192.0.2.1 ident - {T} "GET / HTTP/1.0" 200 1',
         {**OK, **get(protocol="HTTP/1.0"), "status": 200}),
    # the client: a host name (Apache with HostnameLookups On writes this layout too), or only
    # X-Forwarded-For logged (Apache behind a proxy), or no client in the format at all
    Case("combined-host-name-client", "combined", f'Unicomp6.unicomp.net - - {T} "GET / HTTP/1.0" 200 1 "-" "-"',
         {**OK, **get(protocol="HTTP/1.0"), "status": 200, "_client_ip": "name:unicomp6.unicomp.net"}),
    Case("apache-forwarded-for-only", '%{X-Forwarded-For}i %l %u %t "%r" %>s %b',
         f'203.0.113.9, 10.0.0.2 - - {T} "GET / HTTP/1.1" 200 1',
         {**OK, **get(), "status": 200, "_client_ip": "203.0.113.9"}),
    Case("apache-forwarded-for-only-none-logged", '%{X-Forwarded-For}i %l %u %t "%r" %>s %b',
         f'- - - {T} "GET / HTTP/1.1" 200 1', {**OK, **get(), "status": 200, "_client_ip": None}),
    Case("nginx-format-without-client", '[$time_local] "$request" $status $body_bytes_sent',
         f'{T} "GET / HTTP/1.1" 200 1', {**OK, **get(), "status": 200, "_client_ip": None}),
    # an Apache line (\" and \\ escapes) read with nginx's combined: nginx itself writes \x22 and \x5C
    Case("combined-reads-apache-escaped-quotes", "combined",
         f'192.0.2.1 - - {T} "GET /q HTTP/1.1" 200 1 "-" "say \\"hi\\" C:\\\\x"',
         {**OK, **get("/q"), "status": 200, "user_agent": 'say "hi" C:\\x'}),
    # 2. fields after the configured format
    Case("combined-with-forwarded-for-after-it", "combined",
         f'192.0.2.1 - - {T} "GET / HTTP/1.1" 200 1 "-" "curl/8" "203.0.113.9, 10.0.0.1"',
         {**OK, **get(), "status": 200, "user_agent": "curl/8", "_x_trailing": '"203.0.113.9, 10.0.0.1"'}),
    Case("combined-with-timings-and-request-id-after-it", "combined",
         f'192.0.2.1 - - {T} "GET / HTTP/1.1" 200 1 "-" "-" 0.005 0.004 rid=4f2a9c',
         {**OK, **get(), "status": 200, "_x_trailing": "0.005 0.004 rid=4f2a9c"}),
    Case("timed-with-field-after-the-upstream-times", "timed_combined",
         f'192.0.2.1 - - {T} "GET / HTTP/1.1" 200 1 "-" "-" 0.010 0.004, 0.005 : 0.001 HIT',
         {**ended(T_UTC, milliseconds=10), "bytes_sent": 1, "_client_ip": "192.0.2.1", **get(), "status": 200,
          "upstream_ms": 10.0, "_x_trailing": "HIT"}),
    Case("apache-common-read-with-combined-fields-after-it", "common",
         f'192.0.2.1 - - {T} "GET / HTTP/1.0" 200 1 "http://example.com/" "Mozilla/5.0"',
         {**OK, **get(protocol="HTTP/1.0"), "status": 200, "_x_trailing": '"http://example.com/" "Mozilla/5.0"'}),
    # 3. request lines that are not METHOD URI PROTOCOL
    Case("combined-http09-no-protocol", "combined", f'192.0.2.1 - - {T} "GET /" 200 1 "-" "-"',
         {**OK, **get(protocol=None), "status": 200}),
    Case("combined-uri-with-spaces", "combined", f'192.0.2.1 - - {T} "GET /a b/c d HTTP/1.1" 400 1 "-" "-"',
         {**OK, **get("/a b/c d"), "status": 400}),
    Case("combined-dash-request", "combined", f'192.0.2.1 - - {T} "-" 408 1 "-" "-"', {**OK, "status": 408}),
    Case("combined-empty-request-kept", "combined", f'192.0.2.1 - - {T} "" 400 1 "-" "-"', {**OK, "status": 400}),
    Case("combined-scanner-token-request", "combined", f'192.0.2.1 - - {T} "SSH-2.0-Go" 400 1 "-" "-"',
         {**OK, "status": 400, "_x_request": "SSH-2.0-Go"}),
    Case("apache-empty-request-408", "apache_combined", f'192.0.2.1 - - {T} "-" 408 - "-" "-"',
         {**OK, "bytes_sent": 0, "status": 408}),
    # 4. status '-' (Apache: no status was set)
    Case("apache-dash-status", "apache_combined", f'192.0.2.1 - - {T} "GET / HTTP/1.1" - - "-" "-"',
         {**OK, **get(), "bytes_sent": 0, "status": None}),
    Case("common-dash-status", "common", f'192.0.2.1 - - {T} "GET / HTTP/1.1" - 1', {**OK, **get(), "status": None}),
    # 5. unquoted '-' referrer and user agent
    Case("combined-bare-dash-referrer-and-agent", "combined", f'192.0.2.1 - - {T} "GET / HTTP/1.1" 200 1 - -',
         {**OK, **get(), "status": 200}),
    Case("combined-bare-dash-referrer-quoted-agent", "combined",
         f'192.0.2.1 - - {T} "GET / HTTP/1.1" 200 1 - "curl/8 (x y)"',
         {**OK, **get(), "status": 200, "user_agent": "curl/8 (x y)"}),
    Case("apache-bare-dash-agent", "apache_combined", f'192.0.2.1 - - {T} "GET / HTTP/1.1" 200 1 "http://r/" -',
         {**OK, **get(), "status": 200, "referrer": "http://r/"}),
    # 6. a line cut off inside its last quoted field (a truncated write)
    Case("combined-cut-in-the-referrer", "combined", f'192.0.2.1 - - {T} "GET / HTTP/1.1" 200 1 "https://exa',
         {**OK, **get(), "status": 200, "referrer": "https://exa", "_x_truncated": "http_referer"}),
    Case("combined-cut-right-after-the-opening-quote", "combined", f'192.0.2.1 - - {T} "GET / HTTP/1.1" 200 1 "-" "',
         {**OK, **get(), "status": 200, "_x_truncated": "http_user_agent"}),
    Case("timed-cut-in-the-agent-loses-the-timings", "timed_combined",
         f'192.0.2.1 - - {T} "GET / HTTP/1.1" 200 1 "-" "Mozilla/5.0 (Windows NT 10.0; Win64; x64) App',
         {**OK, **get(), "status": 200, "user_agent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) App",
          "_x_truncated": "http_user_agent"}),
    Case("apache-cut-after-an-escaped-quote", "apache_combined",
         f'192.0.2.1 - - {T} "GET / HTTP/1.1" 200 1 "-" "say \\"hi\\',
         {**OK, **get(), "status": 200, "user_agent": 'say "hi\\', "_x_truncated": "http_user_agent"}),
    Case("main-cut-in-the-forwarded-for", "main", f'192.0.2.1 - - {T} "GET / HTTP/1.1" 200 1 "-" "curl/8" "203.0.11',
         {**OK, **get(), "status": 200, "user_agent": "curl/8", "_x_truncated": "http_x_forwarded_for"}),
]

CASES = COMBINED_CASES + MAIN_CASES + TIMED_CASES + NGINX_CASES + APACHE_CASES + JSON_CASES + TOLERANCE_CASES


def parse(fmt, data: bytes):
    return parse_chunk(fmt, LogChunk("conformance.log", "0123456789abcdef", 1, data))


def compiled(case: Case, plan: str):
    fmt = resolve_format(case.fmt)
    if case.trusted:
        fmt = dataclasses.replace(fmt, options={"trusted_proxies": parse_trusted_proxies(case.trusted)})
    if plan == "regex":
        fmt = dataclasses.replace(fmt, columns=None)
    return fmt


def check(case: Case, plan: str) -> None:
    data = case.line if isinstance(case.line, bytes) else case.line.encode("utf-8")
    records, rejects = parse(compiled(case, plan), data + b"\n")
    if case.reject:
        assert (records.records.num_rows, rejects.reasons) == (0, [case.reject])
        return
    assert rejects.reasons == []
    (row,) = records.records.to_pylist()
    got = {name: row[name] for name in COLUMNS} | {k: v for k, v in row.items() if k.startswith("_x_")}
    want = dict.fromkeys(COLUMNS) | case.expect
    assert got == want


@pytest.mark.parametrize("case, plan", list(_both_plans(CASES)))
def test_line_conforms(case, plan):
    check(case, plan)


def test_case_ids_are_unique():
    assert len({case.id for case in CASES}) == len(CASES)


# -- every preset and every listed variable is covered --------------------------------------

PRESETS = ("combined", "main", "timed_combined", "common", "apache_combined", "combinedio", "vhost_combined", "json")
NGINX_VARIABLES = (
    "remote_addr binary_remote_addr http_x_forwarded_for realip_remote_addr remote_user time_local time_iso8601 "
    "msec request request_method request_uri uri args query_string server_protocol status body_bytes_sent "
    "bytes_sent request_length http_referer http_user_agent http_accept_language request_time "
    "upstream_response_time upstream_status upstream_addr host server_name http_host scheme request_id connection "
    "pipe ssl_protocol http_x_custom cookie_session sent_http_content_type").split()


def test_every_preset_has_a_case():
    assert set(PRESETS) <= {case.fmt for case in CASES}


def test_every_nginx_variable_has_a_case():
    used = {var for case in CASES if resolve_format(case.fmt).kind == "nginx"
            for var in resolve_format(case.fmt).variables}
    assert set(NGINX_VARIABLES) - used == set()


# -- time zones -----------------------------------------------------------------------------

ZONES = ("-1200", "-1100", "-1000", "-0930", "-0900", "-0800", "-0700", "-0600", "-0500", "-0400", "-0330", "-0300",
         "-0230", "-0200", "-0100", "-0000", "+0000", "+0100", "+0200", "+0300", "+0330", "+0400", "+0430", "+0500",
         "+0530", "+0545", "+0600", "+0630", "+0700", "+0800", "+0845", "+0900", "+0930", "+1000", "+1030", "+1100",
         "+1200", "+1245", "+1300", "+1400")


def _offset(zone: str) -> timedelta:
    return (-1 if zone[0] == "-" else 1) * timedelta(hours=int(zone[1:3]), minutes=int(zone[3:]))


@pytest.mark.parametrize("fmt, template, column", [
    ("combined", '192.0.2.1 - - [31/Dec/1999:23:59:59 {zone}] "GET / HTTP/1.1" 200 1 "-" "-"', "responded_at"),
    ("apache_combined", '192.0.2.1 - - [31/Dec/1999:23:59:59 {zone}] "GET / HTTP/1.1" 200 1 "-" "-"', "received_at"),
    ('$remote_addr $time_iso8601 "$request" $status', '192.0.2.1 1999-12-31T23:59:59{iso} "GET / HTTP/1.1" 200',
     "responded_at"),
    ('%h [%{%d/%b/%Y:%H:%M:%S}t.%{msec_frac}t %{%z}t] "%r" %>s %b',
     '192.0.2.1 [31/Dec/1999:23:59:59.999 {zone}] "GET / HTTP/1.1" 200 1', "received_at"),
], ids=["time_local", "apache-t", "time_iso8601", "apache-strftime"])
def test_every_time_zone(fmt, template, column):
    lines = [template.format(zone=z, iso=f"{z[:3]}:{z[3:]}") for z in ZONES]
    records, rejects = parse(resolve_format(fmt), "\n".join(lines).encode() + b"\n")
    assert rejects.reasons == []
    got = records.records.sort_by("source_line").column(column).to_pylist()
    fraction = timedelta(milliseconds=999) if "msec_frac" in fmt else timedelta(0)
    assert got == [datetime(1999, 12, 31, 23, 59, 59, tzinfo=UTC) + fraction - _offset(z) for z in ZONES]


# -- line ends, long lines, repeated values -------------------------------------------------

GOOD = '203.0.113.{n} - - [10/Oct/2000:13:55:36 -0700] "GET /{n} HTTP/1.1" 200 {n} "-" "agent {n}"'


@pytest.mark.parametrize("fmt", ["combined", "apache_combined"])
def test_crlf_line_ends(fmt):
    data = "".join(GOOD.format(n=n) + "\r\n" for n in (1, 2, 3)).encode()
    records, rejects = parse(resolve_format(fmt), data)
    assert rejects.reasons == []
    table = records.records.sort_by("source_line")
    assert table["user_agent"].to_pylist() == ["agent 1", "agent 2", "agent 3"]
    assert table["url_path"].to_pylist() == ["/1", "/2", "/3"]


@pytest.mark.parametrize("fmt", ["combined", "apache_combined", "json"])
def test_last_line_without_newline(fmt):
    if fmt == "json":
        lines = [f'{{"msec":971186136.{n},"remote_addr":"192.0.2.{n}","request":"GET /{n} HTTP/1.1","status":200}}'
                 for n in (1, 2)]
    else:
        lines = [GOOD.format(n=n) for n in (1, 2)]
    records, rejects = parse(resolve_format(fmt), "\n".join(lines).encode())
    assert rejects.reasons == []
    assert records.lines == 2
    assert records.records.sort_by("source_line")["url_path"].to_pylist() == ["/1", "/2"]


@pytest.mark.parametrize("fmt, escaped_ua", [("combined", "ua \\x22q\\x22"), ("apache_combined", 'ua \\"q\\"')])
def test_long_urls_up_to_the_line_limit(fmt, escaped_ua):
    """nginx's large_client_header_buffers (4 x 8k) bound a request line; ours hold 64 KiB, and a
    longer line is rejected by its length before any regex sees it."""
    path = "/" + "a" * (MAX_LINE_BYTES - 200)
    line = f'203.0.113.7 - - {T} "GET {path}?x=1 HTTP/1.1" 414 0 "-" "{escaped_ua}"'
    too_long = line.replace("/a", "/" + "b" * 300, 1)
    records, rejects = parse(resolve_format(fmt), (f"{line}\n{too_long}\n" + GOOD.format(n=9) + "\n").encode())
    assert rejects.reasons == [TOO_LONG] and rejects.source_lines == [2]
    long, short = records.records.sort_by("source_line").to_pylist()
    assert (long["url_path"], long["url_query"], long["status"], long["user_agent"]) == (path, "x=1", 414, 'ua "q"')
    assert short["url_path"] == "/9"


@pytest.mark.parametrize("fmt, line", [
    ('$remote_addr [$time_local] "$request_method $request_uri" $status', f'192.0.2.1 {T} "GET /search?q=beam" 200'),
    ("json", '{"time_iso8601":"2000-10-10T13:55:36+00:00","remote_addr":"192.0.2.1","url":"/search?q=beam",'
             '"status":200}'),   # a path key without a method: request_uri, no request line
], ids=["nginx", "json"])
def test_request_uri_repeated_in_a_chunk(fmt, line):
    records, rejects = parse(resolve_format(fmt), (line + "\n").encode() * 3)
    assert rejects.reasons == []
    rows = records.records.to_pylist()
    assert [(r["url_path"], r["url_query"]) for r in rows] == [("/search", "q=beam")] * 3

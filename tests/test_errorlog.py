"""parse_error_chunk / detect_error_log: nginx and Apache httpd error logs -> one row per entry.

Server facts the expectations rely on (from the servers' source):
* nginx, ngx_log_error_core: "YYYY/MM/DD HH:MM:SS [level] pid#tid: " then "*cid " when
  there is a connection, the message, " (errno: strerror)", " while <action>", then the
  handler's tail: ngx_http_log_error ", client: A" + ", server: S" (bare),
  ", request: \"..\"", ", subrequest: \"..\"", ", upstream: \"..\"", ", host: \"..\"",
  ", referrer: \"..\"" (quoted, written raw); stream: ", udp client: A, server: S",
  ", upstream: \"..\", bytes from/to client:N/N, bytes from/to upstream:N/N"; mail:
  " using starttls", ", login: \"..\"", ", upstream: U" (bare). Lines are cut at 2048 bytes.
* Apache 2.4 do_errorlog_default: "[%{u}t] [module:level] [pid P:tid T] " (":tid T" only
  under threaded MPMs), "file(line): " at debug/trace, "(status)strerror: ", then
  "[client ip:port] " (or "[remote ip:port] "), the message and ", referer: R".
* Apache 2.2 log_error_core: "[%t] [level] ", "[client ip] " (no port), "(status)strerror: ",
  message, ", referer: R".
"""
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pyarrow as pa
import pytest

from schemas.errors import AccesslogError
from transforms.chunks import LogChunk
from transforms.errorlog import ERROR_ENTRY_FIELDS, detect_error_log, parse_error_chunk, resolve_tz
from transforms.lines import MAX_LINE_BYTES, TOO_LONG

UTC = timezone.utc
NULLS = {name: None for name in ("_client_ip", "server", "host", "request", "upstream", "referrer", "connection_id",
                                 "pid", "tid", "module")}


def parse(kind, lines, first_line=1, sep="\n", tz=None):
    data = lines if isinstance(lines, bytes) else (sep.join(lines) + sep).encode("utf-8")
    columns, rejects = parse_error_chunk(kind, LogChunk("error.log", "0123456789abcdef", first_line, data), tz=tz)
    return pa.table(columns).to_pylist(), rejects


def one(kind, text, **kw):
    rows, rejects = parse(kind, [text], **kw)
    assert rejects == []
    (row,) = rows
    assert row["source_line"] == 1 and row["lines"] == 1
    return {k: v for k, v in row.items() if k not in ("source_line", "lines")}


def at(*args, micro=0):
    return datetime(*args, micro, tzinfo=UTC)


# -- nginx --------------------------------------------------------------------------------------

NGINX_CASES = {
    "open() failed, every http key": (
        '2024/01/15 10:30:45 [error] 1234#1234: *5678 open() "/var/www/html/favicon.ico" failed '
        '(2: No such file or directory), client: 203.0.113.5, server: example.com, '
        'request: "GET /favicon.ico HTTP/1.1", host: "example.com", referrer: "https://example.com/start"',
        dict(logged_at=at(2024, 1, 15, 10, 30, 45), level="error",
             message='open() "/var/www/html/favicon.ico" failed (2: No such file or directory)',
             _client_ip="203.0.113.5", server="example.com", host="example.com",
             request="GET /favicon.ico HTTP/1.1", referrer="https://example.com/start",
             connection_id=5678, pid=1234, tid=1234)),
    "upstream timed out with upstream, host and referrer": (
        "2024/01/15 10:31:02 [error] 1234#1234: *5690 upstream timed out (110: Connection timed out) while "
        "reading response header from upstream, client: 198.51.100.23, server: api.example.com, "
        'request: "POST /v1/orders?id=7 HTTP/1.1", upstream: "http://10.0.0.12:8080/v1/orders?id=7", '
        'host: "api.example.com:8443", referrer: "https://shop.example.com/cart"',
        dict(logged_at=at(2024, 1, 15, 10, 31, 2), level="error",
             message="upstream timed out (110: Connection timed out) while reading response header from upstream",
             _client_ip="198.51.100.23", server="api.example.com", host="api.example.com:8443",
             request="POST /v1/orders?id=7 HTTP/1.1", upstream="http://10.0.0.12:8080/v1/orders?id=7",
             referrer="https://shop.example.com/cart", connection_id=5690, pid=1234, tid=1234)),
    "limiting requests (message with commas and quotes)": (
        '2024/01/15 10:32:00 [error] 1234#1234: *5701 limiting requests, excess: 10.520 by zone "one", '
        'client: 192.0.2.44, server: example.com, request: "GET /login HTTP/1.1", host: "example.com"',
        dict(logged_at=at(2024, 1, 15, 10, 32, 0), level="error",
             message='limiting requests, excess: 10.520 by zone "one"', _client_ip="192.0.2.44",
             server="example.com", host="example.com", request="GET /login HTTP/1.1",
             connection_id=5701, pid=1234, tid=1234)),
    "SSL_do_handshake() failed, IPv6 client, no request: host falls back to server": (
        "2024/01/15 10:33:10 [crit] 1235#1235: *5720 SSL_do_handshake() failed (SSL: error:0A00006C:SSL "
        "routines::bad key share) while SSL handshaking, client: 2001:db8::1, server: [::]:443",
        dict(logged_at=at(2024, 1, 15, 10, 33, 10), level="crit",
             message="SSL_do_handshake() failed (SSL: error:0A00006C:SSL routines::bad key share) "
                     "while SSL handshaking",
             _client_ip="2001:db8::1", server="[::]:443", host="[::]:443",
             connection_id=5720, pid=1235, tid=1235)),
    "client intended to send too large body": (
        "2024/01/15 10:34:00 [error] 1234#1234: *5730 client intended to send too large body: 10485760 bytes, "
        'client: 203.0.113.9, server: upload.example.com, request: "POST /upload HTTP/2.0", '
        'host: "upload.example.com"',
        dict(logged_at=at(2024, 1, 15, 10, 34, 0), level="error",
             message="client intended to send too large body: 10485760 bytes", _client_ip="203.0.113.9",
             server="upload.example.com", host="upload.example.com", request="POST /upload HTTP/2.0",
             connection_id=5730, pid=1234, tid=1234)),
    "notice without connection": (
        "2024/01/15 10:30:45 [notice] 1#1: signal process started",
        dict(logged_at=at(2024, 1, 15, 10, 30, 45), level="notice", message="signal process started",
             pid=1, tid=1)),
    "warn without connection, message with commas": (
        '2024/01/15 10:35:00 [warn] 4711#0: conflicting server name "example.com" on 0.0.0.0:80, ignored',
        dict(logged_at=at(2024, 1, 15, 10, 35, 0), level="warn",
             message='conflicting server name "example.com" on 0.0.0.0:80, ignored', pid=4711, tid=0)),
    "emerg at startup": (
        "2024/01/15 09:00:00 [emerg] 1#1: bind() to 0.0.0.0:80 failed (98: Address already in use)",
        dict(logged_at=at(2024, 1, 15, 9, 0, 0), level="emerg",
             message="bind() to 0.0.0.0:80 failed (98: Address already in use)", pid=1, tid=1)),
    "message quoting ', client: ...': the rightmost valid tail wins": (
        '2024/01/15 10:36:00 [error] 1234#1234: *5800 upstream sent invalid header: "X-Debug: a, client: '
        '10.9.9.9, server: evil" while reading response header from upstream, client: 203.0.113.7, '
        'server: example.com, request: "GET /debug HTTP/1.1", upstream: "http://127.0.0.1:9000/debug", '
        'host: "example.com"',
        dict(logged_at=at(2024, 1, 15, 10, 36, 0), level="error",
             message='upstream sent invalid header: "X-Debug: a, client: 10.9.9.9, server: evil" while '
                     "reading response header from upstream",
             _client_ip="203.0.113.7", server="example.com", host="example.com", request="GET /debug HTTP/1.1",
             upstream="http://127.0.0.1:9000/debug", connection_id=5800, pid=1234, tid=1234)),
    "request line containing ', client: ' and a quote": (
        '2024/01/15 10:36:30 [error] 1234#1234: *5801 access forbidden by rule, client: 192.0.2.1, '
        'server: example.com, request: "GET /?q=a, client: b"c HTTP/1.1", host: "example.com"',
        dict(logged_at=at(2024, 1, 15, 10, 36, 30), level="error", message="access forbidden by rule",
             _client_ip="192.0.2.1", server="example.com", host="example.com",
             request='GET /?q=a, client: b"c HTTP/1.1', connection_id=5801, pid=1234, tid=1234)),
    "subrequest (parsed away)": (
        '2024/01/15 10:37:00 [error] 1234#1234: *5810 "/var/www/ssi/index.html" is not found (2: No such file '
        'or directory), client: 192.0.2.2, server: _, request: "GET / HTTP/1.1", subrequest: "/ssi/header.html", '
        'upstream: "http://backend/ssi/header.html", host: "www.example.org"',
        dict(logged_at=at(2024, 1, 15, 10, 37, 0), level="error",
             message='"/var/www/ssi/index.html" is not found (2: No such file or directory)',
             _client_ip="192.0.2.2", server="_", host="www.example.org", request="GET / HTTP/1.1",
             upstream="http://backend/ssi/header.html",
             connection_id=5810, pid=1234, tid=1234)),
    "empty server_name is null": (
        '2024/01/15 10:37:30 [error] 7#7: *3 directory index of "/srv/" is forbidden, client: 192.0.2.3, '
        'server: , request: "GET / HTTP/1.0"',
        dict(logged_at=at(2024, 1, 15, 10, 37, 30), level="error",
             message='directory index of "/srv/" is forbidden', _client_ip="192.0.2.3",
             request="GET / HTTP/1.0", connection_id=3, pid=7, tid=7)),
    "stream (udp), bare-looking upstream and byte counters": (
        "2024/01/15 10:38:00 [error] 1240#1240: *5900 upstream timed out (110: Connection timed out) while "
        'proxying connection, udp client: 192.0.2.77, server: 0.0.0.0:53, upstream: "10.0.0.53:53", '
        "bytes from/to client:40/0, bytes from/to upstream:0/40",
        dict(logged_at=at(2024, 1, 15, 10, 38, 0), level="error",
             message="upstream timed out (110: Connection timed out) while proxying connection",
             _client_ip="192.0.2.77", server="0.0.0.0:53", host="0.0.0.0:53", upstream="10.0.0.53:53",
             connection_id=5900, pid=1240, tid=1240)),
    "mail: login is parsed away, never returned": (
        "2024/01/15 10:39:00 [info] 1250#0: *6001 client login failed: \"Authentication failed\" while in "
        'http auth state, client: 192.0.2.88 using starttls, server: 0.0.0.0:587, login: "alice@example.com", '
        "upstream: 10.0.0.25:25",
        dict(logged_at=at(2024, 1, 15, 10, 39, 0), level="info",
             message='client login failed: "Authentication failed" while in http auth state',
             _client_ip="192.0.2.88", server="0.0.0.0:587", host="0.0.0.0:587", upstream="10.0.0.25:25",
             connection_id=6001, pid=1250, tid=0)),
    "info without tail keeps the address in the message": (
        "2024/01/15 10:40:00 [info] 1234#1234: *6000 client 203.0.113.5 closed keepalive connection",
        dict(logged_at=at(2024, 1, 15, 10, 40, 0), level="info",
             message="client 203.0.113.5 closed keepalive connection", connection_id=6000, pid=1234, tid=1234)),
    "debug": (
        "2024/01/15 10:40:01 [debug] 1234#1234: *6002 http keepalive handler",
        dict(logged_at=at(2024, 1, 15, 10, 40, 1), level="debug", message="http keepalive handler",
             connection_id=6002, pid=1234, tid=1234)),
}


@pytest.mark.parametrize("text,expected", NGINX_CASES.values(), ids=NGINX_CASES.keys())
def test_nginx_line_every_column(text, expected):
    assert one("nginx_error", text) == {**NULLS, **expected}


def test_nginx_fastcgi_stderr_spans_lines_and_the_tail_is_on_the_last():
    lines = [
        '2024/01/15 10:41:00 [error] 1234#1234: *6100 FastCGI sent in stderr: "PHP message: PHP Fatal error:  '
        "Uncaught Exception: boom in /var/www/index.php:3",
        "Stack trace:",
        "#0 {main}",
        '  thrown in /var/www/index.php on line 3" while reading response header from upstream, '
        'client: 203.0.113.5, server: example.com, request: "GET /index.php HTTP/1.1", '
        'upstream: "fastcgi://unix:/run/php/php8.2-fpm.sock:", host: "example.com"',
        "2024/01/15 10:41:01 [notice] 1#1: signal process started",
    ]
    rows, rejects = parse("nginx_error", lines, first_line=10)
    assert rejects == []
    assert [(r["source_line"], r["lines"]) for r in rows] == [(10, 4), (14, 1)]
    assert rows[0]["message"] == (
        'FastCGI sent in stderr: "PHP message: PHP Fatal error:  Uncaught Exception: boom in /var/www/index.php:3'
        '\nStack trace:\n#0 {main}\n  thrown in /var/www/index.php on line 3" while reading response header '
        "from upstream")
    assert rows[0]["_client_ip"] == "203.0.113.5"
    assert rows[0]["upstream"] == "fastcgi://unix:/run/php/php8.2-fpm.sock:"
    assert rows[0]["request"] == "GET /index.php HTTP/1.1"
    assert rows[0]["host"] == "example.com"


def test_nginx_line_cut_at_max_error_str_inside_the_request():
    head = "2024/01/15 10:42:00 [error] 9#9: *1 open() \"/srv/x\" failed (2: No such file or directory), " \
           'client: 192.0.2.9, server: example.com, request: "GET /'
    text = (head + "a" * 3000)[:2047]
    row = one("nginx_error", text)
    assert row["_client_ip"] == "192.0.2.9"
    assert row["request"] == "GET /" + "a" * (2047 - len(head))
    assert row["message"] == 'open() "/srv/x" failed (2: No such file or directory)'


def test_nginx_line_cut_inside_a_key():
    text = ('2024/01/15 10:42:00 [error] 9#9: *1 x, client: 192.0.2.9, server: example.com, '
            'request: "GET / HTTP/1.1", ho')
    row = one("nginx_error", text)
    assert (row["message"], row["_client_ip"], row["request"], row["host"]) == (
        "x", "192.0.2.9", "GET / HTTP/1.1", "example.com")


# -- Apache -------------------------------------------------------------------------------------

APACHE_CASES = {
    "2.4 docs example: AH00126 File does not exist": (
        "[Fri Sep 09 10:42:29.902022 2011] [core:error] [pid 35708:tid 4328636416] [client 72.15.99.187:53140] "
        "AH00126: File does not exist: /usr/local/apache2/htdocs/favicon.ico",
        dict(logged_at=at(2011, 9, 9, 10, 42, 29, micro=902022), level="error", module="core",
             message="AH00126: File does not exist: /usr/local/apache2/htdocs/favicon.ico",
             _client_ip="72.15.99.187", pid=35708, tid=4328636416)),
    "2.4 AH01630 client denied, referer": (
        "[Sun Jan 14 08:15:02.117045 2024] [authz_core:error] [pid 2187:tid 140234567890] "
        "[client 203.0.113.5:51234] AH01630: client denied by server configuration: /var/www/private/, "
        "referer: https://example.com/start?a=1,2",
        dict(logged_at=at(2024, 1, 14, 8, 15, 2, micro=117045), level="error", module="authz_core",
             message="AH01630: client denied by server configuration: /var/www/private/",
             _client_ip="203.0.113.5", referrer="https://example.com/start?a=1,2", pid=2187, tid=140234567890)),
    "2.4 AH00128 File does not exist (info)": (
        "[Mon Jan 15 10:30:45.000123 2024] [core:info] [pid 2187:tid 140234567891] [client 198.51.100.4:40000] "
        "AH00128: File does not exist: /var/www/html/robots.txt",
        dict(logged_at=at(2024, 1, 15, 10, 30, 45, micro=123), level="info", module="core",
             message="AH00128: File does not exist: /var/www/html/robots.txt", _client_ip="198.51.100.4",
             pid=2187, tid=140234567891)),
    "2.4 proxy error with APR status and no client": (
        "[Mon Jan 15 10:31:00.000001 2024] [proxy:error] [pid 2190:tid 140234567892] (111)Connection refused: "
        "AH00957: HTTP: attempt to connect to 127.0.0.1:8080 (127.0.0.1) failed",
        dict(logged_at=at(2024, 1, 15, 10, 31, 0, micro=1), level="error", module="proxy",
             message="(111)Connection refused: AH00957: HTTP: attempt to connect to 127.0.0.1:8080 (127.0.0.1) "
                     "failed", pid=2190, tid=140234567892)),
    "2.4 proxy_http: status before the client, referer after the message": (
        "[Mon Jan 15 10:31:00.000250 2024] [proxy_http:error] [pid 2190:tid 140234567892] (70007)The timeout "
        "specified has expired: [client 198.51.100.8:50500] AH01102: error reading status line from remote "
        "server 127.0.0.1:8080, referer: https://example.com/app",
        dict(logged_at=at(2024, 1, 15, 10, 31, 0, micro=250), level="error", module="proxy_http",
             message="(70007)The timeout specified has expired: AH01102: error reading status line from remote "
                     "server 127.0.0.1:8080",
             _client_ip="198.51.100.8", referrer="https://example.com/app", pid=2190, tid=140234567892)),
    "2.4 proxy AH00898 with client": (
        "[Mon Jan 15 10:31:01.500000 2024] [proxy:error] [pid 2190:tid 140234567892] [client 198.51.100.8:50501] "
        "AH00898: Error reading from remote server returned by /app/report",
        dict(logged_at=at(2024, 1, 15, 10, 31, 1, micro=500000), level="error", module="proxy",
             message="AH00898: Error reading from remote server returned by /app/report",
             _client_ip="198.51.100.8", pid=2190, tid=140234567892)),
    "2.4 php7 warning, prefork (no tid), IPv6 client with port, referer": (
        "[Mon Jan 15 10:32:00.424242 2024] [php7:warn] [pid 3001] [client 2001:db8::7:61000] PHP Warning:  "
        "Undefined variable $x in /var/www/html/index.php on line 12, referer: http://example.com/",
        dict(logged_at=at(2024, 1, 15, 10, 32, 0, micro=424242), level="warn", module="php7",
             message="PHP Warning:  Undefined variable $x in /var/www/html/index.php on line 12",
             _client_ip="2001:db8::7", referrer="http://example.com/", pid=3001)),
    "2.4 cgi error": (
        "[Mon Jan 15 10:33:00.000000 2024] [cgi:error] [pid 3002:tid 140000000001] [client 192.0.2.10:33333] "
        "AH01215: Traceback (most recent call last):: /usr/lib/cgi-bin/app.py",
        dict(logged_at=at(2024, 1, 15, 10, 33, 0), level="error", module="cgi",
             message="AH01215: Traceback (most recent call last):: /usr/lib/cgi-bin/app.py",
             _client_ip="192.0.2.10", pid=3002, tid=140000000001)),
    "2.4 bracketed IPv6 client": (
        "[Mon Jan 15 10:33:30.000000 2024] [ssl:info] [pid 3003:tid 5] [client [2001:db8::2]:443] "
        "AH01964: Connection to child 0 established (server example.com:443)",
        dict(logged_at=at(2024, 1, 15, 10, 33, 30), level="info", module="ssl",
             message="AH01964: Connection to child 0 established (server example.com:443)",
             _client_ip="2001:db8::2", pid=3003, tid=5)),
    "2.4 [remote ...] is an address too": (
        "[Mon Jan 15 10:33:40.000000 2024] [proxy_fcgi:error] [pid 3004:tid 6] [remote 10.0.0.5:9000] "
        "AH01067: Failed to read FastCGI header",
        dict(logged_at=at(2024, 1, 15, 10, 33, 40), level="error", module="proxy_fcgi",
             message="AH01067: Failed to read FastCGI header", _client_ip="10.0.0.5", pid=3004, tid=6)),
    "2.4 trace level with source location": (
        "[Mon Jan 15 10:34:00.000007 2024] [ssl:trace3] [pid 3003:tid 5] ssl_engine_kernel.c(2134): "
        "[client 192.0.2.11:40001] OpenSSL: Handshake: start",
        dict(logged_at=at(2024, 1, 15, 10, 34, 0, micro=7), level="trace3", module="ssl",
             message="ssl_engine_kernel.c(2134): OpenSSL: Handshake: start", _client_ip="192.0.2.11",
             pid=3003, tid=5)),
    "2.4 mpm notice without client": (
        "[Mon Jan 15 10:00:00.000000 2024] [mpm_event:notice] [pid 1000:tid 140000000000] AH00489: "
        "Apache/2.4.57 (Debian) configured -- resuming normal operations",
        dict(logged_at=at(2024, 1, 15, 10, 0, 0), level="notice", module="mpm_event",
             message="AH00489: Apache/2.4.57 (Debian) configured -- resuming normal operations",
             pid=1000, tid=140000000000)),
    "2.2 docs example: client denied": (
        "[Wed Oct 11 14:32:52 2000] [error] [client 127.0.0.1] client denied by server configuration: "
        "/export/home/live/ap/htdocs/test",
        dict(logged_at=at(2000, 10, 11, 14, 32, 52), level="error",
             message="client denied by server configuration: /export/home/live/ap/htdocs/test",
             _client_ip="127.0.0.1")),
    "2.2 File does not exist, referer": (
        "[Wed Oct 11 14:32:53 2000] [error] [client 192.0.2.20] File does not exist: /var/www/favicon.ico, "
        "referer: http://example.com/page",
        dict(logged_at=at(2000, 10, 11, 14, 32, 53), level="error",
             message="File does not exist: /var/www/favicon.ico", _client_ip="192.0.2.20",
             referrer="http://example.com/page")),
    "2.2 client before the APR status": (
        "[Wed Oct 11 14:34:00 2000] [error] [client 192.0.2.5] (13)Permission denied: access to /secret denied",
        dict(logged_at=at(2000, 10, 11, 14, 34, 0), level="error",
             message="(13)Permission denied: access to /secret denied", _client_ip="192.0.2.5")),
    "2.2 IPv6 client has no port to strip": (
        "[Wed Oct 11 14:34:01 2000] [warn] [client 2001:db8::1] mod_fcgid: stderr: PHP Notice:  x",
        dict(logged_at=at(2000, 10, 11, 14, 34, 1), level="warn", message="mod_fcgid: stderr: PHP Notice:  x",
             _client_ip="2001:db8::1")),
    "2.2 notice without client": (
        "[Wed Oct 11 14:33:00 2000] [notice] Apache/2.2.3 (Unix) configured -- resuming normal operations",
        dict(logged_at=at(2000, 10, 11, 14, 33, 0), level="notice",
             message="Apache/2.2.3 (Unix) configured -- resuming normal operations")),
    "message-like ', referer: ' only counts after a client": (
        "[Wed Oct 11 14:33:01 2000] [notice] child said: x, referer: y",
        dict(logged_at=at(2000, 10, 11, 14, 33, 1), level="notice", message="child said: x, referer: y")),
}


@pytest.mark.parametrize("text,expected", APACHE_CASES.values(), ids=APACHE_CASES.keys())
def test_apache_line_every_column(text, expected):
    assert one("apache_error", text) == {**NULLS, **expected}


def test_apache_raw_stderr_lines_join_the_previous_entry():
    lines = [
        "[Wed Oct 11 14:35:00 2000] [error] [client 192.0.2.5] Premature end of script headers: app.cgi, "
        "referer: http://example.com/",
        "Traceback (most recent call last):",
        '  File "/usr/lib/cgi-bin/app.cgi", line 3, in <module>',
        "NameError: name 'x' is not defined",
        "[Wed Oct 11 14:35:01 2000] [notice] caught SIGTERM, shutting down",
    ]
    rows, rejects = parse("apache_error", lines)
    assert rejects == []
    assert [(r["source_line"], r["lines"]) for r in rows] == [(1, 4), (5, 1)]
    assert rows[0]["message"] == ("Premature end of script headers: app.cgi\nTraceback (most recent call last):\n"
                                  '  File "/usr/lib/cgi-bin/app.cgi", line 3, in <module>\n'
                                  "NameError: name 'x' is not defined")
    assert rows[0]["referrer"] == "http://example.com/"
    assert rows[0]["_client_ip"] == "192.0.2.5"


# -- lines: accounting, rejects, encodings ------------------------------------------------------

NGINX_NOTICE = "2024/01/15 10:30:45 [notice] 1#1: signal process started"


def accounted(rows, rejects, n_lines):
    assert sum(r["lines"] for r in rows) + len(rejects) == n_lines
    covered = sorted([i for r in rows for i in range(r["source_line"] - 1, r["source_line"] - 1 + r["lines"])]
                     + [i for i, _ in rejects])
    assert covered == list(range(n_lines))


def test_every_line_is_an_entry_line_or_a_reject():
    lines = ["  at frame 1",                                       # 0: before any entry
             "",                                                   # 1: empty
             NGINX_NOTICE,                                         # 2
             "continued",                                          # 3
             "",                                                   # 4: blank inside the entry
             "continued after a blank",                            # 5
             "",                                                   # 6: blank before the next entry
             "2024/01/15 10:30:46 [bogus] 1#1: unknown level",     # 7: looks like an entry, is not
             "orphan after a rejected entry",                      # 8
             "2024/02/30 10:30:46 [error] 1#1: no such day",       # 9: invalid timestamp
             NGINX_NOTICE,                                         # 10
             "   "]                                                # 11: blank at the end
    rows, rejects = parse("nginx_error", lines)
    assert rejects == [(0, "line before the first entry of the nginx error log"), (1, "empty line"),
                       (6, "empty line"), (7, "malformed nginx error log entry"),
                       (8, "continuation of a rejected entry"), (9, "invalid timestamp"), (11, "empty line")]
    assert [(r["source_line"], r["lines"]) for r in rows] == [(3, 4), (11, 1)]
    assert rows[0]["message"] == "signal process started\ncontinued\n\ncontinued after a blank"
    accounted(rows, rejects, len(lines))


def test_continuation_at_the_start_of_a_later_chunk_is_rejected():
    lines = ["#1 {main}", '  thrown in /x.php on line 2" while reading upstream, client: 192.0.2.1, server: a',
             NGINX_NOTICE]
    rows, rejects = parse("nginx_error", lines, first_line=5001)
    assert rejects == [(0, "continuation of an entry that starts in the previous chunk"),
                       (1, "continuation of an entry that starts in the previous chunk")]
    assert [r["source_line"] for r in rows] == [5003]
    accounted([{**r, "source_line": r["source_line"] - 5000} for r in rows], rejects, 3)


def test_apache_lookalike_and_bad_time_are_rejected():
    lines = ["[Wed Oct 11 14:32:52 2000] [loud] not a level",
             "[Wed Oct 32 14:32:52 2000] [error] no such day",
             "[Wed Oct 11 14:32:52 2000] [error] fine"]
    rows, rejects = parse("apache_error", lines)
    assert rejects == [(0, "malformed Apache error log entry"), (1, "invalid timestamp")]
    assert [r["message"] for r in rows] == ["fine"]


def test_crlf_and_missing_final_newline():
    data = (NGINX_NOTICE + "\r\n" + NGINX_NOTICE + "\r\ncontinued\r\n" + NGINX_NOTICE).encode()
    rows, rejects = parse("nginx_error", data)
    assert rejects == []
    assert [(r["source_line"], r["lines"], r["message"]) for r in rows] == [
        (1, 1, "signal process started"), (2, 2, "signal process started\ncontinued"),
        (4, 1, "signal process started")]


def test_crlf_apache_referrer_has_no_cr():
    text = ("[Wed Oct 11 14:32:53 2000] [error] [client 192.0.2.20] File does not exist: /x, "
            "referer: http://example.com/")
    rows, _ = parse("apache_error", [text], sep="\r\n")
    assert rows[0]["referrer"] == "http://example.com/"


def test_non_utf8_bytes_become_replacement_characters():
    data = (b'2024/01/15 10:30:45 [error] 1#1: *2 open() "/srv/caf\xe9.html" failed (2: No such file or directory)'
            b', client: 192.0.2.1, server: example.com, request: "GET /caf\xe9.html HTTP/1.1"\n\xff\xfe\n')
    rows, rejects = parse("nginx_error", data)
    assert rejects == []
    assert rows[0]["message"] == 'open() "/srv/caf\ufffd.html" failed (2: No such file or directory)\n\ufffd\ufffd'
    assert rows[0]["request"] == "GET /caf\ufffd.html HTTP/1.1"


def test_utf8_bom_at_the_start_of_the_file():
    rows, rejects = parse("nginx_error", ("\ufeff" + NGINX_NOTICE + "\n").encode("utf-8"))
    assert rejects == [] and len(rows) == 1


def test_long_lines_parse_and_longer_ones_are_rejected_by_length():
    big = "x" * (MAX_LINE_BYTES // 3)   # nginx cuts error lines at 2 KiB, Apache at 8 KiB: ours holds more
    lines = [f'2024/01/15 10:30:45 [error] 1#1: *2 FastCGI sent in stderr: "{big}" while reading response '
             'header from upstream, client: 192.0.2.1, server: example.com, request: "GET / HTTP/1.1"',
             "[" + big, "(" + big + ", client: " + big, "y" * (MAX_LINE_BYTES + 1),
             "2024/01/15 10:30:46 [error] 1#1: " + "z" * (1 << 20)]
    rows, rejects = parse("nginx_error", lines)
    assert rejects == [(3, TOO_LONG), (4, TOO_LONG)]
    assert rows[0]["lines"] == 3 and rows[0]["_client_ip"] == "192.0.2.1"
    assert len(rows[0]["message"]) > MAX_LINE_BYTES
    big = big[:MAX_LINE_BYTES // 4]
    apache = [f"[Wed Oct 11 14:32:53 2000] [error] [client 192.0.2.20] ({big}: {big}, referer: {big}"]
    rows, rejects = parse("apache_error", apache)
    assert rows[0]["referrer"] == big


def test_empty_chunk_has_every_column_typed():
    columns, rejects = parse_error_chunk("nginx_error", LogChunk("e", "0" * 16, 1, b""))
    assert rejects == []
    assert pa.table(columns).schema == ERROR_ENTRY_FIELDS
    assert pa.table(columns).num_rows == 0


def test_column_types():
    columns, _ = parse_error_chunk("apache_error", LogChunk("e", "0" * 16, 1, (APACHE_CASES[
        "2.4 docs example: AH00126 File does not exist"][0] + "\n").encode()))
    assert pa.table(columns).schema == ERROR_ENTRY_FIELDS
    assert columns["logged_at"].type == pa.timestamp("us", tz="UTC")
    for name in ("connection_id", "pid", "tid", "source_line"):
        assert columns[name].type == pa.int64()


def test_unknown_kind():
    with pytest.raises(ValueError, match="unknown error log kind"):
        parse_error_chunk("iis", LogChunk("e", "0" * 16, 1, b""))


# -- time zones ---------------------------------------------------------------------------------


@pytest.mark.parametrize("tz", [timezone(timedelta(hours=2)), timedelta(hours=2), "+02:00", "+0200"])
def test_local_time_with_a_fixed_offset(tz):
    rows, _ = parse("nginx_error", [NGINX_NOTICE], tz=tz)
    assert rows[0]["logged_at"] == at(2024, 1, 15, 8, 30, 45)


def test_local_time_in_a_named_zone_follows_daylight_saving():
    lines = ["[Mon Jan 15 10:00:00.250000 2024] [core:notice] [pid 1] winter",
             "[Mon Jul 15 10:00:00.250000 2024] [core:notice] [pid 1] summer"]
    rows, _ = parse("apache_error", lines, tz="Europe/Berlin")
    assert [r["logged_at"] for r in rows] == [at(2024, 1, 15, 9, 0, 0, micro=250000),
                                              at(2024, 7, 15, 8, 0, 0, micro=250000)]
    rows_zoneinfo, _ = parse("apache_error", lines, tz=ZoneInfo("Europe/Berlin"))
    assert rows_zoneinfo == rows


def test_resolve_tz():
    assert resolve_tz(None) is timezone.utc
    assert resolve_tz("UTC") is timezone.utc
    assert resolve_tz("-05:30") == timezone(-timedelta(hours=5, minutes=30))
    with pytest.raises(AccesslogError, match="time zone"):
        resolve_tz("Mars/Olympus")


# -- detection ----------------------------------------------------------------------------------

ACCESS = '203.0.113.7 - - [10/Oct/2000:13:55:36 -0700] "GET / HTTP/1.1" 200 2326 "-" "-"'


@pytest.mark.parametrize("lines,kind", [
    ([NGINX_NOTICE, NGINX_CASES["open() failed, every http key"][0]], "nginx_error"),
    ([NGINX_CASES["open() failed, every http key"][0] + "\r\n"], "nginx_error"),
    (["\ufeff" + NGINX_NOTICE], "nginx_error"),
    ([APACHE_CASES["2.4 docs example: AH00126 File does not exist"][0]], "apache_error"),
    ([APACHE_CASES["2.2 docs example: client denied"][0], "", "PHP Fatal error: x",
      APACHE_CASES["2.2 notice without client"][0]], "apache_error"),
    ([NGINX_CASES["subrequest (parsed away)"][0], "Stack trace:", "#0 a", "#1 b", "#2 c"], "nginx_error"),
    ([ACCESS, ACCESS], None),
    (["Stack trace:", "#0 a", "#1 b", NGINX_NOTICE], None),
    ([], None),
    (["", "  "], None),
    (["hello", "world"], None),
])
def test_detect_error_log(lines, kind):
    assert detect_error_log(lines) == kind


@pytest.mark.parametrize("message, leaked", [
    ('*5 user "jdoe42": password mismatch, client: ip:abc, server: example.com', "jdoe42"),
    ('*7 user "alice smith" was not found in "/etc/nginx/.htpasswd", client: ip:abc', "alice smith"),
    ('AH01617: user jdoe42: authentication failure for "/private": Password Mismatch', "jdoe42"),
    ("AH01618: user alice.smith not found: /private", "alice.smith"),
])
def test_user_names_in_authentication_messages_are_redacted(message, leaked):
    from transforms.error_entries import redact_auth_users
    from transforms.scrub import REDACTED

    out = redact_auth_users(message)
    assert leaked not in out and REDACTED in out
    assert redact_auth_users("upstream timed out (110: Connection timed out)") == \
        "upstream timed out (110: Connection timed out)"


def test_pseudonymize_errors_redacts_authentication_user_names(tmp_path):
    from datetime import datetime, timezone

    import pyarrow as pa

    from storage.keystore import Keystore
    from transforms.error_entries import pseudonymize_errors
    from transforms.scrub import Scrubber

    when = datetime(2026, 11, 20, tzinfo=timezone.utc)
    table = pa.table({"logged_at": pa.array([when, when], pa.timestamp("us", "UTC")),
                      "message": ['user "jdoe42": password mismatch, client: 192.0.2.7, server: example.com',
                                  'open() "/var/www/users/jdoe42/x" failed (2: No such file or directory)']})
    auth, path = pseudonymize_errors(table, Keystore(tmp_path / "keys.json"), Scrubber())["message"].to_pylist()
    assert "jdoe42" not in auth and "192.0.2.7" not in auth and auth.startswith('user "REDACTED"')
    # Another entry's user name is not looked for: an entry is redacted the same in any chunk.
    assert path == 'open() "/var/www/users/jdoe42/x" failed (2: No such file or directory)'
    (alone,) = pseudonymize_errors(table.slice(0, 1), Keystore(tmp_path / "keys.json"), Scrubber())["message"]
    assert alone.as_py() == auth
    own = pa.table({"logged_at": pa.array([when], pa.timestamp("us", "UTC")),
                    "message": ['user "jdoe42" was not found in "/home/jdoe42/.htpasswd"']})
    (message,) = pseudonymize_errors(own, Keystore(tmp_path / "keys.json"), Scrubber())["message"].to_pylist()
    assert "jdoe42" not in message   # the message's own name, wherever it shows it

"""Apache error-log times of every ErrorLogFormat time specifier, and "a line that starts with a
bracketed time is a new entry".

From httpd's core documentation (ErrorLogFormat) and server/log.c + server/util_time.c
(log_ctime, ap_recent_ctime_ex), which write:
* %t      "Wed Oct 11 14:32:52 2000"          (ctime; the day zero-padded)
* %{u}t   "Wed Oct 11 14:32:52.123456 2000"   (the 2.4 default; always 6 digits)
* %{c}t   "2000-10-11 14:32:52"               (compact ISO 8601)
* %{cu}t  "2000-10-11 14:32:52.123456"        (letters in any order: %{uc}t is the same)
* %{cuz}t "2000-10-11 14:32:52.123456 +0200"  (2.4.58: the GMT offset; %{uz}t on ctime)
* %{<strftime>}t (2.4.58): any strftime(3) format.
The documented sample lines are used as they are; the others are written the way log.c writes
them (do_errorlog_default / do_errorlog_format with the documented formats).
"""
import functools
from datetime import timedelta, timezone

import pytest

from tests.test_errorlog import NULLS, at, parse
from tests.test_errorlog import one as one_of_kind
from transforms.errorlog import detect_error_log

one = functools.partial(one_of_kind, "apache_error")   # one Apache error-log line -> its row


def accounted(rows, rejects, n_lines):
    covered = sorted([i for r in rows for i in range(r["source_line"] - 1, r["source_line"] - 1 + r["lines"])]
                     + [i for i, _ in rejects])
    assert covered == list(range(n_lines))


# -- each time specifier, same header after it ------------------------------------------------

HEADER = " [core:error] [pid 8777:tid 4326490112] [client 192.0.2.7:58619] AH00128: File does not exist: /x"

TIMES = {
    "%t": ("Wed Oct 11 14:32:52 2000", at(2000, 10, 11, 14, 32, 52)),
    "%{u}t (the 2.4 default)": ("Wed Oct 11 14:32:52.123456 2000", at(2000, 10, 11, 14, 32, 52, micro=123456)),
    "%{u}t, microseconds with leading zeros": ("Wed Oct 11 14:32:52.000042 2000",
                                               at(2000, 10, 11, 14, 32, 52, micro=42)),
    "%{c}t": ("2000-10-11 14:32:52", at(2000, 10, 11, 14, 32, 52)),
    "%{cu}t": ("2000-10-11 14:32:52.123456", at(2000, 10, 11, 14, 32, 52, micro=123456)),
    "%{uc}t (same as cu)": ("2000-10-11 14:32:52.000001", at(2000, 10, 11, 14, 32, 52, micro=1)),
    "%{cuz}t, east of Greenwich": ("2000-10-11 14:32:52.123456 +0200", at(2000, 10, 11, 12, 32, 52, micro=123456)),
    "%{cuz}t, west with half hours": ("2000-10-11 14:32:52.123456 -0530", at(2000, 10, 11, 20, 2, 52, micro=123456)),
    "%{cz}t": ("2000-10-11 14:32:52 +0000", at(2000, 10, 11, 14, 32, 52)),
    "%{uz}t": ("Wed Oct 11 14:32:52.123456 2000 +0100", at(2000, 10, 11, 13, 32, 52, micro=123456)),
    "%{z}t": ("Wed Oct 11 14:32:52 2000 -0100", at(2000, 10, 11, 15, 32, 52)),
    "%t, day below 10 (zero-padded)": ("Sun Oct 01 00:00:00 2000", at(2000, 10, 1, 0, 0, 0)),
    "ctime(3)'s space-padded day": ("Sun Oct  1 00:00:00 2000", at(2000, 10, 1, 0, 0, 0)),
    "strftime %b %d %T %Y (no weekday)": ("Oct 11 14:32:52 2000", at(2000, 10, 11, 14, 32, 52)),
    "strftime %Y-%m-%dT%T%z": ("2000-10-11T14:32:52+0200", at(2000, 10, 11, 12, 32, 52)),
    "strftime %Y-%m-%dT%T (no zone)": ("2000-10-11T14:32:52", at(2000, 10, 11, 14, 32, 52)),
    "strftime %Y-%m-%d %T %Z, UTC": ("2000-10-11 14:32:52 UTC", at(2000, 10, 11, 14, 32, 52)),
    "strftime %d/%b/%Y:%T %z": ("11/Oct/2000:14:32:52 +0200", at(2000, 10, 11, 12, 32, 52)),
    "date(1) %a %b %d %T %Z %Y, UTC": ("Wed Oct 11 14:32:52 UTC 2000", at(2000, 10, 11, 14, 32, 52)),
    "milliseconds (3 digits)": ("2000-10-11 14:32:52.123", at(2000, 10, 11, 14, 32, 52, micro=123000)),
    "milliseconds on ctime": ("Wed Oct 11 14:32:52.007 2000", at(2000, 10, 11, 14, 32, 52, micro=7000)),
    "nanoseconds are cut to microseconds": ("2000-10-11 14:32:52.123456789", at(2000, 10, 11, 14, 32, 52,
                                                                                 micro=123456)),
}


@pytest.mark.parametrize("stamp,expected", TIMES.values(), ids=TIMES.keys())
def test_every_time_form_and_the_fields_after_it(stamp, expected):
    assert one(f"[{stamp}]{HEADER}") == {
        **NULLS, "logged_at": expected, "level": "error", "module": "core", "pid": 8777, "tid": 4326490112,
        "_client_ip": "192.0.2.7", "message": "AH00128: File does not exist: /x"}


@pytest.mark.parametrize("stamp,expected", TIMES.values(), ids=TIMES.keys())
def test_every_time_form_is_detected(stamp, expected):
    assert detect_error_log([f"[{stamp}]{HEADER}"]) == "apache_error"


# -- whole lines: the documented samples and the documented formats ---------------------------

LINES = {
    # core docs, ErrorLogFormat: the sample of the threaded-MPM default format
    "2.4 docs sample, IPv6 loopback client with port": (
        "[Thu May 12 08:28:57.652118 2011] [core:error] [pid 8777:tid 4326490112] [client ::1:58619] "
        "File does not exist: /usr/local/apache2/htdocs/favicon.ico",
        dict(logged_at=at(2011, 5, 12, 8, 28, 57, micro=652118), level="error", module="core", pid=8777,
             tid=4326490112, _client_ip="::1", message="File does not exist: /usr/local/apache2/htdocs/favicon.ico")),
    # logs.html, the 2.2-era sample
    "2.2 default (logs docs sample)": (
        "[Wed Oct 11 14:32:52 2000] [error] [client 127.0.0.1] client denied by server configuration: "
        "/export/home/live/ap/htdocs/test",
        dict(logged_at=at(2000, 10, 11, 14, 32, 52), level="error", _client_ip="127.0.0.1",
             message="client denied by server configuration: /export/home/live/ap/htdocs/test")),
    "2.4 default, empty module ([:error], mod_php 5)": (
        "[Wed Oct 11 14:32:52.123456 2000] [:error] [pid 1234:tid 5678] [client 127.0.0.1:54321] "
        "PHP Notice:  Undefined index: q in /var/www/index.php on line 3",
        dict(logged_at=at(2000, 10, 11, 14, 32, 52, micro=123456), level="error", pid=1234, tid=5678,
             _client_ip="127.0.0.1", message="PHP Notice:  Undefined index: q in /var/www/index.php on line 3")),
    "2.4 default, mpm notice without client": (
        "[Wed Oct 11 14:32:52.000001 2000] [mpm_event:notice] [pid 1:tid 2] AH00489: Apache/2.4.58 (Unix) "
        "configured -- resuming normal operations",
        dict(logged_at=at(2000, 10, 11, 14, 32, 52, micro=1), level="notice", module="mpm_event", pid=1, tid=2,
             message="AH00489: Apache/2.4.58 (Unix) configured -- resuming normal operations")),
    "2.4 default, prefork (no tid), bracketed IPv6 client, referer": (
        "[Wed Oct 11 14:32:52.654321 2000] [core:info] [pid 42] [client [2001:db8::1]:443] AH00128: File does "
        "not exist: /var/www/robots.txt, referer: https://example.com/",
        dict(logged_at=at(2000, 10, 11, 14, 32, 52, micro=654321), level="info", module="core", pid=42,
             _client_ip="2001:db8::1", referrer="https://example.com/",
             message="AH00128: File does not exist: /var/www/robots.txt")),
    "2.4 default, bare IPv6 client with port": (
        "[Wed Oct 11 14:32:52.654321 2000] [authz_core:error] [pid 42:tid 43] [client 2001:db8::1:443] "
        "AH01630: client denied by server configuration: /srv/private",
        dict(logged_at=at(2000, 10, 11, 14, 32, 52, micro=654321), level="error", module="authz_core", pid=42,
             tid=43, _client_ip="2001:db8::1", message="AH01630: client denied by server configuration: /srv/private")),
    # Debian's apache2.conf (commented out there): "[%{cu}t] [%-m:%l] [pid %P:tid %T] %F: %E: [client\ %a] %M% ,\ referer\ %{Referer}i"
    "%{cu}t with %F, %E and the client (Debian's format)": (
        "[2000-10-11 14:32:52.123456] [proxy:error] [pid 2190:tid 140234567892] proxy_util.c(2567): "
        "(111)Connection refused: [client 198.51.100.8:50500] AH00957: HTTP: attempt to connect to "
        "127.0.0.1:8080 (127.0.0.1) failed, referer: https://example.com/app",
        dict(logged_at=at(2000, 10, 11, 14, 32, 52, micro=123456), level="error", module="proxy", pid=2190,
             tid=140234567892, _client_ip="198.51.100.8", referrer="https://example.com/app",
             message="proxy_util.c(2567): (111)Connection refused: AH00957: HTTP: attempt to connect to "
                     "127.0.0.1:8080 (127.0.0.1) failed")),
    "%-m without a module logs '-'": (
        "[2000-10-11 14:32:52.123456] [-:warn] [pid 2190:tid 7] something",
        dict(logged_at=at(2000, 10, 11, 14, 32, 52, micro=123456), level="warn", pid=2190, tid=7,
             message="something")),
    # core docs: "Advanced example with request/connection log IDs": "[%{uc}t] [%-m:%-l] [R:%L] [C:%{C}L] %7F: %E: %M"
    "%{uc}t with log ids (docs' advanced example): the ids stay in the message": (
        "[2011-05-12 08:28:57.652118] [core:error] [R:bcDF9wAAAQEAAFi5bQsAAAAB] [C:bcDF9wAAAQEAAFi5] "
        "File does not exist: /usr/local/apache2/htdocs/favicon.ico",
        dict(logged_at=at(2011, 5, 12, 8, 28, 57, micro=652118), level="error", module="core",
             message="[R:bcDF9wAAAQEAAFi5bQsAAAAB] [C:bcDF9wAAAQEAAFi5] File does not exist: "
                     "/usr/local/apache2/htdocs/favicon.ico")),
    # core docs, same example: ErrorLogFormat request "[%{uc}t] [R:%L] Request %k on C:%{c}L pid:%P tid:%T"
    "once-per-request line: no level, pid only in the text": (
        "[2011-05-12 08:28:57.652118] [R:bcDF9wAAAQEAAFi5bQsAAAAB] Request 0 on C:bcDF9wAAAQEAAFi5 pid:8777 "
        "tid:4326490112",
        dict(logged_at=at(2011, 5, 12, 8, 28, 57, micro=652118),
             message="[R:bcDF9wAAAQEAAFi5bQsAAAAB] Request 0 on C:bcDF9wAAAQEAAFi5 pid:8777 tid:4326490112")),
    "a log id of letters only is no unknown level": (
        "[2011-05-12 08:28:57.652118] [R:zrcljjmVOVj] UA:'curl/8.5.0'",
        dict(logged_at=at(2011, 5, 12, 8, 28, 57, micro=652118), message="[R:zrcljjmVOVj] UA:'curl/8.5.0'")),
    # core docs: "similar to the 2.2.x format": "[%t] [%l] %7F: %E: [client\ %a] %M% ,\ referer\ %{Referer}i"
    "2.2-like format on 2.4: %a has a port": (
        "[Wed Oct 11 14:32:52 2000] [error] [client 192.0.2.5:51234] File does not exist: /var/www/x",
        dict(logged_at=at(2000, 10, 11, 14, 32, 52), level="error", _client_ip="192.0.2.5",
             message="File does not exist: /var/www/x")),
    # core docs: "Simple example": "[%t] [%l] [pid %P] %F: %E: [client %a] %M"
    "docs' simple example": (
        "[Wed Oct 11 14:32:52 2000] [error] [pid 3001] core.c(3842): (13)Permission denied: "
        "[client 192.0.2.5:51234] AH00035: access to /secret denied",
        dict(logged_at=at(2000, 10, 11, 14, 32, 52), level="error", pid=3001, _client_ip="192.0.2.5",
             message="core.c(3842): (13)Permission denied: AH00035: access to /secret denied")),
    "format without %l: an entry without a level": (
        "[2000-10-11 14:32:52.500000] [pid 7] child pid 8 exit signal Segmentation fault (11)",
        dict(logged_at=at(2000, 10, 11, 14, 32, 52, micro=500000), pid=7,
             message="child pid 8 exit signal Segmentation fault (11)")),
    "time after the level ([%m:%l] [%{cu}t] ...)": (
        "[core:error] [2000-10-11 14:32:52.250000] [pid 7:tid 8] [client 192.0.2.9:1000] AH00126: x",
        dict(logged_at=at(2000, 10, 11, 14, 32, 52, micro=250000), level="error", module="core", pid=7, tid=8,
             _client_ip="192.0.2.9", message="AH00126: x")),
    "trace level with source location (2.4 default)": (
        "[Wed Oct 11 14:32:52.000007 2000] [ssl:trace3] [pid 3003:tid 5] ssl_engine_kernel.c(2134): "
        "[client 192.0.2.11:40001] OpenSSL: Handshake: start",
        dict(logged_at=at(2000, 10, 11, 14, 32, 52, micro=7), level="trace3", module="ssl", pid=3003, tid=5,
             _client_ip="192.0.2.11", message="ssl_engine_kernel.c(2134): OpenSSL: Handshake: start")),
    "PHP's own error_log line sharing the file": (
        "[11-Oct-2000 14:32:52 UTC] PHP Fatal error:  Uncaught Exception: boom in /var/www/a.php:3",
        dict(logged_at=at(2000, 10, 11, 14, 32, 52),
             message="PHP Fatal error:  Uncaught Exception: boom in /var/www/a.php:3")),
    "Python logging's comma before the milliseconds": (
        "[2000-10-11 14:32:52,042] ERROR in app: Exception on / [GET]",
        dict(logged_at=at(2000, 10, 11, 14, 32, 52, micro=42000), message="ERROR in app: Exception on / [GET]")),
}


@pytest.mark.parametrize("text,expected", LINES.values(), ids=LINES.keys())
def test_whole_lines(text, expected):
    assert one(text) == {**NULLS, "level": None, **expected}


# -- time zones ---------------------------------------------------------------------------------


def test_zoneless_times_are_in_the_chunk_zone_and_zoned_ones_in_their_own():
    lines = ["[2024-01-15 10:00:00.250000] [core:notice] [pid 1] compact, winter",
             "[2024-07-15 10:00:00.250000] [core:notice] [pid 1] compact, summer",
             "[Mon Jul 15 10:00:00.250000 2024] [core:notice] [pid 1] ctime, summer",
             "[2024-07-15 10:00:00.250000 +0000] [core:notice] [pid 1] %{cuz}t says UTC",
             "[15-Jul-2024 10:00:00 America/New_York] PHP Warning:  x"]
    rows, rejects = parse("apache_error", lines, tz="Europe/Berlin")
    assert rejects == []
    assert [r["logged_at"] for r in rows] == [at(2024, 1, 15, 9, 0, 0, micro=250000),
                                              at(2024, 7, 15, 8, 0, 0, micro=250000),
                                              at(2024, 7, 15, 8, 0, 0, micro=250000),
                                              at(2024, 7, 15, 10, 0, 0, micro=250000),
                                              at(2024, 7, 15, 14, 0, 0)]


def test_a_zone_abbreviation_says_too_little_so_the_chunk_zone_applies():
    rows, rejects = parse("apache_error", ["[Wed Oct 11 14:32:52 CEST 2000] [error] x"],
                          tz=timezone(timedelta(hours=2)))
    assert rejects == [] and rows[0]["logged_at"] == at(2000, 10, 11, 12, 32, 52)


# -- a line that starts with a bracketed time is a new entry ------------------------------------

STACK = ["PHP Fatal error:  Uncaught Exception: boom in /var/www/a.php:3",
         "Stack trace:",
         "#0 /var/www/index.php(7): run()",
         "#1 {main}",
         "  thrown in /var/www/a.php on line 3"]


@pytest.mark.parametrize("stamp,expected", TIMES.values(), ids=TIMES.keys())
def test_a_bracketed_time_after_a_stack_trace_starts_a_new_entry(stamp, expected):
    lines = ["[Wed Oct 11 14:32:50.000000 2000] [php7:error] [pid 9] [client 192.0.2.1:4000] script failed",
             *STACK, f"[{stamp}] [core:notice] [pid 10] next"]
    rows, rejects = parse("apache_error", lines)
    assert rejects == []
    assert [(r["source_line"], r["lines"]) for r in rows] == [(1, 6), (7, 1)]
    assert rows[0]["message"] == "script failed\n" + "\n".join(STACK)
    assert (rows[1]["logged_at"], rows[1]["level"], rows[1]["pid"], rows[1]["message"]) == (
        expected, "notice", 10, "next")


def test_lines_that_start_with_a_time_are_entries_or_rejects_never_continuations():
    lines = ["[Wed Oct 11 14:32:52.000000 2000] [cgi:error] [pid 1] [client 192.0.2.1:4000] AH01215: Traceback:",  # 0
             '  File "/usr/lib/cgi-bin/app.py", line 3',                                # 1: continuation
             "[Wed Oct 11 14:32:53 2000] PHP Warning:  no level",                       # 2: entry without level
             "#0 {main}",                                                               # 3: continuation of 2
             "[11-Oct-2000 14:32:54 Europe/Berlin] PHP Fatal error:  x",                # 4: PHP's error_log line
             "[Wed Oct 11 14:32:55 2000] [loud] not a level",                           # 5: malformed
             "#0 {main}",                                                               # 6: orphan of 5
             "[11.10.2000 14:32:56] a date in a shape nobody writes",                   # 7: invalid timestamp
             "[2000-10-32 14:32:57] [error] no such day",                               # 8: invalid timestamp
             "[Wed Oct 11 14:32:58.000000 2000] [core:error] [pid 1] fine",             # 9
             "  [Wed Oct 11 14:32:59 2000] indented: a continuation",                   # 10
             "[0] => Array",                                                            # 11: print_r, continuation
             '["2000-10-11 14:33:00", "json"]',                                         # 12: JSON, continuation
             "[client 192.0.2.1] not a time",                                           # 13: continuation
             ]
    rows, rejects = parse("apache_error", lines)
    assert rejects == [(5, "malformed Apache error log entry"), (6, "continuation of a rejected entry"),
                       (7, "invalid timestamp"), (8, "invalid timestamp")]
    assert [(r["source_line"], r["lines"], r["level"]) for r in rows] == [(1, 2, "error"), (3, 2, None),
                                                                          (5, 1, None), (10, 5, "error")]
    assert rows[1]["message"] == "PHP Warning:  no level\n#0 {main}"
    assert rows[2]["logged_at"] == at(2000, 10, 11, 12, 32, 54)
    assert rows[3]["message"] == "fine\n" + "\n".join(lines[10:])
    accounted(rows, rejects, len(lines))


def test_an_entry_without_a_level_is_not_evidence_of_an_apache_error_log():
    laravel = ["[2024-01-15 10:00:00] production.ERROR: boom", "[stacktrace]", "#0 {main}"]
    assert detect_error_log(laravel) is None
    rows, rejects = parse("apache_error", laravel)
    assert rejects == [] and [r["lines"] for r in rows] == [3]


@pytest.mark.parametrize("lines", [
    ["[2000-10-11 14:32:52.123456] [core:error] [pid 1:tid 2] AH00126: x", *STACK],
    ["[Wed Oct 11 14:32:52 2000] [error] x", "[Wed Oct 11 14:32:53 2000] [notice] y"],
    ["[2000-10-11 14:32:52] [:error] [pid 1] x", *STACK, "[2000-10-11 14:32:53 +0200] [php:warn] [pid 1] y"],
    ["[11-Oct-2000 14:32:51 UTC] PHP Warning:  x", "[2000-10-11 14:32:52.123456] [core:error] [pid 1] x"],
])
def test_detect_the_new_forms(lines):
    assert detect_error_log(lines) == "apache_error"


# -- nginx: a line that starts with nginx's timestamp is a new entry ----------------------------

NGINX = ('2024/03/05 10:00:00 [error] 123#456: *7 message, client: 1.2.3.4, server: x, '
         'request: "GET / HTTP/1.1", host: "x"')


def test_nginx_line_of_the_issue():
    rows, rejects = parse("nginx_error", [NGINX])
    assert rejects == []
    assert {k: v for k, v in rows[0].items() if k not in ("source_line", "lines")} == {
        **NULLS, "logged_at": at(2024, 3, 5, 10, 0, 0), "level": "error", "pid": 123, "tid": 456,
        "connection_id": 7, "message": "message", "_client_ip": "1.2.3.4", "server": "x", "host": "x",
        "request": "GET / HTTP/1.1"}
    assert detect_error_log([NGINX]) == "nginx_error"


def test_nginx_a_line_that_starts_with_a_timestamp_is_never_a_continuation():
    lines = ['2024/03/05 10:00:00 [error] 123#456: *7 FastCGI sent in stderr: "PHP message: boom',
             "PHP message: #0 {main}",                                 # 1: continuation
             '" while reading response header from upstream, client: 1.2.3.4, server: x, request: "GET / HTTP/1.1"',
             "2024/03/05 10:00:01 a Go program's log line",           # 3: starts with the timestamp: rejected
             "more of it",                                            # 4
             "2024/03/05 10:00:02 [warn] 123#456: *8 next",           # 5
             "2024/03/05 10:00:03 [error] no pid",                    # 6
             "    2024/03/05 10:00:04 indented: a continuation"]      # 7 (of the rejected 6)
    rows, rejects = parse("nginx_error", lines)
    assert rejects == [(3, "malformed nginx error log entry"), (4, "continuation of a rejected entry"),
                       (6, "malformed nginx error log entry"), (7, "continuation of a rejected entry")]
    assert [(r["source_line"], r["lines"]) for r in rows] == [(1, 3), (6, 1)]
    assert rows[0]["message"] == 'FastCGI sent in stderr: "PHP message: boom\nPHP message: #0 {main}\n" ' \
                                 'while reading response header from upstream'
    assert rows[0]["_client_ip"] == "1.2.3.4"
    accounted(rows, rejects, len(lines))

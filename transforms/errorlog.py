"""Server error logs (nginx, Apache httpd 2.2 and 2.4) -> one row per entry.

What the servers write (from their source, which is the only documentation):

nginx (``ngx_log_error_core`` + the module's log handler)::

    2024/01/15 10:30:45 [error] 1234#1234: *5678 <message>[ (<errno>: <strerror>)][ while <action>]
        , client: <addr>, server: <name>, request: "<line>", subrequest: "<uri>",
        upstream: "<url>", host: "<Host>", referrer: "<Referer>"

  The time is the server's local time without a zone. ``*cid`` is absent outside a
  connection (``[notice] 1#1: signal process started``). The key-value tail is
  appended by ngx_http_log_error (http), ngx_stream_log_error (``, udp client:``,
  ``bytes from/to ...``) or ngx_mail_log_error (``using starttls``, ``login:``), in
  that fixed order, with values written raw: nothing is escaped, so a quoted value
  may itself contain ``"`` or ``, client: ``. The tail is parsed from the right (the
  rightmost ``, client: <address>`` after which the rest of the line is a well-formed
  tail) because the message before it routinely quotes paths and headers. A line is
  cut at NGX_MAX_ERROR_STR (2048 bytes), so the last value may lack its quote or the
  last key may be cut short. Messages may span lines (``FastCGI sent in stderr:
  "PHP message: ...`` keeps the stderr newlines); the tail then ends the entry's last
  line. Lines without a timestamp after a complete entry (output that shares the file,
  e.g. nginx's own stderr) are kept in the message, after the text before the tail.

Apache httpd 2.4 (``do_errorlog_default``, i.e. no ErrorLogFormat configured)::

    [Fri Sep 09 10:42:29.902022 2011] [core:error] [pid 35708:tid 4328636416]
        [<file>(<line>): ][(<status>)<strerror>: ][client 72.15.99.187:53140] <message>[, referer: <Referer>]

  ``[remote ip:port]`` replaces ``[client ...]`` when the connection has no scoreboard
  handle (proxy backends, some HTTP/2 streams); it is treated like a client address.
  IPv6 addresses are printed bare before the port (``[client 2001:db8::1:53140]``);
  ``[client [2001:db8::1]:53140]`` is accepted too. ``:tid`` is absent under prefork.

Apache httpd 2.2 (``log_error_core``)::

    [Wed Oct 11 14:32:52 2000] [error] [client 127.0.0.1] [(<status>)<strerror>: ]<message>[, referer: ...]

  No module, no pid, no microseconds, and the client address has no port.

Apache httpd 2.4 with an ``ErrorLogFormat`` (core docs; ``log_ctime``/``ap_recent_ctime_ex``)::

    %t      [Wed Oct 11 14:32:52 2000]            %{c}t   [2000-10-11 14:32:52]
    %{u}t   [Wed Oct 11 14:32:52.123456 2000]     %{cu}t  [2000-10-11 14:32:52.123456]
    %{uz}t  [Wed Oct 11 14:32:52.123456 2000 +0200]  %{cuz}t [2000-10-11 14:32:52.123456 +0200]

  (option letters in any order; ``z`` and ``%{<strftime>}t`` since 2.4.58). The common
  strftime shapes are read too, see _APACHE_TIME_FORMS. A time with an offset or an IANA zone
  name is read in that zone, not in ``tz``. After the time come the format's fields; those
  read are ``[module:level]`` (``%-m:%l``: ``[-:error]``, ``[:error]``), ``[level]`` and
  ``[pid P:tid T]``, in any order among the first four bracketed fields, then the client as
  above. A format without ``%l`` gives entries without a level; other fields (``[R:%L]``)
  stay in the message.

A line that starts with the server's timestamp (nginx's, or an Apache bracketed time of
any form above, at the very start of the line) always starts a new entry: when the rest
of it is no header (an unknown level, a date in an unknown shape) it is rejected with the
reason, never folded into the entry before it. Indented lines are continuations.

Apache escapes control characters in messages, so an Apache entry is one line of its
own; lines that follow it without a timestamp are other output written straight to
the log (CGI stderr under 2.2, PHP fatal errors, stack traces) and are appended to
the message. Values are kept as logged: nginx's raw bytes and Apache's ``\\xHH``
escapes are not decoded (bytes that are not UTF-8 become U+FFFD).

Time zone: both servers write local wall-clock time without an offset by default, so
``parse_error_chunk`` takes the zone (``tz``, default UTC). Wall times that occur
twice when clocks go back resolve to the first occurrence (``fold=0``).

Privacy: the client address comes out in ``_client_ip`` for the caller to
pseudonymize and drop; messages can still hold addresses (ModSecurity's own
``[client ...]``, ``upstream`` URLs) and must be scrubbed like rejects. nginx mail
``login:`` values are parsed away and never returned.
"""
from __future__ import annotations

import calendar
import ipaddress
import re
from datetime import datetime, timedelta, timezone, tzinfo
from functools import lru_cache
from typing import NamedTuple
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pyarrow as pa

from schemas.errors import AccesslogError
from transforms.chunks import LogChunk
from transforms.lines import MAX_LINE_BYTES, TOO_LONG, text_lines
from transforms.timeparse import MAX_US, MIN_US, MONTHS

KINDS = ("nginx_error", "apache_error")
SYSLOG_LEVELS = ("emerg", "alert", "crit", "error", "warn", "notice", "info", "debug")
APACHE_LEVELS = SYSLOG_LEVELS + tuple(f"trace{i}" for i in range(1, 9))

TIMESTAMP = pa.timestamp("us", tz="UTC")
# What parse_error_chunk returns, one value per entry. `_client_ip` is raw personal
# data for the caller to pseudonymize and drop; `lines` counts an entry's physical lines.
# The caller adds `source`. nginx's `subrequest:` and mail `login:` values are parsed
# away and not returned (the login is personal data; neither is in the errors table).
ERROR_ENTRY_FIELDS = pa.schema([
    ("logged_at", TIMESTAMP), ("level", pa.string()), ("message", pa.string()),
    ("_client_ip", pa.string()), ("server", pa.string()), ("host", pa.string()),
    ("request", pa.string()), ("upstream", pa.string()), ("referrer", pa.string()),
    ("connection_id", pa.int64()), ("pid", pa.int64()), ("tid", pa.int64()),
    ("module", pa.string()), ("source_line", pa.int64()), ("lines", pa.int32()),
])

_INT64_MAX = (1 << 63) - 1

# -- line shapes ------------------------------------------------------------------------------

_NGINX_ENTRY = re.compile(
    r"(?P<time>\d{4}/\d\d/\d\d \d\d:\d\d:\d\d) \[(?P<level>" + "|".join(SYSLOG_LEVELS) + r")\] "
    r"(?P<pid>\d+)#(?P<tid>\d+):(?: |$)(?:\*(?P<cid>\d+) )?")
# Starts with nginx's timestamp but is not an entry (unknown level, no pid, a foreign program's
# "YYYY/MM/DD HH:MM:SS" line): rejected, never folded into the entry before it.
_NGINX_LOOKALIKE = re.compile(r"\d{4}/\d\d/\d\d \d\d:\d\d:\d\d(?!\d)")

# Apache times: the text between the line's leading "[" and "]". ap_recent_ctime_ex writes
# ctime ("Wed Oct 11 14:32:52 2000"), with the "u" option ".123456" after the seconds, with
# "c" the compact ISO 8601 "2000-10-11 14:32:52", with "z" (2.4.58) " +0200" at the end; the
# letters combine in any order (%{cu}t, %{uc}t, %{cuz}t). %{<strftime>}t (2.4.58) writes
# anything: the common shapes of it are read too (ISO with "T" and a glued %z, ctime without
# the weekday, date(1)'s "Wed Oct 11 14:32:52 CEST 2000", "11/Oct/2000:14:32:52 +0200"), and
# so is PHP's own error_log line ("[11-Oct-2000 14:32:52 Europe/Berlin]") when it shares the
# file. Fractions of 1 to 9 digits (".123" milliseconds, "," as Python's logging writes) are
# cut to microseconds.
_WDAY = r"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)"
_MON = r"(?P<mon>" + "|".join(MONTHS) + r")"
_HMS = r"(?P<h>\d\d):(?P<mi>\d\d):(?P<s>\d\d)(?:[.,](?P<frac>\d{1,9}))?"
_TZ = (r"(?:(?P<off> ?[+-]\d\d:?\d\d)|(?P<utc>Z)"
       r"| (?P<zname>[A-Za-z][A-Za-z0-9_+-]{0,31}(?:/[A-Za-z0-9_+-]{1,32}){0,2}))?")
_APACHE_TIME_FORMS = tuple(re.compile(form) for form in (
    r"(?:" + _WDAY + r" )?" + _MON + r" (?P<d>[ \d]\d) " + _HMS                           # %t %{u}t %{uz}t
    + r"(?: (?P<abbr>[A-Z]{3,5}))? (?P<y>\d{4})" + _TZ,                                       # date(1)
    r"(?P<y>\d{4})-(?P<mo>\d\d)-(?P<d>\d\d)[T ]" + _HMS + _TZ,                           # %{c}t %{cu}t %{cuz}t
    r"(?P<d>\d\d)-" + _MON + r"-(?P<y>\d{4}) " + _HMS + _TZ,                              # PHP error_log
    r"(?P<d>\d\d)/" + _MON + r"/(?P<y>\d{4}):" + _HMS + _TZ,                              # %d/%b/%Y:%T %z
))
_APACHE_TIME_MAX = 80   # longest bracket searched for a time
# A leading bracket that holds a date and a clock in some other shape: rejected as an entry
# whose time cannot be read, never taken for a continuation. (Not '["2024-01-15 10:00:00", ...'
# of a JSON dump: the bracket must start with a letter or digit.)
_APACHE_TIMEY = re.compile(r"\[(?=[A-Za-z0-9])(?=[^\[\]]{0,72}\d{4})(?=[^\[\]]{0,72}\d\d?:\d\d:\d\d)[^\[\]]{8,78}\]")
# Header fields after (or, in a custom ErrorLogFormat, around) the time, each ending at a space
# or the end of the line: "[module:level]" ("[:level]" and "[-:level]" without a module), 2.2's
# "[level]", and "[pid P:tid T]" (":tid" under threaded MPMs; "[tid T]" alone in custom formats).
_APACHE_LEVEL = re.compile(r"\[(?:(?P<module>[^\s:\[\]]{0,64}):)?(?P<level>" + "|".join(APACHE_LEVELS) + r")\](?= |$)")
_APACHE_PID = re.compile(r"\[(?:pid (?P<pid>\d+)(?::tid (?P<tid>\d+))?|tid (?P<tid_only>\d+))\](?= |$)")
# Shaped like a level field but no level Apache has ("[loud]", "[core:loud]"): the line is
# malformed. Module names and levels are lower case; "[R:%L]" and "[C:%{C}L]" log ids are not.
_APACHE_LEVELISH = re.compile(r"\[(?:[a-z0-9_-]{0,64}:)?[a-z]+\d?\](?= |$)")

# After the bracketed prefix: optional source location (debug and trace levels), optional
# APR status, then the client. 2.2 writes the client before the status; 2.4 after.
_APACHE_CLIENT = re.compile(
    r"(?P<before>(?:[^\s()\[\]]+\(\d+\): )?(?:\((?:EAI |OS |os 0x)?-?[0-9a-fA-F]+\)[^\[\]]*?: )?)"
    r"\[(?:client|remote) (?P<addr>\[[^\]]*\](?::\d+)?|[^\s\]]*)\] ")

# The tail that nginx's http, stream and mail log handlers append, in their order.
# Quoted values never hold a newline (request line and headers cannot); a line cut at
# NGX_MAX_ERROR_STR can end inside one.
_QUOTED = r'"(?P<{0}>[^\n]*?)(?:"|(?=\n)|\Z)'
_NGINX_TAIL = re.compile(
    r", (?:udp )?client: (?P<client>[0-9A-Fa-f:.]+|unix:[^\s,\"]*)(?: using starttls)?"
    r"(?:, server: (?P<server>[^\s\"]*?))?"
    r"(?:, request: " + _QUOTED.format("request") + r")?"
    r"(?:, subrequest: " + _QUOTED.format("subrequest") + r")?"
    r"(?:, login: " + _QUOTED.format("login") + r")?"
    r"(?:, upstream: (?:" + _QUOTED.format("upstream") + r"|(?P<upstream_bare>[^\s,\"]+)))?"
    r"(?:, bytes from/to client:\d+/\d+, bytes from/to upstream:\d+/\d+)?"
    r"(?:, host: " + _QUOTED.format("host") + r")?"
    r"(?:, referrer: " + _QUOTED.format("referrer") + r")?"
    r"(?:, [a-z]*(?::(?: )?)?)?"       # a key cut off at NGX_MAX_ERROR_STR
    r"(?=\n|\Z)")
_NGINX_TAIL_START = re.compile(r", (?:udp )?client: ")
# Each rejected candidate costs a scan of the rest of the entry; messages rarely quote more.
_MAX_TAIL_CANDIDATES = 8

_NAMES = {"nginx_error": "nginx error log", "apache_error": "Apache error log"}


class _ApacheHead(NamedTuple):
    """What the bracketed fields that start an Apache entry say; `end` is where the message starts."""
    end: int
    level: str | None
    module: str | None
    pid: str | None
    tid: str | None
    with_port: bool     # 2.4 (module, pid, µs, ISO or zoned time): "[client ip:port]"


# -- public API --------------------------------------------------------------------------------


def detect_error_log(first_lines: list[str]) -> str | None:
    """Which error log the first lines of an input are: "nginx_error", "apache_error" or None.

    A kind wins when its entries outnumber the other's and either the first non-empty
    line is one of its entries or its entries are at least half the non-empty lines
    (the rest being continuation lines such as stack traces).
    """
    lines = [line.lstrip("\ufeff").rstrip("\r\n") for line in first_lines]
    lines = [line for line in lines if line.strip()]
    if not lines:
        return None
    counts = {kind: sum(1 for line in lines if _is_entry(kind, line)) for kind in KINDS}
    kind = max(KINDS, key=counts.__getitem__)
    other = counts[KINDS[1 - KINDS.index(kind)]]
    if counts[kind] == 0 or counts[kind] <= other:
        return None
    if _is_entry(kind, lines[0]) or 2 * counts[kind] >= len(lines):
        return kind
    return None


def _is_entry(kind: str, line: str) -> bool:
    """An entry line with a level: what detection counts. An Apache line with a time but no level
    (a custom ErrorLogFormat without %l) is parsed as an entry but is too weak a sign of the format:
    other programs' logs ("[2024-01-15 10:00:00] production.ERROR: ...") start the same way."""
    if kind == "nginx_error":
        return _NGINX_ENTRY.match(line) is not None
    head = _apache_head(line)
    return isinstance(head, tuple) and head[2].level is not None


def resolve_tz(tz: tzinfo | timedelta | str | None) -> tzinfo:
    """The zone error-log times are in: a tzinfo, an offset (timedelta), "+01:00"/"-0500",
    "UTC" or an IANA name ("Europe/Berlin"); None means UTC."""
    if tz is None:
        return timezone.utc
    if isinstance(tz, tzinfo):
        return tz
    if isinstance(tz, timedelta):
        return timezone(tz)
    text = str(tz).strip()
    if text.upper() in ("UTC", "Z", "GMT"):
        return timezone.utc
    m = re.fullmatch(r"([+-])(\d\d):?(\d\d)", text)
    if m:
        minutes = int(m[2]) * 60 + int(m[3])
        if minutes < 24 * 60:
            return timezone(timedelta(minutes=-minutes if m[1] == "-" else minutes))
    else:
        try:
            return ZoneInfo(text)
        except (ZoneInfoNotFoundError, ValueError):
            pass
    raise AccesslogError(f"unknown time zone {text!r} for the error log: give an IANA name such as "
                         "'Europe/Berlin', an offset such as '+01:00', or 'UTC'")


def parse_error_chunk(kind: str, chunk: LogChunk, tz: tzinfo | timedelta | str | None = None,
                      latest_us: int | None = None) -> tuple[dict[str, pa.Array], list[tuple[int, str]]]:
    """Parse one chunk of an nginx or Apache error log.

    `kind` is "nginx_error" or "apache_error" (see detect_error_log). `tz` is the zone
    of the server's local time the log is written in (default UTC; see resolve_tz). Entries
    timed after `latest_us` (µs UTC; see transforms.parse.latest_time_us) are rejected.

    Returns (columns, rejects). `columns` maps each name of ERROR_ENTRY_FIELDS to an
    Arrow array with one value per entry, in file order; an entry is a line that
    starts like one plus the continuation lines after it. `rejects` lists
    (0-based line index in the chunk, reason) for every other line, sorted. Every line
    is accounted for: sum(columns["lines"]) + len(rejects) == lines in the chunk.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown error log kind {kind!r}: expected one of {', '.join(KINDS)}")
    zone = resolve_tz(tz)
    lines = text_lines(chunk.data, strip_bom=chunk.first_line == 1)
    entries, rejects = _group_entries(kind, lines, zone, chunk.first_line, latest_us)
    parse_entry = _nginx_entry if kind == "nginx_error" else _apache_entry
    rows = [parse_entry(match, lines, first, extra) for first, match, extra, _ in entries]
    columns = {name: [row.get(name) for row in rows] for name in ERROR_ENTRY_FIELDS.names
               if name not in ("logged_at", "source_line", "lines")}
    columns["logged_at"] = [us for _, _, _, us in entries]
    columns["source_line"] = [chunk.first_line + first for first, _, _, _ in entries]
    columns["lines"] = [1 + len(extra) for _, _, extra, _ in entries]
    arrays = {f.name: pa.array(columns[f.name], f.type) for f in ERROR_ENTRY_FIELDS}
    return arrays, rejects


# -- lines and entries -------------------------------------------------------------------------


def _group_entries(kind: str, lines: list[str], zone: tzinfo, first_line: int, latest_us: int | None = None):
    """-> ([(first index, header, continuation indexes, µs UTC)], rejects).

    A line that starts with the server's timestamp (nginx's "YYYY/MM/DD HH:MM:SS", an Apache
    bracketed time of any ErrorLogFormat form) starts a new entry, or is rejected with a reason
    when the rest of its header is not one; it is never a continuation. Other lines continue the
    entry before them. Blank lines inside an entry (followed by more of it) belong to it; blank
    lines before a new entry or at the end of the chunk are rejected as empty.
    """
    head_of = _nginx_head if kind == "nginx_error" else _apache_head
    clock = _nginx_us if kind == "nginx_error" else _apache_us
    times: dict[str, int | None] = {}
    entries: list[tuple[int, object, list[int], int]] = []
    rejects: list[tuple[int, str]] = []
    current: tuple[int, object, list[int], int] | None = None
    orphan = ("continuation of an entry that starts in the previous chunk" if first_line > 1
              else f"line before the first entry of the {_NAMES[kind]}")
    blanks: list[int] = []

    def reject_blanks():
        rejects.extend((b, "empty line") for b in blanks)
        blanks.clear()

    for i, line in enumerate(lines):
        if not line.strip():
            blanks.append(i)
            continue
        if len(line) > MAX_LINE_BYTES:   # before any regex; the entry it may belong to goes on
            rejects.append((i, TOO_LONG))
            continue
        head = head_of(line)
        if head is not None:
            reject_blanks()
            current = None
            if isinstance(head, str):
                rejects.append((i, head))
                orphan = "continuation of a rejected entry"
                continue
            stamp, frac_us, info = head     # the time to the second (parsed once per value), µs
            us = times[stamp] if stamp in times else times.setdefault(stamp, clock(stamp, zone))
            if us is not None:
                us += frac_us
            if us is not None and not MIN_US <= us <= min(MAX_US, latest_us or MAX_US):
                rejects.append((i, "time is more than a day after now" if us > MIN_US else "time out of range"))
                orphan = "continuation of a rejected entry"
            elif us is None:
                rejects.append((i, "invalid timestamp"))
                orphan = "continuation of a rejected entry"
            else:
                current = (i, info, [], us)
                entries.append(current)
            continue
        if current is None:
            reject_blanks()
            rejects.append((i, orphan))
        else:
            current[2].extend(blanks)
            blanks.clear()
            current[2].append(i)
    reject_blanks()
    rejects.sort()
    return entries, rejects


def _nginx_head(line: str) -> tuple[str, int, re.Match] | str | None:
    """(time text, 0 µs, header match) for an entry line, a reject reason for a line that starts
    with nginx's timestamp but is no entry, None for a continuation line."""
    match = _NGINX_ENTRY.match(line)
    if match:
        return match["time"], 0, match
    return "malformed nginx error log entry" if _NGINX_LOOKALIKE.match(line) else None


def _apache_time(line: str, pos: int) -> tuple[str, int, re.Match] | None:
    """(time text, end, form match) when a bracketed time of a known form starts at `pos`."""
    if not line.startswith("[", pos):
        return None
    close = line.find("]", pos + 1, pos + _APACHE_TIME_MAX)
    if close < 0:
        return None
    text = line[pos + 1:close]
    for form in _APACHE_TIME_FORMS:
        match = form.fullmatch(text)
        if match:
            return text, close + 1, match
    return None


def _apache_head(line: str) -> tuple[str, int, _ApacheHead] | str | None:
    """(time text without its fraction, the fraction in µs, header) for an entry line, a reject
    reason, or None for a continuation line.

    The line must start with "[". Up to four leading fields, separated by single spaces, are
    read in any order: the time, "[module:level]" and "[pid P:tid T]" (the default formats put
    them in that order; a custom ErrorLogFormat may not). A time among them makes the line an
    entry, even without a level (a format without %l); an unknown level ("[loud]") makes it
    malformed, and a leading bracket that holds a date and a clock in an unknown shape makes it
    a reject for its timestamp.
    """
    if not line.startswith("["):
        return None
    stamp = level = module = pid = tid = None
    with_port = False
    end = pos = 0
    for _ in range(4):
        if stamp is None and (time := _apache_time(line, pos)):
            stamp, end, form = time
            # 2.2 writes only ctime to the second ("Wed Oct 11 14:32:52 2000")
            with_port = with_port or form.re is not _APACHE_TIME_FORMS[0] or bool(
                form["frac"] or form["off"] or form["utc"] or form["zname"] or form["abbr"])
        elif level is None and (m := _APACHE_LEVEL.match(line, pos)):
            level, module, end = m["level"], m["module"], m.end()
            with_port = with_port or module is not None
        elif pid is None and tid is None and (m := _APACHE_PID.match(line, pos)):
            pid, tid, end = m["pid"], m["tid"] or m["tid_only"], m.end()
            with_port = True
        else:
            break
        if not line.startswith(" [", end):
            break
        pos = end + 1
    if stamp is None:
        return "invalid timestamp" if _APACHE_TIMEY.match(line) else None
    start = end + 1 if line.startswith(" ", end) else end
    if level is None and _APACHE_LEVELISH.match(line, start):
        return "malformed Apache error log entry"
    frac_us = 0
    if form["frac"]:   # every 2.4 time differs in its µs: parse the rest once per second
        frac_us = int((form["frac"] + "00000")[:6])
        stamp = stamp[:form.start("frac") - 1] + stamp[form.end("frac"):]
    return stamp, frac_us, _ApacheHead(start, level, module, pid, tid, with_port)


def _message(first: str, lines: list[str], extra: list[int]) -> str:
    return "\n".join([first] + [lines[j] for j in extra]) if extra else first


def _nginx_entry(match: re.Match, lines: list[str], first: int, extra: list[int]) -> dict:
    line = lines[first]
    text = _message(line[match.end():], lines, extra)
    row = {"level": match["level"], "pid": _int64(match["pid"]), "tid": _int64(match["tid"]),
           "connection_id": _int64(match["cid"])}
    tail = _nginx_tail(text)
    if tail is None:
        row["message"] = text
        return row
    # The tail ends its physical line; lines after it are stderr output nginx shares the file with.
    row["message"] = text[:tail.start()] + text[tail.end():]
    row["_client_ip"] = tail["client"]
    row["server"] = tail["server"] or None          # `server_name "";` logs an empty name
    row["request"] = tail["request"]
    row["upstream"] = tail["upstream"] if tail["upstream"] is not None else tail["upstream_bare"]
    row["referrer"] = tail["referrer"]
    row["host"] = tail["host"] or row["server"]      # no Host header: the server block's name
    return row


def _nginx_tail(text: str) -> re.Match | None:
    """The rightmost `, client: ...` after which the rest of its line is a valid tail."""
    if ", client: " not in text and ", udp client: " not in text:
        return None
    starts = [m.start() for m in _NGINX_TAIL_START.finditer(text)]
    for pos in reversed(starts[-_MAX_TAIL_CANDIDATES:]):
        tail = _NGINX_TAIL.match(text, pos)
        if tail:
            return tail
    return None


def _apache_entry(head: _ApacheHead, lines: list[str], first: int, extra: list[int]) -> dict:
    rest = lines[first][head.end:]
    module = head.module
    row = {"level": head.level, "pid": _int64(head.pid), "tid": _int64(head.tid),
           "module": module if module not in ("", "-") else None}
    client = _APACHE_CLIENT.match(rest)
    if client:
        row["_client_ip"] = _apache_address(client["addr"], head.with_port)
        rest = client["before"] + rest[client.end():]
        # Only a request has a Referer; the header is last, and a browser's referrer has
        # its spaces percent-encoded, so the rightmost ", referer: " is the real one.
        cut = rest.rfind(", referer: ")
        if cut >= 0:
            row["referrer"] = rest[cut + len(", referer: "):]
            rest = rest[:cut]
    row["message"] = _message(rest, lines, extra)
    return row


@lru_cache(maxsize=4096)
def _apache_address(addr: str, with_port: bool) -> str | None:
    """'[client ...]' value -> the address: 2.4 appends ':port' (IPv6 unbracketed), 2.2 does not.

    Without a sign of the version (2.4's "[%t] [%l] [client %a]" looks like 2.2) a port is
    dropped only where the whole value is no address by itself ("192.0.2.1:5000")."""
    if addr.startswith("["):
        end = addr.find("]")
        return addr[1:end] or None if end > 0 else None   # "[2001:db8::1]:port"; "[" alone is no address
    if with_port or not _is_ip(addr):
        host, sep, port = addr.rpartition(":")
        if sep and port.isdigit() and _is_ip(host):
            return host
    return addr or None


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _int64(text: str | None) -> int | None:
    if text is None:
        return None
    value = int(text)
    return value if value <= _INT64_MAX else None


# -- time --------------------------------------------------------------------------------------


def _nginx_us(stamp: str, zone: tzinfo) -> int | None:
    """'2024/01/15 10:30:45' (local time in `zone`) -> µs since the epoch, UTC."""
    return _local_us(int(stamp[0:4]), int(stamp[5:7]), int(stamp[8:10]), int(stamp[11:13]),
                     int(stamp[14:16]), int(stamp[17:19]), 0, zone)


def _apache_us(stamp: str, zone: tzinfo) -> int | None:
    """An Apache time ('Fri Sep 09 10:42:29.902022 2011', '2011-09-09 10:42:29.902022 +0200', any
    of _APACHE_TIME_FORMS) -> µs since the epoch, UTC. Local time in `zone` unless the time
    carries its own offset or zone name; an abbreviation ("CEST") says too little and is ignored."""
    for form in _APACHE_TIME_FORMS:
        m = form.fullmatch(stamp)
        if m:
            break
    else:
        return None
    parts = m.groupdict()
    month = MONTHS[parts["mon"]] if parts.get("mon") else int(parts["mo"])
    frac = parts["frac"]
    if parts["off"]:
        offset = parts["off"].strip().replace(":", "")
        minutes = int(offset[1:3]) * 60 + int(offset[3:5])
        if minutes >= 24 * 60 or int(offset[3:5]) >= 60:
            return None
        zone = timezone(timedelta(minutes=-minutes if offset[0] == "-" else minutes))
    elif parts["utc"]:
        zone = timezone.utc
    elif parts["zname"] or parts.get("abbr"):
        zone = _named_zone(parts["zname"] or parts["abbr"]) or zone
    return _local_us(int(parts["y"]), month, int(parts["d"]), int(parts["h"]), int(parts["mi"]),
                     int(parts["s"]), int((frac + "00000")[:6]) if frac else 0, zone)


@lru_cache(maxsize=64)
def _named_zone(name: str) -> tzinfo | None:
    """'UTC', 'GMT', 'Europe/Berlin' -> the zone; abbreviations and unknown names -> None."""
    if name.upper() in ("UTC", "GMT", "UT", "Z"):
        return timezone.utc
    if "/" not in name:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return None


def _local_us(y: int, mo: int, d: int, h: int, mi: int, s: int, us: int, zone: tzinfo) -> int | None:
    try:
        offset = datetime(y, mo, d, h, mi, s, tzinfo=zone).utcoffset()
    except ValueError:
        return None   # no such date or time (31 Feb, 25:00, leap second)
    seconds = calendar.timegm((y, mo, d, h, mi, s)) - int(offset.total_seconds())
    return seconds * 1_000_000 + us


"""Property: a request written by nginx or Apache httpd, in any format built from the variables
accesslog reads, parses back to that request.

The writers here follow the servers, not transforms/:
* nginx (ngx_http_log_module, escape=default): '"', '\\', bytes < 0x20 and bytes > 0x7e are
  written as \\xHH (upper-case hex); a variable without a value as '-'. $time_local,
  $time_iso8601 and $msec are taken at the log write (the end of the request);
  $request_time is seconds with millisecond resolution, so the request arrived that much
  earlier. $upstream_* lists separate servers with ', ' and internal redirects with ' : '.
* Apache httpd (mod_log_config, ap_escape_logitem): '"' and '\\' get a backslash,
  \\b \\n \\r \\t \\v are written in C notation, other bytes < 0x20 or > 0x7e as \\xhh
  (lower-case hex); a missing value is '-', %b writes '-' for no body bytes, %q is '?query'
  or nothing, %u is '""' for an empty user name. %t and %{...}t are the time the request
  was received (``end:`` the time the log entry is written), %D microseconds, %T seconds.

Formats are random sequences of variables joined by literal separators. Values that can hold
spaces are always quoted ("$var"); bare values never hold a separator, so each line has
exactly one reading and any difference is the parser's.
"""
from __future__ import annotations

import dataclasses
import ipaddress
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from transforms.chunks import LogChunk
from transforms.fields import parse_trusted_proxies
from transforms.formats import resolve_format
from transforms.parse import parse_chunk

UTC = timezone.utc
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
TRUSTED = "10.0.0.0/8"
TRUSTED_NETWORK = ipaddress.ip_network(TRUSTED)
# The database would write .hypothesis/ into the repository; failures print their example.
SETTINGS = settings(max_examples=60, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
SEPARATORS = (" ", " - ", " | ", "|", " rt=", "\t", " [", "] ", ", ", " : ")


# -- requests -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    """One request as the server saw it; the writers below turn it into log text."""

    peer: ipaddress.IPv4Address | ipaddress.IPv6Address   # the connection's address
    forwarded_for: tuple[str, ...] | None                   # X-Forwarded-For entries, as sent
    user: str | None
    when_us: int                                            # the logged instant, µs since the epoch
    zone: timezone
    method: str
    path: str
    query: str | None
    protocol: str | None                                    # None: an HTTP/0.9 request line
    status: int
    body_bytes: int
    header_bytes: int
    request_length: int
    duration_us: int
    referrer: str | None
    user_agent: str | None
    languages: tuple[tuple[str, float], ...] | None
    upstream_ms: tuple[tuple[int | None, ...], ...] | None
    upstream_status: tuple[tuple[int, ...], ...] | None
    upstream_addr: tuple[tuple[str, ...], ...] | None
    host: str
    server_name: str
    http_host: str
    scheme: str
    request_id: str
    connection: int
    pipelined: bool
    tls_protocol: str | None
    custom_header: str | None
    session_cookie: str | None
    content_type: str | None
    request_log_id: str


# IPv6 with runs of zeros (so '::' compression shows up) as well as random groups.
_HEXTETS = st.lists(st.one_of(st.just(0), st.just(1), st.just(0xDB8), st.integers(0, 0xFFFF)), min_size=8, max_size=8)


@st.composite
def public_ips(draw):
    kind = draw(st.sampled_from(["v4", "v6", "v6", "mapped", "fixed"]))
    if kind == "v4":
        address = ipaddress.IPv4Address(draw(st.integers(0x0B000000, 0xDFFFFFFF)))   # above 10/8
    elif kind == "mapped":
        address = ipaddress.IPv6Address(f"::ffff:{ipaddress.IPv4Address(draw(st.integers(0x0B000000, 0xDFFFFFFF)))}")
    elif kind == "fixed":
        address = ipaddress.ip_address(draw(st.sampled_from(["::1", "2001:db8::1", "fe80::1", "2001:db8:0:1:1:1:1:1",
                                                             "203.0.113.7", "192.0.2.255"])))
    else:
        address = ipaddress.IPv6Address(":".join(f"{p:x}" for p in draw(_HEXTETS)))
    if address.version == 6 and address.packed[:12] == bytes(12) and str(address) not in ("::", "::1"):
        address = ipaddress.IPv6Address("2001:db8::2")   # deprecated IPv4-compatible form: two spellings
    return address


trusted_ips = st.integers(0, 0xFFFFFF).map(lambda n: ipaddress.IPv4Address(0x0A000000 + n))


def nginx_ntop(address) -> str:
    """How nginx (and inet_ntop) writes an address: IPv4-mapped IPv6 keeps its dotted quad."""
    if address.version == 6 and address.ipv4_mapped is not None:
        return f"::ffff:{address.ipv4_mapped}"
    return str(address)


@st.composite
def forwarded_entries(draw):
    address = draw(st.one_of(public_ips(), trusted_ips))
    if address.version == 6 and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    port = draw(st.one_of(st.none(), st.integers(1, 65535)))
    if port is None:
        return str(address)
    return f"[{address}]:{port}" if address.version == 6 else f"{address}:{port}"


# Any character a client can send (a vertical tab is left to test_conformance, see there),
# and text that looks like an escape or a separator.
free_text = st.one_of(
    st.text(st.characters(codec="utf-8", exclude_characters="\x0b"), min_size=1, max_size=30),
    st.lists(st.sampled_from(["\\x41", "\\x5C", "\\\"", "\\", '"', "\\u00e9", "\\n", " - ", " ", "|", "[", "]",
                              "\ufffd", "é", "\x00", "\t", "\x7f", "-", "Mozilla/5.0", " (X11; Linux)", '""']),
             min_size=1, max_size=6).map("".join))
user_names = st.text(st.sampled_from('abcXYZ019._@"\\é'), min_size=1, max_size=10).filter(lambda s: s != "-")
hostnames = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?(\.[a-z0-9]{1,6}){0,3}", fullmatch=True)
tokens = st.text(st.sampled_from("abcdefXYZ0123456789%._-"), min_size=1, max_size=16).filter(lambda s: s != "-")
language_tags = st.from_regex(r"[a-z]{2,3}(-[A-Z]{2})?", fullmatch=True)


@st.composite
def requests(draw, path_alphabet: str, empty_user: bool = True):
    when_us = draw(st.integers(946684800_000000, 2082758399_999999))   # 2000-01-01 .. 2035-12-31
    duration_us = draw(st.integers(0, 100_000_000))
    protocol = draw(st.sampled_from(["HTTP/1.0", "HTTP/1.1", "HTTP/1.1", "HTTP/2.0", None]))
    groups = lambda values: st.lists(st.lists(values, min_size=1, max_size=3).map(tuple), min_size=1,
                                     max_size=2).map(tuple)
    return Request(
        peer=draw(st.one_of(public_ips(), trusted_ips)),
        forwarded_for=draw(st.one_of(st.none(), st.lists(forwarded_entries(), min_size=1, max_size=3).map(tuple))),
        user=draw(st.one_of(st.none(), user_names, st.just("") if empty_user else st.nothing())),
        when_us=when_us,
        zone=timezone(timedelta(minutes=15 * draw(st.integers(-48, 56)))),   # -12:00 .. +14:00
        method=draw(st.sampled_from(["GET", "GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS", "PATCH",
                                     "PROPFIND", "M-SEARCH"])),
        path="/" + draw(st.text(st.sampled_from(path_alphabet), max_size=40)),
        query=draw(st.one_of(st.none(), st.text(st.sampled_from("abcxyz0129=&_.-%+/:,;?"), min_size=1,
                                                max_size=30).filter(lambda q: q != "-"))),   # '-' reads as none
        protocol=protocol,
        status=draw(st.integers(100, 599)),
        body_bytes=draw(st.one_of(st.just(0), st.integers(0, 10**12))),
        header_bytes=draw(st.integers(0, 5000)),
        request_length=draw(st.integers(1, 10**9)),
        duration_us=duration_us,
        referrer=draw(st.one_of(st.none(), st.just(""), free_text, st.just("https://example.com/a?b=1"))),
        user_agent=draw(st.one_of(st.none(), free_text,
                                  st.just("Mozilla/5.0 (Windows NT 10.0; Win64; x64) Gecko/20100101 Firefox/128.0"))),
        languages=draw(st.one_of(st.none(), st.lists(
            st.tuples(language_tags, st.sampled_from([1.0, 0.9, 0.8, 0.5, 0.1, 0.0])), min_size=1,
            max_size=4).map(tuple))),
        upstream_ms=draw(st.one_of(st.none(), groups(st.one_of(st.none(), st.integers(0, 10**6))))),
        upstream_status=draw(st.one_of(st.none(), groups(st.integers(100, 599)))),
        upstream_addr=draw(st.one_of(st.none(), groups(st.one_of(
            st.builds(lambda ip, port: f"{ip}:{port}", trusted_ips, st.integers(1, 65535)),
            st.just("unix:/run/app.sock"))))),
        host=draw(hostnames),
        server_name=draw(hostnames),
        http_host=draw(st.one_of(hostnames, st.builds(lambda h, p: f"{h}:{p}", hostnames, st.integers(1, 65535)))),
        scheme=draw(st.sampled_from(["http", "https"])),
        request_id=draw(st.from_regex(r"[0-9a-f]{32}", fullmatch=True)),
        connection=draw(st.integers(1, 2**40)),
        pipelined=draw(st.booleans()),
        tls_protocol=draw(st.sampled_from([None, "TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3"])),
        custom_header=draw(st.one_of(st.none(), free_text)),
        session_cookie=draw(st.one_of(st.none(), tokens)),
        content_type=draw(st.sampled_from([None, "text/html; charset=utf-8", "application/json", "image/png"])),
        request_log_id=draw(st.from_regex(r"[A-Za-z0-9@_][A-Za-z0-9@_-]{19,23}", fullmatch=True)),
    )


# nginx: $request may carry any byte a client sends; Apache's %U is percent-encoded by
# ap_escape_uri, so only characters it leaves alone.
NGINX_PATH = "abcxyz/0129-._~!$&'()*+,;=:@%é日\"\\"
APACHE_PATH = "abcxyz/0129-._~!$&'()*+,:@="


# -- what the parser must return ------------------------------------------------------------


def utc(us: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=us)


def text_value(value: str | None) -> str | None:
    """A logged string as accesslog reads it: '-' and '' both mean no value."""
    return None if value in (None, "", "-") else value


def primary_language(languages) -> str | None:
    """Accept-Language: the primary subtag of the first tag with the highest q > 0 (RFC 9110 §12.5.4)."""
    if not languages:
        return None
    best = max(q for _, q in languages)
    if best <= 0:
        return None
    return next(tag for tag, q in languages if q == best).split("-")[0].lower()


def realip(peer, forwarded_for, trusted: bool) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """ngx_http_realip_module with real_ip_recursive on: from the peer leftwards through
    X-Forwarded-For, the first address that is not a trusted proxy (all trusted: the left-most)."""
    address = peer
    if not trusted or not forwarded_for:
        return address
    for entry in reversed(forwarded_for):
        if address not in TRUSTED_NETWORK:
            return address
        address = ipaddress.ip_address(_without_port(entry))
    return address


def _without_port(entry: str) -> str:
    """'[2001:db8::1]:8443' -> '2001:db8::1', '192.0.2.1:80' -> '192.0.2.1'."""
    if entry.startswith("["):
        return entry[1:].split("]")[0]
    return entry.split(":")[0] if entry.count(":") == 1 else entry


def folded(address):
    """One client, one identity: IPv4-mapped IPv6 is the IPv4 address."""
    return address.ipv4_mapped if address.version == 6 and address.ipv4_mapped is not None else address


def upstream_list(groups, show) -> str | None:
    if groups is None:
        return None
    return " : ".join(", ".join(show(v) for v in group) for group in groups)


def upstream_total(groups) -> float | None:
    values = [v for group in groups or () for v in group if v is not None]
    return float(sum(values)) if values else None


def common_expected(req: Request, present: set[str], trusted: bool) -> dict:
    """Columns fed the same way by nginx variables and the Apache directives' canonical names."""
    out = {}
    client_var = next(v for v in ("remote_addr", "realip_remote_addr", "binary_remote_addr") if v in present)
    peer = req.peer
    if client_var != "binary_remote_addr" and "http_x_forwarded_for" in present:
        peer = realip(peer, req.forwarded_for, trusted)
    out["_client_ip"] = folded(peer)
    out["_remote_user"] = text_value(req.user) if "remote_user" in present else None
    if "request" in present:
        out.update(method=req.method, url_path=req.path, url_query=req.query, protocol=req.protocol)
    else:
        out["method"] = req.method if "request_method" in present else None
        out["protocol"] = req.protocol if "server_protocol" in present else None
        out["url_path"] = req.path if "uri" in present or "request_uri" in present else None
        query_vars = {"request_uri", "args", "query_string", "query_string_apache"}
        out["url_query"] = req.query if present & query_vars else None
    out["status"] = req.status
    out["bytes_sent"] = req.body_bytes if present & {"body_bytes_sent", "body_bytes_clf"} else None
    out["response_bytes"] = req.body_bytes + req.header_bytes if "bytes_sent" in present else None
    out["request_length"] = req.request_length if "request_length" in present else None
    out["referrer"] = text_value(req.referrer) if "http_referer" in present else None
    out["user_agent"] = text_value(req.user_agent) if "http_user_agent" in present else None
    out["language"] = primary_language(req.languages) if "http_accept_language" in present else None
    host_var = next((v for v in ("host", "server_name", "http_host") if v in present), None)
    out["host"] = getattr(req, host_var) if host_var else None
    return out


def chunks(path_alphabet: str, empty_user: bool = True):
    """1-4 requests, sometimes each twice: repeated values take the dictionary-encoded paths."""
    return st.lists(requests(path_alphabet, empty_user), min_size=1, max_size=4).flatmap(
        lambda reqs: st.sampled_from([reqs, reqs + reqs]))


def parse_lines(fmt, lines: list[str], trusted: bool) -> list[dict]:
    if trusted:
        fmt = dataclasses.replace(fmt, options={"trusted_proxies": parse_trusted_proxies(TRUSTED)})
    data = "".join(line + "\n" for line in lines).encode("utf-8")
    records, rejects = parse_chunk(fmt, LogChunk("roundtrip.log", "0123456789abcdef", 1, data))
    assert list(zip(rejects.source_lines, rejects.reasons)) == [], lines
    rows = records.records.sort_by("source_line").to_pylist()
    assert [row["source_line"] for row in rows] == list(range(1, len(lines) + 1))
    return rows


def assert_round_trip(rows: list[dict], expected: list[dict], extras: set[str], lines: list[str]) -> None:
    for row, want, text in zip(rows, expected, lines):
        got = {name: row.get(name) for name in want}
        if got["_client_ip"] is not None:
            got["_client_ip"] = ipaddress.ip_address(got["_client_ip"])
        assert got == want, text
        assert {name for name in row if name.startswith("_x_")} == extras, text


# -- nginx ----------------------------------------------------------------------------------


_JSON_NAMED = {0x22: '\\"', 0x5C: "\\\\", 0x0A: "\\n", 0x0D: "\\r", 0x09: "\\t", 0x08: "\\b", 0x0C: "\\f"}


def nginx_escaped(value: str | bytes | None, escape: str = "default") -> str:
    """escape=default: '"', '\\', bytes < 0x20 and > 0x7e as \\xHH; no value -> '-'.
    escape=json (ngx_escape_json): '"' '\\' and \\n \\r \\t \\b \\f named, other bytes < 0x20 as
    \\u00hh, the rest raw; no value -> nothing."""
    if value is None:
        return "-" if escape == "default" else ""
    raw = value.encode("utf-8") if isinstance(value, str) else value
    if escape == "json":
        escaped = b"".join((_JSON_NAMED.get(b) or (f"\\u{b:04x}" if b < 0x20 else "")).encode() or bytes([b])
                           for b in raw)
        return escaped.decode("utf-8")   # bytes > 0x7f are written raw: still UTF-8
    return "".join(f"\\x{b:02X}" if b in (0x22, 0x5C) or b < 0x20 or b > 0x7E else chr(b) for b in raw)


def _clock(req: Request) -> datetime:
    return utc(req.when_us).astimezone(req.zone)


def _offset(req: Request, colon: bool) -> str:
    minutes = int(req.zone.utcoffset(None).total_seconds()) // 60
    sign = "-" if minutes < 0 else "+"
    return f"{sign}{abs(minutes) // 60:02d}{':' if colon else ''}{abs(minutes) % 60:02d}"


def time_local(req: Request) -> str:
    t = _clock(req)
    return f"{t.day:02d}/{MONTHS[t.month - 1]}/{t.year}:{t:%H:%M:%S} {_offset(req, colon=False)}"


def time_iso8601(req: Request) -> str:
    return f"{_clock(req):%Y-%m-%dT%H:%M:%S}{_offset(req, colon=True)}"


def target(req: Request) -> str:
    return req.path + ("" if req.query is None else "?" + req.query)


def request_line(req: Request) -> str:
    return f"{req.method} {target(req)}" + ("" if req.protocol is None else f" {req.protocol}")


def seconds_ms(ms: int | None) -> str:
    return "-" if ms is None else f"{ms // 1000}.{ms % 1000:03d}"


def accept_language(languages) -> str | None:
    if languages is None:
        return None
    return ",".join(tag if q == 1.0 else f"{tag};q={q:g}" for tag, q in languages)


# variable -> (always quoted, value as nginx has it: str, bytes or None for "no value")
NGINX_VARIABLES = {
    "remote_addr": (False, lambda r: nginx_ntop(r.peer)),
    "realip_remote_addr": (False, lambda r: nginx_ntop(r.peer)),
    "binary_remote_addr": (True, lambda r: r.peer.packed),   # any printable byte, even a space or '|'
    "http_x_forwarded_for": (True, lambda r: None if r.forwarded_for is None else ", ".join(r.forwarded_for)),
    "remote_user": (False, lambda r: r.user),
    "time_local": (False, time_local),
    "time_iso8601": (False, time_iso8601),
    "msec": (False, lambda r: f"{r.when_us // 1_000_000}.{r.when_us // 1000 % 1000:03d}"),
    "request": (True, request_line),
    "request_method": (False, lambda r: r.method),
    "request_uri": (False, target),
    "uri": (False, lambda r: r.path),
    "args": (False, lambda r: r.query),
    "query_string": (False, lambda r: r.query),
    "server_protocol": (False, lambda r: r.protocol),
    "status": (False, lambda r: str(r.status)),
    "body_bytes_sent": (False, lambda r: str(r.body_bytes)),
    "bytes_sent": (False, lambda r: str(r.body_bytes + r.header_bytes)),
    "request_length": (False, lambda r: str(r.request_length)),
    "http_referer": (True, lambda r: r.referrer),
    "http_user_agent": (True, lambda r: r.user_agent),
    "http_accept_language": (True, lambda r: accept_language(r.languages)),
    "request_time": (False, lambda r: seconds_ms(r.duration_us // 1000)),
    "upstream_response_time": (True, lambda r: upstream_list(r.upstream_ms, seconds_ms)),
    "upstream_status": (True, lambda r: upstream_list(r.upstream_status, str)),
    "upstream_addr": (True, lambda r: upstream_list(r.upstream_addr, str)),
    "host": (False, lambda r: r.host),
    "server_name": (False, lambda r: r.server_name),
    "http_host": (False, lambda r: r.http_host),
    "scheme": (False, lambda r: r.scheme),
    "request_id": (False, lambda r: r.request_id),
    "connection": (False, lambda r: str(r.connection)),
    "pipe": (False, lambda r: "p" if r.pipelined else "."),
    "ssl_protocol": (False, lambda r: r.tls_protocol),
    "http_x_custom": (True, lambda r: r.custom_header),
    "cookie_session": (False, lambda r: r.session_cookie),
    "sent_http_content_type": (True, lambda r: r.content_type),
}
NGINX_CLIENT = ("remote_addr", "realip_remote_addr", "binary_remote_addr")
NGINX_TIME = ("time_local", "time_iso8601", "msec")
# $request_uri is left to test_nginx_request_uri_round_trip (it fails today).
NGINX_OTHER = tuple(v for v in NGINX_VARIABLES
                    if v not in NGINX_CLIENT + NGINX_TIME + ("status", "request_uri"))
NGINX_EXTRAS = {"pipe", "http_x_custom", "cookie_session", "sent_http_content_type"}


@st.composite
def nginx_formats(draw, others=NGINX_OTHER, required=(), clients=NGINX_CLIENT):
    """A log_format body: a client address, one time, $status, `required` and any `others`,
    in random order, joined by random separators."""
    chosen = (draw(st.lists(st.sampled_from(clients), min_size=1, max_size=2, unique=True))
              + [draw(st.sampled_from(NGINX_TIME)), "status", *required]
              + draw(st.lists(st.sampled_from(others), unique=True, max_size=12)))
    order = draw(st.permutations(chosen))
    body = ""
    for i, var in enumerate(order):
        quoted = NGINX_VARIABLES[var][0]
        token = f'"${var}"' if quoted else f"[${var}]" if var == "time_local" and draw(st.booleans()) else f"${var}"
        body += (draw(st.sampled_from(SEPARATORS)) if i else "") + token
    return body, order


def nginx_line(body: str, order, req: Request, escape: str = "default") -> str:
    line = body
    for var in sorted(order, key=len, reverse=True):   # $request before $request_method's prefix clash
        line = line.replace(f"${var}", "\0" + var + "\0")
    for var in order:
        line = line.replace("\0" + var + "\0", nginx_escaped(NGINX_VARIABLES[var][1](req), escape))
    return line


def nginx_expected(req: Request, present: set[str], trusted: bool) -> dict:
    out = common_expected(req, present, trusted)
    time_var = next(v for v in NGINX_TIME if v in present)
    resolution = 1000 if time_var == "msec" else 1_000_000
    responded = req.when_us // resolution * resolution
    duration_ms = req.duration_us // 1000 if "request_time" in present else None
    out["responded_at"] = utc(responded)
    out["received_at"] = utc(responded - (duration_ms or 0) * 1000)
    out["duration_ms"] = None if duration_ms is None else float(duration_ms)
    out["upstream_ms"] = upstream_total(req.upstream_ms) if "upstream_response_time" in present else None
    out["upstream_status"] = upstream_list(req.upstream_status, str) if "upstream_status" in present else None
    out["upstream_addr"] = upstream_list(req.upstream_addr, str) if "upstream_addr" in present else None
    out["scheme"] = req.scheme if "scheme" in present else None
    out["request_id"] = req.request_id if "request_id" in present else None
    out["connection_id"] = req.connection if "connection" in present else None
    out["tls_protocol"] = req.tls_protocol if "ssl_protocol" in present else None
    extras = {"pipe": "p" if req.pipelined else ".", "http_x_custom": text_value(req.custom_header),
              "cookie_session": req.session_cookie, "sent_http_content_type": req.content_type}
    out.update({f"_x_{var}": value for var, value in extras.items() if var in present})
    return out


def check_nginx(fmt_and_order, reqs, trusted, escape="default"):
    body, order = fmt_and_order
    lines = [nginx_line(body, order, req, escape) for req in reqs]
    rows = parse_lines(resolve_format(body if escape == "default" else f"escape={escape} {body}"), lines, trusted)
    present = set(order)
    assert_round_trip(rows, [nginx_expected(req, present, trusted) for req in reqs],
                      {f"_x_{v}" for v in NGINX_EXTRAS & present}, lines)


@SETTINGS
@given(nginx_formats(), chunks(NGINX_PATH), st.booleans())
def test_nginx_round_trip(fmt_and_order, reqs, trusted):
    check_nginx(fmt_and_order, reqs, trusted)


@SETTINGS
@given(nginx_formats(clients=("remote_addr", "realip_remote_addr")), chunks(NGINX_PATH), st.booleans())
def test_nginx_escape_json_round_trip(fmt_and_order, reqs, trusted):
    """log_format NAME escape=json ...: \\" escapes, raw UTF-8, and an empty value for a missing one
    ($binary_remote_addr is left out: its bytes > 0x7f are written raw, which is not UTF-8)."""
    check_nginx(fmt_and_order, reqs, trusted, escape="json")


@SETTINGS
@given(chunks(NGINX_PATH), st.booleans())
def test_nginx_presets_round_trip(reqs, trusted):
    for preset in ("combined", "main", "timed_combined"):
        body = resolve_format(preset).body
        # the body's variables; the identd field's '-' is read as a variable the body does not name
        order = [text for kind, text in resolve_format(preset).segments if kind == "var" and text != "ident"]
        check_nginx((body, order), reqs, trusted)


@settings(max_examples=5, deadline=None, database=None, phases=[Phase.generate])
@given(nginx_formats(others=tuple(v for v in NGINX_OTHER if v != "request"), required=("request_uri",)),
       st.lists(requests(NGINX_PATH), min_size=1, max_size=2), st.booleans())
def test_nginx_request_uri_round_trip(fmt_and_order, reqs, trusted):
    check_nginx(fmt_and_order, reqs + reqs, trusted)   # repeated values: dictionary-encoded


# -- Apache httpd ---------------------------------------------------------------------------

_C_STYLE = {0x08: "\\b", 0x09: "\\t", 0x0A: "\\n", 0x0B: "\\v", 0x0D: "\\r", 0x22: '\\"', 0x5C: "\\\\"}


def apache_escaped(value: str | None) -> str:
    """ap_escape_logitem: \\" \\\\ and C notation for whitespace controls, \\xhh for other
    non-printable bytes; no value -> '-'."""
    if value is None:
        return "-"
    return "".join(_C_STYLE.get(b) or (f"\\x{b:02x}" if b < 0x20 or b > 0x7E else chr(b))
                   for b in value.encode("utf-8"))


def apache_user(req: Request) -> str:
    return '""' if req.user == "" else apache_escaped(req.user)


def strftime(req: Request, fmt: str) -> str:
    t = _clock(req)
    return fmt.replace("%b", MONTHS[t.month - 1]).replace("%z", _offset(req, colon=False)).replace(
        "%d", f"{t.day:02d}").replace("%Y", f"{t.year}").replace("%m", f"{t.month:02d}").replace(
        "%H", f"{t.hour:02d}").replace("%M", f"{t.minute:02d}").replace("%S", f"{t.second:02d}")


# Time directives: (format text, writer, resolution in µs, role).
APACHE_TIMES = (
    ("%t", lambda r: "[" + strftime(r, "%d/%b/%Y:%H:%M:%S %z") + "]", 1_000_000, "received"),
    ("%{sec}t", lambda r: str(r.when_us // 1_000_000), 1_000_000, "received"),
    ("%{msec}t", lambda r: str(r.when_us // 1000), 1000, "received"),
    ("%{usec}t", lambda r: str(r.when_us), 1, "received"),
    ("%{sec}t.%{msec_frac}t", lambda r: f"{r.when_us // 1_000_000}.{r.when_us // 1000 % 1000:03d}", 1000,
     "received"),
    ("[%{%d/%b/%Y:%H:%M:%S}t.%{usec_frac}t %{%z}t]",
     lambda r: "[" + strftime(r, "%d/%b/%Y:%H:%M:%S") + f".{r.when_us % 1_000_000:06d} "
     + strftime(r, "%z") + "]", 1, "received"),
    ("%{%Y-%m-%dT%H:%M:%S}t.%{msec_frac}t%{%z}t",
     lambda r: strftime(r, "%Y-%m-%dT%H:%M:%S") + f".{r.when_us // 1000 % 1000:03d}" + strftime(r, "%z"),
     1000, "received"),
    ("%{end:%d/%b/%Y:%H:%M:%S %z}t", lambda r: strftime(r, "%d/%b/%Y:%H:%M:%S %z"), 1_000_000, "responded"),
)

# directive -> (canonical variable, always quoted, writer)
APACHE_DIRECTIVES = {
    "%h": ("remote_addr", False, lambda r: nginx_ntop(r.peer)),
    "%{c}a": ("realip_remote_addr", False, lambda r: nginx_ntop(r.peer)),
    "%l": ("ident", False, lambda r: "-"),
    "%u": ("remote_user", False, apache_user),
    "%r": ("request", True, lambda r: apache_escaped(request_line(r))),
    "%m": ("request_method", False, lambda r: r.method),
    "%U": ("uri", False, lambda r: r.path),
    "%q": ("query_string_apache", False, lambda r: "" if r.query is None else "?" + r.query),
    "%H": ("server_protocol", False, lambda r: r.protocol or "HTTP/0.9"),
    "%>s": ("status", False, lambda r: str(r.status)),
    "%b": ("body_bytes_clf", False, lambda r: str(r.body_bytes) if r.body_bytes else "-"),
    "%B": ("body_bytes_sent", False, lambda r: str(r.body_bytes)),
    "%O": ("bytes_sent", False, lambda r: str(r.body_bytes + r.header_bytes)),
    "%I": ("request_length", False, lambda r: str(r.request_length)),
    "%D": ("request_time_us", False, lambda r: str(r.duration_us)),
    "%{ms}T": ("request_time_ms", False, lambda r: str(r.duration_us // 1000)),
    "%T": ("request_time_s", False, lambda r: str(r.duration_us // 1_000_000)),
    "%{Referer}i": ("http_referer", True, lambda r: apache_escaped(r.referrer)),
    "%{User-Agent}i": ("http_user_agent", True, lambda r: apache_escaped(r.user_agent)),
    "%{Accept-Language}i": ("http_accept_language", True, lambda r: apache_escaped(accept_language(r.languages))),
    "%{X-Forwarded-For}i": ("http_x_forwarded_for", True, lambda r: apache_escaped(
        None if r.forwarded_for is None else ", ".join(r.forwarded_for))),
    "%v": ("server_name", False, lambda r: r.server_name),
    "%V": ("host", False, lambda r: r.host),
    "%{Host}i": ("http_host", False, lambda r: apache_escaped(r.http_host)),
    "%L": ("request_id", False, lambda r: r.request_log_id),
    "%{X-Custom}i": ("http_x_custom", True, lambda r: apache_escaped(r.custom_header)),
    "%{session}C": ("cookie_session", False, lambda r: apache_escaped(r.session_cookie)),
    "%{Content-Type}o": ("sent_http_content_type", True, lambda r: apache_escaped(r.content_type)),
    "%k": ("keepalive_requests", False, lambda r: str(r.connection % 100)),
    "%p": ("server_port", False, lambda r: "443" if r.scheme == "https" else "80"),
    "%P": ("pid", False, lambda r: str(r.connection % 32768 + 1)),
}
APACHE_CLIENT = ("%h", "%{c}a")
APACHE_OTHER = tuple(d for d in APACHE_DIRECTIVES if d not in APACHE_CLIENT + ("%>s",))
APACHE_EXTRAS = {"http_x_custom": lambda r: text_value(r.custom_header), "cookie_session": lambda r: r.session_cookie,
                 "sent_http_content_type": lambda r: r.content_type,
                 "keepalive_requests": lambda r: str(r.connection % 100)}


@st.composite
def apache_formats(draw):
    """A LogFormat: a client address, one time, %>s and any others, in random order."""
    time_index = draw(st.integers(0, len(APACHE_TIMES) - 1))
    chosen = (draw(st.lists(st.sampled_from(APACHE_CLIENT), min_size=1, max_size=2, unique=True))
              + [time_index, "%>s"] + draw(st.lists(st.sampled_from(APACHE_OTHER), unique=True, max_size=12)))
    order = draw(st.permutations(chosen))
    pieces = []
    for item in order:
        if isinstance(item, int):
            pieces.append((APACHE_TIMES[item][0], item))
        else:
            pieces.append((f'"{item}"' if APACHE_DIRECTIVES[item][1] else item, item))
    separators = [draw(st.sampled_from(SEPARATORS)) for _ in pieces[1:]]
    return pieces, separators


def apache_line(pieces, separators, req: Request) -> str:
    values = []
    for text, item in pieces:
        if isinstance(item, int):
            values.append(APACHE_TIMES[item][1](req))
        else:
            value = APACHE_DIRECTIVES[item][2](req)
            values.append(f'"{value}"' if text.startswith('"') else value)
    return values[0] + "".join(sep + value for sep, value in zip(separators, values[1:]))


def apache_expected(req: Request, items, trusted: bool) -> dict:
    present = {APACHE_DIRECTIVES[i][0] for i in items if not isinstance(i, int)}
    out = common_expected(req, present, trusted)
    if "request" not in present and "server_protocol" in present:
        out["protocol"] = req.protocol or "HTTP/0.9"   # httpd's r->protocol for a request line without one
    (time_index,) = [i for i in items if isinstance(i, int)]
    _, _, resolution, role = APACHE_TIMES[time_index]
    logged = req.when_us // resolution * resolution
    unit = next((u for var, u in (("request_time_us", 1), ("request_time_ms", 1000), ("request_time_s", 1_000_000))
                 if var in present), None)
    duration_us = None if unit is None else req.duration_us // unit * unit
    if role == "received":
        out["received_at"], out["responded_at"] = utc(logged), utc(logged + (duration_us or 0))
    else:
        out["received_at"], out["responded_at"] = utc(logged - (duration_us or 0)), utc(logged)
    out["duration_ms"] = None if duration_us is None else duration_us / 1000
    out["request_id"] = req.request_log_id if "request_id" in present else None
    out.update({f"_x_{var}": value(req) for var, value in APACHE_EXTRAS.items() if var in present})
    return out


def check_apache(spec, pieces, separators, reqs, trusted):
    lines = [apache_line(pieces, separators, req) for req in reqs]
    rows = parse_lines(resolve_format(spec), lines, trusted)
    items = [item for _, item in pieces]
    present = {APACHE_DIRECTIVES[i][0] for i in items if not isinstance(i, int)}
    assert_round_trip(rows, [apache_expected(req, items, trusted) for req in reqs],
                      {f"_x_{v}" for v in APACHE_EXTRAS if v in present}, lines)


@SETTINGS
@given(apache_formats(), chunks(APACHE_PATH, empty_user=False), st.booleans())
def test_apache_round_trip(fmt, reqs, trusted):
    pieces, separators = fmt
    spec = pieces[0][0] + "".join(sep + text for sep, (text, _) in zip(separators, pieces[1:]))
    check_apache(spec, pieces, separators, reqs, trusted)


# The stock formats as (directive, separator before it) pieces; a time is an APACHE_TIMES index.
_COMMON = [("%h", ""), ("%l", " "), ("%u", " "), (0, " "), ('"%r"', " "), ("%>s", " "), ("%b", " ")]
_COMBINED = _COMMON + [('"%{Referer}i"', " "), ('"%{User-Agent}i"', " ")]
APACHE_PRESET_PIECES = {
    "common": _COMMON,
    "apache_combined": _COMBINED,
    "combinedio": _COMBINED + [("%I", " "), ("%O", " ")],
    "vhost_combined": [("%v", ""), ("%p", ":"), ("%h", " "), ("%l", " "), ("%u", " "), (0, " "), ('"%r"', " "),
                       ("%>s", " "), ("%O", " "), ('"%{Referer}i"', " "), ('"%{User-Agent}i"', " ")],
}


@SETTINGS
@given(chunks(APACHE_PATH, empty_user=False), st.booleans())
def test_apache_presets_round_trip(reqs, trusted):
    for preset, stock in APACHE_PRESET_PIECES.items():
        pieces = [(APACHE_TIMES[item][0], item) if isinstance(item, int) else (item, item.strip('"'))
                  for item, _ in stock]
        separators = [sep for _, sep in stock[1:]]
        assert resolve_format(preset).body == pieces[0][0] + "".join(
            sep + text for sep, (text, _) in zip(separators, pieces[1:]))
        check_apache(preset, pieces, separators, reqs, trusted)

"""Raw field strings (one Arrow column per log variable) -> typed access columns.

Every conversion works on whole columns (Arrow compute, RE2) or on the distinct
values of a column; nothing here loops over rows in Python. A row whose value
cannot be converted is rejected with a reason that names the variable but never
quotes the value (reasons must not carry personal data).

The raw client address and user name leave this module as in-memory columns
``_client_ip`` / ``_remote_user``; `PseudonymizeClients` replaces them.
"""
from __future__ import annotations

import functools
import ipaddress
import re
import socket
from dataclasses import dataclass
from datetime import timezone, tzinfo

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from schemas.errors import SettingError
from transforms.timeparse import MAX_US, MIN_US, parse_times

_V4_MAPPED = b"\0" * 10 + b"\xff\xff"
_ESCAPE = re.compile(rb"\\x([0-9A-Fa-f]{2})")
_BACKSLASH = re.compile(rb"\\(x[0-9A-Fa-f]{2}|u[0-9A-Fa-f]{4}|.)", re.DOTALL)
_SIMPLE_ESCAPES = {b"n": b"\n", b"t": b"\t", b"r": b"\r", b"b": b"\b", b"f": b"\f", b"v": b"\v", b'"': b'"',
                   b"\\": b"\\", b"/": b"/"}
# A request line is "METHOD target HTTP/x.y"; HTTP/0.9 lines have no protocol, and
# some clients send spaces in the target. The strict pattern is one-pass for RE2
# (fast); the lenient one handles the rest.
_REQUEST_STRICT = r"^(?P<method>[A-Z]+) (?P<path>[^ ?]*)(?P<query>\?[^ ]*)? (?P<protocol>HTTP/[0-9.]+)$"
_REQUEST_LENIENT = (r"^(?P<method>[A-Za-z][A-Za-z0-9_-]*) (?P<path>[^?]*?)(?P<query>\?.*?)?"
                    r"(?: (?P<protocol>HTTP/[0-9.]+))?$")


# nginx escape=default writes \xHH for '"', '\', control and non-ASCII bytes, so a backslash it
# wrote is always followed by 'x'. \" and \\ are Apache's escapes (its combined lines have the same
# layout and are read with the nginx presets too): undone as well.
_NGINX_ESCAPE = re.compile(rb'\\x([0-9A-Fa-f]{2})|\\(["\\])')


def _decode_nginx(text: str) -> str:
    """Undo nginx escape=default (and the \\" and \\\\ of Apache lines in the same layout)."""
    # On the UTF-8 bytes, so characters that were not escaped (a raw 'é', U+FFFD) survive.
    raw = _NGINX_ESCAPE.sub(lambda m: bytes([int(m.group(1), 16)]) if m.group(1) else m.group(2),
                            text.encode("utf-8"))
    return raw.decode("utf-8", "replace")


def encoded(values: pa.Array | pa.ChunkedArray) -> pa.DictionaryArray:
    """`values` as one DictionaryArray (encoded here unless it already is)."""
    if isinstance(values, pa.ChunkedArray):
        values = values.chunk(0) if values.num_chunks == 1 else values.combine_chunks()
    return values if pa.types.is_dictionary(values.type) else pc.dictionary_encode(values)


def with_dictionary(indices: pa.Array, dictionary: pa.Array) -> pa.Array:
    """Rows = dictionary[indices]. String results stay dictionary-encoded (filters, sorts
    and Parquet writes then move int32 indices, not strings); others are taken."""
    if not pa.types.is_string(dictionary.type):
        return dictionary.take(indices)
    if dictionary.null_count:  # a null entry must show as a null row (is_null looks at indices)
        valid = pc.fill_null(pc.take(dictionary.is_valid(), indices), False)
        indices = pc.if_else(valid, indices, pa.scalar(None, indices.type))
        dictionary = pc.fill_null(dictionary, "")  # unreferenced now; Parquet refuses null entries
    return pa.DictionaryArray.from_arrays(indices, dictionary)


def on_uniques(values: pa.Array, fn) -> pa.Array:
    """Apply a column function (Array -> Array) to the distinct values only.

    Log columns repeat heavily (user agents, referrers, paths), so this is usually far
    cheaper than running the function over every row. Nulls stay null.
    """
    enc = encoded(values)
    result = with_dictionary(enc.indices, fn(enc.dictionary))
    if pa.types.is_dictionary(result.type) and len(enc.dictionary) * 2 > len(enc):
        # Mostly distinct values (ids, tokens): a dictionary would only cost the writer.
        return result.cast(result.type.value_type)
    return result


def map_unique(values: pa.Array, fn, type_: pa.DataType = pa.string()) -> pa.Array:
    """Apply a Python function (str -> value) once per distinct value of `values`.

    `fn` may also see dictionary entries no row refers to (e.g. ''), so it must not fail on them.
    """
    return on_uniques(values, lambda uniques: pa.array(
        [None if v is None else fn(v) for v in uniques.to_pylist()], type_))


def _decode_backslash(text: str) -> str:
    """Undo Apache / nginx escape=json escaping: \\" \\\\ \\n \\t \\xhh \\uXXXX."""
    def sub(m: re.Match) -> bytes:
        esc = m.group(1)
        if esc[:1] == b"x" and len(esc) == 3:   # a lone \X or \x is left as it is
            return bytes([int(esc[1:], 16)])
        if esc[:1] == b"u" and len(esc) == 5:
            return chr(int(esc[1:], 16)).encode("utf-8", "replace")
        return _SIMPLE_ESCAPES.get(esc, esc)
    return _BACKSLASH.sub(sub, text.encode("utf-8")).decode("utf-8", "replace")


_DECODERS = {"default": (r"\\[x\"\\\\]", _decode_nginx), "json": (r"\\", _decode_backslash),
             "apache": (r"\\", _decode_backslash)}


def decode_escapes(values: pa.Array, escape: str = "default") -> pa.Array:
    """Decode the server's escapes in the values that have any; invalid UTF-8 -> U+FFFD."""
    if escape not in _DECODERS:
        return values
    marker, decode = _DECODERS[escape]
    has_escape = pc.fill_null(pc.match_substring_regex(values, marker), False)
    if not pc.any(has_escape).as_py():
        return values
    decoded = pa.array([decode(v) for v in values.filter(has_escape).to_pylist()], pa.string())
    return pc.replace_with_mask(values, has_escape, decoded)


def clean_text(values: pa.Array, escape: str = "default", distinct: bool = False) -> pa.Array:
    """A logged string variable -> its value: escapes decoded, '-' and '' as null.
    `distinct`: values are (nearly) all different, e.g. request ids: no dictionary."""
    def clean(v: pa.Array) -> pa.Array:
        if escape == "apache":   # an empty %u is logged as "" (a value of two quotes is \"\")
            v = pc.if_else(pc.equal(v, '""'), pa.scalar("", pa.string()), v)
        return dash_to_null(decode_escapes(v, escape))
    return clean(values) if distinct else on_uniques(values, clean)


def dash_to_null(values: pa.Array) -> pa.Array:
    """nginx writes '-' for an empty variable; Apache too. Empty string -> null as well."""
    return pc.if_else(pc.is_in(values, pa.array(["-", ""])), pa.scalar(None, pa.string()), values)


@functools.lru_cache(maxsize=1 << 16)
def normalize_ip(text: str) -> str | None:
    """A client address as logged -> canonical IP text, or None if it is not an IP.

    Accepts IPv4, IPv6 (compressed, bracketed, with zone), IPv4-mapped IPv6
    (folded to IPv4, so one client gets one pseudonym), and `[v6]:port` / `v4:port`.
    Cached: a log has few distinct clients and `ipaddress` is slow.
    """
    packed = pack_ip(text)
    return None if packed is None else ip_text(packed)


def ip_text(packed: bytes) -> str:
    """4 or 16 address bytes -> IP text."""
    return socket.inet_ntop(socket.AF_INET if len(packed) == 4 else socket.AF_INET6, packed)


def pack_ip(text: str) -> bytes | None:
    """IP text (as `normalize_ip` accepts) -> 4 or 16 packed bytes; None if not an IP."""
    s = text.strip()
    if s.startswith("["):
        s = s[1:].split("]", 1)[0]
    elif s.count(":") == 1:
        s = s.split(":", 1)[0]
    s = s.split("%", 1)[0]
    if "\x00" in s:   # inet_pton raises ValueError (not OSError) on a NUL: no address either way
        return None
    try:
        return socket.inet_pton(socket.AF_INET, s)
    except OSError:
        pass
    try:
        packed = socket.inet_pton(socket.AF_INET6, s)
    except OSError:
        return None
    return packed[12:] if packed[:12] == _V4_MAPPED else packed


_HOSTNAME = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9-]{1,63})*$")


@functools.lru_cache(maxsize=1 << 16)
def client_key(text: str, names: bool = False) -> str | None:
    """What identifies the client, for pseudonymization: the canonical IP; `name:unix:`
    for a client on a unix socket (nginx logs `unix:`); with `names`, `name:<host>` for
    a resolved host name (Apache %h with HostnameLookups On). None otherwise."""
    ip = normalize_ip(text)
    if ip is not None:
        return ip
    s = text.strip()
    if s == "unix:" or s.startswith("unix:/"):
        return "name:unix:"
    if names and _HOSTNAME.match(s) and not s.replace(".", "").isdigit():
        return "name:" + s.lower()
    return None


def binary_ip(text: str) -> str | None:
    """nginx $binary_remote_addr (4 or 16 raw bytes, logged as \\xHH escapes) -> IP text."""
    raw = _ESCAPE.sub(lambda m: bytes([int(m.group(1), 16)]), text.encode("latin-1", "replace"))
    if len(raw) not in (4, 16):
        return None
    return ip_text(raw)


def realip(pair: str, trusted: tuple) -> str:
    """'<X-Forwarded-For>\\n<remote_addr>' -> the client as nginx's realip module with
    `real_ip_recursive on` sees it: walking from the right (the direct peer first),
    the first address that is not a trusted proxy. All trusted: the left-most."""
    forwarded, _, peer = pair.rpartition("\n")
    chain = [a.strip() for a in forwarded.split(",") if a.strip() and a.strip() != "-"] + [peer]
    previous = peer
    for address in reversed(chain):
        ip = normalize_ip(address)
        if ip is None:   # not an address: realip stops at the last good one
            return previous
        if not any(ipaddress.ip_address(ip) in net for net in trusted):
            return address
        previous = address
    return chain[0]


def parse_trusted_proxies(spec: str | None) -> tuple:
    """'10.0.0.0/8,192.0.2.1' -> ip_network objects; a clear error for a bad entry."""
    networks = []
    for item in (spec or "").split(","):
        if item.strip():
            try:
                networks.append(ipaddress.ip_network(item.strip(), strict=False))
            except ValueError:
                raise SettingError("{}: {item!r} is not an IP address or CIDR network (e.g. "
                                   "10.0.0.0/8,2001:db8::/32)", "trusted_proxies", item=item.strip()) from None
    return tuple(networks)


def upstream_total_ms(text: str) -> float | None:
    """'0.001, 0.002 : 0.003' (one entry per upstream tried) -> total ms; '-' entries skipped."""
    total, seen = 0.0, False
    for part in re.split(r"[,:]", text):
        part = part.strip()
        if part and part != "-":
            try:
                total += float(part)
                seen = True
            except ValueError:
                return None
    return round(total * 1000.0, 3) if seen else None


def primary_language(text: str) -> str | None:
    """Accept-Language -> primary subtag of the most preferred language ('en-US,en;q=0.9' -> 'en')."""
    best, best_q = None, -1.0
    for item in text.split(","):
        tag, _, params = item.strip().partition(";")
        q = 1.0
        m = re.search(r"q=([0-9.]+)", params)
        if m:
            try:
                q = float(m.group(1))
            except ValueError:
                q = 0.0
        tag = tag.strip()
        if tag and tag != "*" and re.fullmatch(r"[A-Za-z]{1,8}(-[A-Za-z0-9]{1,8})*", tag) and q > best_q:
            best, best_q = tag, q
    return best.split("-", 1)[0].lower() if best and best_q > 0 else None


def split_request(request: pa.Array, escape: str = "default") -> dict[str, pa.Array]:
    """$request -> method, url_path, url_query (null without '?'), protocol; nulls if unparseable.

    Works on the distinct request lines only, then `take`s the results back.
    """
    enc = encoded(request)
    uniques = decode_escapes(enc.dictionary, escape)
    parts = pc.extract_regex(uniques, _REQUEST_STRICT)
    columns = {name: pc.struct_field(parts, name) for name in ("method", "path", "query", "protocol")}
    missed = pc.is_null(parts)
    if pc.any(missed).as_py():
        lenient = pc.extract_regex(uniques.filter(missed), _REQUEST_LENIENT)
        columns = {name: pc.replace_with_mask(values, missed, pc.struct_field(lenient, name))
                   for name, values in columns.items()}
    null_str = pa.scalar(None, pa.string())
    query, protocol = columns.pop("query"), columns["protocol"]
    columns["url_path"] = columns.pop("path")
    columns["url_query"] = pc.if_else(pc.equal(query, ""), null_str, pc.utf8_slice_codeunits(query, 1))
    columns["protocol"] = pc.if_else(pc.equal(protocol, ""), null_str, protocol)
    return {name: with_dictionary(enc.indices, values) for name, values in columns.items()}


class _Rejects:
    """Collects the first failing check per row."""

    def __init__(self, n: int):
        self.reason = np.full(n, None, dtype=object)

    def add(self, failed: pa.Array, reason: str) -> None:
        mask = np.asarray(pc.fill_null(failed, True).to_numpy(zero_copy_only=False), dtype=bool)
        self.reason[mask & (self.reason == None)] = reason  # noqa: E711 (numpy elementwise)

    @property
    def mask(self) -> np.ndarray:
        return self.reason != None  # noqa: E711


_INT64_MAX = str(2**63 - 1)


def _number(values: pa.Array, regex: str, type_: pa.DataType, rejects: _Rejects, reason: str) -> pa.Array:
    """Numeric strings -> `type_`; '-' is null; anything else (or an integer past int64) rejects the row."""
    is_dash = pc.equal(values, "-")
    ok = pc.match_substring_regex(values, regex)
    if pa.types.is_integer(type_):   # 19 digits may still fit: compare as equal-length strings
        length = pc.utf8_length(values)
        ok = pc.and_(ok, pc.or_(pc.less(length, len(_INT64_MAX)),
                                pc.and_(pc.equal(length, len(_INT64_MAX)), pc.less_equal(values, _INT64_MAX))))
    ok = pc.or_(ok, is_dash)
    rejects.add(pc.invert(ok), reason)
    clean = pc.if_else(pc.fill_null(pc.and_(ok, pc.invert(is_dash)), False), values,
                       pa.scalar(None, pa.string()))
    return pc.cast(clean, type_)


def _first(fields: dict[str, pa.Array], names: tuple[str, ...]) -> tuple[str, pa.Array] | tuple[None, None]:
    for name in names:
        if name in fields:
            return name, fields[name]
    return None, None


@dataclass(frozen=True)
class FieldOptions:
    """How to read the fields of one format: escaping, time semantics, trusted proxies."""

    escape: str = "default"
    time_role: str = "responded"        # nginx logs at response end; Apache %t is the arrival
    time_format: str | None = None
    zone: tzinfo = timezone.utc         # for logged times without an offset
    trusted_proxies: tuple = ()         # ip_network objects: realip semantics for X-Forwarded-For
    latest_us: int | None = None        # times after this (µs UTC) are rejected: the horizon (see parse)


# Variables consumed into schema columns (anything else goes to `extra`), and variables
# that are dropped on purpose: identd names and ports identify people, the server's own
# address is not the client's and must not be stored raw either.
CONSUMED = {
    "remote_addr": "client_id", "realip_remote_addr": "client_id", "binary_remote_addr": "client_id",
    "http_x_forwarded_for": "client_id (with --trusted-proxies)", "remote_user": "user_id",
    "time_local": "responded_at", "time_iso8601": "responded_at", "msec": "responded_at",
    "time_received": "received_at", "time_received_sec": "received_at", "time_received_msec": "received_at",
    "time_received_usec": "received_at", "time_responded": "responded_at", "time_responded_sec": "responded_at",
    "time_responded_msec": "responded_at", "time_responded_usec": "responded_at",
    "request": "method, url_path, url_query, protocol",
    "request_method": "method", "request_uri": "url_path, url_query", "uri": "url_path", "args": "url_query",
    "query_string": "url_query", "query_string_apache": "url_query", "server_protocol": "protocol",
    "status": "status", "body_bytes_sent": "bytes_sent", "body_bytes_clf": "bytes_sent",
    "bytes_sent": "response_bytes", "request_length": "request_length", "http_referer": "referrer",
    "http_user_agent": "user_agent", "http_accept_language": "language", "request_time": "duration_ms",
    "request_time_us": "duration_ms", "request_time_ms": "duration_ms", "request_time_s": "duration_ms",
    "upstream_response_time": "upstream_ms", "upstream_status": "upstream_status",
    "upstream_addr": "upstream_addr", "host": "host", "server_name": "host", "http_host": "host",
    "scheme": "scheme", "request_id": "request_id", "connection": "connection_id",
    "ssl_protocol": "tls_protocol",
}
DROPPED = {"ident", "remote_port", "server_addr", "server_port", "pid", "tid", "original_status", "is_args"}


def field_target(var: str) -> str:
    """Which access column a variable feeds (for --explain)."""
    if var in CONSUMED:
        return CONSUMED[var]
    if var in DROPPED:
        return "(dropped)"
    return f"extra[{var!r}]"


MAX_DURATION_MS = 1e12   # about 31 years


def _times(fields: dict, n: int, opts: FieldOptions, rejects: _Rejects, out: dict) -> None:
    """received_at, responded_at and duration_ms, by the format's time semantics."""
    # $msec first: the same instant as $time_local, with milliseconds.
    var = next(v for v in ("msec", "time_local", "time_iso8601", "time_received", "time_received_usec",
                           "time_received_msec", "time_received_sec") if v in fields)
    end_var = next((v for v in ("time_responded_usec", "time_responded_msec", "time_responded_sec",
                                "time_responded") if v in fields), None)
    logged = parse_times(fields[var], var, opts.time_format if var == "time_received" else None, opts.zone)
    rejects.add(pc.is_null(logged), f"invalid ${var}" if opts.escape != "apache" else f"invalid time ({var})")
    duration_ms = pa.nulls(n, pa.float64())
    for dvar, regex, per_ms in (("request_time", r"^[0-9]+(\.[0-9]+)?$", 0.001),
                                ("request_time_us", r"^[0-9]+$", 1000.0),
                                ("request_time_ms", r"^[0-9]+$", 1.0),
                                ("request_time_s", r"^[0-9]+$", 0.001)):
        if dvar in fields:
            value = _number(fields[dvar], regex, pa.float64(), rejects, f"invalid ${dvar}")
            # Longer than MAX_DURATION_MS is no request duration (and would overflow the µs times).
            too_long = pc.greater(pc.divide(value, per_ms), MAX_DURATION_MS)
            rejects.add(pc.fill_null(too_long, False), f"invalid ${dvar}")
            value = pc.if_else(pc.fill_null(too_long, False), pa.scalar(None, pa.float64()), value)
            # Divide by units per ms (43 µs / 1000.0 is exactly the double 0.043; 43 * 0.001 is not).
            duration_ms = pc.round(pc.divide(value, per_ms), 3)
            break
    duration_us = pc.fill_null(pc.cast(pc.round(pc.multiply(duration_ms, 1000.0)), pa.int64()), 0)
    if end_var is not None:            # Apache %t ... %{end:...}t: both ends logged
        ended = parse_times(fields[end_var], end_var.replace("responded", "received"), None, opts.zone)
        rejects.add(pc.is_null(ended), f"invalid time ({end_var})")
        received, responded = logged, ended
    elif opts.time_role == "received":   # Apache %t: the request arrived then
        received, responded = logged, pc.add(logged, duration_us)
    else:                              # nginx: written when the response was sent
        received, responded = pc.subtract(logged, duration_us), logged
    # Both ends must be times a reader can hold (years 1 to 9999) and not lie past the horizon:
    # a date=9999-12-31 partition would outlive every retention window.
    rejects.add(pc.or_(pc.less(received, MIN_US), pc.greater(responded, MAX_US)), "time out of range")
    if opts.latest_us is not None:
        rejects.add(pc.greater(responded, opts.latest_us), "time is more than a day after now")
    out["duration_ms"] = duration_ms
    out["received_at"] = pc.cast(received, pa.timestamp("us", tz="UTC"))
    out["responded_at"] = pc.cast(responded, pa.timestamp("us", tz="UTC"))


def _request(fields: dict, n: int, opts: FieldOptions, out: dict) -> None:
    """method, url_path, url_query, protocol from $request, or from its parts."""
    text = functools.partial(clean_text, escape=opts.escape)
    null_str = pa.nulls(n, pa.string())
    if "request" in fields:
        out.update(split_request(fields["request"], opts.escape))
        # A request line that names no method (TLS handshakes and scanners on the HTTP port, as
        # \x16\x03\x01...) is kept as logged, to be scrubbed like any extra: nothing silently lost.
        unread = pc.and_(pc.is_null(out["method"]), pc.invert(pc.is_in(fields["request"], pa.array(["-", ""]))))
        if pc.any(unread).as_py():
            out["_x_request"] = pc.if_else(unread, fields["request"], pa.scalar(None, pa.string()))
        return
    out["method"] = text(fields["request_method"]) if "request_method" in fields else null_str
    out["protocol"] = text(fields["server_protocol"]) if "server_protocol" in fields else null_str
    if "request_uri" in fields:   # path?args as sent
        target = text(fields["request_uri"])
        out["url_path"] = on_uniques(target, lambda u: pc.replace_substring_regex(u, r"\?.*$", ""))
        out["url_query"] = on_uniques(target, lambda u: pc.if_else(
            pc.match_substring(u, "?"), pc.replace_substring_regex(u, r"^[^?]*\?", ""),
            pa.scalar(None, pa.string())))
        return
    out["url_path"] = text(fields["uri"]) if "uri" in fields else null_str
    query_var, query = _first(fields, ("args", "query_string", "query_string_apache"))
    if query is None:
        out["url_query"] = null_str
    elif query_var == "query_string_apache":   # %q is '' or '?...'
        out["url_query"] = on_uniques(query, lambda u: pc.if_else(
            pc.starts_with(u, "?"), pc.utf8_slice_codeunits(u, 1), pa.scalar(None, pa.string())))
    else:
        out["url_query"] = text(query)


def _bytes(fields: dict, n: int, rejects: _Rejects, out: dict) -> None:
    if "body_bytes_sent" in fields:
        out["bytes_sent"] = _number(fields["body_bytes_sent"], r"^[0-9]+$", pa.int64(), rejects,
                                    "invalid $body_bytes_sent")
    elif "body_bytes_clf" in fields:   # Apache %b writes '-' for no bytes
        clf = pc.if_else(pc.equal(fields["body_bytes_clf"], "-"), "0", fields["body_bytes_clf"])
        out["bytes_sent"] = _number(clf, r"^[0-9]+$", pa.int64(), rejects, "invalid %b")
    else:
        out["bytes_sent"] = pa.nulls(n, pa.int64())
    for column, var in (("response_bytes", "bytes_sent"), ("request_length", "request_length"),
                        ("connection_id", "connection")):
        out[column] = (_number(fields[var], r"^[0-9]+$", pa.int64(), rejects, f"invalid ${var}")
                       if var in fields else pa.nulls(n, pa.int64()))


def _client(fields: dict, n: int, opts: FieldOptions, rejects: _Rejects, out: dict) -> None:
    """The client (in memory only), after realip when proxies are trusted: an address, `name:<host>`
    for a host name (Apache with HostnameLookups; logs of that layout are read as combined too) or
    `name:unix:`. A format that logs no peer address but X-Forwarded-For (Apache behind a proxy:
    `%{X-Forwarded-For}i %l %u %t ...`) takes its left-most address; '-' there is no client, and a
    format with neither has none: the row is kept either way, client_id null."""
    var, client = _first(fields, ("remote_addr", "realip_remote_addr", "binary_remote_addr"))
    unlogged = None   # rows whose missing client is no bad value
    if client is None and "http_x_forwarded_for" in fields:
        var, client = "http_x_forwarded_for", map_unique(fields["http_x_forwarded_for"],
                                                         lambda v: v.split(",", 1)[0].strip())
        unlogged = pc.is_in(client, pa.array(["-", ""]))
    elif client is None:
        out["_client_ip"] = pa.nulls(n, pa.string())
        return
    elif var == "binary_remote_addr":
        client = map_unique(client, binary_ip)
    elif opts.trusted_proxies and "http_x_forwarded_for" in fields:
        pairs = pc.binary_join_element_wise(fields["http_x_forwarded_for"], client, "\n")
        client = map_unique(pairs, functools.partial(realip, trusted=opts.trusted_proxies))
    out["_client_ip"] = map_unique(client, functools.partial(client_key, names=True))
    invalid = pc.is_null(out["_client_ip"])
    rejects.add(invalid if unlogged is None else pc.and_(invalid, pc.invert(unlogged)), f"invalid ${var}")


def build_records(fields: dict[str, pa.Array], n: int,
                  opts: FieldOptions = FieldOptions()) -> tuple[dict[str, pa.Array], np.ndarray]:
    """Field strings -> (access columns incl. in-memory `_client_ip`, `_remote_user` and `_x_<var>`
    extras, reject reasons). The second value holds, per row, None or why the row is rejected."""
    rejects = _Rejects(n)
    null_str = pa.nulls(n, pa.string())
    text = functools.partial(clean_text, escape=opts.escape)
    out: dict[str, pa.Array] = {}
    _times(fields, n, opts, rejects, out)
    status_raw = fields["status"]
    # Apache writes '-' when no status was set (a connection closed before a response): kept, null.
    status_ok = pc.match_substring_regex(status_raw, r"^[0-9]{3}$")
    rejects.add(pc.invert(pc.or_(status_ok, pc.equal(status_raw, "-"))), "invalid $status")
    out["status"] = pc.cast(pc.if_else(pc.fill_null(status_ok, False), status_raw, pa.scalar(None, pa.string())),
                            pa.int16())
    _bytes(fields, n, rejects, out)
    _request(fields, n, opts, out)
    for column, var in (("referrer", "http_referer"), ("user_agent", "http_user_agent"),
                        ("upstream_status", "upstream_status"), ("upstream_addr", "upstream_addr"),
                        ("scheme", "scheme"), ("request_id", "request_id"), ("tls_protocol", "ssl_protocol")):
        out[column] = text(fields[var], distinct=var == "request_id") if var in fields else null_str
    _, host = _first(fields, ("host", "server_name", "http_host"))
    out["host"] = text(host) if host is not None else null_str
    out["language"] = (map_unique(fields["http_accept_language"],
                                  lambda v: None if v in ("-", "") else primary_language(v))
                       if "http_accept_language" in fields else null_str)
    out["upstream_ms"] = (map_unique(fields["upstream_response_time"], upstream_total_ms, pa.float64())
                          if "upstream_response_time" in fields else pa.nulls(n, pa.float64()))
    _client(fields, n, opts, rejects, out)
    out["_remote_user"] = text(fields["remote_user"]) if "remote_user" in fields else null_str
    for var, values in fields.items():
        if var == "connection_status":   # Apache %X: '-' means "closed after the response", not "none"
            out["_x_" + var] = pc.cast(values, pa.string())
        elif var not in CONSUMED and var not in DROPPED:
            out["_x_" + var.removeprefix("extra:")] = text(values)
    return out, rejects.reason

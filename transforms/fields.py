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
import re
import socket

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from transforms.timeparse import ARROW_FORMATS, PARSERS, parse_unique

TIME_VARIABLES = ("time_local", "time_iso8601", "msec")  # in order of preference
CLIENT_VARIABLES = ("remote_addr", "realip_remote_addr")
HOST_VARIABLES = ("host", "server_name", "http_host")
_V4_MAPPED = b"\0" * 10 + b"\xff\xff"
_ESCAPE = re.compile(rb"\\x([0-9A-Fa-f]{2})")
# A request line is "METHOD target HTTP/x.y"; HTTP/0.9 lines have no protocol, and
# some clients send spaces in the target. The strict pattern is one-pass for RE2
# (fast); the lenient one handles the rest.
_REQUEST_STRICT = r"^(?P<method>[A-Z]+) (?P<path>[^ ?]*)(?P<query>\?[^ ]*)? (?P<protocol>HTTP/[0-9.]+)$"
_REQUEST_LENIENT = (r"^(?P<method>[A-Za-z][A-Za-z0-9_-]*) (?P<path>[^?]*?)(?P<query>\?.*?)?"
                    r"(?: (?P<protocol>HTTP/[0-9.]+))?$")


def _decode_nginx(text: str) -> str:
    """Undo nginx escape=default (\\xHH for '"', '\\', control and non-ASCII bytes)."""
    # On the UTF-8 bytes, so characters that were not escaped (a raw 'é', U+FFFD) survive.
    raw = _ESCAPE.sub(lambda m: bytes([int(m.group(1), 16)]), text.encode("utf-8"))
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
    return with_dictionary(enc.indices, fn(enc.dictionary))


def map_unique(values: pa.Array, fn, type_: pa.DataType = pa.string()) -> pa.Array:
    """Apply a Python function (str -> value) once per distinct value of `values`.

    `fn` may also see dictionary entries no row refers to (e.g. ''), so it must not fail on them.
    """
    return on_uniques(values, lambda uniques: pa.array(
        [None if v is None else fn(v) for v in uniques.to_pylist()], type_))


def decode_escapes(values: pa.Array) -> pa.Array:
    """Decode nginx \\xHH escapes in the values that have any; invalid UTF-8 -> U+FFFD."""
    has_escape = pc.fill_null(pc.match_substring(values, "\\x"), False)
    if not pc.any(has_escape).as_py():
        return values
    decoded = pa.array([_decode_nginx(v) for v in values.filter(has_escape).to_pylist()], pa.string())
    return pc.replace_with_mask(values, has_escape, decoded)


def clean_text(values: pa.Array) -> pa.Array:
    """A logged string variable -> its value: escapes decoded, '-' and '' as null."""
    return on_uniques(values, lambda uniques: dash_to_null(decode_escapes(uniques)))


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
    if packed is None:
        return None
    return socket.inet_ntop(socket.AF_INET if len(packed) == 4 else socket.AF_INET6, packed)


def pack_ip(text: str) -> bytes | None:
    """IP text (as `normalize_ip` accepts) -> 4 or 16 packed bytes; None if not an IP."""
    s = text.strip()
    if s.startswith("["):
        s = s[1:].split("]", 1)[0]
    elif s.count(":") == 1:
        s = s.split(":", 1)[0]
    s = s.split("%", 1)[0]
    try:
        return socket.inet_pton(socket.AF_INET, s)
    except OSError:
        pass
    try:
        packed = socket.inet_pton(socket.AF_INET6, s)
    except OSError:
        return None
    return packed[12:] if packed[:12] == _V4_MAPPED else packed


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


def split_request(request: pa.Array) -> dict[str, pa.Array]:
    """$request -> method, url_path, url_query (null without '?'), protocol; nulls if unparseable.

    Works on the distinct request lines only, then `take`s the results back.
    """
    enc = encoded(request)
    uniques = decode_escapes(enc.dictionary)
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


def _number(values: pa.Array, regex: str, type_: pa.DataType, rejects: _Rejects, reason: str) -> pa.Array:
    is_dash = pc.equal(values, "-")
    ok = pc.or_(pc.match_substring_regex(values, regex), is_dash)
    rejects.add(pc.invert(ok), reason)
    clean = pc.if_else(pc.fill_null(pc.and_(ok, pc.invert(is_dash)), False), values,
                       pa.scalar(None, pa.string()))
    return pc.cast(clean, type_)


def _first(fields: dict[str, pa.Array], names: tuple[str, ...]) -> tuple[str, pa.Array] | tuple[None, None]:
    for name in names:
        if name in fields:
            return name, fields[name]
    return None, None


def build_records(fields: dict[str, pa.Array], n: int) -> tuple[dict[str, pa.Array], np.ndarray]:
    """Field strings -> (access columns incl. in-memory `_client_ip`/`_remote_user`, reject reasons).

    The second value holds, per row, None or the reason the row is rejected.
    """
    rejects = _Rejects(n)
    null_str = pa.nulls(n, pa.string())
    out: dict[str, pa.Array] = {}

    time_var, times = _first(fields, TIME_VARIABLES)
    responded_us = parse_unique(times, PARSERS[time_var], ARROW_FORMATS.get(time_var))
    rejects.add(pc.is_null(responded_us), f"invalid ${time_var}")

    status_raw = fields["status"]
    status_ok = pc.match_substring_regex(status_raw, r"^[0-9]{3}$")
    rejects.add(pc.invert(status_ok), "invalid $status")
    out["status"] = pc.cast(pc.if_else(pc.fill_null(status_ok, False), status_raw, "0"), pa.int16())

    if "request_time" in fields:
        seconds = _number(fields["request_time"], r"^[0-9]+(\.[0-9]+)?$", pa.float64(), rejects,
                          "invalid $request_time")
        out["duration_ms"] = pc.round(pc.multiply(seconds, 1000.0), 3)
    else:
        out["duration_ms"] = pa.nulls(n, pa.float64())
    duration_us = pc.cast(pc.round(pc.multiply(out["duration_ms"], 1000.0)), pa.int64())
    # nginx logs when the response is finished: the request arrived $request_time earlier.
    received_us = pc.subtract(responded_us, pc.fill_null(duration_us, 0))
    out["received_at"] = pc.cast(received_us, pa.timestamp("us", tz="UTC"))
    out["responded_at"] = pc.cast(responded_us, pa.timestamp("us", tz="UTC"))

    bytes_var, sent = _first(fields, ("body_bytes_sent", "bytes_sent"))
    out["bytes_sent"] = (_number(sent, r"^[0-9]+$", pa.int64(), rejects, f"invalid ${bytes_var}")
                         if sent is not None else pa.nulls(n, pa.int64()))

    request = fields.get("request")
    if request is not None:
        out.update(split_request(request))
    else:
        out["method"] = out["url_path"] = out["url_query"] = out["protocol"] = null_str

    for column, var in (("referrer", "http_referer"), ("user_agent", "http_user_agent"),
                        ("upstream_status", "upstream_status")):
        out[column] = clean_text(fields[var]) if var in fields else null_str
    _, host = _first(fields, HOST_VARIABLES)
    out["host"] = clean_text(host) if host is not None else null_str
    if "http_accept_language" in fields:
        out["language"] = map_unique(fields["http_accept_language"],
                                     lambda v: None if v in ("-", "") else primary_language(v))
    else:
        out["language"] = null_str
    if "upstream_response_time" in fields:
        out["upstream_ms"] = map_unique(fields["upstream_response_time"], upstream_total_ms, pa.float64())
    else:
        out["upstream_ms"] = pa.nulls(n, pa.float64())

    client_var, client = _first(fields, CLIENT_VARIABLES)
    if client is None:
        out["_client_ip"] = null_str
        rejects.add(pa.array(np.ones(n, dtype=bool)), "format has no client address ($remote_addr)")
    else:
        out["_client_ip"] = map_unique(client, normalize_ip)
        rejects.add(pc.is_null(out["_client_ip"]), f"invalid ${client_var}")
    out["_remote_user"] = (clean_text(fields["remote_user"])
                           if "remote_user" in fields else null_str)
    return out, rejects.reason

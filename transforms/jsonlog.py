"""JSON-lines access logs (nginx escape=json, Caddy, Traefik, generic) -> field strings.

Each line is one JSON object. A field map names, for every canonical field (the nginx
variable names `transforms.fields.build_records` consumes), the JSON keys that may hold
it: keys match case-insensitively, a dotted key walks into nested objects (or matches a
literal dotted key, as ECS-style logs write them), and per field the first key with a
usable value wins. Values become the text nginx would print: 200 -> "200", 0.0012 ->
"0.0012", missing/null/"" -> "-"; a list (Caddy's header values) gives its first element;
an object is never a value, which is how Caddy's `request` object and nginx's `request`
line share a key.

Decisions a reader needs:
* Time: `time_local`, `time_iso8601` and `msec` are one slot; the value's shape picks the
  column (a number or numeric string -> `msec`, ISO 8601 -> `time_iso8601`, CLF ->
  `time_local`). Epoch values with 12-14 / 15-17 / 18+ integer digits are taken as
  milliseconds / microseconds / nanoseconds and rescaled to seconds. A chunk whose lines
  disagree on the shape gets every time as `msec`, since build_records reads one time
  column per chunk.
* Durations (`request_time`, `upstream_response_time`) are seconds. A key spelled with
  a unit (`Duration`/`OriginDuration` of Traefik and ECS `event.duration`: ns;
  `responseTime`: ms; any `*_ms`, `*_us`, `*_ns`, `*Ms`, ...) is rescaled; Go duration
  text ("1.5ms", Caddy duration_format string) is converted.
* Path-like keys (`uri`, `path`, `url`, `RequestPath`, Caddy `request.uri`) map to
  `request_uri` (path?query); splitting at '?' is build_records' job. When a line has no
  request line but a method and a target, `request` is built the way nginx prints it,
  "METHOD target PROTOCOL", with `args` appended to a target without '?', and an absolute
  target (GCP `requestUrl`) cut to origin form (its host/scheme fill `host`/`scheme`).
* A canonical column is returned if some parsed line has a value for it or names it
  with a top-level key (nginx writes "" for an empty variable); others are left out.

Rejects (every line is a row or a reject; reasons never quote the line): "empty line",
"invalid JSON", "JSON value is not an object", "JSON object has no time field",
"JSON object has no status field", "JSON time field is not a recognized timestamp".
"""
from __future__ import annotations

import functools
import re
from decimal import Decimal

import numpy as np
import orjson
import pyarrow as pa

from schemas.errors import SettingError
from transforms.chunks import LogChunk
from transforms.lines import MAX_LINE_BYTES, TOO_LONG
from transforms.timeparse import PARSERS

TIME_FIELDS = ("time_local", "time_iso8601", "msec")   # one slot, split by value shape
DURATION_FIELDS = ("request_time", "upstream_response_time")
MAX_EXTRA_KEYS = 64   # per chunk: a log with a fresh key per line must not explode the columns

# Per canonical field, the keys that may hold it, most trusted first. Time keys follow
# build_records' preference (time_local, time_iso8601, msec) so a log read as text and
# as JSON gives the same records.
_DEFAULT_KEYS = {
    "remote_addr": ("remote_addr", "client_ip", "clientip", "remote_ip", "remoteip", "remote_address",
                    "remoteaddr", "ClientHost", "ClientAddr", "ip", "client", "request.client_ip",
                    "request.remote_ip", "httpRequest.remoteIp", "client.ip", "source.ip", "req.remoteAddress"),
    "realip_remote_addr": ("realip_remote_addr",),
    "http_x_forwarded_for": ("http_x_forwarded_for", "x_forwarded_for", "forwarded_for",
                             "request.headers.X-Forwarded-For", "request_X-Forwarded-For"),
    "remote_user": ("remote_user", "user_id", "ClientUsername", "user.name"),
    "time_local": ("time_local",),
    "time_iso8601": ("time_iso8601", "time", "timestamp", "@timestamp", "StartUTC"),
    "msec": ("msec", "ts"),
    "request": ("request", "request_line"),
    "request_method": ("request_method", "method", "RequestMethod", "http_method", "verb", "request.method",
                       "httpRequest.requestMethod", "http.request.method", "req.method"),
    "request_uri": ("request_uri", "requesturi", "uri", "path", "url", "RequestPath", "request.uri",
                    "httpRequest.requestUrl", "url.original", "req.url"),
    "uri": ("url.path",),
    "args": ("args", "query_string", "querystring", "url.query"),
    "server_protocol": ("server_protocol", "protocol", "proto", "RequestProtocol", "request.proto",
                        "httpRequest.protocol"),
    "status": ("status", "status_code", "statusCode", "response_code", "response_status", "DownstreamStatus",
               "httpRequest.status", "http.response.status_code", "res.statusCode"),
    "body_bytes_sent": ("body_bytes_sent", "bytes", "size", "response_size", "responseSize",
                        "DownstreamContentSize", "httpRequest.responseSize", "http.response.body.bytes"),
    "bytes_sent": ("bytes_sent",),
    "request_length": ("request_length", "request_size", "RequestContentSize", "httpRequest.requestSize"),
    "http_referer": ("http_referer", "http_referrer", "referer", "referrer", "request.headers.Referer",
                     "request_Referer", "httpRequest.referer", "http.request.referrer"),
    "http_user_agent": ("http_user_agent", "user_agent", "useragent", "agent", "request.headers.User-Agent",
                        "request_User-Agent", "httpRequest.userAgent", "user_agent.original"),
    "http_accept_language": ("http_accept_language", "accept_language", "request.headers.Accept-Language",
                             "request_Accept-Language"),
    "request_time": ("request_time", "duration", "response_time", "responseTime", "response-time",
                     "duration_ms", "response_time_ms", "latency_ms", "httpRequest.latency", "event.duration"),
    "upstream_response_time": ("upstream_response_time", "OriginDuration"),
    "upstream_status": ("upstream_status", "OriginStatus"),
    "upstream_addr": ("upstream_addr", "ServiceAddr"),
    "host": ("host", "vhost", "server_name", "RequestHost", "request.host", "url.domain"),
    "server_name": ("request.tls.server_name",),
    "http_host": ("http_host", "RequestAddr"),
    "scheme": ("scheme", "RequestScheme", "url.scheme"),
    "request_id": ("request_id", "requestid", "request.headers.X-Request-Id", "request_X-Request-Id"),
    "connection": ("connection",),
    "ssl_protocol": ("ssl_protocol", "TLSVersion", "tls_version", "request.tls.version"),
}
CANONICAL_FIELDS = tuple(_DEFAULT_KEYS)   # the variables a JSON key can stand for
DEFAULT_FIELD_MAP: dict[str, str] = {key: field for field, keys in _DEFAULT_KEYS.items() for key in keys}

# Duration keys whose unit is not seconds, by exact spelling (Caddy's `duration` is seconds,
# Traefik's `Duration` nanoseconds), as a power of ten to divide by.
_KEY_SCALE = {"Duration": 9, "OriginDuration": 9, "Overhead": 9, "event.duration": 9,
              "responseTime": 3, "response-time": 3}
_SUFFIX_SCALE = {"ms": 3, "us": 6, "ns": 9}
_UNIT_SUFFIX = re.compile(r"(?:[_.-](ms|us|ns)|(?<=[a-z])(Ms|Us|Ns|MS|US|NS))$", re.IGNORECASE)
_GO_UNITS = {"ns": Decimal("1e-9"), "us": Decimal("1e-6"), "µs": Decimal("1e-6"), "μs": Decimal("1e-6"),
             "ms": Decimal("0.001"), "s": Decimal(1), "m": Decimal(60), "h": Decimal(3600)}
_GO_DURATION = re.compile(r"(?:[0-9]+(?:\.[0-9]*)?(?:ns|us|µs|μs|ms|s|m|h))+")
_GO_PART = re.compile(r"([0-9]+(?:\.[0-9]*)?)(ns|us|µs|μs|ms|s|m|h)")
_NUMBER = re.compile(r"-?[0-9]+(?:\.[0-9]+)?")
_ISO = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}")
_CLF = re.compile(r"\[?[0-9]{1,2}/[A-Za-z]{3}/[0-9]{4}:[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]+)? [+-][0-9]{4}\]?")
_ABSOLUTE = re.compile(r"(?i)(https?)://(?:[^/?#@]*@)?([^/?#]*)(.*)")


def parse_field_map(spec: str) -> dict[str, str]:
    """`--field-map key=column,...` -> {JSON key (dotted path) : canonical field}.

    Returns the user's entries only; `parse_json_chunk` tries them before DEFAULT_FIELD_MAP.
    """
    mapping: dict[str, str] = {}
    for item in spec.split(","):
        if not item.strip():
            continue
        key, sep, column = item.rpartition("=")
        key, column = key.strip(), column.strip()
        if not sep or not key:
            raise SettingError("{} entry {item!r} is not key=column: write e.g. {} "
                               "req.path=request_uri,latency_ms=request_time", "field_map", "field_map",
                               item=item.strip())
        if column not in CANONICAL_FIELDS:
            raise SettingError("{} column {column!r} is unknown: use one of {known}", "field_map", column=column,
                               known=", ".join(CANONICAL_FIELDS))
        mapping[key] = column
    return mapping


def looks_like_json(first_lines: list[str]) -> bool:
    """True if the sample's first non-blank line and at least half of them are JSON objects."""
    sample = [line.strip().lstrip("\ufeff") for line in first_lines if line.strip()][:20]
    if not sample or not sample[0].startswith("{"):
        return False
    objects = 0
    for line in sample:
        try:
            objects += isinstance(orjson.loads(line), dict)
        except orjson.JSONDecodeError:
            pass
    return objects * 2 >= len(sample)


# -- value conversion (per line: JSON forces a Python loop, so these stay small) --------------


def _text(value, scale: int = 0) -> str | None:
    """A JSON value -> the text nginx would print; None if absent (null, '', object)."""
    kind = type(value)
    if kind is str:
        return value or None
    if kind is int:
        return str(value)
    if kind is float:
        text = repr(value)
        return format(Decimal(text), "f") if "e" in text else text   # 1e-05 -> 0.00001
    if kind is bool:
        return "true" if value else "false"
    if kind is list and value:
        return _text(value[0])
    return None


def _shift(number: str, digits: int) -> str:
    """Decimal text divided by 10**digits, exactly ('1700000000123', 3 -> '1700000000.123')."""
    return format(Decimal(number).scaleb(-digits), "f")


def _seconds(value, scale: int) -> str | None:
    """A duration value (seconds, or 10**-scale seconds, or Go duration text) -> seconds text."""
    text = _text(value)
    if text is None or (not scale and type(value) is not str):
        return text
    if _NUMBER.fullmatch(text):
        return _shift(text, scale) if scale else text
    if _GO_DURATION.fullmatch(text):
        total = sum(Decimal(n) * _GO_UNITS[unit] for n, unit in _GO_PART.findall(text))
        return format(total.normalize(), "f")
    return text   # build_records rejects it as invalid $request_time


def _epoch(number: str) -> str:
    """Epoch text in s/ms/µs/ns (by integer digits: seconds have 10 until the year 2286) -> seconds."""
    digits = len(number.partition(".")[0].lstrip("-"))
    if digits <= 11:
        return number
    return _shift(number, 3 if digits <= 14 else 6 if digits <= 17 else 9)


_UNRECOGNIZED = ("", "")


def _timestamp(value, scale: int = 0) -> tuple[str, str] | None:
    """A time value -> (time column, text); None if absent, _UNRECOGNIZED if not a time."""
    kind = type(value)
    if kind is list:
        return _timestamp(value[0]) if value else None
    if kind is int or kind is float:
        return "msec", _epoch(_text(value))
    if kind is not str:
        return None if value is None or kind is dict else _UNRECOGNIZED
    text = value.strip()
    if not text:
        return None
    if _NUMBER.fullmatch(text):
        return "msec", _epoch(text)
    if _ISO.match(text):
        return "time_iso8601", text
    if _CLF.fullmatch(text):
        return "time_local", text
    return _UNRECOGNIZED


_TLS_CODES = {"769": "TLSv1", "770": "TLSv1.1", "771": "TLSv1.2", "772": "TLSv1.3"}


def _tls_protocol(value, scale: int = 0) -> str | None:
    """Traefik's TLSVersion '1.3' / Caddy's request.tls.version 772 (0x0304) -> 'TLSv1.3',
    as nginx's $ssl_protocol reads."""
    text = _text(value)
    if text in _TLS_CODES:
        return _TLS_CODES[text]
    return f"TLSv{text}" if text in ("1.0", "1.1", "1.2", "1.3") else text


def _msec_text(kind: str, text: str) -> str:
    us = PARSERS[kind](text)
    return "-" if us is None else f"{us // 1_000_000}.{us % 1_000_000:06d}"


_CONVERTERS = {"time": _timestamp, "request_time": _seconds, "upstream_response_time": _seconds,
               "ssl_protocol": _tls_protocol}


# -- field map -> per-shape lookup plan ------------------------------------------------------


@functools.lru_cache(maxsize=1 << 10)
def _duration_scale(key: str) -> int:
    if key in _KEY_SCALE:
        return _KEY_SCALE[key]
    m = _UNIT_SUFFIX.search(key)
    return _SUFFIX_SCALE[(m.group(1) or m.group(2)).lower()] if m else 0


@functools.lru_cache(maxsize=64)
def _compile(user_items: tuple) -> tuple[dict[str, list], frozenset]:
    """User entries + defaults -> ({slot: [(path, lower-case segments)]}, lower-case paths)."""
    user = dict(user_items)
    taken = {key.lower() for key in user}
    merged = list(user.items()) + [(k, v) for k, v in DEFAULT_FIELD_MAP.items() if k.lower() not in taken]
    slots: dict[str, list] = {}
    for path, field in merged:
        slot = "time" if field in TIME_FIELDS else field
        slots.setdefault(slot, []).append((path, tuple(path.lower().split("."))))
    return slots, frozenset(path.lower() for path, _ in merged)


def _plan(slots: dict[str, list], mapped: frozenset, keys: tuple) -> tuple[list, list, list]:
    """For one top-level key set: ([(slot, converter, [(top key, route below it, scale)])],
    extra keys, slots a top-level key names even if its value is empty)."""
    top = _lower_keys(dict.fromkeys(keys))
    plan = []
    for slot, paths in slots.items():
        candidates = []
        for path, lower in paths:
            for i in range(len(lower), 0, -1):   # a literal dotted key first, then nesting
                actual = top.get(".".join(lower[:i]))
                if actual is not None:
                    whole = actual if i == len(lower) else path
                    scale = _duration_scale(whole) if slot in DURATION_FIELDS else 0
                    candidates.append((actual, _route(lower[i:]), scale))
        if candidates:
            plan.append((slot, _CONVERTERS.get(slot, _text), candidates))
    present = [slot for slot, _, candidates in plan if slot != "time" and any(c[1] is None for c in candidates)]
    return plan, [key for key in keys if key.lower() not in mapped], present


@functools.lru_cache(maxsize=1 << 10)
def _route(lower: tuple) -> tuple | None:
    """Lower-case key path below a top-level key -> ((key, route of the rest), ...), a literal
    dotted key first ('a.b' before 'a' -> 'b'); None for no path."""
    if not lower:
        return None
    return tuple((".".join(lower[:i]), _route(lower[i:])) for i in range(len(lower), 0, -1))


_LOWER_KEYS: dict[tuple, dict[str, str]] = {}


def _lower_keys(obj: dict) -> dict[str, str]:
    """{lower-case key: key} of an object; cached by key set (nested objects repeat their shape)."""
    keys = tuple(obj)
    lower = _LOWER_KEYS.get(keys)
    if lower is None:
        if len(_LOWER_KEYS) > 4096:
            _LOWER_KEYS.clear()
        lower = {}
        for key in keys:
            lower.setdefault(key.lower(), key)
        _LOWER_KEYS[keys] = lower
    return lower


def _walk(value, route: tuple):
    """Follow a route into nested objects; None if it leads nowhere or to null."""
    if type(value) is not dict:
        return None
    lower = _lower_keys(value)
    for key, rest in route:
        actual = lower.get(key)
        if actual is not None:
            found = value[actual] if rest is None else _walk(value[actual], rest)
            if found is not None:
                return found
    return None


def _resolve(obj: dict, candidates: list, convert):
    unrecognized = None
    for top, route, scale in candidates:
        result = convert(obj[top] if route is None else _walk(obj[top], route), scale)
        if result is _UNRECOGNIZED:
            unrecognized = result
        elif result is not None:
            return result
    return unrecognized


def _complete_request(found: dict[str, str]) -> None:
    """No request line but method and target: build it as nginx's $request would read."""
    method = found.get("request_method")
    target = found.get("request_uri") or found.get("uri")
    if "request" in found or method is None or target is None:
        return
    if "?" not in target and found.get("args", "-") != "-":
        target = f"{target}?{found['args']}"
    absolute = _ABSOLUTE.fullmatch(target)
    if absolute:
        scheme, host, target = absolute.groups()
        found.setdefault("scheme", scheme.lower())
        if host:
            found.setdefault("host", host)
        target = target if target.startswith("/") else "/" + target
    protocol = found.get("server_protocol")
    found["request"] = f"{method} {target} {protocol}" if protocol else f"{method} {target}"


# -- chunk ---------------------------------------------------------------------------------


def _lines(chunk: LogChunk) -> list[bytes]:
    data = chunk.data
    if not data.isascii():
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:   # invalid bytes -> U+FFFD, as for text formats
            data = data.decode("utf-8", "replace").encode("utf-8")
    lines = data.split(b"\n")
    if lines[-1] == b"":
        lines.pop()
    if chunk.first_line == 1 and lines and lines[0].startswith(b"\xef\xbb\xbf"):
        lines[0] = lines[0][3:]
    return lines


class _Columns:
    """Sparse string columns, filled in once the chunk's row count is known."""

    def __init__(self, limit: int | None = None):
        self.cells: dict[str, tuple[list, list]] = {}
        self.limit = limit

    def declare(self, name: str) -> None:
        self.cells.setdefault(name, ([], []))

    def add(self, name: str, position: int, value) -> None:
        cells = self.cells.get(name)
        if cells is None:
            if self.limit is not None and len(self.cells) >= self.limit:
                return
            cells = self.cells[name] = ([], [])
        cells[0].append(position)
        cells[1].append(value)

    def arrays(self, n: int, fill: str | None) -> dict[str, pa.Array]:
        out = {}
        for name, (positions, values) in self.cells.items():
            if len(positions) == n:
                out[name] = pa.array(values, pa.string())
                continue
            column = np.full(n, fill, dtype=object)
            column[np.asarray(positions, dtype=np.int64)] = values
            out[name] = pa.array(column, pa.string())
        return out


def _extract(obj: dict, plan: list) -> tuple[tuple[str, str], dict[str, str]] | str:
    """One object -> ((time column, time text), {field: text}), or the reason to reject it."""
    found: dict[str, str] = {}
    when = None
    for slot, convert, candidates in plan:
        value = _resolve(obj, candidates, convert)
        if slot == "time":
            when = value
        elif value is not None:
            found[slot] = value
    if when is None:
        return "JSON object has no time field"
    if when is _UNRECOGNIZED:
        return "JSON time field is not a recognized timestamp"
    if "status" not in found:
        return "JSON object has no status field"
    _complete_request(found)
    return when, found


def _time_column(times: list[tuple[str, str]]) -> dict[str, pa.Array]:
    """build_records reads one time column per chunk: mixed shapes all become msec."""
    kinds = {kind for kind, _ in times}
    if len(kinds) == 1:
        return {kinds.pop(): pa.array([text for _, text in times], pa.string())}
    as_msec: dict[tuple[str, str], str] = {}
    return {"msec": pa.array([as_msec.get(t) or as_msec.setdefault(t, _msec_text(*t)) for t in times],
                             pa.string())} if kinds else {}


def parse_json_chunk(chunk: LogChunk, field_map: dict[str, str] | None = None
                     ) -> tuple[dict[str, pa.Array], np.ndarray, list[tuple[int, str]], dict[str, pa.Array]]:
    """Parse a chunk of JSON lines.

    `field_map` holds user entries ({JSON key: canonical field}, from parse_field_map), tried
    before DEFAULT_FIELD_MAP. Returns (fields: canonical field -> string array, '-' where a
    line lacks it; rows: 0-based line index of each value; rejects: [(line index, reason)];
    extra: other top-level scalar keys -> string array aligned with rows, null where absent).
    """
    slots, mapped = _compile(tuple((field_map or {}).items()))
    plans: dict[tuple, tuple] = {}     # by top-level key set; a log repeats a few shapes
    announced: set[tuple] = set()
    fields, extras = _Columns(), _Columns(limit=MAX_EXTRA_KEYS)
    times: list[tuple[str, str]] = []
    rows: list[int] = []
    rejects: list[tuple[int, str]] = []
    for index, line in enumerate(_lines(chunk)):
        if not line.strip():
            rejects.append((index, "empty line"))
            continue
        if len(line) > MAX_LINE_BYTES:
            rejects.append((index, TOO_LONG))
            continue
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError:
            rejects.append((index, "invalid JSON"))
            continue
        if type(obj) is not dict:
            rejects.append((index, "JSON value is not an object"))
            continue
        keys = tuple(obj)
        plan = plans.get(keys)
        if plan is None:
            if len(plans) > 1024:
                plans.clear()
                announced.clear()
            plan = plans[keys] = _plan(slots, mapped, keys)
        result = _extract(obj, plan[0])
        if type(result) is str:
            rejects.append((index, result))
            continue
        if keys not in announced:   # nginx writes "" for an empty variable: still a column
            announced.add(keys)
            for slot in plan[2]:
                fields.declare(slot)
        position = len(rows)
        rows.append(index)
        times.append(result[0])
        for field, value in result[1].items():
            fields.add(field, position, value)
        for key in plan[1]:
            value = obj[key]
            if type(value) is not dict and type(value) is not list:
                extras.add(key, position, value if type(value) is str else _text(value))
    n = len(rows)
    columns = fields.arrays(n, "-")
    columns.update(_time_column(times))
    return columns, np.asarray(rows, dtype=np.int64), rejects, extras.arrays(n, None)

"""Apache httpd ``LogFormat`` strings -> the segments accesslog parses.

``compile_apache`` reads a mod_log_config format string and produces the same
plan shape as ``transforms.formats`` does for nginx: ``("lit", text)`` and
``("var", name)`` segments, where ``name`` is the canonical field name shared
with the rest of the pipeline (``%h`` -> ``remote_addr``, ``%{Referer}i`` ->
``http_referer``, ...). The grammar and the meaning of each directive follow
httpd's mod_log_config "Custom Log Formats":

    %[!]status,status...[<|>][{param}]letter      %% is a literal percent sign

Times: ``%t`` is the CLF time *with* its brackets, so it becomes ``[``, the
``time_received`` variable and ``]``. ``%{strftime}t`` pieces that are separated
only by literal text (``%{%d/%b/%Y %T}t.%{msec_frac}t %{%z}t``) merge into one
``time_received`` variable whose ``time_format`` is a Python ``strptime`` format
for the whole piece.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import NoReturn

from schemas.errors import AccesslogError

# The stock httpd.conf formats (Debian's apache2.conf for vhost_combined).
# Debian's own `combined`/`common` use %O instead of %b; pass those as strings.
_COMMON = '%h %l %u %t "%r" %>s %b'
_COMBINED = _COMMON + ' "%{Referer}i" "%{User-Agent}i"'
APACHE_PRESETS: dict[str, str] = {
    "common": _COMMON,
    "combined": _COMBINED,
    "combinedio": _COMBINED + " %I %O",
    "vhost_combined": '%v:%p %h %l %u %t "%r" %>s %O "%{Referer}i" "%{User-Agent}i"',
    "referer": "%{Referer}i -> %U",
    "agent": "%{User-agent}i",
}

_ESCAPES = {'"': '"', "\\": "\\", "n": "\n", "t": "\t", "r": "\r"}

# Directives whose {param} httpd ignores (or which take none).
_PLAIN = {
    "h": "remote_addr", "a": "remote_addr", "A": "server_addr", "l": "ident", "u": "remote_user",
    "r": "request", "m": "request_method", "U": "uri", "q": "query_string_apache",
    "H": "server_protocol", "b": "body_bytes_clf", "B": "body_bytes_sent", "O": "bytes_sent",
    "I": "request_length", "S": "bytes_transferred", "D": "request_time_us", "v": "server_name",
    "V": "host", "L": "request_id", "X": "connection_status", "k": "keepalive_requests",
    "f": "request_filename", "R": "handler",
}
# Directives that need {Name}; the field is prefix + normalised name.
_NAMED = {"i": "http_", "o": "sent_http_", "C": "cookie_", "e": "env_", "n": "note_",
          "^ti": "trailer_in_", "^to": "trailer_out_"}
# Directives whose {param} picks a variant (httpd compares these case-insensitively).
_VARIANTS = {
    "T": {"": "request_time_s", "s": "request_time_s", "ms": "request_time_ms", "us": "request_time_us"},
    "p": {"": "server_port", "canonical": "server_port", "local": "server_port", "remote": "remote_port"},
    "P": {"": "pid", "pid": "pid", "tid": "tid", "hextid": "tid"},
}
_EPOCH = {"sec": "_sec", "msec": "_msec", "usec": "_usec"}
_FRACTIONS = ("msec_frac", "usec_frac")

# strftime -> strptime. Composites are expanded so the pieces can be merged and trimmed.
_STRPTIME_SAME = set("aAbBcdGHIjmMpSuUVwWxXyYzZ")
_STRPTIME_ALIAS = {"e": "%d", "h": "%b", "k": "%H", "l": "%I", "P": "%p",
                   "T": "%H:%M:%S", "D": "%m/%d/%y", "R": "%H:%M", "F": "%Y-%m-%d", "r": "%I:%M:%S %p"}
_STRFTIME_LITERAL = {"%": "%", "n": "\n", "t": "\t"}
_STRFTIME_HINT = {"s": "use %{sec}t for seconds since the epoch"}


@dataclass(frozen=True)
class ApacheFormat:
    """A compiled Apache LogFormat.

    ``segments``: ``("lit", text)`` / ``("var", canonical_name)`` in line order.
    ``time_format``: strptime format of the ``time_received`` value when it came from
    ``%{...}t``; None means CLF (``%d/%b/%Y:%H:%M:%S %z``, from ``%t``) or no such variable.
    ``time_role``: ``"received"`` (``%t``, ``begin:``) or ``"responded"`` (``end:``).
    """

    segments: list[tuple[str, str]]
    time_format: str | None = None
    time_role: str = "received"
    escape: str = "apache"   # how quoted values escape '"' and '\\' (mod_log_config: backslash escapes)


@dataclass(frozen=True)
class _Directive:
    pos: int              # index of the '%' in the string as given
    end: int              # index just past the letter
    letter: str
    param: str | None
    original: bool        # '<' given: the original request of an internal redirect
    final: bool = False   # '>' given: the final request


@dataclass(frozen=True)
class _Time:
    """A %t directive, classified."""

    pos: int
    role: str             # "received" | "responded"
    kind: str             # "clf" | "sec" | "msec" | "usec" | "msec_frac" | "usec_frac" | "strftime"
    strftime: str = ""


def looks_like_apache(fmt: str) -> bool:
    """True if ``fmt`` has mod_log_config ``%`` directives and no nginx ``$variables``."""
    text = fmt.replace("%%", "")
    has_directive = re.search(r"%[!<>,0-9]*(\{[^}]*\})?[<>]?(\^t[io]|[A-Za-z])", text)
    return bool(has_directive) and not re.search(r"\$(\{\w+\}|[A-Za-z_])", text)


def compile_apache(fmt: str) -> ApacheFormat:
    """Compile an Apache LogFormat string (or an ``APACHE_PRESETS`` name) into an ApacheFormat.

    ``fmt`` may be written as in httpd.conf (``\\"`` for quotes, ``\\t``, ``\\n``, ``\\\\``,
    optionally still wrapped in the directive's outer quotes) or with plain ``"``.
    Positions in error messages are 1-based characters of ``fmt`` as given.
    """
    fmt = APACHE_PRESETS.get(fmt, fmt)
    items, quotes = _scan(fmt)
    if len(quotes) % 2:
        _fail(fmt, quotes[-1], f'unbalanced \'"\' at position {quotes[-1] + 1} (1-based) of the Apache '
              "LogFormat: this quote has no partner (quotes pair up left to right); add the missing quote "
              "or write a literal quote inside a value's quotes as \\\"")
    return _build(fmt, items)


# -- scanning -------------------------------------------------------------------------------


def _scan(fmt: str) -> tuple[list[str | _Directive], list[int]]:
    """Split ``fmt`` into literal characters and directives; also the positions of literal quotes."""
    start, stop = _conf_quotes(fmt)
    items: list[str | _Directive] = []
    quotes: list[int] = []
    i = start
    while i < stop:
        ch = fmt[i]
        if ch == "\\" and i + 1 < stop and fmt[i + 1] in _ESCAPES:
            items.append(_ESCAPES[fmt[i + 1]])
            if fmt[i + 1] == '"':
                quotes.append(i + 1)
            i += 2
        elif ch == "%":
            if i + 1 < stop and fmt[i + 1] == "%":
                items.append("%")
                i += 2
                continue
            directive = _directive(fmt, i, stop)
            items.append(directive)
            i = directive.end
        else:
            if ch == '"':
                quotes.append(i)
            items.append(ch)
            i += 1
    return items, quotes


def _conf_quotes(fmt: str) -> tuple[int, int]:
    """The span to parse: drop httpd.conf's outer quotes when fmt is a whole quoted argument.

    ``"%h \\"%r\\""`` is the argument as written in httpd.conf; ``"%r"`` alone is a format
    whose lines start and end with a quote. The first has escaped quotes and no bare ones inside.
    """
    if len(fmt) < 2 or fmt[0] != '"' or fmt[-1] != '"':
        return 0, len(fmt)
    escaped_quotes, i = 0, 1
    while i < len(fmt) - 1:
        if fmt[i] == "\\":
            escaped_quotes += fmt[i + 1] == '"'
            i += 2
        elif fmt[i] == '"':
            return 0, len(fmt)
        else:
            i += 1
    if i == len(fmt):                  # the last quote was escaped: no outer quotes
        return 0, len(fmt)
    return (1, len(fmt) - 1) if escaped_quotes else (0, len(fmt))


def _directive(fmt: str, pos: int, stop: int) -> _Directive:
    """Parse one directive starting at the '%' at ``pos`` (httpd accepts modifiers in any order)."""
    j, param, original, final = pos + 1, None, False, False
    while j < stop:
        ch = fmt[j]
        if ch in "!<>,":
            original = ch == "<" if ch in "<>" else original
            final = ch == ">" if ch in "<>" else final
            j += 1
        elif ch.isdigit():
            while j < stop and fmt[j].isdigit():
                j += 1
        elif ch == "{":
            close = fmt.find("}", j + 1, stop)
            if close < 0:
                _fail(fmt, j, f"unterminated '{{' at position {j + 1} (1-based) of the Apache LogFormat: "
                      "close the parameter with '}' before the directive letter, as in %{Referer}i")
            param, j = fmt[j + 1:close], close + 1
        else:
            letter = fmt[j:j + 3] if fmt[j:j + 3] in ("^ti", "^to") else ch
            return _Directive(pos, j + len(letter), letter, param, original, final)
    if j == pos + 1:
        _fail(fmt, pos, f"a lone '%' at position {pos + 1} (1-based) ends the Apache LogFormat: "
              "write '%%' for a literal percent sign")
    _fail(fmt, pos, f"the directive at position {pos + 1} (1-based) of the Apache LogFormat has no letter: "
          "end it with a directive letter such as %>s or %{Referer}i")


# -- directives -> segments -----------------------------------------------------------------


def _build(fmt: str, items: list[str | _Directive]) -> ApacheFormat:
    items = [_time(it) if isinstance(it, _Directive) and it.letter == "t" else it for it in items]
    roles = {it.role for it in items if isinstance(it, _Time)}
    role = "responded" if roles == {"responded"} else "received"
    segments: list[tuple[str, str]] = []
    time_formats: dict[str | None, int] = {}
    # With %>s present, a plain %s is the status of the original request (mod_log_config).
    has_final = any(isinstance(it, _Directive) and it.letter == "s" and it.final for it in items)
    i = 0
    while i < len(items):
        it = items[i]
        if isinstance(it, str):
            _lit(segments, it)
            i += 1
        elif isinstance(it, _Directive):
            name = _field(fmt, it)
            if name == "status" and has_final and not it.final:
                name = "original_status"
            segments.append(("var", name))
            i += 1
        else:
            prefix = "time_received" if it.role == role else "time_" + it.role
            i = _time_segments(fmt, items, i, prefix, segments, time_formats if it.role == role else {})
    if len(time_formats) > 1:
        first, second = sorted(time_formats.values())[:2]
        _fail(fmt, second, f"the Apache LogFormat writes the request time twice in different forms (positions "
              f"{first + 1} and {second + 1}, 1-based): accesslog reads one time; %{{format}}t pieces merge "
              "only when separated by literal text alone")
    time_format = next(iter(time_formats), None)
    return ApacheFormat(segments=segments, time_format=time_format, time_role=role)


def _lit(segments: list[tuple[str, str]], text: str) -> None:
    if not text:
        return
    if segments and segments[-1][0] == "lit":
        segments[-1] = ("lit", segments[-1][1] + text)
    else:
        segments.append(("lit", text))


def _field(fmt: str, d: _Directive) -> str:
    """The canonical field name of a non-time directive."""
    text = fmt[d.pos:d.end]
    if d.letter == "s":
        return "original_status" if d.original else "status"
    if d.letter in ("a", "h") and d.param == "c":
        return "realip_remote_addr"
    if d.letter == "L" and d.param == "c":
        return "connection_log_id"
    if d.letter in _PLAIN:
        return _PLAIN[d.letter]
    if d.letter in _NAMED:
        if not d.param:
            _fail(fmt, d.pos, f"'{text}' at position {d.pos + 1} (1-based) of the Apache LogFormat needs a "
                  f"name: write it as %{{Name}}{d.letter}, e.g. %{{User-Agent}}i")
        return _NAMED[d.letter] + re.sub(r"[^a-z0-9_]", "_", d.param.lower())
    if d.letter in _VARIANTS:
        variants = _VARIANTS[d.letter]
        name = variants.get((d.param or "").lower())
        if name is None:
            _fail(fmt, d.pos, f"unknown parameter in '{text}' at position {d.pos + 1} (1-based) of the Apache "
                  f"LogFormat: %{{...}}{d.letter} takes one of {', '.join(v for v in variants if v)}")
        return name
    _fail(fmt, d.pos, f"unknown % directive '%{d.letter}' at position {d.pos + 1} (1-based) of the Apache "
          "LogFormat: use a mod_log_config directive (see httpd's 'Custom Log Formats'), or '%%' for a "
          "literal percent sign")


def _time(d: _Directive) -> _Time:
    """Classify %t / %{[begin:|end:]format}t the way mod_log_config does."""
    param, role = d.param or "", "received"
    for prefix, prefix_role in (("begin", "received"), ("end", "responded")):
        if param == prefix or param.startswith(prefix + ":"):
            param, role = param[len(prefix) + 1:], prefix_role
            break
    if param == "":
        return _Time(d.pos, role, "clf")
    if param in _EPOCH or param in _FRACTIONS:
        return _Time(d.pos, role, param)
    return _Time(d.pos, role, "strftime", param)


def _time_segments(fmt: str, items: list, i: int, prefix: str, segments: list[tuple[str, str]],
                   time_formats: dict[str | None, int]) -> int:
    """Append the segments of the time piece starting at ``items[i]``; return the next index."""
    first: _Time = items[i]
    if first.kind == "clf":
        _lit(segments, "[")
        segments.append(("var", prefix))
        _lit(segments, "]")
        time_formats.setdefault(None, first.pos)
        return i + 1
    if first.kind == "sec" and _literal_then(items, i + 1, ".", first.role, _FRACTIONS):
        # %{sec}t.%{msec_frac}t is seconds with a fraction, like nginx's $msec.
        segments.append(("var", prefix + "_sec"))
        return _skip_literal(items, i + 1) + 1
    if first.kind in _EPOCH:
        segments.append(("var", prefix + _EPOCH[first.kind]))
        return i + 1
    # A run of strftime / fraction pieces separated by quote-free literal text.
    run, j = [first], i + 1
    while True:
        k = _skip_literal(items, j)
        nxt = items[k] if k < len(items) else None
        literal = "".join(items[j:k])
        if not (isinstance(nxt, _Time) and nxt.role == first.role and nxt.kind in ("strftime", *_FRACTIONS)
                and '"' not in literal):
            break
        run += [literal, nxt]
        j = k + 1
    if not any(isinstance(t, _Time) and t.kind == "strftime" for t in run):
        segments.append(("var", f"{prefix}_{first.kind}"))    # a fraction on its own
        return i + 1
    tokens: list[tuple[str, str]] = []
    for piece in run:
        if isinstance(piece, str):
            tokens += [("lit", ch) for ch in piece]
        elif piece.kind in _FRACTIONS:
            tokens.append(("conv", "%f"))
        else:
            tokens += _strftime_tokens(fmt, piece)
    convs = [n for n, (kind, _) in enumerate(tokens) if kind == "conv"]
    if not convs:                     # %{-}t: strftime writes the text as it is
        _lit(segments, "".join(text for _, text in tokens))
        return j
    head, tail = convs[0], convs[-1] + 1
    _lit(segments, "".join(text for _, text in tokens[:head]))
    segments.append(("var", prefix))
    _lit(segments, "".join(text for _, text in tokens[tail:]))
    time_format = "".join(text if kind == "conv" else text.replace("%", "%%") for kind, text in tokens[head:tail])
    _check_strptime(fmt, first.pos, time_format)
    time_formats.setdefault(time_format, first.pos)
    return j


def _skip_literal(items: list, j: int) -> int:
    while j < len(items) and isinstance(items[j], str):
        j += 1
    return j


def _literal_then(items: list, j: int, literal: str, role: str, kinds: tuple[str, ...]) -> bool:
    k = _skip_literal(items, j)
    return ("".join(items[j:k]) == literal and k < len(items) and isinstance(items[k], _Time)
            and items[k].role == role and items[k].kind in kinds)


def _strftime_tokens(fmt: str, t: _Time) -> list[tuple[str, str]]:
    """An httpd (strftime) time format -> ("lit", char) / ("conv", strptime directive) tokens."""
    tokens: list[tuple[str, str]] = []
    text, i = t.strftime, 0
    while i < len(text):
        if text[i] != "%":
            tokens.append(("lit", text[i]))
            i += 1
            continue
        j = i + 1
        while j < len(text) and text[j] in "-_0^#EO":   # glibc flags and E/O modifiers: same digits
            j += 1
        conv = text[j:j + 1]
        i = j + 1
        if conv in _STRFTIME_LITERAL:
            tokens.append(("lit", _STRFTIME_LITERAL[conv]))
        elif conv in _STRPTIME_SAME or conv in _STRPTIME_ALIAS:
            expanded = _STRPTIME_ALIAS.get(conv, "%" + conv)
            tokens += [("conv", m) if m.startswith("%") else ("lit", m) for m in re.findall(r"%.|[^%]", expanded)]
        else:
            hint = _STRFTIME_HINT.get(conv, "use %d/%b/%Y:%H:%M:%S %z style conversions")
            _fail(fmt, t.pos, f"the time format in the directive at position {t.pos + 1} (1-based) of the Apache "
                  f"LogFormat uses '%{conv}', which accesslog cannot read back: {hint}")
    return tokens


def _check_strptime(fmt: str, pos: int, time_format: str) -> None:
    """Fail now, not on every line, if Python cannot parse what this format writes."""
    sample = datetime(2000, 10, 10, 13, 55, 36, 123000, tzinfo=timezone.utc)
    try:
        datetime.strptime(sample.strftime(time_format), time_format)
    except (ValueError, re.error):
        _fail(fmt, pos, f"the time written from position {pos + 1} (1-based) of the Apache LogFormat cannot be "
              f"read back with strptime {time_format!r}: write each date part once, and ISO week parts "
              "(%G %V %u) together")


def _fail(fmt: str, pos: int, message: str) -> NoReturn:
    """Raise AccesslogError in one line (the CLI prints errors as one line): the message,
    then the format with the problem marked by a caret."""
    shown = re.sub(r"[\t\r\n]", " ", fmt)
    raise AccesslogError(f"{message}: {shown[:pos]}^{shown[pos:]}")

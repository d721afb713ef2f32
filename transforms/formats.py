"""Log formats: compile a format string once into a fast parser plan.

Accepted (see `resolve_format`): a preset name, the body of an nginx `log_format`
directive (with `escape=default|json|none`), an Apache `LogFormat` string, or
`nginx.conf:NAME` (read the named `log_format` from a config file). nginx and
Apache formats become the same thing: a list of literal and variable segments,
variables named like nginx's (`%{User-Agent}i` is `http_user_agent`). From the
segments two parsers are built that agree on the result:

* a *token plan* for Arrow's C++ CSV tokenizer (space-delimited, ``"``-quoted),
  used when every space-separated token of the format is a quoted string, a
  variable with optional literal prefix/suffix, or a literal — true for
  combined, main and most custom formats. It parses ~1M lines/s per core;
* a *line regex* (Python ``re``) for the lines the tokenizer cannot split (a
  value with an unexpected space, an escaped quote) and for formats that are not
  tokenizable at all. A line neither accepts is a reject.

Both produce a string column per variable; ``transforms.fields`` types them.
JSON logs and error logs are other `kind`s with their own parsers.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

from schemas.errors import AccesslogError
from transforms.apache_format import APACHE_PRESETS, compile_apache, looks_like_apache
from transforms.fields import field_target
from transforms.jsonlog import parse_field_map

# nginx presets: name -> log_format body. `combined` is nginx's built-in format;
# `main` is the one in the stock nginx.conf; `timed_combined` is the most common
# custom format (combined plus timings).
COMBINED = ('$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent '
            '"$http_referer" "$http_user_agent"')
FORMATS: dict[str, str] = {
    "combined": COMBINED,
    "main": COMBINED + ' "$http_x_forwarded_for"',
    "timed_combined": COMBINED + " $request_time $upstream_response_time",
}
DEFAULT_NGINX_CONF = "/etc/nginx/nginx.conf"
# Other kinds of input, parsed by their own modules.
SPECIAL_KINDS = ("json", "nginx_error", "apache_error")
TIME_VARIABLES = ("time_local", "time_iso8601", "msec", "time_received", "time_received_sec",
                  "time_received_msec", "time_received_usec")


@dataclass(frozen=True)
class Variable:
    """How one variable looks in a log line outside quotes."""

    pattern: str = r".*?"      # regex for the value (slow path)
    spaces: int = 0            # spaces always inside the value (time_local has one)


_UPSTREAM_LIST = r"[^\s,]++(?:(?:, | : )[^\s,]++)*+"
# Variables with a known shape. Anything else is matched leniently; type checks
# happen in transforms.fields so a malformed value gets a precise reject reason.
VARIABLES: dict[str, Variable] = {
    "remote_addr": Variable(r"\S+"),
    "ident": Variable(r"\S+"),
    "realip_remote_addr": Variable(r"\S+"),
    "time_local": Variable(r"\S+ \S+", spaces=1),
    "time_iso8601": Variable(r"\S+"),
    "msec": Variable(r"\S+"),
    "status": Variable(r"\S+"),
    "body_bytes_sent": Variable(r"\S+"),
    "body_bytes_clf": Variable(r"\S+"),
    "bytes_sent": Variable(r"\S+"),
    "request_time": Variable(r"\S+"),
    "request_time_us": Variable(r"\S+"),
    "request_time_ms": Variable(r"\S+"),
    "request_time_s": Variable(r"\S+"),
    "request_length": Variable(r"\S+"),
    "connection": Variable(r"\S+"),
    "time_received_sec": Variable(r"\S+"),
    "time_received_msec": Variable(r"\S+"),
    "time_received_usec": Variable(r"\S+"),
    "time_responded_sec": Variable(r"\S+"),
    "time_responded_msec": Variable(r"\S+"),
    "time_responded_usec": Variable(r"\S+"),
    "query_string_apache": Variable(r"(?:\?\S*)?"),   # Apache %q: '' or '?...', often right after %U
    # Unquoted (Apache behind a proxy: "%{X-Forwarded-For}i %l %u %t ..."): "a, b" is one value.
    "http_x_forwarded_for": Variable(r"[^\s,]++(?:,\s?[^\s,]++)*+"),
    # Lists, one entry per upstream tried: "a, b : c" (nginx: $upstream_addr and the times after it).
    **{name: Variable(_UPSTREAM_LIST) for name in (
        "upstream_addr", "upstream_status", "upstream_response_time", "upstream_connect_time",
        "upstream_header_time", "upstream_response_length", "upstream_bytes_received", "upstream_bytes_sent")},
    # $uri$is_args$args: the path has no '?', $is_args is '?' or ''.
    "uri": Variable(r"[^?\s]*"),
    "is_args": Variable(r"\??"),
}
_VAR_RE = re.compile(r"\$(?:\{([A-Za-z0-9_]+)\}|([A-Za-z0-9_]+))")
# How a quoted value is matched, by escaping mode: nginx's default escapes '"' as
# \x22 (and '\' as \x5C, so \" in a line is Apache's escape: taken too); json and Apache
# escape it as \"; escape=none leaves it raw.
# (Unrolled and possessive: a value never gives characters back, and Python's re runs a character
# class far faster than an alternation per character.)
_ESCAPED_VALUE = r'[^"\\]*+(?:\\.[^"\\]*+)*+'
_QUOTED = {"default": _ESCAPED_VALUE, "json": _ESCAPED_VALUE, "apache": _ESCAPED_VALUE, "none": r".*?"}


@dataclass(frozen=True)
class Column:
    """One column of the CSV token plan.

    ``var`` set: the column is that variable between literal ``prefix`` and ``suffix``
    (``[$time_local]``, ``rt=$request_time``).
    ``regex`` set: a token mixing literals and variables; named groups ``g<i>``
    map to ``group_vars``. Neither: a literal that must equal ``literal``.
    ``width`` > 1: the token spans several CSV columns (values with spaces).
    """

    var: str | None = None
    prefix: str = ""
    suffix: str = ""
    regex: str | None = None
    group_vars: tuple[str, ...] = ()
    literal: str | None = None
    width: int = 1


@dataclass(frozen=True)
class LogFormat:
    name: str
    body: str
    kind: str = "nginx"                    # nginx | apache | json | nginx_error | apache_error
    variables: tuple[str, ...] = ()
    line_regex: re.Pattern | None = None
    group_vars: tuple[str, ...] = ()       # line_regex group i+1 -> variable (a variable may have two)
    trailing_regex: re.Pattern | None = None   # line_regex, then fields the format does not name (TRAILING)
    cut_regexes: tuple = ()                # lines cut off inside a quoted variable: see _cut_regexes
    columns: tuple[Column, ...] | None = None   # CSV token plan, None if not tokenizable
    escape: str = "default"                # default | json | none | apache
    time_format: str | None = None         # strptime format of time_received (Apache %{...}t)
    time_role: str = "responded"           # what the logged time is: nginx writes at response end
    segments: tuple = ()                   # ("lit", text) / ("var", name) pieces of the format
    options: dict = field(default_factory=dict, compare=False)   # json field map, error-log zone

    @property
    def csv_width(self) -> int:
        return sum(c.width for c in self.columns or ())

    @property
    def is_access(self) -> bool:
        return self.kind in ("nginx", "apache", "json")

    def match_line(self, text: str) -> dict[str, str] | None:
        """The line regex's reading of one line: {variable: value} (TRAILING only when the line
        has fields after the format), or None when the line does not match."""
        if self.line_regex is None:
            return None
        m = (self.escape == "none" and self.line_regex.match(text)) or self.trailing_regex.match(text)
        return None if m is None else matched_fields(self.group_vars + (TRAILING,), m)

    def explain(self) -> list[dict]:
        """The compiled field list, for `accesslog parse --explain`."""
        plan = "csv-tokenizer + regex fallback" if self.columns is not None else "regex"
        if not self.line_regex:
            plan = self.kind
        return [{"format": self.name, "kind": self.kind, "escape": self.escape, "parser": plan,
                 "time_role": self.time_role}] + \
               [{"variable": v, "column": field_target(v)} for v in self.variables]


def _position_error(what: str, body: str, pos: int, problem: str) -> AccesslogError:
    """One line: what is wrong, where (1-based character position) and the text around it."""
    return AccesslogError(f"{problem} at position {pos + 1} of the {what} {body!r} "
                          f"(near {body[max(0, pos - 8):pos + 9]!r}); fix the format string")


def _segments(body: str) -> list[tuple[str, str]]:
    """Split an nginx format body into ('lit', text) and ('var', name) pieces."""
    out: list[tuple[str, str]] = []
    pos = 0
    for m in _VAR_RE.finditer(body):
        if m.start() > pos:
            out.append(("lit", body[pos:m.start()]))
        out.append(("var", m.group(1) or m.group(2)))
        pos = m.end()
    if pos < len(body):
        out.append(("lit", body[pos:]))
    return out


def _check_nginx_body(body: str) -> None:
    """Errors nginx itself would refuse, reported with their position."""
    unclosed = body.find("${")
    while unclosed >= 0:
        if not re.match(r"\$\{[A-Za-z0-9_]+\}", body[unclosed:]):
            raise _position_error("nginx log_format", body, unclosed, "unterminated or empty ${...} variable")
        unclosed = body.find("${", unclosed + 2)
    for m in re.finditer(r"\$(?![A-Za-z0-9_{])", body):
        raise _position_error("nginx log_format", body, m.start(), "'$' without a variable name")
    quotes = [m.start() for m in re.finditer('"', body)]
    if len(quotes) % 2:
        raise _position_error("nginx log_format", body, quotes[-1], "unbalanced '\"'")


def quoted_pattern(escape: str) -> str:
    return _QUOTED[escape]


# Fields a line may carry besides the format's variables (they end up in `extra`): what follows the
# configured format on the line, and which quoted variable a line cut short ends inside.
TRAILING, TRUNCATED = "extra:trailing", "extra:truncated"
# How the value of a quoted variable cut off by the end of the line is matched, by escaping mode.
_CUT_QUOTED = {"default": _ESCAPED_VALUE + r"\\?", "json": _ESCAPED_VALUE + r"\\?",
               "apache": _ESCAPED_VALUE + r"\\?", "none": r".*"}


def matched_fields(group_vars: tuple[str, ...], match: re.Match) -> dict[str, str]:
    """A line regex's match -> {variable: value}: a variable with two groups (quoted or a bare
    '-') takes the one that matched; groups that matched nothing are left out."""
    fields: dict[str, str] = {}
    for var, value in zip(group_vars, match.groups()):
        if value is not None:
            fields.setdefault(var, value)
    return fields


def _quoted_variables(segments: list[tuple[str, str]]) -> set[int]:
    """Indexes of variables the format writes between double quotes ("$http_referer")."""
    out = set()
    for i, (kind, _) in enumerate(segments):
        before = segments[i - 1][1] if i and segments[i - 1][0] == "lit" else ""
        after = segments[i + 1][1] if i + 1 < len(segments) and segments[i + 1][0] == "lit" else ""
        if kind == "var" and before.endswith('"') and after.startswith('"'):
            out.add(i)
    return out


def _bare_dash_variables(segments: list[tuple[str, str]], quoted: set[int]) -> set[int]:
    """Quoted variables that may also be logged as a bare '-' (`... 200 512 - -`: some servers and
    log rewriters write an empty referrer or user agent without quotes): each needs a quote of its
    own on both sides, not one shared with a neighbour (`"$a"$b"`)."""
    bare = set(quoted)
    for j, (kind, text) in enumerate(segments):
        if kind == "lit" and text == '"' and j - 1 in bare and j + 1 in bare:
            bare -= {j - 1, j + 1}
    return bare


def _regex_parts(segments: list[tuple[str, str]], escape: str, patterns: dict[str, str],
                 bare: set[int]) -> list[tuple[str, tuple[str, ...]]]:
    """One (regex, variables of its groups) per segment. A variable in `bare` takes its quotes from
    the literals around it, so that it can match `"value"` or a bare `-`; its variable then has two
    groups (one of them None)."""
    quoted = _quoted_variables(segments)
    out: list[tuple[str, tuple[str, ...]]] = []
    for i, (kind, text) in enumerate(segments):
        if kind == "lit":
            text = text[1 if i - 1 in bare else 0:len(text) - (1 if i + 1 in bare else 0)]
            out.append((re.escape(text), ()))
            continue
        if i in bare:
            out.append((f'(?:"({_QUOTED[escape]})"|(-))', (text, text)))
            continue
        if i in quoted:
            out.append((f"({_QUOTED[escape]})", (text,)))
            continue
        after = segments[i + 1][1] if i + 1 < len(segments) and segments[i + 1][0] == "lit" else ""
        pattern = patterns.get(text) or VARIABLES.get(text, Variable()).pattern
        if pattern == Variable.pattern and after:
            # Up to the first occurrence of the literal that follows, and never back: a lazy
            # .*? per variable made a failing 16k-character line cost seconds (quadratic).
            pattern = f"(?:(?!{re.escape(after)}).)*+"
        elif pattern == Variable.pattern and i + 1 == len(segments):
            pattern = ".*"   # the rest of the line: the same match as .*?$, without a lazy run
        out.append((f"({pattern})", (text,)))
    return out


def _line_regex(segments: list[tuple[str, str]], escape: str,
                patterns: dict[str, str]) -> tuple[re.Pattern, re.Pattern, tuple[str, ...]]:
    """(the whole line as the format writes it, the same optionally followed by fields the format
    does not name (a server that appends "$http_x_forwarded_for" or timings to combined) in one
    more group, the variable of each group). Values never give characters back, so the second
    reads a line that fits the format exactly as the first does -- except with escape=none, whose
    quoted values are lazy: there the first is tried first, so that a line that fits exactly is
    never read as a shorter value plus trailing fields."""
    parts = _regex_parts(segments, escape, patterns, _bare_dash_variables(segments, _quoted_variables(segments)))
    body = "^" + "".join(p for p, _ in parts)
    return (re.compile(body + "$", re.DOTALL), re.compile(body + "(?: (.*))?$", re.DOTALL),
            tuple(v for _, names in parts for v in names))


def _cut_regexes(segments: list[tuple[str, str]], escape: str,
                 patterns: dict[str, str]) -> tuple[tuple[re.Pattern, tuple[str, ...], str], ...]:
    """For lines a truncated write cut off inside a quoted variable (the user agent, mostly): per
    quoted variable that comes after the status and a time, a regex of the line up to that variable
    with its value running to the end of the line -> (regex, group variables, cut variable). The
    last variable first: it is the one a cut most often hits."""
    quoted = sorted(_quoted_variables(segments), reverse=True)
    bare = _bare_dash_variables(segments, set(quoted))
    out = []
    for k in quoted:
        before = [text for kind, text in segments[:k] if kind == "var"]
        if "status" not in before or not any(v in TIME_VARIABLES for v in before):
            continue
        head = _regex_parts(segments[:k - 1], escape, patterns, {i for i in bare if i < k - 1})
        opening = segments[k - 1][1][1 if k - 2 in bare else 0:]
        regex = "^" + "".join(p for p, _ in head) + re.escape(opening) + f"({_CUT_QUOTED[escape]})$"
        out.append((re.compile(regex, re.DOTALL), tuple(v for _, names in head for v in names) + (segments[k][1],),
                    segments[k][1]))
    return tuple(out)


def _split_tokens(segments: list[tuple[str, str]]) -> list[list[tuple[str, str]]] | None:
    """Split the format into space-separated tokens, spaces inside quotes kept."""
    tokens: list[list[tuple[str, str]]] = [[]]
    in_quotes = False
    for kind, text in segments:
        if kind == "var":
            tokens[-1].append((kind, text))
            continue
        for ch in text:
            if ch == '"':
                in_quotes = not in_quotes
            if ch == " " and not in_quotes:
                tokens.append([])
            elif tokens[-1] and tokens[-1][-1][0] == "lit":
                tokens[-1][-1] = ("lit", tokens[-1][-1][1] + ch)
            else:
                tokens[-1].append(("lit", ch))
    return None if in_quotes else tokens


def _re2(pattern: str) -> str:
    """A variable's pattern for RE2 (Arrow), which has no possessive repetitions and needs none:
    its matching is linear whatever the pattern."""
    return re.sub(r"(?<!\\)([+*?}])\+", r"\1", pattern)


def _token_column(token: list[tuple[str, str]], spaces: dict[str, int]) -> Column | None:
    text = "".join(t if k == "lit" else "\0" for k, t in token)
    quoted = len(text) >= 2 and text[0] == '"' and text[-1] == '"' and '"' not in text[1:-1]
    if quoted:
        token = list(token)
        token[0] = ("lit", token[0][1][1:])
        token[-1] = ("lit", token[-1][1][:-1])
        token = [(k, t) for k, t in token if not (k == "lit" and t == "")]
    elif text.startswith('"'):
        return None  # the tokenizer would take it for a quoted field
    # Quotes inside a bare token (uct="$upstream_connect_time") are plain characters to
    # the tokenizer: they stay in the value and become the prefix/suffix literals.
    variables = [t for k, t in token if k == "var"]
    width = 1 if quoted else 1 + sum(spaces.get(v, VARIABLES.get(v, Variable()).spaces) for v in variables)
    if not variables:
        return Column(literal="".join(t for _, t in token))
    if len(variables) == 1:
        i = next(i for i, (k, _) in enumerate(token) if k == "var")
        return Column(var=variables[0], width=width,
                      prefix="".join(t for _, t in token[:i]), suffix="".join(t for _, t in token[i + 1:]))
    parts, n = ["^"], 0
    for kind, t in token:
        if kind == "lit":
            parts.append(re.escape(t))
        else:  # RE2 (Arrow) needs named groups for extract_regex
            parts.append(f"(?P<g{n}>{_re2(VARIABLES.get(t, Variable()).pattern)})")
            n += 1
    parts.append("$")
    return Column(regex="".join(parts), group_vars=tuple(variables), width=width)


def compile_segments(segments: list[tuple[str, str]], name: str, body: str, kind: str = "nginx",
                     escape: str = "default", time_format: str | None = None,
                     time_role: str = "responded") -> LogFormat:
    """Segments of an nginx or Apache format -> LogFormat with token plan and line regex."""
    variables = tuple(t for k, t in segments if k == "var")
    what = "nginx log_format" if kind == "nginx" else "Apache LogFormat"
    if not variables:
        raise AccesslogError(f"{what} {body!r} has no $variables (Apache: % directives): pass a preset "
                             f"({', '.join(preset_names())}) or your server's format string")
    if not any(v in TIME_VARIABLES for v in variables):
        raise AccesslogError(f"{what} {body!r} has no time variable: add $time_local, $time_iso8601 or $msec "
                             "(Apache: %t)")
    if "status" not in variables:
        raise AccesslogError(f"{what} {body!r} has no $status variable: add $status (Apache: %>s)")
    spaces: dict[str, int] = {}
    patterns: dict[str, str] = {}
    if time_format is not None:
        spaces["time_received"] = time_format.count(" ")
        patterns["time_received"] = r"\S+" + r" \S+" * time_format.count(" ")
    elif "time_received" in variables:
        spaces["time_received"] = 1
        patterns["time_received"] = r"\S+ \S+"
    line_regex, trailing_regex, group_vars = _line_regex(segments, escape, patterns)
    cut_regexes = _cut_regexes(segments, escape, patterns)
    tokens = _split_tokens(segments)
    columns = None
    if tokens is not None:
        cols = [_token_column(t, spaces) for t in tokens]
        if all(c is not None for c in cols):
            columns = tuple(cols)
    return LogFormat(name=name, body=body, kind=kind, variables=variables, line_regex=line_regex,
                     group_vars=group_vars, trailing_regex=trailing_regex, cut_regexes=cut_regexes,
                     columns=columns, escape=escape, time_format=time_format,
                     time_role=time_role, segments=tuple(segments))


def compile_format(body: str, name: str | None = None) -> LogFormat:
    """Compile an nginx log_format body (optionally starting with escape=...) or a preset name."""
    if body in FORMATS:
        name, body = body, FORMATS[body]
    escape = "default"
    m = re.match(r"\s*escape=(\S*)\s+", body)
    if m:
        if m.group(1) not in ("default", "json", "none"):
            raise _position_error("nginx log_format", body, m.start(1),
                                  f"unknown escape={m.group(1)!r} (use default, json or none)")
        escape, body = m.group(1), body[m.end():]
    _check_nginx_body(body)
    return compile_segments(_ident_field(_segments(body)), name or "custom", body, "nginx", escape)


def _ident_field(segments: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """nginx's combined keeps the Common Log Format's second field, identd's answer, as a literal
    '-'; logs rewritten by other servers or tools hold any token there (Apache's %l writes what
    identd said). `$remote_addr - ...` -> `$remote_addr $ident ...`: a variable that is dropped."""
    if len(segments) > 1 and segments[0][0] == "var" and segments[1] == ("lit", segments[1][1]) \
            and segments[1][1].startswith(" - "):
        return [segments[0], ("lit", " "), ("var", "ident"), ("lit", segments[1][1][2:]), *segments[2:]]
    return segments


def compile_apache_format(spec: str, name: str | None = None) -> LogFormat:
    compiled = compile_apache(spec)
    return compile_segments(list(compiled.segments), name or "custom", spec, "apache", compiled.escape,
                            compiled.time_format, compiled.time_role)


def preset_names() -> list[str]:
    apache = {f"apache_{name}" for name in APACHE_PRESETS}
    return sorted(set(FORMATS) | set(APACHE_PRESETS) | apache | set(SPECIAL_KINDS) | {"auto"})


def resolve_format(spec: str, nginx_conf: str | None = None, field_map: str | None = None) -> LogFormat:
    """--log-format value -> LogFormat, or a clear AccesslogError before any input is read.

    `auto` is resolved per input by `transforms.detect`; callers handle it.
    """
    conf_ref = re.match(r"^([^\s$%]*\.conf):([A-Za-z0-9_]+)$", spec)
    if nginx_conf or conf_ref:
        from transforms.nginx_conf import read_log_format
        if nginx_conf:  # --nginx-conf FILE --log-format-name NAME
            conf, name = nginx_conf, spec
        else:           # nginx.conf:NAME (./nginx.conf, else /etc/nginx/nginx.conf) or PATH.conf:NAME
            conf, name = conf_ref.group(1), conf_ref.group(2)
            if conf == "nginx.conf" and not os.path.exists(conf):
                conf = DEFAULT_NGINX_CONF
        escape, body = read_log_format(conf, name)
        return compile_format(f"escape={escape} {body}", name=name)
    if spec in FORMATS:
        return compile_format(spec)
    if spec in SPECIAL_KINDS:
        options = {}
        if spec == "json":
            options["field_map"] = parse_field_map(field_map) if field_map else None
        # orjson has already decoded JSON escapes; error-log values are written raw.
        return LogFormat(name=spec, body=spec, kind=spec, escape="none", options=options)
    if "$" in spec:
        return compile_format(spec)
    if spec.startswith("apache_") and spec[7:] in APACHE_PRESETS:   # apache_combined: Apache's own
        return compile_apache_format(APACHE_PRESETS[spec[7:]], name=spec)
    if spec in APACHE_PRESETS:
        return compile_apache_format(APACHE_PRESETS[spec], name=spec)
    if looks_like_apache(spec):
        return compile_apache_format(spec)
    raise AccesslogError(
        f"unknown log format {spec!r}: use a preset ({', '.join(preset_names())}), an nginx log_format body "
        "such as '$remote_addr [$time_local] \"$request\" $status', an Apache LogFormat such as "
        "'%h %l %u %t \"%r\" %>s %b', or nginx.conf:NAME")

"""Log formats: compile an nginx ``log_format`` body once into a fast parser plan.

A format is compiled into two parsers that agree on the result:

* a *token plan* for Arrow's C++ CSV tokenizer (space-delimited, ``"``-quoted),
  used when every space-separated token of the format is a quoted string, a bare
  variable, or a literal — true for combined, main and most custom formats. It
  parses ~1M lines/s per core and releases the GIL;
* a *line regex* (Python ``re``) used for the lines the tokenizer cannot split
  (a value with an unexpected space, a stray quote) and for formats that are not
  tokenizable at all. A line neither parser accepts is a reject.

Both produce the same thing: a string column per *field* (``remote_addr``,
``time_local``, ...); ``transforms.fields`` turns those into the access schema.
The registry ``FORMATS`` maps preset names to format bodies, so new formats are
added here without touching the pipeline.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from accesslog.errors import AccesslogError

# Presets: name -> nginx log_format body. `combined` is nginx's built-in format;
# `main` is the one in the stock nginx.conf; `timed_combined` is the most common
# custom format (combined plus timings).
COMBINED = ('$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent '
            '"$http_referer" "$http_user_agent"')
FORMATS: dict[str, str] = {
    "combined": COMBINED,
    "main": COMBINED + ' "$http_x_forwarded_for"',
    "timed_combined": COMBINED + " $request_time $upstream_response_time",
}


@dataclass(frozen=True)
class Variable:
    """How one nginx variable looks in a log line and which field it feeds."""

    pattern: str = r".*?"      # regex for the value outside quotes (slow path)
    spaces: int = 0            # spaces always inside the value (time_local has one)


# Variables with a known shape. Anything else is a string field named after the
# variable, matched leniently; type checks happen in transforms.fields so a
# malformed value gets a precise reject reason instead of "does not match".
VARIABLES: dict[str, Variable] = {
    "remote_addr": Variable(r"\S+"),
    "realip_remote_addr": Variable(r"\S+"),
    "time_local": Variable(r"\S+ \S+", spaces=1),
    "time_iso8601": Variable(r"\S+"),
    "msec": Variable(r"\S+"),
    "status": Variable(r"\S+"),
    "body_bytes_sent": Variable(r"\S+"),
    "bytes_sent": Variable(r"\S+"),
    "request_time": Variable(r"\S+"),
    "request_length": Variable(r"\S+"),
    "connection": Variable(r"\S+"),
}
_VAR_RE = re.compile(r"\$(?:\{([A-Za-z0-9_]+)\}|([A-Za-z0-9_]+))")


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
    variables: tuple[str, ...]
    line_regex: re.Pattern
    group_vars: tuple[str, ...]           # line_regex group i+1 -> variable
    columns: tuple[Column, ...] | None    # CSV token plan, None if not tokenizable
    escape: str = "default"
    extra: dict = field(default_factory=dict, compare=False)

    @property
    def csv_width(self) -> int:
        return sum(c.width for c in self.columns or ())

    def explain(self) -> list[str]:
        return [f"${v}" for v in self.variables]


def _segments(body: str) -> list[tuple[str, str]]:
    """Split a format body into ('lit', text) and ('var', name) pieces."""
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


def _line_regex(segments: list[tuple[str, str]]) -> tuple[re.Pattern, tuple[str, ...]]:
    parts, group_vars = ["^"], []
    for i, (kind, text) in enumerate(segments):
        if kind == "lit":
            parts.append(re.escape(text))
            continue
        before = segments[i - 1][1] if i and segments[i - 1][0] == "lit" else ""
        after = segments[i + 1][1] if i + 1 < len(segments) and segments[i + 1][0] == "lit" else ""
        if before.endswith('"') and after.startswith('"'):
            # nginx escapes '"' inside values (as \x22), so a quoted value has none.
            pattern = r'[^"]*'
        else:
            pattern = VARIABLES.get(text, Variable()).pattern
        parts.append(f"({pattern})")
        group_vars.append(text)
    parts.append("$")
    return re.compile("".join(parts)), tuple(group_vars)


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


def _token_column(token: list[tuple[str, str]]) -> Column | None:
    text = "".join(t if k == "lit" else "\0" for k, t in token)
    quoted = len(text) >= 2 and text[0] == '"' and text[-1] == '"'
    if quoted:
        token = [(k, t) for k, t in token]
        token[0] = ("lit", token[0][1][1:])
        token[-1] = ("lit", token[-1][1][:-1])
        token = [(k, t) for k, t in token if not (k == "lit" and t == "")]
        text = text[1:-1]
    if '"' in text:
        return None  # quotes inside a token: the CSV tokenizer would mangle it
    variables = [t for k, t in token if k == "var"]
    width = 1 if quoted else 1 + sum(VARIABLES.get(v, Variable()).spaces for v in variables)
    if not variables:
        return Column(literal="".join(t for _, t in token))
    if len(variables) == 1:
        i = next(i for i, (k, _) in enumerate(token) if k == "var")
        return Column(var=variables[0], width=width,
                      prefix="".join(t for _, t in token[:i]), suffix="".join(t for _, t in token[i + 1:]))
    parts = ["^"]
    for kind, t in token:
        parts.append(re.escape(t) if kind == "lit" else r"(.*?)")
    parts.append("$")
    # RE2 (Arrow) needs named groups for extract_regex.
    regex, n = "".join(parts), 0
    while "(.*?)" in regex:
        regex = regex.replace("(.*?)", f"(?P<g{n}>.*?)", 1)
        n += 1
    return Column(regex=regex, group_vars=tuple(variables), width=width)


def compile_format(body: str, name: str | None = None) -> LogFormat:
    """Compile an nginx log_format body (or a preset name) into a LogFormat."""
    if body in FORMATS:
        name, body = body, FORMATS[body]
    escape = "default"
    m = re.match(r"\s*escape=(default|json|none)\s+", body)
    if m:
        escape, body = m.group(1), body[m.end():]
    segments = _segments(body)
    variables = tuple(t for k, t in segments if k == "var")
    if not variables:
        raise AccesslogError(
            f"log format {body!r} has no $variables: pass a preset ({', '.join(FORMATS)}) "
            "or an nginx log_format body")
    if "time_local" not in variables and "time_iso8601" not in variables and "msec" not in variables:
        raise AccesslogError("log format has no time variable: add $time_local, $time_iso8601 or $msec")
    if "status" not in variables:
        raise AccesslogError("log format has no $status variable: accesslog needs the response status")
    line_regex, group_vars = _line_regex(segments)
    tokens = _split_tokens(segments)
    columns = None
    if tokens is not None:
        cols = [_token_column(t) for t in tokens]
        if all(c is not None for c in cols):
            columns = tuple(cols)
    return LogFormat(name=name or "custom", body=body, variables=variables, line_regex=line_regex,
                     group_vars=group_vars, columns=columns, escape=escape)


def resolve_format(spec: str) -> LogFormat:
    """A preset name or a format body -> LogFormat; a clear error otherwise."""
    if spec in FORMATS:
        return compile_format(spec)
    if "$" not in spec:
        raise AccesslogError(
            f"unknown log format {spec!r}: use one of {', '.join(sorted(FORMATS))} "
            "or pass an nginx log_format body such as '$remote_addr [$time_local] \"$request\" $status'")
    return compile_format(spec)

"""RedactRejects: raw rejected lines -> `rejects` rows that are safe to store.

Rejects are personal data too (docs/architecture.md): every IP-looking token becomes
`ip:<pseudonym>` under the key of the chunk's day (so a data-subject export can
find it), the user-name field is redacted when the line still shows it (and that
name wherever else the same line shows it), and secrets, e-mail addresses and user
paths are scrubbed like URLs. Each line is redacted on its own.
"""
from __future__ import annotations

import re
from datetime import datetime, timezone
from itertools import chain, islice
from typing import NamedTuple

import apache_beam as beam
import pyarrow as pa

from schemas import REJECTS
from storage.keystore import Keystore
from transforms.formats import VARIABLES, LogFormat, Variable, quoted_pattern
from transforms.lines import MAX_LINE_BYTES
from transforms.parse import RecordChunk, _AnyKey
from transforms.pseudonymize import pseudonymize_ip_tokens
from transforms.scrub import REDACTED, Scrubber, carries_credentials, redact_names


def _sensitive(var: str) -> bool:
    """A variable whose value is located and redacted in rejected lines: user names, credentials, cookies."""
    return var in ("remote_user", "ident") or carries_credentials(var)


# Where a client address can be in a rejected line: an IPv4/IPv6 address (with a '.' or ':'), a dotted
# host name or a unix socket -- not any word, so that a syslog prefix ("Nov 20 web1 nginx: ") is not
# taken for the address, the identd field and the start of a user name.
_LOCATED_ADDRESS = r"(?:[0-9A-Fa-f]*+[.:][0-9A-Fa-f.:\[\]%]*+|[A-Za-z0-9-]++(?:\.[A-Za-z0-9-]++)++|unix:\S*+)"


def _value_pattern(fmt: LogFormat, segments: list, i: int) -> str:
    quoted = i and segments[i - 1][1].endswith('"')
    if quoted:
        return quoted_pattern(fmt.escape)
    if segments[i][1] in ("remote_addr", "realip_remote_addr"):
        return _LOCATED_ADDRESS
    return VARIABLES.get(segments[i][1], Variable()).pattern


def _prefix_pattern(fmt: LogFormat, segments: list) -> str:
    """Regex of the segments before a sensitive variable. Each value ends at the first occurrence
    of the literal after it and is never tried longer (an atomic group), so a match costs time
    linear in the line's length; variables with no literal between them are read as one value."""
    parts, values = [], []
    for i, (kind, text) in enumerate(segments):
        if kind == "var":
            values.append(_value_pattern(fmt, segments, i))
        elif values:
            parts.append(f"(?>(?:{values[0] if len(values) == 1 else '.*?'}){re.escape(text)})")
            values = []
        else:
            parts.append(re.escape(text))
    if values:   # right before the sensitive variable: what it cannot take is the sensitive value
        parts.append(f"(?>{values[0] if len(values) == 1 else '.*?'})")
    return "".join(parts)


class FieldLocator(NamedTuple):
    """Where a sensitive variable's value (group 1) is in a rejected line."""
    located: re.Pattern            # the line as the format lays it out, up to the value's end
    cut_short: re.Pattern | None   # the line ending inside the value
    literals: tuple[str, ...]      # the format's literals up to the value's end, in order
    word: re.Pattern | None = None   # the same with a value without spaces: tried first, from every start


def sensitive_field_regexes(fmt: LogFormat) -> list[FieldLocator]:
    """For each sensitive variable (user names, cookies, credentials), regexes locating its value
    in a rejected line, built from the format; redact_line tries them at the start of the line and
    after each of its first words (a syslog or other prefix)."""
    segments = list(fmt.segments)
    out = []
    for target, (kind, name) in enumerate(segments):
        if kind != "var" or not _sensitive(name):
            continue
        follow = segments[target + 1][1] if target + 1 < len(segments) and segments[target + 1][0] == "lit" else ""
        prefix = _prefix_pattern(fmt, segments[:target])
        literals = tuple(text for kind, text in segments[:target] if kind == "lit")
        # A value followed by a mere space ($remote_addr $ident $remote_user [...]) is only where the
        # next literal that is more than a space still comes after it.
        landmark = next((text for kind, text in segments[target + 2:] if kind == "lit" and text.strip()), "")
        ahead = (f"(?=(?:(?!{re.escape(landmark)}).)*+{re.escape(landmark)})"
                 if follow and not follow.strip() and landmark else "")
        # (Checked once where the value starts: after each candidate end it would rescan the line.)
        word = (re.compile(prefix + ahead + f"((?:(?!{re.escape(follow)})\\S)*+){re.escape(follow)}")
                if follow else None)
        out.append(FieldLocator(re.compile(prefix + (ahead + "(.*?)" + re.escape(follow) if follow else "(.*)$")),
                                re.compile(prefix + "(.+)$") if follow else None,
                                literals + (follow,) if follow else literals, word))
    return out


_PREFIX_WORDS, _PREFIX_CHARS = 16, 512   # how far into a line a prefix may reach
_SPACES = re.compile(r"\s++")


def _latest_start(line: str, literals: tuple[str, ...]) -> int:
    """The last position of `line` from which `literals` can all still be found, in order (-1: none)."""
    end = len(line)
    for literal in reversed(literals):
        end = line.rfind(literal, 0, end)
        if end < 0:
            break
    return end


def _match_after_prefix(pattern: re.Pattern, line: str, literals: tuple[str, ...]) -> re.Match | None:
    """`pattern` matched at the start of `line` or of one of its first words: a bounded number of
    tries, each linear, where a search would try every character (and none where the format's
    literals are not all there, in order)."""
    latest = _latest_start(line, literals)
    words = islice(_SPACES.finditer(line, 0, _PREFIX_CHARS), _PREFIX_WORDS)
    for start in chain([0], (space.end() for space in words)):
        if start > latest:
            break
        if m := pattern.match(line, start):
            return m
    return None


# JSON keys (normalized: lower case, '-' and '.' as '_') whose values identify a person or are
# credentials, besides the secret query parameters of the Scrubber: their values are redacted
# in rejected JSON lines (a JSON log's fields are not at fixed places).
_JSON_PERSONAL_KEYS = frozenset({"remote_user", "clientusername", "username", "user_name", "login_name", "ident",
                                 "e_mail", "request_id", "x_request_id"})
# A JSON line read as tokens, each character once: a string (group 1; one cut short runs to the end)
# with the colon after it if it is a key (group 2), or the text between strings.
_JSON_TOKEN = re.compile(r'("(?:[^"\\]++|\\.)*+(?:"|\\?\Z))(\s*+:\s*+)?|[^"]++', re.DOTALL)
_JSON_NUMBER = re.compile(r"-?[0-9][0-9.eE+-]*+")
_JSON_BRACKET = re.compile(r"[\[\]{}]")


def _json_key_sensitive(key: str, scrubber: Scrubber, mapped: frozenset) -> bool:
    norm = key.lower().replace("-", "_").replace(".", "_")
    last = key.rsplit(".", 1)[-1].lower().replace("-", "_")
    return (key in mapped or norm in _JSON_PERSONAL_KEYS or last in _JSON_PERSONAL_KEYS
            or "cookie" in norm or "authorization" in norm or scrubber.is_secret(last))


def _close_brackets(text: str, depth: int) -> tuple[int, str]:
    """Inside an array or object `depth` deep, read non-string `text` -> (depth after it, the text
    after the bracket that closes it, if one does)."""
    for m in _JSON_BRACKET.finditer(text):
        depth += 1 if m.group(0) in "[{" else -1
        if depth == 0:
            return 0, text[m.end():]
    return depth, ""


def _redact_json_values(line: str, scrubber: Scrubber, mapped: frozenset) -> str:
    """Values of personal and secret keys -> "REDACTED" (a whole array or object too), at any depth.
    One pass over the tokens: a line cut short, or not JSON at all, is redacted as far as it goes."""
    out: list[str] = []
    sensitive_key, depth = False, 0   # depth > 0: inside a sensitive key's array or object (dropped)
    for m in _JSON_TOKEN.finditer(line):
        text, string, colon = m.group(0), m.group(1), m.group(2)
        if depth:
            if string is None:
                depth, rest = _close_brackets(text, depth)
                out.append(rest)
            continue
        if sensitive_key:
            sensitive_key = False
            if string is not None:
                text = f'"{REDACTED}"' + (colon or "")
            elif text[0] in "[{":
                depth, rest = _close_brackets(text, 0)
                text = f'"{REDACTED}"' + rest
            elif number := _JSON_NUMBER.match(text):
                text = f'"{REDACTED}"' + text[number.end():]
        elif colon and _json_key_sensitive(string[1:-1], scrubber, mapped):
            sensitive_key = True
        out.append(text)
    return "".join(out)


def redact_line(line: str, secret: bytes, scrubber: Scrubber, field_res: list[FieldLocator],
                strict: bool = False, json_keys: frozenset | None = None) -> str:
    """A rejected raw line, safe to store. `strict` (formats logging cookies or credentials):
    every name=value value is redacted too, in case the line is too broken to locate them.
    `json_keys` (JSON formats): values of personal and secret keys are redacted, these keys
    mapped to $remote_user included. The user name found in the line's own user field is redacted
    wherever else the line shows it; nothing else of the chunk is looked at, so a line is redacted
    the same whichever chunk it is in.
    A line longer than MAX_LINE_BYTES characters (rejected by its length) keeps only its start,
    redacted the same way, and ends with "…[truncated N bytes]"."""
    line, truncated = _cut(line)
    found = []
    for located, cut_short, literals, word in field_res:
        m = (word and _match_after_prefix(word, line, literals)) or _match_after_prefix(located, line, literals) or \
            (cut_short and _match_after_prefix(cut_short, line, literals[:-1]))
        if m and m.group(1) not in ("", "-"):
            found.append(m.group(1))
            line = line[:m.start(1)] + REDACTED + line[m.end(1):]
    if json_keys is not None:
        line = _redact_json_values(line, scrubber, json_keys)
    # A user name found in its field is redacted wherever else the line shows it (/users/<name>/).
    line = redact_names(line, found)
    return scrubber.scrub(pseudonymize_ip_tokens(line, secret), all_pairs=strict) + truncated


_DELIMITERS = ' \t"\'&;,/?#<>()[]{}|'   # no secret a scrubber recognizes spans one of these


def _cut(line: str) -> tuple[str, str]:
    """A line -> (at most its first MAX_LINE_BYTES characters, the marker of what was cut: '' if
    nothing). The cut falls after a delimiter near the limit, so the start of a secret that goes on
    past it (an address, an e-mail, a token) is cut too instead of staying, unrecognized."""
    if len(line) <= MAX_LINE_BYTES:
        return line, ""
    near = MAX_LINE_BYTES - 4096
    end = max(line.rfind(c, near, MAX_LINE_BYTES) for c in _DELIMITERS) + 1 or MAX_LINE_BYTES
    return line[:end], f"…[truncated {len(line[end:].encode('utf-8'))} bytes]"


class RedactionPlan(NamedTuple):
    field_res: list           # sensitive_field_regexes of a text format
    strict: bool              # redact every name=value pair
    json_keys: frozenset | None   # JSON formats: keys mapped to $remote_user (None: not JSON)


def redaction_plan(fmt: LogFormat) -> RedactionPlan:
    """How to redact a format's rejected lines. Strict when a field other than $remote_user may
    carry credentials (so every name=value pair is redacted) and for JSON, whose lines may hold
    any key."""
    if fmt.kind == "json":
        field_map = fmt.options.get("field_map") or {}
        mapped = frozenset(k for k, v in field_map.items() if v == "remote_user")
        return RedactionPlan([], True, mapped)
    return RedactionPlan(sensitive_field_regexes(fmt),
                         any(_sensitive(v) and v != "remote_user" for v in fmt.variables), None)


def rejects_table(chunk, keystore: Keystore, scrubber: Scrubber, plan: RedactionPlan,
                  now: datetime | None) -> pa.Table:
    """A RejectChunk -> table with the REJECTS schema plus `_date_us` (partition hint): a reject
    is filed under the day it was read, `now` (None: the clock), whatever else its chunk holds, and
    retention then treats it like any row of that day."""
    now = now if now is not None else datetime.now(timezone.utc)
    hint_us = int(now.timestamp() * 1_000_000)
    _, secret = keystore.key_for_day(now.astimezone(timezone.utc).date())
    n = len(chunk.lines)
    lines = [redact_line(t, secret, scrubber, plan.field_res, plan.strict, plan.json_keys)
             for t in chunk.lines]
    table = pa.table({
        "source": pa.array([chunk.source] * n, pa.string()),
        "source_line": pa.array(chunk.source_lines, pa.int64()),
        "reason": pa.array(chunk.reasons, pa.string()),
        "line": pa.array(lines, pa.string()),
    }, schema=REJECTS)
    return table.append_column("_date_us", pa.array([hint_us] * n, pa.int64()))


@beam.typehints.with_output_types(RecordChunk)
class _RedactChunk(beam.DoFn):
    def __init__(self, keystore, scrubber, formats, now):
        self.keystore, self.scrubber, self.formats, self.now = keystore, scrubber, formats, now

    def setup(self):
        self.plans: dict[str, RedactionPlan] = {}

    def process(self, chunk):
        if chunk.lines:
            if chunk.log_format not in self.plans:
                self.plans[chunk.log_format] = redaction_plan(self.formats[chunk.log_format])
            table = rejects_table(chunk, self.keystore, self.scrubber, self.plans[chunk.log_format], self.now)
            yield RecordChunk(chunk.source, chunk.input_id, chunk.first_line, lines=0, records=table)


class RedactRejects(beam.PTransform):
    """RejectChunk -> RecordChunk holding the redacted `rejects` rows; raw lines go no further."""

    def __init__(self, keystore: Keystore, scrubber: Scrubber, formats: dict[str, LogFormat] | LogFormat,
                 now: datetime | None):
        super().__init__()
        self.keystore, self.scrubber, self.now = keystore, scrubber, now
        self.formats = formats if isinstance(formats, dict) else _AnyKey(formats)

    def expand(self, rejects):
        return rejects | "Redact" >> beam.ParDo(_RedactChunk(self.keystore, self.scrubber, self.formats, self.now))

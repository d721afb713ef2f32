"""RedactRejects: raw rejected lines -> `rejects` rows that are safe to store.

Rejects are personal data too (docs/architecture.md): every IP-looking token becomes
`ip:<pseudonym>` under the key of the chunk's day (so a data-subject export can
find it), the user-name field is redacted when the line still shows it, and
secrets and e-mail addresses are scrubbed like URLs.
"""
from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import NamedTuple

import apache_beam as beam
import pyarrow as pa

from schemas import REJECTS
from storage.keystore import KeyShreddedError, Keystore
from transforms.formats import VARIABLES, LogFormat, Variable, quoted_pattern
from transforms.parse import RecordChunk, _AnyKey
from transforms.pseudonymize import pseudonymize_ip_tokens
from transforms.scrub import REDACTED, Scrubber, carries_credentials, redact_names


def _sensitive(var: str) -> bool:
    """A variable whose value is located and redacted in rejected lines: user names, credentials, cookies."""
    return var in ("remote_user", "ident") or carries_credentials(var)


def sensitive_field_regexes(fmt: LogFormat) -> list[tuple[re.Pattern, ...]]:
    """For each sensitive variable (user names, cookies, credentials): regexes locating its
    value (group 1) in a rejected line, built from the format and tried in order: the line as
    the format lays it out; the same anywhere in the line (a syslog or other prefix); the line
    ending inside the value (cut short)."""
    segments = list(fmt.segments)
    out = []
    for target, (kind, name) in enumerate(segments):
        if kind != "var" or not _sensitive(name):
            continue
        parts = []
        for i, (k, text) in enumerate(segments[:target]):
            if k == "lit":
                parts.append(re.escape(text))
            else:
                quoted = i and segments[i - 1][1].endswith('"')
                parts.append(f"(?:{quoted_pattern(fmt.escape) if quoted else VARIABLES.get(text, Variable()).pattern})")
        follow = segments[target + 1][1] if target + 1 < len(segments) and segments[target + 1][0] == "lit" else ""
        prefix = "".join(parts)
        out.append((re.compile("^" + prefix + "(.*?)" + re.escape(follow)),
                    re.compile(prefix + "(.*?)" + re.escape(follow)) if prefix else None,
                    re.compile("^" + prefix + "(.+)$") if follow else None))
    return out


# JSON keys (normalized: lower case, '-' and '.' as '_') whose values identify a person or are
# credentials, besides the secret query parameters of the Scrubber: their values are redacted
# in rejected JSON lines (a JSON log's fields are not at fixed places).
_JSON_PERSONAL_KEYS = frozenset({"remote_user", "clientusername", "username", "user_name", "login_name", "ident",
                                 "e_mail", "request_id", "x_request_id"})
_JSON_PAIR = re.compile(r'"((?:[^"\\]|\\.)*)"(\s*:\s*)'
                        r'("(?:[^"\\]|\\.)*"|\[[^\[\]{}]*\]|\{[^{}]*\}|-?[0-9][0-9.eE+-]*)')


def _json_key_sensitive(key: str, scrubber: Scrubber, mapped: frozenset) -> bool:
    norm = key.lower().replace("-", "_").replace(".", "_")
    last = key.rsplit(".", 1)[-1].lower().replace("-", "_")
    return (key in mapped or norm in _JSON_PERSONAL_KEYS or last in _JSON_PERSONAL_KEYS
            or "cookie" in norm or "authorization" in norm or scrubber.is_secret(last))


def _redact_json_values(line: str, scrubber: Scrubber, mapped: frozenset) -> str:
    def sub(m: re.Match) -> str:
        if _json_key_sensitive(m.group(1), scrubber, mapped):
            return f'"{m.group(1)}"{m.group(2)}"{REDACTED}"'
        if m.group(3).startswith("{"):   # an object of other keys: look inside
            return f'"{m.group(1)}"{m.group(2)}' + _redact_json_values(m.group(3), scrubber, mapped)
        return m.group(0)
    return _JSON_PAIR.sub(sub, line)


def redact_line(line: str, secret: bytes, scrubber: Scrubber, field_res: list[tuple[re.Pattern, ...]],
                strict: bool = False, json_keys: frozenset | None = None, known_users: tuple[str, ...] = ()) -> str:
    """A rejected raw line, safe to store. `strict` (formats logging cookies or credentials):
    every name=value value is redacted too, in case the line is too broken to locate them.
    `json_keys` (JSON formats): values of personal and secret keys are redacted, these keys
    mapped to $remote_user included. `known_users`: the chunk's user names, redacted anywhere."""
    found = []
    for patterns in field_res:
        for field_re in patterns:
            m = field_re and (field_re.match(line) if field_re.pattern.startswith("^") else field_re.search(line))
            if m:
                if m.group(1) not in ("", "-"):
                    found.append(m.group(1))
                    line = line[:m.start(1)] + REDACTED + line[m.end(1):]
                break
    if json_keys is not None:
        line = _redact_json_values(line, scrubber, json_keys)
    # A user name found in its field is redacted wherever else the line shows it (/users/<name>/).
    line = redact_names(line, [*known_users, *found])
    return scrubber.scrub(pseudonymize_ip_tokens(line, secret), all_pairs=strict)


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


def rejects_table(chunk, keystore: Keystore, scrubber: Scrubber, plan: RedactionPlan, now: datetime) -> pa.Table:
    """A RejectChunk -> table with the REJECTS schema plus `_date_us` (partition hint)."""
    hint_us = chunk.date_hint
    if hint_us is None:
        hint_us = int(now.timestamp() * 1_000_000)
    day = datetime.fromtimestamp(hint_us / 1_000_000, tz=timezone.utc).date()
    try:
        _, secret = keystore.key_for_day(day)
    except KeyShreddedError:   # lines next to long-expired rows: file them under today
        hint_us = int(now.timestamp() * 1_000_000)
        _, secret = keystore.key_for_day(now.astimezone(timezone.utc).date())
    n = len(chunk.lines)
    lines = [redact_line(t, secret, scrubber, plan.field_res, plan.strict, plan.json_keys, chunk.known_users)
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
                 now: datetime):
        super().__init__()
        self.keystore, self.scrubber, self.now = keystore, scrubber, now
        self.formats = formats if isinstance(formats, dict) else _AnyKey(formats)

    def expand(self, rejects):
        return rejects | "Redact" >> beam.ParDo(_RedactChunk(self.keystore, self.scrubber, self.formats, self.now))

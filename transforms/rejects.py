"""RedactRejects: raw rejected lines -> `rejects` rows that are safe to store.

Rejects are personal data too (DESIGN.md §1): every IP-looking token becomes
`ip:<pseudonym>` under the key of the chunk's day (so a data-subject export can
find it), the user-name field is redacted when the line still shows it, and
secrets and e-mail addresses are scrubbed like URLs.
"""
from __future__ import annotations

import re
from datetime import datetime, timezone

import apache_beam as beam
import pyarrow as pa

from accesslog.keystore import KeyShreddedError, Keystore
from schemas import REJECTS
from transforms.formats import VARIABLES, LogFormat, Variable, quoted_pattern
from transforms.parse import RecordChunk, _AnyKey
from transforms.pseudonymize import pseudonymize_ip_tokens
from transforms.scrub import REDACTED, Scrubber

SENSITIVE = ("remote_user", "ident", "http_authorization", "http_proxy_authorization", "http_cookie",
             "sent_http_set_cookie")


def _sensitive(var: str) -> bool:
    return var in SENSITIVE or var.startswith("cookie_")


def sensitive_field_regexes(fmt: LogFormat) -> list[re.Pattern]:
    """For each sensitive variable (user names, cookies, credentials): a regex matching
    the start of a line up to that variable's value (group 1), built from the format."""
    segments = list(fmt.segments)
    out = []
    for target, (kind, name) in enumerate(segments):
        if kind != "var" or not _sensitive(name):
            continue
        parts = ["^"]
        for i, (k, text) in enumerate(segments[:target]):
            if k == "lit":
                parts.append(re.escape(text))
            else:
                quoted = i and segments[i - 1][1].endswith('"')
                parts.append(f"(?:{quoted_pattern(fmt.escape) if quoted else VARIABLES.get(text, Variable()).pattern})")
        follow = segments[target + 1][1] if target + 1 < len(segments) and segments[target + 1][0] == "lit" else ""
        out.append(re.compile("".join(parts) + "(.*?)" + re.escape(follow)))
    return out


def redact_line(line: str, secret: bytes, scrubber: Scrubber, field_res: list[re.Pattern],
                strict: bool = False) -> str:
    """A rejected raw line, safe to store. `strict` (formats logging cookies or credentials):
    every name=value value is redacted too, in case the line is too broken to locate them."""
    for field_re in field_res:
        m = field_re.match(line)
        if m and m.group(1) not in ("", "-"):
            line = line[:m.start(1)] + REDACTED + line[m.end(1):]
    return scrubber.scrub(pseudonymize_ip_tokens(line, secret), all_pairs=strict)


def redaction_plan(fmt: LogFormat) -> tuple[tuple, bool]:
    """(regexes of the format's sensitive fields, strict): strict when a field other than
    $remote_user may carry credentials, so every name=value pair of a rejected line is redacted."""
    return sensitive_field_regexes(fmt), any(_sensitive(v) and v != "remote_user" for v in fmt.variables)


def rejects_table(chunk, keystore: Keystore, scrubber: Scrubber, field_res, now: datetime,
                  strict: bool = False) -> pa.Table:
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
    table = pa.table({
        "source": pa.array([chunk.source] * n, pa.string()),
        "source_line": pa.array(chunk.source_lines, pa.int64()),
        "reason": pa.array(chunk.reasons, pa.string()),
        "line": pa.array([redact_line(t, secret, scrubber, field_res, strict) for t in chunk.lines], pa.string()),
    }, schema=REJECTS)
    return table.append_column("_date_us", pa.array([hint_us] * n, pa.int64()))


@beam.typehints.with_output_types(RecordChunk)
class _RedactChunk(beam.DoFn):
    def __init__(self, keystore, scrubber, formats, now):
        self.keystore, self.scrubber, self.formats, self.now = keystore, scrubber, formats, now

    def setup(self):
        self.field_res: dict[str, tuple] = {}

    def process(self, chunk):
        if chunk.lines:
            if chunk.log_format not in self.field_res:
                self.field_res[chunk.log_format] = redaction_plan(self.formats[chunk.log_format])
            field_res, strict = self.field_res[chunk.log_format]
            table = rejects_table(chunk, self.keystore, self.scrubber, field_res, self.now, strict)
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

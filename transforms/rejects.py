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

from accesslog.keystore import Keystore
from schemas import REJECTS
from transforms.formats import VARIABLES, LogFormat, Variable
from transforms.parse import RecordChunk
from transforms.pseudonymize import pseudonymize_ip_tokens
from transforms.scrub import REDACTED, Scrubber


def user_field_regex(fmt: LogFormat) -> re.Pattern | None:
    """Regex matching the start of a line up to the $remote_user value (group 1)."""
    if "remote_user" not in fmt.variables:
        return None
    parts = ["^"]
    # Both `$name` and `${name}` (as transforms.formats accepts them).
    pieces = [("lit", t) if not t.startswith("$") else ("var", t[1:].strip("{}"))
              for t in re.split(r"(\$\{[A-Za-z0-9_]+\}|\$[A-Za-z0-9_]+)", fmt.body) if t]
    for i, (kind, text) in enumerate(pieces):
        if kind == "lit":
            parts.append(re.escape(text))
        elif text == "remote_user":
            follow = pieces[i + 1][1] if i + 1 < len(pieces) and pieces[i + 1][0] == "lit" else ""
            return re.compile("".join(parts) + "(.*?)" + re.escape(follow))
        else:
            parts.append(f"(?:{VARIABLES.get(text, Variable()).pattern})")
    return None


def redact_line(line: str, secret: bytes, scrubber: Scrubber, user_re: re.Pattern | None) -> str:
    if user_re is not None:
        m = user_re.match(line)
        if m and m.group(1) not in ("", "-"):
            line = line[:m.start(1)] + REDACTED + line[m.end(1):]
    return scrubber.scrub(pseudonymize_ip_tokens(line, secret))


def rejects_table(chunk, keystore: Keystore, scrubber: Scrubber, user_re, now: datetime) -> pa.Table:
    """A RejectChunk -> table with the REJECTS schema plus `_date_us` (partition hint)."""
    hint_us = chunk.date_hint
    if hint_us is None:
        hint_us = int(now.timestamp() * 1_000_000)
    day = datetime.fromtimestamp(hint_us / 1_000_000, tz=timezone.utc).date()
    _, secret = keystore.key_for_day(day)
    n = len(chunk.lines)
    table = pa.table({
        "source": pa.array([chunk.source] * n, pa.string()),
        "source_line": pa.array(chunk.source_lines, pa.int64()),
        "reason": pa.array(chunk.reasons, pa.string()),
        "line": pa.array([redact_line(t, secret, scrubber, user_re) for t in chunk.lines], pa.string()),
    }, schema=REJECTS)
    return table.append_column("_date_us", pa.array([hint_us] * n, pa.int64()))


@beam.typehints.with_output_types(RecordChunk)
class _RedactChunk(beam.DoFn):
    def __init__(self, keystore, scrubber, fmt, now):
        self.keystore, self.scrubber, self.fmt, self.now = keystore, scrubber, fmt, now

    def setup(self):
        self.user_re = user_field_regex(self.fmt)

    def process(self, chunk):
        if chunk.lines:
            table = rejects_table(chunk, self.keystore, self.scrubber, self.user_re, self.now)
            yield RecordChunk(chunk.source, chunk.input_id, chunk.first_line, lines=0, records=table)


class RedactRejects(beam.PTransform):
    """RejectChunk -> RecordChunk holding the redacted `rejects` rows; raw lines go no further."""

    def __init__(self, keystore: Keystore, scrubber: Scrubber, fmt: LogFormat, now: datetime):
        super().__init__()
        self.keystore, self.scrubber, self.fmt, self.now = keystore, scrubber, fmt, now

    def expand(self, rejects):
        return rejects | "Redact" >> beam.ParDo(_RedactChunk(self.keystore, self.scrubber, self.fmt, self.now))

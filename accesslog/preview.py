"""`accesslog parse`: run the pipeline's transforms on a few lines and show the result.

The tool a user runs to check a format on ten lines: each input line becomes one
JSON object, the record exactly as the warehouse would hold it (pseudonymized,
scrubbed) or the reason it was rejected, with its line number. No Beam, no
warehouse: the same chunk functions the pipeline's transforms call.
"""
from __future__ import annotations

import itertools
import secrets
from datetime import datetime, timezone
from typing import Iterator

import orjson

from schemas import TABLES
from storage.keystore import Keystore
from transforms.chunks import LogChunk, LogInput, open_input, read_chunks
from transforms.detect import detect, sample_lines
from transforms.enrich import GeoLookup, UserAgentParser, enrich_records
from transforms.error_entries import pseudonymize_errors
from transforms.formats import LogFormat, resolve_format
from transforms.parse import latest_time_us, parse_apart
from transforms.pseudonymize import pseudonymize_records
from transforms.rejects import redaction_plan, rejects_table
from transforms.scrub import Scrubber, scrub_records


def throwaway_keystore() -> Keystore:
    """Keys for a preview when no keystore is given: random, never stored."""
    return Keystore(None, master=secrets.token_hex(32))


def format_for(log_input: LogInput, spec: str, **options) -> LogFormat:
    if spec == "auto":
        spec = detect(sample_lines(log_input), log_input.source).name
    return resolve_format(spec, options.get("nginx_conf"), options.get("field_map"))


def _limited(log_input: LogInput, limit: int | None) -> Iterator[LogChunk]:
    if limit is None:
        yield from read_chunks(log_input)
        return
    lines = []
    with open_input(log_input.path, log_input.gzipped) as f:
        for raw in itertools.islice(f, limit):
            lines.append(raw if raw.endswith(b"\n") else raw + b"\n")
    if lines:
        yield LogChunk(log_input.source, log_input.input_id, 1, b"".join(lines), log_input.log_format)


def preview(log_input: LogInput, fmt: LogFormat, keystore: Keystore, scrubber: Scrubber,
            limit: int | None = None, keep_nulls: bool = False, ip_mode: str = "hmac",
            geo: GeoLookup | None = None) -> Iterator[dict]:
    """One dict per input line, in line order: {"line": n, "record": {...}} or
    {"line": n, "reject": reason, "text": redacted line}."""
    plan = redaction_plan(fmt)
    user_agents = UserAgentParser()
    now = datetime.now(timezone.utc)
    for chunk in _limited(log_input, limit):
        records, rejects = parse_apart(fmt, chunk, latest_time_us(now))   # as the pipeline parses
        if records.table == "errors":
            table = pseudonymize_errors(records.records, keystore, scrubber)
        else:
            table = enrich_records(records.records, geo, user_agents)
            table = pseudonymize_records(scrub_records(table, scrubber), keystore, ip_mode)
        order = {name: i for i, name in enumerate(TABLES[records.table].names)}
        table = table.select(sorted(table.column_names, key=lambda c: order.get(c, len(order))))
        rows = [] if table.num_rows == 0 else table.to_pylist()
        out = [(row["source_line"], {"line": row["source_line"], "record": {
            k: v for k, v in row.items() if k not in ("source", "source_line") and (keep_nulls or v is not None)}})
            for row in rows]
        redacted = rejects_table(rejects, keystore, scrubber, plan, now).to_pydict()
        out += [(n, {"line": n, "reject": reason, "text": text})
                for n, reason, text in zip(redacted["source_line"], redacted["reason"], redacted["line"])]
        for _, item in sorted(out, key=lambda pair: pair[0]):
            yield item


def dumps(item: dict) -> str:
    return orjson.dumps(item, default=str, option=orjson.OPT_NAIVE_UTC | orjson.OPT_UTC_Z).decode()


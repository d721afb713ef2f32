"""Error-log entries: pseudonymize and scrub them, and mark the access rows they belong to.

Policy 6.3 lists "error information of the HTTP transaction" among the data kept.
Error logs go to the `errors` table; `AttachErrors` gives each access row the
number and worst level of the error entries of the same transaction:

* same nginx connection (`*cid` in the error log, `$connection` in the access log)
  while the request was in flight (between received_at - 1 s and responded_at + 1 s);
* or same client pseudonym and request line, logged within a second of the response.

The error side is small (a site logs far fewer errors than requests), so it reaches
every access chunk as a side input; nothing row-level is shuffled.
"""
from __future__ import annotations

import dataclasses
import re
from collections import defaultdict
from datetime import datetime, timezone

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from storage.keystore import Keystore
from transforms.errorlog import SYSLOG_LEVELS
from transforms.parse import RecordChunk
from transforms.pseudonymize import _days, _keyed, ip_pseudonym, pseudonymize_ip_tokens
from transforms.scrub import REDACTED, Scrubber, redact_names

# User names in authentication messages: nginx auth_basic ('user "bob": password mismatch',
# 'user "bob" was not found in "/etc/htpasswd"') and Apache mod_auth_basic ('AH01617: user bob:
# authentication failure for "/": Password Mismatch', 'AH01618: user bob not found: /').
_AUTH_USER = re.compile(r'(\buser ")((?:[^"\\]|\\.)*)(")|(\buser )([^\s":]+)(:? (?:authentication failure|not found))')


def auth_user_names(messages: list[str | None]) -> set[str]:
    """User names the authentication messages among `messages` name."""
    return {m.group(2) or m.group(5) for text in messages if text for m in _AUTH_USER.finditer(text)}


def redact_auth_users(message: str) -> str:
    """An authentication message's user name -> REDACTED, also wherever else the same message shows
    it as a whole word. Only the message itself is looked at: an entry is redacted the same in any
    chunk."""
    names = auth_user_names([message])
    message = _AUTH_USER.sub(lambda m: (m.group(1) + REDACTED + m.group(3)) if m.group(1)
                             else (m.group(4) + REDACTED + m.group(6)), message)
    return redact_names(message, names)


LEVELS = SYSLOG_LEVELS   # most severe first (syslog order, as nginx and Apache use)
_RANK = {level: i for i, level in enumerate(LEVELS)}


def pseudonymize_errors(table: pa.Table, keystore: Keystore, scrubber: Scrubber) -> pa.Table:
    """`_client_ip` -> client_id (key of the entry's day); IPs in the message -> ip:<pseudonym>;
    secrets scrubbed from message, request, referrer and upstream."""
    if table.num_rows == 0:
        return table
    days = _days(table["logged_at"])
    client_id = _keyed(table["_client_ip"], days, keystore, ip_pseudonym) if "_client_ip" in table.column_names \
        else pa.nulls(table.num_rows, pa.string())
    table = table.drop_columns([c for c in table.column_names if c.startswith("_")])
    table = table.append_column("client_id", client_id)
    if "message" in table.column_names:
        # Messages quote addresses anywhere ("connect() to 10.0.0.5:8080 failed"): pseudonymize
        # them under the entry's day key, so a data-subject export can still find them.
        secrets = {int(d): keystore.key_for_day(datetime.fromtimestamp(int(d) * 86400, timezone.utc).date())[1]
                   for d in np.unique(days)}
        messages = table["message"].to_pylist()
        redacted = [None if m is None else
                    scrubber.scrub(pseudonymize_ip_tokens(redact_auth_users(m), secrets[int(d)]), ips=False)
                    for m, d in zip(messages, days.tolist())]
        table = table.set_column(table.column_names.index("message"), "message", pa.array(redacted, pa.string()))
    for name in ("request", "referrer", "upstream", "host", "server"):
        if name in table.column_names:
            table = table.set_column(table.column_names.index(name), name,
                                     scrubber.scrub_column(table[name].combine_chunks()))
    return table


@beam.typehints.with_output_types(RecordChunk)
class _PseudonymizeErrors(beam.DoFn):
    def __init__(self, keystore: Keystore, scrubber: Scrubber):
        self.keystore, self.scrubber = keystore, scrubber

    def process(self, chunk):
        yield dataclasses.replace(chunk, records=pseudonymize_errors(chunk.records, self.keystore, self.scrubber))


class PseudonymizeErrors(beam.PTransform):
    """Error-log RecordChunk with raw `_client_ip` -> pseudonymized, scrubbed `errors` rows."""

    def __init__(self, keystore: Keystore, scrubber: Scrubber):
        super().__init__()
        self.keystore, self.scrubber = keystore, scrubber

    def expand(self, chunks):
        return chunks | "PseudonymizeErrors" >> beam.ParDo(_PseudonymizeErrors(self.keystore, self.scrubber))


def error_keys(chunk) -> list[tuple]:
    """What an errors chunk contributes to the join: (kind, key, time_us, level, entry) tuples;
    an entry with both a connection id and a client + request yields both keys."""
    t = chunk.records
    if t.num_rows == 0:
        return []
    logged = pc.cast(t["logged_at"], pa.int64()).to_pylist()
    levels = t["level"].to_pylist() if "level" in t.column_names else [None] * t.num_rows
    out = []
    conns = t["connection_id"].to_pylist() if "connection_id" in t.column_names else [None] * t.num_rows
    clients = t["client_id"].to_pylist() if "client_id" in t.column_names else [None] * t.num_rows
    requests = t["request"].to_pylist() if "request" in t.column_names else [None] * t.num_rows
    lines = t["source_line"].to_pylist()
    for conn, client, request, when, level, line in zip(conns, clients, requests, logged, levels, lines):
        entry = (chunk.input_id, line)
        if conn is not None:
            out.append(("conn", conn, when, level, entry))
        if client is not None and request:
            out.append(("req", f"{client} {request}", when, level, entry))
    return out


def _request_lines(table: pa.Table) -> pa.Array:
    """Access rows' request line as logged (after scrubbing), to match error entries."""
    def text(name):
        return pc.fill_null(table[name].combine_chunks().cast(pa.string()), "")
    target = pc.if_else(pc.is_null(table["url_query"]), text("url_path"),
                        pc.binary_join_element_wise(text("url_path"), text("url_query"), "?"))
    return pc.binary_join_element_wise(text("client_id"), text("method"), target, text("protocol"), " ")


@dataclasses.dataclass
class ErrorIndex:
    """The run's error entries by connection id and by request line, with the key sets for is_in."""

    by_conn: dict
    by_request: dict
    conn_keys: pa.Array
    request_keys: pa.Array


def index_errors(keys: list[tuple]) -> ErrorIndex:
    """error_keys of the run -> ErrorIndex (built once, used for every access chunk)."""
    by_conn, by_request = defaultdict(list), defaultdict(list)
    for kind, key, when, level, entry in keys:
        (by_conn if kind == "conn" else by_request)[key].append((when, level, entry))
    return ErrorIndex(by_conn, by_request, pa.array(list(by_conn), pa.int64()), pa.array(list(by_request), pa.string()))


def attach_errors(table: pa.Table, keys: list[tuple] | ErrorIndex) -> pa.Table:
    """Set error_count / error_level on the access rows that error entries belong to."""
    n = table.num_rows
    if n == 0 or not keys:
        return table
    index = keys if isinstance(keys, ErrorIndex) else index_errors(keys)
    by_conn, by_request = index.by_conn, index.by_request
    received = pc.cast(table["received_at"], pa.int64()).to_numpy(zero_copy_only=False)
    responded = pc.cast(table["responded_at"], pa.int64()).to_numpy(zero_copy_only=False)
    counts = np.zeros(n, np.int64)
    worst: list[str | None] = [None] * n
    seen: set[tuple] = set()

    def match(rows, keys_of_rows, index):
        for r, key in zip(rows, keys_of_rows):
            for when, level, entry in index.get(key, ()):
                if received[r] - 1_000_000 <= when <= responded[r] + 1_000_000 and (r, entry) not in seen:
                    seen.add((r, entry))
                    counts[r] += 1
                    if level in _RANK and (worst[r] is None or _RANK[level] < _RANK[worst[r]]):
                        worst[r] = level

    if by_conn and "connection_id" in table.column_names:
        conn = table["connection_id"].combine_chunks()
        hit = pc.fill_null(pc.is_in(conn, index.conn_keys), False)
        rows = np.flatnonzero(hit.to_numpy(zero_copy_only=False))
        match(rows, conn.take(pa.array(rows)).to_pylist(), by_conn)
    if by_request:
        lines = _request_lines(table)
        hit = pc.fill_null(pc.is_in(lines, index.request_keys), False)
        rows = np.flatnonzero(hit.to_numpy(zero_copy_only=False))
        match(rows, lines.take(pa.array(rows)).to_pylist(), by_request)
    found = counts > 0
    table = table.drop_columns([c for c in ("error_count", "error_level") if c in table.column_names])
    table = table.append_column("error_count", pa.array(np.where(found, counts, 0), pa.int64(), mask=~found))
    return table.append_column("error_level", pa.array(worst, pa.string()))


@beam.typehints.with_output_types(RecordChunk)
class _AttachErrors(beam.DoFn):
    def setup(self):
        self._keys, self._index = None, None

    def process(self, chunk, keys):
        if keys:
            if keys is not self._keys:   # the side input is the same object for every chunk
                self._keys, self._index = keys, index_errors(keys)
            chunk = dataclasses.replace(chunk, records=attach_errors(chunk.records, self._index))
        yield chunk


class AttachErrors(beam.PTransform):
    """Access RecordChunks + the run's error entries -> access rows with error_count/error_level."""

    def __init__(self, errors):
        super().__init__()
        self.errors = errors

    def expand(self, chunks):
        keys = self.errors | "ErrorKeys" >> beam.FlatMap(error_keys)
        return chunks | "Attach" >> beam.ParDo(_AttachErrors(), keys=beam.pvalue.AsList(keys))


"""ParseAccessLogs: LogChunk -> RecordChunk (Arrow records) + RejectChunk (dead letters).

Each chunk is split into fields by Arrow's CSV tokenizer when the format allows
(see transforms.formats); lines the tokenizer cannot split go through the
format's line regex; lines neither accepts, and lines whose values fail type
checks, are rejected with a reason. Every line of the chunk ends up in exactly
one of records or rejects.
"""
from __future__ import annotations

import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
from apache_beam.utils.windowed_value import WindowedValue

from transforms.chunks import LogChunk
from transforms.coders import register
from transforms.fields import build_records
from transforms.formats import LogFormat


@dataclass
class RecordChunk:
    """Parsed rows of one chunk. `records` may hold in-memory-only `_` columns."""

    source: str
    input_id: str
    first_line: int
    lines: int                # lines read in this chunk
    records: pa.Table         # includes source_line
    rejected: int = 0
    expired: int = 0
    seconds: float = 0.0
    counts: dict = field(default_factory=dict)

    @property
    def nbytes(self) -> int:
        return self.records.nbytes


@dataclass
class RejectChunk:
    """Rejected lines of one chunk: raw until RedactRejects has run."""

    source: str
    input_id: str
    first_line: int
    source_lines: list[int]
    reasons: list[str]
    lines: list[str]
    date_hint: int | None = None   # µs timestamp of a parsed row near these lines

    @property
    def nbytes(self) -> int:
        return sum(len(t) for t in self.lines)


register(RecordChunk, RejectChunk)


def _line_bounds(data: bytes) -> tuple[np.ndarray, np.ndarray]:
    """Start and end (exclusive, without newline) byte offsets of each line."""
    newlines = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == 10)
    ends = newlines
    if not data.endswith(b"\n") and data:
        ends = np.append(newlines, len(data))
    starts = np.concatenate(([0], newlines[:len(ends) - 1] + 1)) if len(ends) else np.zeros(0, np.int64)
    return starts.astype(np.int64), ends.astype(np.int64)


def _read_tokens(fmt: LogFormat, data: bytes) -> tuple[pa.Table, list[int]]:
    """Arrow CSV tokenizer over whole lines -> (table, 1-based numbers of rows it skipped)."""
    invalid: list[int] = []

    def on_invalid(row):
        invalid.append(row.number)
        return "skip"

    names = [f"c{i}" for i in range(fmt.csv_width)]
    table = pcsv.read_csv(
        pa.py_buffer(data),
        read_options=pcsv.ReadOptions(column_names=names, use_threads=False, block_size=len(data) + 1),
        parse_options=pcsv.ParseOptions(delimiter=" ", quote_char='"', escape_char=False, double_quote=False,
                                        newlines_in_values=False, ignore_empty_lines=False,
                                        invalid_row_handler=on_invalid),
        convert_options=pcsv.ConvertOptions(column_types={c: pa.string() for c in names},
                                            strings_can_be_null=False, quoted_strings_can_be_null=False),
    )
    return table, invalid


def _odd_quote_lines(data: bytes, starts: np.ndarray) -> np.ndarray:
    """Lines with an odd number of '"' (truncated lines): the tokenizer would run past them."""
    quotes = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == 34)
    per_line = np.bincount(np.searchsorted(starts, quotes, side="right") - 1, minlength=len(starts))
    return per_line % 2 == 1


def _tokenize(fmt: LogFormat, data: bytes, starts: np.ndarray,
              ends: np.ndarray) -> tuple[dict[str, pa.Array], np.ndarray, np.ndarray]:
    """CSV fast path -> (fields per tokenized row, their line indexes, rows to redo by regex).

    Rows that split into the right number of tokens but fail a literal/prefix check
    are returned too (filtering every column costs more than dropping them later).
    """
    n_lines = len(starts)
    odd = _odd_quote_lines(data, starts)
    if odd.any():
        # A truncated line with an unbalanced quote would make the tokenizer swallow the
        # next lines. Blank such lines out (same length, so positions hold): the tokenizer
        # reports them invalid and the regex path sees their original text.
        buf = bytearray(data)
        for i in np.flatnonzero(odd).tolist():
            buf[starts[i]:ends[i]] = b"\x01" * int(ends[i] - starts[i])
        data = bytes(buf)
    table, invalid = _read_tokens(fmt, data)
    if table.num_rows + len(invalid) != n_lines or None in invalid:
        return {}, np.zeros(0, np.int64), np.zeros(0, bool)   # cannot map rows to lines: regex path
    names = table.column_names
    keep = np.ones(n_lines, dtype=bool)
    if invalid:
        keep[np.asarray(invalid, dtype=np.int64) - 1] = False
    rows = np.flatnonzero(keep)
    ok = np.ones(len(rows), dtype=bool)
    fields: dict[str, pa.Array] = {}
    i = 0
    for col in fmt.columns:
        parts = [table.column(c).combine_chunks() for c in names[i:i + col.width]]
        i += col.width
        value = parts[0] if len(parts) == 1 else pc.binary_join_element_wise(*parts, " ")
        if col.literal is not None:
            ok &= pc.equal(value, col.literal).to_numpy(zero_copy_only=False)
        elif col.regex is not None:
            groups = pc.extract_regex(value, col.regex)
            ok &= groups.is_valid().to_numpy(zero_copy_only=False)
            for g, var in enumerate(col.group_vars):
                fields.setdefault(var, pc.fill_null(pc.struct_field(groups, f"g{g}"), ""))
        elif col.prefix or col.suffix:
            ok &= pc.and_(pc.starts_with(value, col.prefix),
                          pc.ends_with(value, col.suffix)).to_numpy(zero_copy_only=False)
            fields.setdefault(col.var, pc.utf8_slice_codeunits(value, len(col.prefix),
                                                               -len(col.suffix) or None))
        else:
            fields.setdefault(col.var, value)
    return fields, rows, ~ok


def _regex_parse(fmt: LogFormat, texts: list[str]) -> tuple[list[tuple], list[int]]:
    """Slow path: per-line regex -> (group tuples, indexes into texts that matched)."""
    match = fmt.line_regex.match
    groups, matched = [], []
    for i, text in enumerate(texts):
        m = match(text)
        if m:
            groups.append(m.groups())
            matched.append(i)
    return groups, matched


@dataclass
class Tokenized:
    """A chunk after the (GIL-free, mostly) tokenizer stage; see tokenize_chunk."""

    chunk: LogChunk
    data: bytes                # UTF-8, LF line ends
    starts: np.ndarray
    ends: np.ndarray
    fields: dict
    rows: np.ndarray           # line index of each tokenized row
    redo: np.ndarray           # tokenized rows the regex path must parse again
    seconds: float

    def line(self, i: int) -> str:
        return self.data[self.starts[i]:self.ends[i]].decode("utf-8")


def tokenize_chunk(fmt: LogFormat, chunk: LogChunk) -> Tokenized:
    """Stage 1: normalize bytes, find lines, split fields with the CSV tokenizer."""
    started = time.perf_counter()
    data = chunk.data
    if not data.isascii():
        # Arrow strings must be UTF-8: invalid bytes become U+FFFD, never a crash.
        data = data.decode("utf-8", "replace").encode("utf-8")
    if b"\r" in data:
        data = data.replace(b"\r\n", b"\n")
    starts, ends = _line_bounds(data)
    if fmt.columns is not None and b"\r" not in data and len(starts):
        fields, rows, redo = _tokenize(fmt, data, starts, ends)
    else:
        fields, rows, redo = {}, np.zeros(0, np.int64), np.zeros(0, bool)
    return Tokenized(chunk, data, starts, ends, fields, rows, redo, time.perf_counter() - started)


def _regex_rows(fmt: LogFormat, tok: Tokenized) -> tuple[list[int], list[str]]:
    """Stage 2a: lines the tokenizer left go through the line regex; returns the rejects."""
    n_lines = len(tok.starts)
    leftover = np.union1d(np.setdiff1d(np.arange(n_lines), tok.rows, assume_unique=True), tok.rows[tok.redo])
    reject_rows, reject_reasons = [], []
    if not len(leftover):
        return reject_rows, reject_reasons
    texts = [tok.line(i) for i in leftover]
    groups, matched = _regex_parse(fmt, texts)
    matched_set = set(matched)
    for j, i in enumerate(leftover):
        if j not in matched_set:
            reject_rows.append(int(i))
            reject_reasons.append("empty line" if not texts[j].strip()
                                  else f"line does not match log format '{fmt.name}'")
    if groups:
        columns = list(zip(*groups))
        slow: dict[str, pa.Array] = {}
        for g, var in enumerate(fmt.group_vars):
            slow.setdefault(var, pa.array(columns[g], pa.string()))
        tok.fields = {k: pa.concat_arrays([tok.fields[k], slow[k]]) for k in tok.fields} if tok.fields else slow
        tok.rows = np.concatenate([tok.rows, leftover[np.asarray(matched, dtype=np.int64)]])
        tok.redo = np.concatenate([tok.redo, np.zeros(len(matched), bool)])
    return reject_rows, reject_reasons


def finish_chunk(fmt: LogFormat, tok: Tokenized) -> tuple[RecordChunk, RejectChunk]:
    """Stage 2: regex path, typed columns, rejects -> (records with source_line, raw rejects)."""
    started = time.perf_counter()
    chunk = tok.chunk
    reject_rows, reject_reasons = _regex_rows(fmt, tok)
    rows, n = tok.rows, len(tok.rows)
    records = pa.table({})
    if n:
        columns, reasons = build_records(tok.fields, n)
        bad = (reasons != None) & ~tok.redo  # noqa: E711 (redo rows were parsed again by regex)
        for r in np.flatnonzero(bad):
            reject_rows.append(int(rows[r]))
            reject_reasons.append(reasons[r])
        columns["source"] = pc.fill_null(pa.nulls(n, pa.string()), chunk.source)
        columns["source_line"] = pa.array(rows + chunk.first_line, pa.int64())
        records = pa.table(columns)
        drop = bad | tok.redo
        if drop.any():
            records = records.filter(pa.array(~drop))
    date_hint = pc.min(records["received_at"]).value if records.num_rows else None
    order = np.argsort(reject_rows, kind="stable")
    rejects = RejectChunk(
        chunk.source, chunk.input_id, chunk.first_line,
        source_lines=[reject_rows[k] + chunk.first_line for k in order],
        reasons=[reject_reasons[k] for k in order],
        lines=[tok.line(reject_rows[k]) for k in order],
        date_hint=date_hint)
    result = RecordChunk(chunk.source, chunk.input_id, chunk.first_line, lines=len(tok.starts),
                         records=records, rejected=len(reject_rows),
                         seconds=tok.seconds + time.perf_counter() - started)
    return result, rejects


def parse_chunk(fmt: LogFormat, chunk: LogChunk) -> tuple[RecordChunk, RejectChunk]:
    """Parse one chunk. Returns records (with `source_line`) and rejects (raw lines)."""
    return finish_chunk(fmt, tokenize_chunk(fmt, chunk))


@beam.typehints.with_output_types(RecordChunk)
class _ParseChunk(beam.DoFn):
    """Tokenizes chunk k+1 in a background thread (Arrow's CSV reader releases the GIL)
    while chunk k goes through the Python-heavy stages; results lag by one chunk."""

    def __init__(self, fmt: LogFormat):
        self.fmt = fmt

    def setup(self):
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tokenizer")

    def start_bundle(self):
        self.pending = deque()

    def _emit(self):
        future, timestamp, window = self.pending.popleft()
        records, rejects = finish_chunk(self.fmt, future.result())
        yield WindowedValue(records, timestamp, [window])
        # Always emitted, even empty: downstream counts lines per input from both.
        yield beam.pvalue.TaggedOutput("rejects", WindowedValue(rejects, timestamp, [window]))

    def process(self, chunk: LogChunk, timestamp=beam.DoFn.TimestampParam, window=beam.DoFn.WindowParam):
        self.pending.append((self.pool.submit(tokenize_chunk, self.fmt, chunk), timestamp, window))
        if len(self.pending) > 1:
            yield from self._emit()

    def finish_bundle(self):
        while self.pending:
            yield from self._emit()

    def teardown(self):
        self.pool.shutdown(wait=True)


class ParseAccessLogs(beam.PTransform):
    """LogChunk -> outputs `records` (RecordChunk) and `rejects` (RejectChunk)."""

    def __init__(self, fmt: LogFormat):
        super().__init__()
        self.fmt = fmt

    def expand(self, chunks):
        return chunks | "Parse" >> beam.ParDo(_ParseChunk(self.fmt)).with_outputs("rejects", main="records")

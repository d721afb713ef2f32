"""ParseAccessLogs: LogChunk -> RecordChunk (Arrow records) + RejectChunk (dead letters).

Each chunk is split into fields by Arrow's CSV tokenizer when the format allows
(see transforms.formats); lines the tokenizer cannot split go through the
format's line regex; lines neither accepts, and lines whose values fail type
checks, are rejected with a reason. Every line of the chunk ends up in exactly
one of records or rejects.
"""
from __future__ import annotations

import codecs
import functools
import logging
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
from apache_beam.utils.windowed_value import WindowedValue

from transforms.chunks import LogChunk
from transforms.coders import register
from transforms.errorlog import parse_error_chunk
from transforms.fields import FieldOptions, build_records, client_key, map_unique
from transforms.formats import TRAILING, TRUNCATED, LogFormat, matched_fields
from transforms.jsonlog import parse_json_chunk
from transforms.lines import MAX_LINE_BYTES, TOO_LONG, text_lines

# Why a line is rejected with --strict that would otherwise be kept and marked.
STRICT_TRAILING = "fields after the log format (--strict)"
STRICT_TRUNCATED = "line ends inside a quoted field (--strict)"


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
    table: str = "access"     # which warehouse table the records belong to
    continued: int = 0        # lines folded into the previous entry (multi-line error entries)

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
    log_format: str = ""

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


def _regex_only_lines(data: bytes, starts: np.ndarray, ends: np.ndarray, escape: str) -> np.ndarray:
    """Lines the tokenizer would misread: an odd number of '"' (truncated lines; the
    tokenizer would run past them), any escaped quote \\" (Apache, escape=json, and Apache
    lines read with an nginx preset; the tokenizer would end the field there), a carriage
    return that ends no line (disk or rotation damage; the tokenizer would end the row there) and
    a NUL (a crash's preallocated tail; Arrow's tokenizer can then merge it with the next line).
    Only these lines go to the line regex: a damaged line costs only itself."""
    raw = np.frombuffer(data, dtype=np.uint8)
    quotes = np.flatnonzero(raw == 34)
    flagged = np.diff(np.searchsorted(quotes, starts), append=len(quotes)) % 2 == 1
    if escape != "none" and len(quotes):
        escaped = quotes[(quotes > 0) & (raw[np.maximum(quotes - 1, 0)] == 92)]
        flagged[np.searchsorted(starts, escaped, side="right") - 1] = True
    for control in (b"\r", b"\x00"):
        at, found = data.find(control), 0
        while at >= 0:   # few such lines: find them line by line, not by a scan of the chunk
            line = int(np.searchsorted(starts, at, side="right")) - 1
            if at >= ends[line]:   # the CR of a CR LF line end
                at = data.find(control, at + 1)
                continue
            flagged[line] = True
            found += 1
            if found == _FIND_LINES:   # many: one scan of the chunk finds the rest
                at = np.flatnonzero(raw == control[0])
                lines = np.searchsorted(starts, at, side="right") - 1
                flagged[lines[at < ends[lines]]] = True
                break
            at = data.find(control, int(starts[line + 1])) if line + 1 < len(starts) else -1
    return flagged


_FIND_LINES = 64


def _before_crlf(data: bytes, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Line ends that leave out the CR of a CR LF (Arrow's tokenizer reads CR LF as one line end,
    so CRLF logs and lines need no rewriting)."""
    raw = np.frombuffer(data, dtype=np.uint8)
    crlf = (ends < len(data)) & (ends > starts) & (raw[np.maximum(ends - 1, 0)] == 13)
    return ends - crlf


def invalid_utf8_lines(data: bytes, starts: np.ndarray) -> list[int]:
    """Indexes of the lines holding bytes that are not UTF-8 (Arrow strings must be UTF-8). After
    the first one the rest is checked in windows of whole lines, so a chunk is decoded about once
    whatever the number of bad lines, and nothing is copied."""
    try:
        data.decode("utf-8")
        return []
    except UnicodeDecodeError as e:
        pos = data.rfind(b"\n", 0, e.start) + 1   # the first bad line: all before it is valid
    view, size, bad_lines = memoryview(data), len(data), []
    while pos < size:
        stop = data.find(b"\n", min(pos + UTF8_WINDOW, size))
        stop = size if stop < 0 else stop + 1
        try:
            codecs.utf_8_decode(view[pos:stop], "strict", True)
            pos = stop
            continue
        except UnicodeDecodeError as e:
            bad = pos + e.start
        bad_lines.append(int(np.searchsorted(starts, bad, side="right")) - 1)
        end = data.find(b"\n", bad)
        pos = size if end < 0 else end + 1
    return bad_lines


UTF8_WINDOW = 1 << 16


_SCRATCH = threading.local()


def _blanked(data: bytes, starts: np.ndarray, ends: np.ndarray, lines: list[int]) -> memoryview:
    """`data` with `lines` overwritten by \\x01, in a buffer this thread reuses: Arrow's tokenizer
    copies what it keeps, and a fresh 8 MiB buffer per chunk cost ~2,000 page faults each."""
    scratch = getattr(_SCRATCH, "buffer", None)
    if scratch is None or len(scratch) < len(data):
        scratch = _SCRATCH.buffer = bytearray(len(data))
    view = memoryview(scratch)[:len(data)]
    view[:] = data
    for i in lines:
        view[starts[i]:ends[i]] = b"\x01" * int(ends[i] - starts[i])
    return view


def _tokenize(fmt: LogFormat, data: bytes, starts: np.ndarray,
              ends: np.ndarray) -> tuple[dict[str, pa.Array], np.ndarray, np.ndarray]:
    """CSV fast path -> (fields per tokenized row, their line indexes, rows to redo by regex).

    Rows that split into the right number of tokens but fail a literal/prefix check
    are returned too (filtering every column costs more than dropping them later).
    """
    n_lines = len(starts)
    odd = _regex_only_lines(data, starts, ends, fmt.escape) | (ends - starts > MAX_LINE_BYTES)
    if not data.isascii():
        odd[invalid_utf8_lines(data, starts)] = True
    if odd.any():
        # A truncated line with an unbalanced quote would make the tokenizer swallow the
        # next lines, and Arrow refuses bytes that are not UTF-8. Blank such lines out (same
        # length, so positions hold): the tokenizer reports them invalid and the regex path
        # sees their original text (invalid bytes read as U+FFFD).
        data = _blanked(data, starts, ends, np.flatnonzero(odd).tolist())
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


def _regex_parse(fmt: LogFormat, texts: list[str]) -> tuple[list[tuple], list[int], list[tuple[int, dict]]]:
    """Slow path: per-line regex -> (group tuples, the last one TRAILING, indexes into texts that
    matched, and the lines cut off inside a quoted field as (index, {variable: value}))."""
    exact = fmt.line_regex.match if fmt.escape == "none" else None   # see formats._line_regex
    match = fmt.trailing_regex.match
    groups, matched, cut = [], [], []
    for i, text in enumerate(texts):
        m = exact(text) if exact else None
        if m:
            groups.append(m.groups() + (None,))
            matched.append(i)
            continue
        m = match(text)
        if m:
            groups.append(m.groups())
            matched.append(i)
            continue
        for regex, group_vars, cut_var in fmt.cut_regexes:
            m = regex.match(text)
            if m:
                cut.append((i, {**matched_fields(group_vars, m), TRUNCATED: cut_var}))
                break
    return groups, matched, cut


def _columns_of_groups(fmt: LogFormat, groups: list[tuple]) -> dict[str, pa.Array]:
    """Group tuples -> one string column per variable (a variable with two groups, quoted or bare
    '-', takes whichever matched)."""
    columns = list(zip(*groups))
    out: dict[str, pa.Array] = {}
    for g, var in enumerate(fmt.group_vars + (TRAILING,)):
        values = pa.array(columns[g], pa.string())
        out[var] = pc.coalesce(out[var], values) if var in out else values
    if TRAILING in out and out[TRAILING].null_count == len(out[TRAILING]):
        del out[TRAILING]   # as the tokenizer's rows: a field no line has is no column
    return out


def _concat_fields(first: dict[str, pa.Array], n_first: int, second: dict[str, pa.Array],
                   n_second: int) -> dict[str, pa.Array]:
    """Two field sets of the same format -> one; a field only one of them has (an `extra:` one) is
    null in the other's rows."""
    def column(fields, name, n):
        return fields[name] if name in fields else pa.nulls(n, pa.string())
    names = list(dict.fromkeys([*first, *second]))
    return {name: pa.concat_arrays([column(first, name, n_first), column(second, name, n_second)])
            for name in names}


@dataclass
class Tokenized:
    """A chunk after the (GIL-free, mostly) tokenizer stage; see tokenize_chunk."""

    chunk: LogChunk
    data: bytes                # as read (a CR LF's CR is outside its line; bytes that are not UTF-8 read as U+FFFD)
    starts: np.ndarray
    ends: np.ndarray
    fields: dict
    rows: np.ndarray           # line index of each tokenized row
    redo: np.ndarray           # tokenized rows the regex path must parse again
    seconds: float
    too_long: np.ndarray       # line indexes rejected by length, before any regex

    def line(self, i: int) -> str:
        return self.data[self.starts[i]:self.ends[i]].decode("utf-8", "replace")


def tokenize_chunk(fmt: LogFormat, chunk: LogChunk) -> Tokenized:
    """Stage 1: normalize bytes, find lines, split fields with the CSV tokenizer."""
    started = time.perf_counter()
    data = chunk.data
    if chunk.first_line == 1 and data.startswith(b"\xef\xbb\xbf"):   # a UTF-8 byte-order mark
        data = data[3:]
    starts, ends = _line_bounds(data)
    if b"\r" in data:
        ends = _before_crlf(data, starts, ends)
    if fmt.columns is not None and len(starts):
        fields, rows, redo = _tokenize(fmt, data, starts, ends)
    else:
        fields, rows, redo = {}, np.zeros(0, np.int64), np.zeros(0, bool)
    too_long = np.flatnonzero(ends - starts > MAX_LINE_BYTES)
    return Tokenized(chunk, data, starts, ends, fields, rows, redo, time.perf_counter() - started, too_long)


def _regex_rows(fmt: LogFormat, tok: Tokenized) -> tuple[list[int], list[str]]:
    """Stage 2a: lines the tokenizer left go through the line regex; returns the rejects.
    Lines with fields after the format, and lines cut off inside a quoted field, are kept and
    marked (TRAILING, TRUNCATED), or rejected with `strict`."""
    n_lines = len(tok.starts)
    leftover = np.union1d(np.setdiff1d(np.arange(n_lines), tok.rows, assume_unique=True), tok.rows[tok.redo])
    reject_rows, reject_reasons = tok.too_long.tolist(), [TOO_LONG] * len(tok.too_long)
    leftover = np.setdiff1d(leftover, tok.too_long, assume_unique=True)
    if not len(leftover):
        return reject_rows, reject_reasons
    texts = [tok.line(i) for i in leftover]
    groups, matched, cut = _regex_parse(fmt, texts)
    marked: list[tuple[int, str]] = []
    if fmt.options.get("strict", False):   # only the configured format, whole
        extended = [k for k, g in enumerate(groups) if g[-1]]
        marked = [(matched[k], STRICT_TRAILING) for k in extended] + [(j, STRICT_TRUNCATED) for j, _ in cut]
        for j, reason in marked:
            reject_rows.append(int(leftover[j]))
            reject_reasons.append(reason)
        keep = sorted(set(range(len(groups))) - set(extended))
        groups, matched, cut = [groups[k] for k in keep], [matched[k] for k in keep], []
    parsed = set(matched) | {j for j, _ in cut} | {j for j, _ in marked}
    for j, i in enumerate(leftover):
        if j not in parsed:
            reject_rows.append(int(i))
            reject_reasons.append("empty line" if not texts[j].strip()
                                  else f"line does not match log format '{fmt.name}'")
    slow: dict[str, pa.Array] = _columns_of_groups(fmt, groups) if groups else {}
    if cut:   # a variable the cut line does not reach is missing: '-', as the server writes "none"
        cut_fields = {var: pa.array([values.get(var, "-") for _, values in cut], pa.string())
                      for var in fmt.variables}
        cut_fields[TRUNCATED] = pa.array([values[TRUNCATED] for _, values in cut], pa.string())
        slow = _concat_fields(slow, len(groups), cut_fields, len(cut)) if slow else cut_fields
        matched = matched + [j for j, _ in cut]
    if matched:
        n_fast = len(tok.rows)
        tok.fields = _concat_fields(tok.fields, n_fast, slow, len(matched)) if tok.fields else slow
        tok.rows = np.concatenate([tok.rows, leftover[np.asarray(matched, dtype=np.int64)]])
        tok.redo = np.concatenate([tok.redo, np.zeros(len(matched), bool)])
    return reject_rows, reject_reasons


def field_options(fmt: LogFormat, latest_us: int | None = None) -> FieldOptions:
    return FieldOptions(escape=fmt.escape, time_role=fmt.time_role, time_format=fmt.time_format,
                        zone=fmt.options.get("zone", timezone.utc),
                        trusted_proxies=fmt.options.get("trusted_proxies", ()), latest_us=latest_us)


HORIZON = timedelta(days=1)   # a time later than now + HORIZON is no time a server logged yet


def latest_time_us(now: datetime | None) -> int:
    """The horizon for `now` (None: the clock) in µs UTC: later times are rejected, so a
    mistyped year cannot open a partition that no retention window ever reaches."""
    now = now if now is not None else datetime.now(timezone.utc)
    return int((now + HORIZON).timestamp() * 1_000_000)


def _typed(fields: dict, rows: np.ndarray, skip: np.ndarray, chunk: LogChunk, opts: FieldOptions,
           reject_rows: list[int], reject_reasons: list[str]) -> pa.Table:
    """Field strings of `rows` -> access records; type failures are appended to the rejects.
    Rows flagged in `skip` are dropped without a reject (the regex path parsed them again)."""
    n = len(rows)
    if not n:
        return pa.table({})
    columns, reasons = build_records(fields, n, opts)
    bad = (reasons != None) & ~skip  # noqa: E711
    for r in np.flatnonzero(bad):
        reject_rows.append(int(rows[r]))
        reject_reasons.append(reasons[r])
    columns["source"] = pa.DictionaryArray.from_arrays(pa.array(np.zeros(n, np.int32)), pa.array([chunk.source]))
    columns["source_line"] = pa.array(rows + chunk.first_line, pa.int64())
    records = pa.table(columns)
    drop = bad | skip
    return records.filter(pa.array(~drop)) if drop.any() else records


def _rejects(chunk: LogChunk, rows: list[int], reasons: list[str], line) -> RejectChunk:
    order = np.argsort(rows, kind="stable")
    return RejectChunk(chunk.source, chunk.input_id, chunk.first_line,
                       source_lines=[rows[k] + chunk.first_line for k in order],
                       reasons=[reasons[k] for k in order], lines=[line(rows[k]) for k in order],
                       log_format=chunk.log_format)


def finish_chunk(fmt: LogFormat, tok: Tokenized, latest_us: int | None = None) -> tuple[RecordChunk, RejectChunk]:
    """Stage 2: regex path, typed columns, rejects -> (records with source_line, raw rejects)."""
    started = time.perf_counter()
    reject_rows, reject_reasons = _regex_rows(fmt, tok)
    records = _typed(tok.fields, tok.rows, tok.redo, tok.chunk, field_options(fmt, latest_us), reject_rows,
                     reject_reasons)
    chunk = tok.chunk
    result = RecordChunk(chunk.source, chunk.input_id, chunk.first_line, lines=len(tok.starts),
                         records=records, rejected=len(reject_rows),
                         seconds=tok.seconds + time.perf_counter() - started)
    return result, _rejects(chunk, reject_rows, reject_reasons, tok.line)


def parse_json(fmt: LogFormat, chunk: LogChunk, latest_us: int | None = None) -> tuple[RecordChunk, RejectChunk]:
    """JSON-lines access logs (orjson) -> the same records as text formats."""
    started = time.perf_counter()
    fields, rows, rejects, extra = parse_json_chunk(chunk, fmt.options.get("field_map"))
    lines = text_lines(chunk.data)
    reject_rows = [i for i, _ in rejects]
    reject_reasons = [r for _, r in rejects]
    # Unmapped keys travel as "extra:<key>" so they can never be taken for a variable.
    fields = {**{f"extra:{k}": v for k, v in extra.items()}, **fields}
    records = _typed(fields, np.asarray(rows, np.int64), np.zeros(len(rows), bool), chunk,
                     field_options(fmt, latest_us), reject_rows, reject_reasons)
    result = RecordChunk(chunk.source, chunk.input_id, chunk.first_line, lines=len(lines), records=records,
                         rejected=len(reject_rows), seconds=time.perf_counter() - started)
    return result, _rejects(chunk, reject_rows, reject_reasons, lines.__getitem__)


def parse_error_log(fmt: LogFormat, chunk: LogChunk, latest_us: int | None = None
                    ) -> tuple[RecordChunk, RejectChunk]:
    """nginx / Apache error logs -> `errors` records (multi-line entries folded)."""
    started = time.perf_counter()
    columns, rejects = parse_error_chunk(fmt.kind, chunk, tz=fmt.options.get("zone", timezone.utc),
                                         latest_us=latest_us)
    lines = text_lines(chunk.data)
    n = len(columns["source_line"]) if "source_line" in columns else 0
    consumed = int(pc.sum(columns["lines"]).as_py() or 0) if n and "lines" in columns else n
    columns = {k: v for k, v in columns.items() if k != "lines"}
    if n and "_client_ip" in columns:   # "client: <anything>": an address, a host name or nothing
        columns["_client_ip"] = map_unique(columns["_client_ip"], functools.partial(client_key, names=True))
    records = pa.table(columns) if n else pa.table({})
    if n:
        records = records.append_column("source", pa.DictionaryArray.from_arrays(
            pa.array(np.zeros(n, np.int32)), pa.array([chunk.source])))
    result = RecordChunk(chunk.source, chunk.input_id, chunk.first_line, lines=len(lines), records=records,
                         rejected=len(rejects), seconds=time.perf_counter() - started, table="errors",
                         continued=consumed - n)
    return result, _rejects(chunk, [i for i, _ in rejects], [r for _, r in rejects], lines.__getitem__)


def unreadable_chunk(chunk: LogChunk) -> tuple[RecordChunk, RejectChunk]:
    """The rest of an input that could not be read: one dead letter saying so."""
    records = RecordChunk(chunk.source, chunk.input_id, chunk.first_line, lines=1, records=pa.table({}),
                          rejected=1)
    return records, RejectChunk(chunk.source, chunk.input_id, chunk.first_line, [chunk.first_line],
                                [chunk.error], [""], log_format=chunk.log_format)


def parse_chunk(fmt: LogFormat, chunk: LogChunk, latest_us: int | None = None) -> tuple[RecordChunk, RejectChunk]:
    """Parse one chunk. Returns records (with `source_line`) and rejects (raw lines). Times after
    `latest_us` (see latest_time_us) are rejected."""
    if chunk.error:
        return unreadable_chunk(chunk)
    if fmt.kind == "json":
        return parse_json(fmt, chunk, latest_us)
    if fmt.kind in ("nginx_error", "apache_error"):
        return parse_error_log(fmt, chunk, latest_us)
    return finish_chunk(fmt, tokenize_chunk(fmt, chunk), latest_us)


def _stage1(fmt: LogFormat, chunk: LogChunk, latest_us: int | None):
    if fmt.kind in ("nginx", "apache") and not chunk.error:
        return tokenize_chunk(fmt, chunk)
    return parse_chunk(fmt, chunk, latest_us)


def _stage2(fmt: LogFormat, staged, latest_us: int | None):
    return finish_chunk(fmt, staged, latest_us) if isinstance(staged, Tokenized) else staged


# -- the last line of defence: one line's value never stops a run ------------------------------


def _merged(chunk: LogChunk, parts: list[tuple[RecordChunk, RejectChunk]]) -> tuple[RecordChunk, RejectChunk]:
    tables = [pa.table({name: column.cast(column.type.value_type) if pa.types.is_dictionary(column.type)
                        else column for name, column in zip(r.records.column_names, r.records.columns)})
              for r, _ in parts if r.records.num_rows]   # one part's column may be encoded, another's not
    records = pa.concat_tables(tables, promote_options="permissive") if tables else pa.table({})
    first = parts[0][0]
    result = RecordChunk(chunk.source, chunk.input_id, chunk.first_line, lines=sum(r.lines for r, _ in parts),
                         records=records, rejected=sum(r.rejected for r, _ in parts),
                         seconds=sum(r.seconds for r, _ in parts), table=first.table,
                         continued=sum(r.continued for r, _ in parts))
    rejects = RejectChunk(chunk.source, chunk.input_id, chunk.first_line,
                          source_lines=[n for _, j in parts for n in j.source_lines],
                          reasons=[x for _, j in parts for x in j.reasons],
                          lines=[t for _, j in parts for t in j.lines],
                          log_format=chunk.log_format)
    return result, rejects


def parse_apart(fmt: LogFormat, chunk: LogChunk, latest_us: int | None) -> tuple[RecordChunk, RejectChunk]:
    """A chunk whose parse raised: halve it until the line that raises stands alone, and file that
    line as a reject (reason: the exception type only, never its message, which may quote the
    value). Every other line is parsed as usual. Only a bug of ours gets here; the log says so."""
    lines = chunk.data.split(b"\n")
    if lines and not lines[-1]:
        lines.pop()
    try:
        return parse_chunk(fmt, chunk, latest_us)
    except Exception as error:   # noqa: BLE001 - any single line may only ever become a reject
        if len(lines) <= 1:
            logging.getLogger(__name__).warning(
                "line %d of %s could not be parsed (%s): filed as a reject; please report this",
                chunk.first_line, chunk.source, type(error).__name__)
            records = RecordChunk(chunk.source, chunk.input_id, chunk.first_line, lines=len(lines),
                                  records=pa.table({}), rejected=len(lines),
                                  table="access" if fmt.is_access else "errors")
            return records, RejectChunk(chunk.source, chunk.input_id, chunk.first_line,
                                        [chunk.first_line] * len(lines),
                                        [f"value could not be read ({type(error).__name__})"] * len(lines),
                                        [line.decode("utf-8", "replace") for line in lines],
                                        log_format=chunk.log_format)
    half = len(lines) // 2
    parts = [replace(chunk, data=b"\n".join(lines[:half]) + b"\n"),
             replace(chunk, first_line=chunk.first_line + half, data=b"\n".join(lines[half:]) + b"\n")]
    return _merged(chunk, [parse_apart(fmt, part, latest_us) for part in parts])


@beam.typehints.with_output_types(RecordChunk)
class _ParseChunk(beam.DoFn):
    """Tokenizes chunk k+1 in a background thread (Arrow's CSV reader releases the GIL)
    while chunk k goes through the Python-heavy stages; results lag by one chunk.
    Error-log records leave through the `errors` output. `now`: the horizon's "now"
    (None: the clock, read per chunk)."""

    def __init__(self, formats: dict[str, LogFormat], now: datetime | None = None):
        self.formats, self.now = formats, now

    def setup(self):
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tokenizer")

    def start_bundle(self):
        self.pending = deque()

    def _emit(self):
        future, fmt, chunk, latest_us, timestamp, window = self.pending.popleft()
        try:
            records, rejects = _stage2(fmt, future.result(), latest_us)
        except Exception:   # noqa: BLE001 - see parse_apart
            records, rejects = parse_apart(fmt, chunk, latest_us)
        records_value = WindowedValue(records, timestamp, [window])
        yield records_value if records.table == "access" else beam.pvalue.TaggedOutput("errors", records_value)
        # Always emitted, even empty: downstream counts lines per input from both.
        yield beam.pvalue.TaggedOutput("rejects", WindowedValue(rejects, timestamp, [window]))

    def process(self, chunk: LogChunk, timestamp=beam.DoFn.TimestampParam, window=beam.DoFn.WindowParam):
        fmt = self.formats[chunk.log_format]
        latest_us = latest_time_us(self.now)
        self.pending.append((self.pool.submit(_stage1, fmt, chunk, latest_us), fmt, chunk, latest_us,
                             timestamp, window))
        if len(self.pending) > 1:
            yield from self._emit()

    def finish_bundle(self):
        while self.pending:
            yield from self._emit()

    def teardown(self):
        self.pool.shutdown(wait=True)


class ParseAccessLogs(beam.PTransform):
    """LogChunk -> outputs `records` (access RecordChunk), `errors` (error-log RecordChunk)
    and `rejects` (RejectChunk). `formats` maps each chunk's `log_format` key to its
    compiled format; a single LogFormat serves every chunk. Times later than a day after `now`
    (None: the clock at each chunk) are rejected."""

    def __init__(self, formats: dict[str, LogFormat] | LogFormat, now: datetime | None = None):
        super().__init__()
        self.formats = formats if isinstance(formats, dict) else _AnyKey(formats)
        self.now = now

    def expand(self, chunks):
        return chunks | "Parse" >> beam.ParDo(_ParseChunk(self.formats, self.now)).with_outputs(
            "rejects", "errors", main="records")


class _AnyKey(dict):
    """One format for every chunk, whatever its `log_format` key."""

    def __init__(self, fmt: LogFormat):
        super().__init__()
        self.fmt = fmt

    def __getitem__(self, key):
        return self.fmt

    def __reduce__(self):
        return (_AnyKey, (self.fmt,))

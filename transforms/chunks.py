"""Reading inputs as chunks of whole lines (plain or gzip), identified by content.

The unit of work is a chunk of ~8 MiB of complete lines from one input
(docs/architecture.md, Why chunks). Chunk boundaries depend only on the content: chunk *k* starts at
the first line that begins at or after byte ``k * CHUNK_BYTES`` of the
decompressed stream. So the same log, renamed or gzipped after rotation, is cut
into the same chunks and yields the same output file names, and a growing log
keeps its earlier chunk names.

An input is identified by a fingerprint of its first 64 KiB (like Filebeat's
fingerprint identity), not by its path.
"""
from __future__ import annotations

import contextlib
import fnmatch
import glob
import gzip
import hashlib
import io
import os
import threading
import zlib
from dataclasses import dataclass
from queue import Full, Queue
from typing import Iterable, Iterator

import apache_beam as beam
import pyarrow.fs as pafs

from schemas.errors import AccesslogError
from storage.filesystems import is_remote, open_store
from transforms import progress
from transforms.coders import register
from transforms.lines import CHUNK_BYTES, FINGERPRINT_BYTES, GZIP_MAGIC


@dataclass(frozen=True)
class LogInput:
    """One input file: where it is, what it is (content identity) and how to open it."""

    path: str            # file to read (a spooled copy for stdin)
    source: str          # what to call it in lineage columns ('-' for stdin)
    input_id: str        # content fingerprint, 16 hex digits
    fingerprint_bytes: int
    gzipped: bool
    log_format: str = ""  # key into the run's formats (per input with --log-format auto)


@dataclass
class LogChunk:
    """Complete lines [first_line, first_line + line_count) of one input."""

    source: str
    input_id: str
    first_line: int      # 1-based
    data: bytes
    log_format: str = ""
    error: str = ""      # set on a chunk that stands for an unreadable rest of the input

    @property
    def nbytes(self) -> int:
        return len(self.data)


def _open_raw(path: str):
    """A local file, or an object (s3://, gs://, hdfs://) as a stream (storage.filesystems)."""
    if not is_remote(path):
        return open(path, "rb")
    store = open_store(path)
    return store.fs.open_input_stream(store.root)


def open_input(path: str, gzipped: bool):
    raw = _open_raw(path)
    return gzip.GzipFile(fileobj=raw, mode="rb") if gzipped else raw


def is_gzip(path: str) -> bool:
    with _open_raw(path) as f:
        return f.read(2) == GZIP_MAGIC


def fingerprint(path: str, gzipped: bool, length: int = FINGERPRINT_BYTES) -> tuple[str, int]:
    """sha256 of the first `length` decompressed bytes -> (16 hex digits, bytes hashed)."""
    try:
        with open_input(path, gzipped) as f:
            head, error = _read_block(f, length)
        if error and not head:   # nothing readable at all: say so now (a broken tail is a dead letter)
            raise EOFError(error)
    except (OSError, EOFError) as e:
        raise AccesslogError(f"cannot read {path}: {e.__class__.__name__}: check the file is a "
                             "readable plain or gzip log") from None
    return content_id(head), len(head)


def content_id(head: bytes) -> str:
    """An input's identity: sha256 of its first bytes, 16 hex digits."""
    return hashlib.sha256(head).hexdigest()[:16]


def read_head(path: str, gzipped: bool, length: int) -> bytes:
    """Up to `length` (decompressed) bytes from the start of the file; b"" when it cannot be read
    whole that far (gone, unreadable, or a .gz still being written)."""
    try:
        with open_input(path, gzipped) as f:
            head, error = _read_block(f, length)
    except _READ_ERRORS:
        return b""
    return b"" if error else head


def expand_inputs(patterns: list[str]) -> list[str]:
    """Paths and globs -> existing file paths, in the order given; '-' kept for stdin."""
    paths: list[str] = []
    for pattern in patterns:
        if pattern == "-":
            paths.append("-")
            continue
        if is_remote(pattern):
            paths += _expand_remote(pattern)
            continue
        matches = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]
        if not matches:
            raise AccesslogError(f"no input matches {pattern!r}: check the path or quote the glob")
        for path in matches:
            if not os.path.isfile(path):
                raise AccesslogError(f"input {path!r} is not a readable file: pass log files, globs or -")
            if not os.access(path, os.R_OK):
                raise AccesslogError(f"input {path!r} is not readable: check its permissions")
            paths.append(path)
    return paths


def _expand_remote(pattern: str) -> list[str]:
    """s3://bucket/logs/access.log* -> the objects it names (a glob only in the last part)."""
    store = open_store(pattern)
    folder, _, name = store.root.rpartition("/")
    try:
        if not glob.has_magic(name):
            found = [store.root] if store.fs.get_file_info(store.root).type == pafs.FileType.File else []
        else:
            infos = store.fs.get_file_info(pafs.FileSelector(folder, allow_not_found=True))
            found = sorted(i.path for i in infos if i.type == pafs.FileType.File and fnmatch.fnmatch(i.base_name, name))
    except (OSError, ValueError) as e:
        raise AccesslogError(f"cannot list {pattern}: {str(e).splitlines()[0]}; check the URI and the store's "
                             "credentials") from None
    if not found:
        raise AccesslogError(f"no input matches {pattern!r}: check the path or quote the glob")
    return [store.uri_of(path) for path in found]


def describe_input(path: str, source: str | None = None) -> LogInput:
    """`path` as given is the lineage `source`; workers open the absolute path (their
    working directory is not the driver's)."""
    gz = is_gzip(path)
    input_id, hashed = fingerprint(path, gz)
    return LogInput(path=path if is_remote(path) else os.path.abspath(path), source=source or path, input_id=input_id,
                    fingerprint_bytes=hashed, gzipped=gz)


_READ_ERRORS = (OSError, EOFError, zlib.error)


def _read_block(f, length: int) -> tuple[bytes, str]:
    """Up to `length` bytes and '' — or what a broken stream (truncated or corrupt gzip,
    read error) yielded before it broke, and why."""
    pieces, _, error = _read_pieces(f, length)
    return b"".join(pieces), error


def read_chunks(log_input: LogInput, chunk_bytes: int = CHUNK_BYTES) -> Iterator[LogChunk]:
    """Yield the input's chunks in order; the last line may lack a newline. How far the file has
    been read is recorded for a progress line (transforms.progress)."""
    raw = _open_raw(log_input.path)
    handed_on = 0

    def counted(chunk: LogChunk, lines: int) -> None:
        nonlocal handed_on
        handed_on += len(chunk.data)
        progress.record(log_input.input_id, _position(raw, handed_on), lines)
    with raw, (gzip.GzipFile(fileobj=raw, mode="rb") if log_input.gzipped else contextlib.nullcontext(raw)) as f:
        yield from chunk_stream(f, log_input.source, log_input.input_id, 1, chunk_bytes, log_input.log_format,
                                counted)


def _position(raw, handed_on: int) -> int:
    """How far into the file `raw` is; an object-store stream cannot tell: the bytes handed on."""
    try:
        return raw.tell()
    except (OSError, ValueError):
        return handed_on


def split_chunks(source: str, input_id: str, first_line: int, data: bytes,
                 chunk_bytes: int = CHUNK_BYTES) -> list[LogChunk]:
    """Lines already in memory (a follow micro-batch) -> LogChunks cut like a file's."""
    return list(chunk_stream(io.BytesIO(data), source, input_id, first_line, chunk_bytes))


def chunk_stream(f, source: str, input_id: str, first_line: int, chunk_bytes: int = CHUNK_BYTES,
                 log_format: str = "", counted=None) -> Iterator[LogChunk]:
    """A binary stream -> LogChunks of whole lines, numbered from `first_line`. Chunk k ends at the
    first newline at or after byte k * chunk_bytes - 1, so boundaries depend only on the content.
    `counted(chunk, lines)` is told each chunk's number of newlines before it is yielded.

    Each chunk's bytes are joined once from what was read (the read pieces, then small blocks
    up to the newline; what follows it is carried to the next chunk).
    A stream that breaks off (truncated or corrupt gzip, read error) ends with what was
    read, then one chunk whose `error` says why: it becomes a dead letter, not a crash."""
    start, carry = 0, b""
    while True:
        want = (start // chunk_bytes + 1) * chunk_bytes - 1 - start   # the line holding this byte ends the chunk
        pieces, have = ([carry] if carry else []), len(carry)
        carry, error = b"", ""
        if have <= want:
            more, got, error = _read_pieces(f, want + 1 - have)
            pieces += more
            have += got
        if have > want and not error:   # cut at the first newline at or after byte `want`
            offset = have - len(pieces[-1])
            cut = pieces[-1].find(b"\n", want - offset)
            if cut >= 0:
                pieces[-1], carry = pieces[-1][:cut + 1], pieces[-1][cut + 1:]
            else:
                rest, carry, error = _through_newline_of(f)
                pieces += rest
        data = b"".join(pieces)
        if not data:
            if error:
                yield LogChunk(source, input_id, first_line, b"", log_format, error=error)
            return
        lines = data.count(b"\n")
        chunk = LogChunk(source, input_id, first_line, data, log_format)
        if counted is not None:
            counted(chunk, lines)
        yield chunk
        first_line += lines
        start += len(data)
        if error:
            first_line += 0 if data.endswith(b"\n") else 1
            yield LogChunk(source, input_id, first_line, b"", log_format, error=error)
            return
        if not carry and not data.endswith(b"\n"):   # the stream ended inside the last line
            return


def _read_pieces(f, length: int) -> tuple[list[bytes], int, str]:
    """Up to `length` bytes as the pieces read (not joined), their length, and '' or why the
    stream broke off (see _read_block)."""
    pieces, got = [], 0
    while got < length:
        try:
            piece = f.read1(min(1 << 20, length - got))
        except _READ_ERRORS as e:
            return pieces, got, (f"input ends unexpectedly after this point ({type(e).__name__}: "
                                 "truncated or corrupt file)")
        if not piece:
            break
        pieces.append(piece)
        got += len(piece)
    return pieces, got, ""


def _through_newline_of(f) -> tuple[list[bytes], bytes, str]:
    """Read on to the next newline -> (pieces through it, what was read after it, '' or why the
    stream broke off)."""
    pieces = []
    while True:
        more, got, error = _read_pieces(f, 1 << 16)
        for k, block in enumerate(more):
            cut = block.find(b"\n")
            if cut >= 0:
                pieces.append(block[:cut + 1])
                return pieces, b"".join([block[cut + 1:], *more[k + 1:]]), error
            pieces.append(block)
        if error or got < (1 << 16):
            return pieces, b"", error


def prefetched(items: Iterator, depth: int = 1) -> Iterator:
    """Run an iterator in a background thread, `depth` items ahead of the consumer.

    Reading and decompressing release the GIL, so the next chunk is read while the
    current one is parsed. Exceptions are re-raised in the consumer.
    """
    queue: Queue = Queue(maxsize=depth)
    done = object()
    stop = threading.Event()

    def produce():
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        queue.put((item, None), timeout=0.1)
                        break
                    except Full:
                        continue
                if stop.is_set():
                    return
            queue.put((done, None))
        except BaseException as e:  # noqa: BLE001 - handed to the consumer
            queue.put((done, e))

    thread = threading.Thread(target=produce, name="chunk-reader", daemon=True)
    thread.start()
    try:
        while True:
            item, error = queue.get()
            if item is done:
                if error is not None:
                    raise error
                return
            yield item
    finally:
        stop.set()
        thread.join()


def _read_ahead(log_input: LogInput, chunk_bytes: int) -> Iterator[LogChunk]:
    return prefetched(read_chunks(log_input, chunk_bytes))


# -- one file over many workers: byte ranges ------------------------------------------------------


@dataclass(frozen=True)
class LogRange:
    """Chunk `index` of an uncompressed input: the lines that begin in bytes [start, stop), as
    Beam's TextIO splits a file. A gzip input is one range (start 0, stop -1), read in order."""

    log_input: LogInput
    index: int
    start: int
    stop: int

    @property
    def whole(self) -> bool:
        return self.stop < 0


def input_size(path: str) -> int:
    if not is_remote(path):
        return os.path.getsize(path)
    store = open_store(path)
    return store.fs.get_file_info(store.root).size


def split_ranges(log_input: LogInput, chunk_bytes: int = CHUNK_BYTES) -> list[LogRange]:
    """An input -> its ranges: one per `chunk_bytes` of an uncompressed file (its size now: lines
    appended later are the next run's), the whole file for gzip. Range k holds exactly the lines
    of chunk k of chunk_stream, so either reader gives the same chunks and file names."""
    if log_input.gzipped:
        return [LogRange(log_input, 0, 0, -1)]
    size = input_size(log_input.path)
    return [LogRange(log_input, k, start, min(start + chunk_bytes, size))
            for k, start in enumerate(range(0, size, chunk_bytes))]


def _open_seekable(path: str):
    if not is_remote(path):
        return open(path, "rb")
    store = open_store(path)
    return store.fs.open_input_file(store.root)


def range_newlines(log_range: LogRange) -> tuple[str, tuple[int, int]]:
    """(input id, (range index, the newlines at offsets [start - 1, stop - 1))): summed over the
    ranges before k they number the lines before chunk k (see first_lines)."""
    begin = max(log_range.start - 1, 0)
    with _open_seekable(log_range.log_input.path) as f:
        f.seek(begin)
        pieces, _, _ = _read_pieces(f, log_range.stop - 1 - begin)   # a read error: read_range says so
    return log_range.log_input.input_id, (log_range.index, sum(piece.count(b"\n") for piece in pieces))


def first_lines(counted: tuple[str, Iterable[tuple[int, int]]]) -> tuple[str, dict[int, int]]:
    """(input id, [(range index, newlines)]) -> (input id, {range index: its first line number}).
    A line starts at 0 and after each newline, so chunk k (k > 0) starts at line
    2 + the newlines of ranges 0..k-1."""
    input_id, counts = counted
    firsts, before = {}, 0
    for index, newlines in sorted(counts):
        firsts[index] = 1 if index == 0 else 2 + before
        before += newlines
    return input_id, firsts


def read_range(log_range: LogRange, firsts: dict[str, dict[int, int]],
               chunk_bytes: int = CHUNK_BYTES) -> Iterator[LogChunk]:
    """A range -> its chunk (none when no line begins in it); a gzip input -> its chunks in order.
    Only this range's bytes are read, plus the rest of its last line."""
    log_input = log_range.log_input
    if log_range.whole:
        yield from _read_ahead(log_input, chunk_bytes)
        return
    first_line = firsts[log_input.input_id][log_range.index]
    with _open_seekable(log_input.path) as f:
        begin, error = 0, ""
        if log_range.start:   # the first line that begins at or after `start`
            f.seek(log_range.start - 1)
            skipped, _, error = _through_newline_of(f)
            begin = log_range.start - 1 + sum(len(piece) for piece in skipped)
        pieces = []
        if begin < log_range.stop and not error:
            f.seek(begin)
            pieces, _, error = _read_pieces(f, log_range.stop - 1 - begin)
            if not error:
                rest, _, error = _through_newline_of(f)
                pieces += rest
    data = b"".join(pieces)
    if data:
        progress.record(log_input.input_id, begin + len(data), data.count(b"\n"))
        yield LogChunk(log_input.source, log_input.input_id, first_line, data, log_input.log_format)
    if error:
        yield LogChunk(log_input.source, log_input.input_id, first_line + data.count(b"\n")
                       + (0 if not data or data.endswith(b"\n") else 1), b"", log_input.log_format, error=error)


class ReadLogChunks(beam.PTransform):
    """LogInput elements -> LogChunk elements.

    In one process (`spread` False) each input is read in order, a chunk ahead of the parser.
    Spread over workers (several processes, a cluster), each uncompressed input is cut into byte
    ranges (split_ranges) and each range is read by the worker that parses it: no file bytes
    travel through the runner. A first pass counts the newlines of each range (each worker its own
    ranges) so every chunk knows its first line number; gzip inputs stay one unit each."""

    def __init__(self, chunk_bytes: int = CHUNK_BYTES, spread: bool = False):
        super().__init__()
        self.chunk_bytes = chunk_bytes
        self.spread = spread

    def expand(self, inputs):
        if not self.spread:
            return inputs | "ReadChunks" >> beam.FlatMap(_read_ahead, chunk_bytes=self.chunk_bytes
                                                         ).with_output_types(LogChunk)
        ranges = (inputs
                  | "SplitRanges" >> beam.FlatMap(split_ranges, chunk_bytes=self.chunk_bytes
                                                  ).with_output_types(LogRange)
                  | "SpreadRanges" >> beam.Reshuffle())
        firsts = (ranges
                  | "PlainRanges" >> beam.Filter(lambda r: not r.whole)
                  | "CountNewlines" >> beam.Map(range_newlines)
                  | "GatherInput" >> beam.GroupByKey()
                  | "FirstLines" >> beam.Map(first_lines))
        return ranges | "ReadRanges" >> beam.FlatMap(read_range, beam.pvalue.AsDict(firsts),
                                                     chunk_bytes=self.chunk_bytes).with_output_types(LogChunk)


register(LogChunk)
register(LogRange)

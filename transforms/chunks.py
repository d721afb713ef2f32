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
from typing import Iterator

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
    parts, got = [], 0
    while got < length:
        try:
            piece = f.read1(min(1 << 20, length - got))   # read1: a broken gzip keeps its good part
        except _READ_ERRORS as e:
            return b"".join(parts), (f"input ends unexpectedly after this point ({type(e).__name__}: "
                                     "truncated or corrupt file)")
        if not piece:
            break
        parts.append(piece)
        got += len(piece)
    return b"".join(parts), ""



def read_chunks(log_input: LogInput, chunk_bytes: int = CHUNK_BYTES) -> Iterator[LogChunk]:
    """Yield the input's chunks in order; the last line may lack a newline. How far the file has
    been read is recorded for a progress line (transforms.progress)."""
    raw = _open_raw(log_input.path)
    handed_on = 0
    with raw, (gzip.GzipFile(fileobj=raw, mode="rb") if log_input.gzipped else contextlib.nullcontext(raw)) as f:
        for chunk in chunk_stream(f, log_input.source, log_input.input_id, 1, chunk_bytes, log_input.log_format):
            handed_on += len(chunk.data)
            progress.record(log_input.input_id, _position(raw, handed_on), chunk.data.count(b"\n"))
            yield chunk


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
                 log_format: str = "") -> Iterator[LogChunk]:
    """A binary stream -> LogChunks of whole lines, numbered from `first_line`. Chunk k ends at the
    first newline at or after byte k * chunk_bytes, so boundaries depend only on the content.

    A stream that breaks off (truncated or corrupt gzip, read error) ends with what was
    read, then one chunk whose `error` says why: it becomes a dead letter, not a crash."""
    consumed, carry = 0, b""
    next_boundary = chunk_bytes
    while True:
        block, error = _read_block(f, chunk_bytes)
        buf = carry + block
        if not block or error:
            if buf:
                yield LogChunk(source, input_id, first_line, buf, log_format)
                first_line += buf.count(b"\n") + (0 if buf.endswith(b"\n") else 1)
            if error:
                yield LogChunk(source, input_id, first_line, b"", log_format, error=error)
            return
        # Emit every chunk whose end boundary lies inside buf: it ends at the
        # first newline at or after the boundary (in stream coordinates).
        start = 0
        while consumed + len(buf) > next_boundary:
            cut = buf.find(b"\n", max(next_boundary - consumed - 1, start))
            if cut < 0:
                break
            data = buf[start:cut + 1]
            yield LogChunk(source, input_id, first_line, data, log_format)
            first_line += data.count(b"\n")
            start = cut + 1
            while next_boundary <= consumed + start:
                next_boundary += chunk_bytes
        consumed += start
        carry = buf[start:]


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


class ReadLogChunks(beam.PTransform):
    """LogInput elements -> LogChunk elements, redistributed so chunks parse in parallel."""

    def __init__(self, chunk_bytes: int = CHUNK_BYTES, redistribute: bool = False):
        super().__init__()
        self.chunk_bytes = chunk_bytes
        self.redistribute = redistribute

    def expand(self, inputs):
        chunks = inputs | "ReadChunks" >> beam.FlatMap(_read_ahead, chunk_bytes=self.chunk_bytes
                                                        ).with_output_types(LogChunk)
        if self.redistribute:
            chunks = chunks | "SpreadChunks" >> beam.Reshuffle()
        return chunks


register(LogChunk)

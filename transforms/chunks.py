"""Reading inputs as chunks of whole lines (plain or gzip), identified by content.

The unit of work is a chunk of ~8 MiB of complete lines from one input
(DESIGN.md §3). Chunk boundaries depend only on the content: chunk *k* starts at
the first line that begins at or after byte ``k * CHUNK_BYTES`` of the
decompressed stream. So the same log, renamed or gzipped after rotation, is cut
into the same chunks and yields the same output file names, and a growing log
keeps its earlier chunk names.

An input is identified by a fingerprint of its first 64 KiB (like Filebeat's
fingerprint identity), not by its path.
"""
from __future__ import annotations

import glob
import gzip
import hashlib
import os
import threading
import zlib
from dataclasses import dataclass
from queue import Full, Queue
from typing import Iterator

import apache_beam as beam

from accesslog.errors import AccesslogError
from accesslog.flags import CHUNK_BYTES
from transforms.coders import register

FINGERPRINT_BYTES = 64 << 10
_GZIP_MAGIC = b"\x1f\x8b"


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


def open_input(path: str, gzipped: bool):
    return gzip.open(path, "rb") if gzipped else open(path, "rb")


def is_gzip(path: str) -> bool:
    with open(path, "rb") as f:
        return f.read(2) == _GZIP_MAGIC


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
    return hashlib.sha256(head).hexdigest()[:16], len(head)


def expand_inputs(patterns: list[str]) -> list[str]:
    """Paths and globs -> existing file paths, in the order given; '-' kept for stdin."""
    paths: list[str] = []
    for pattern in patterns:
        if pattern == "-":
            paths.append("-")
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


def describe_input(path: str, source: str | None = None) -> LogInput:
    """`path` as given is the lineage `source`; workers open the absolute path (their
    working directory is not the driver's)."""
    gz = is_gzip(path)
    input_id, hashed = fingerprint(path, gz)
    return LogInput(path=os.path.abspath(path), source=source or path, input_id=input_id,
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
    """Yield the input's chunks in order; the last line may lack a newline.

    A stream that breaks off (truncated or corrupt gzip, read error) ends with what was
    read, then one chunk whose `error` says why: it becomes a dead letter, not a crash."""
    first_line, consumed, carry = 1, 0, b""
    next_boundary = chunk_bytes
    with open_input(log_input.path, log_input.gzipped) as f:
        while True:
            block, error = _read_block(f, chunk_bytes)
            buf = carry + block
            if not block or error:
                if buf:
                    yield LogChunk(log_input.source, log_input.input_id, first_line, buf, log_input.log_format)
                    first_line += buf.count(b"\n") + (0 if buf.endswith(b"\n") else 1)
                if error:
                    yield LogChunk(log_input.source, log_input.input_id, first_line, b"", log_input.log_format,
                                   error=error)
                return
            # Emit every chunk whose end boundary lies inside buf: it ends at the
            # first newline at or after the boundary (in stream coordinates).
            start = 0
            while consumed + len(buf) > next_boundary:
                cut = buf.find(b"\n", max(next_boundary - consumed - 1, start))
                if cut < 0:
                    break
                data = buf[start:cut + 1]
                yield LogChunk(log_input.source, log_input.input_id, first_line, data, log_input.log_format)
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

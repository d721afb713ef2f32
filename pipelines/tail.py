"""Tailing: which lines of the followed files are new, found again across rotation (no Beam here).

A followed file is identified like a batch input: by the fingerprint of its first bytes (up to
64 KiB, as many as it had when first seen); device+inode is a hint used to find it again. Per
identity the follower keeps the byte offset after the last complete line consumed and the next
line number, in WAREHOUSE/_follow/checkpoint.json (offsets, line numbers, fingerprints: no log data).

Rotation. Files are found among the followed names and their rotated siblings (`NAME*`:
access.log.1, access.log.2.gz, access.log-20261126 ...):
  * rename (`mv access.log access.log.1`, new access.log): the old identity is read to its end
    (through the still-open descriptor, or found again by inode or fingerprint), the new file
    starts at offset 0;
  * copytruncate (the file shrinks below the offset, or its first bytes change): the inode becomes
    a new identity read from 0; the old identity continues in the copy if it is a candidate;
  * rotate + gzip: while running the descriptor is kept open until the deleted file has been read
    to the end; after a restart the `.gz` whose decompressed content has the identity's
    fingerprint is read from the (decompressed) offset.
"""
from __future__ import annotations

import contextlib
import glob
import gzip
import json
import os
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from schemas.errors import AccesslogError
from storage import warehouse as wh
from transforms.chunks import LogChunk, content_id, read_head, split_chunks
from transforms.lines import CHUNK_BYTES, FINGERPRINT_BYTES, GZIP_MAGIC, complete_lines

CHECKPOINT_VERSION = 1
MAX_BATCH_BYTES = 64 << 20      # per file and micro-batch: bounds memory
IDLE_CLOSE_SECONDS = 300.0      # a rotated file not growing for this long is closed


def follow_dir(warehouse: str | os.PathLike) -> Path:
    return Path(warehouse) / "_follow"


def checkpoint_path(warehouse: str | os.PathLike) -> Path:
    return follow_dir(warehouse) / "checkpoint.json"


def micro_batch_input_id(fid: str, first_line: int) -> str:
    """Input id of the micro-batch of identity `fid` starting at `first_line` (deterministic)."""
    return f"{fid}-L{first_line:010d}"


# --------------------------------------------------------------------------- state

@dataclass
class Tracked:
    """One followed input (content identity) and how far it has been consumed."""

    fid: str                 # sha256 of the first fp_bytes bytes, 16 hex digits
    fp_bytes: int
    dev: int
    ino: int
    offset: int = 0          # byte offset after the last complete line consumed
    line: int = 1            # number of the next line
    source: str = ""         # name it was first seen under (the `source` column)
    path: str | None = None  # where it was last seen (runtime)
    gz: bool = False         # last seen as a gzip file (runtime)
    drained: tuple | None = None   # (path, size, mtime) of a file read by path to its end (runtime)
    fd: int | None = None    # open descriptor (runtime), kept until fully consumed
    last_growth: float = 0.0

    def to_json(self) -> dict:
        return {"fingerprint": self.fid, "fingerprint_bytes": self.fp_bytes, "dev": self.dev, "ino": self.ino,
                "offset": self.offset, "line": self.line, "source": self.source,
                "input_id": self.fid, "next_batch_id": micro_batch_input_id(self.fid, self.line)}

    @classmethod
    def from_json(cls, doc: dict) -> "Tracked":
        return cls(doc["fingerprint"], int(doc["fingerprint_bytes"]), int(doc["dev"]), int(doc["ino"]),
                   int(doc["offset"]), int(doc["line"]), doc.get("source", ""))

    def close(self) -> None:
        if self.fd is not None:
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.fd = None


def load_checkpoint(warehouse: str | os.PathLike) -> dict[str, Tracked]:
    path = checkpoint_path(warehouse)
    if not path.exists():
        return {}
    try:
        doc = json.loads(path.read_text())
        if doc.get("version") != CHECKPOINT_VERSION:
            raise ValueError("version")
        return {fid: Tracked.from_json(entry) for fid, entry in doc["inputs"].items()}
    except (OSError, ValueError, KeyError, TypeError):
        raise AccesslogError(f"cannot read the follow checkpoint {path}: it is damaged; move it away to "
                             "start over (files already ingested would then be ingested again)") from None


def save_checkpoint(warehouse: str | os.PathLike, state: dict[str, Tracked]) -> None:
    """Atomically replace the checkpoint (temp file, fsync, rename, fsync folder)."""
    folder = follow_dir(warehouse)
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    doc = {"version": CHECKPOINT_VERSION,
           "updated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
           "inputs": {fid: t.to_json() for fid, t in sorted(state.items())}}
    wh.write_json_atomic(checkpoint_path(warehouse), doc, durable=True)


# --------------------------------------------------------------------------- files

@dataclass
class Candidate:
    path: str
    dev: int
    ino: int
    size: int
    gz: bool
    primary: bool


def _pread_all(fd: int, length: int, offset: int) -> bytes:
    parts, got = [], 0
    while got < length:
        block = os.pread(fd, min(length - got, 8 << 20), offset + got)
        if not block:
            break
        parts.append(block)
        got += len(block)
    return b"".join(parts)


class Follower:
    """Tracks the followed files and turns their new complete lines into LogChunks."""

    def __init__(self, patterns: list[str], state: dict[str, Tracked] | None = None, keep_open: bool = True,
                 max_batch_bytes: int = MAX_BATCH_BYTES, idle_close: float = IDLE_CLOSE_SECONDS):
        self.patterns = list(patterns)
        self.state: dict[str, Tracked] = dict(state or {})
        self.keep_open = keep_open
        self.max_batch_bytes = max_batch_bytes
        self.idle_close = idle_close
        self._fp_cache: dict[tuple, str] = {}
        self.backlog = False     # the last poll left complete lines unread (batch size limit)

    # -- discovery -----------------------------------------------------------------
    def candidates(self) -> list[Candidate]:
        primary: list[str] = []
        rotated: list[str] = []
        for pattern in self.patterns:
            magic = glob.has_magic(pattern)
            primary += sorted(glob.glob(pattern)) if magic else [pattern]
            rotated += sorted(glob.glob((pattern if magic else glob.escape(pattern)) + "*"))
        out: dict[str, Candidate] = {}
        for path, is_primary in [(p, True) for p in primary] + [(p, False) for p in rotated]:
            if path in out:
                continue
            try:
                st = os.stat(path)
            except OSError:
                continue
            if not os.path.isfile(path):
                continue
            gz = False
            if st.st_size >= 2:
                try:
                    with open(path, "rb") as f:
                        gz = f.read(2) == GZIP_MAGIC
                except OSError:
                    continue
            out[path] = Candidate(path, st.st_dev, st.st_ino, st.st_size, gz, is_primary)
        return list(out.values())

    def _fingerprint_of(self, c: Candidate, length: int) -> str | None:
        """Fingerprint of the candidate's first `length` (decompressed) bytes; None if shorter."""
        try:
            mtime = os.stat(c.path).st_mtime_ns
        except OSError:
            return None
        key = (c.path, c.dev, c.ino, c.size, mtime, length)
        if len(self._fp_cache) > 4096:
            self._fp_cache.clear()
        if key not in self._fp_cache:
            head = read_head(c.path, c.gz, length)
            self._fp_cache[key] = content_id(head) if len(head) == length else ""
        return self._fp_cache[key] or None

    def _fd_matches(self, t: Tracked) -> bool:
        try:
            st = os.fstat(t.fd)
            if st.st_size < t.offset:
                return False
            head = os.pread(t.fd, t.fp_bytes, 0)
        except OSError:
            return False
        return len(head) == t.fp_bytes and content_id(head) == t.fid

    def _open_verified(self, t: Tracked) -> None:
        """Hold a descriptor on t.path if it is still the file `t` stands for; if the file was
        replaced between the stat and the open (or cannot be opened), leave it closed: it is
        read by path this time."""
        try:
            t.fd = os.open(t.path, os.O_RDONLY)
            st = os.fstat(t.fd)
        except OSError:
            t.close()
            return
        if (st.st_dev, st.st_ino) != (t.dev, t.ino) or not self._fd_matches(t):
            t.close()

    def resolve(self) -> list[Candidate]:
        """Find every identity again and start new ones for new followed files. Returns the candidates."""
        cands = self.candidates()
        by_inode = {(c.dev, c.ino): c for c in cands if not c.gz}
        claimed: set[str] = set()
        for fid, t in list(self.state.items()):
            if t.fd is not None:
                if self._fd_matches(t):
                    t.gz = False
                    c = by_inode.get((t.dev, t.ino))
                    if c:
                        t.path = c.path
                        claimed.add(c.path)
                    continue
                t.close()   # truncated or overwritten: look for its copy
            found = None
            c = by_inode.get((t.dev, t.ino))
            if c and c.path not in claimed and c.size >= t.offset and self._fingerprint_of(c, t.fp_bytes) == t.fid:
                found = c
            if found is None:
                for c in cands:
                    if c.path not in claimed and (c.gz or c.size >= t.offset) \
                            and self._fingerprint_of(c, t.fp_bytes) == t.fid:
                        found = c
                        break
            if found is None:
                del self.state[fid]   # deleted (or replaced) and nowhere to be found: nothing more to read
                continue
            claimed.add(found.path)
            t.path, t.gz = found.path, found.gz
            if not found.gz:
                t.dev, t.ino = found.dev, found.ino
                if self.keep_open:
                    t.last_growth = time.monotonic()
                    self._open_verified(t)
        for c in cands:
            if not c.primary or c.path in claimed or c.size == 0:
                continue
            if any(self._fingerprint_of(c, t.fp_bytes) == t.fid for t in self.state.values()):
                continue   # a copy of content already followed (e.g. access.log.1 matched by a glob)
            head = read_head(c.path, c.gz, FINGERPRINT_BYTES)
            if b"\n" not in head:
                continue   # identify a file once it has a complete line: a few bytes could match another
            fid = content_id(head)
            if fid in self.state:
                continue
            t = Tracked(fid, len(head), c.dev, c.ino, source=c.path, path=c.path, gz=c.gz)
            if self.keep_open and not c.gz:
                self._open_verified(t)
            t.last_growth = time.monotonic()
            self.state[fid] = t
            claimed.add(c.path)
        return cands

    # -- reading -------------------------------------------------------------------
    @staticmethod
    def _read_path(t: Tracked, limit: int) -> bytes:
        try:
            if t.gz:
                with gzip.open(t.path, "rb") as f:
                    f.seek(t.offset)
                    return f.read(limit)
            with open(t.path, "rb") as f:
                f.seek(t.offset)
                return f.read(limit)
        except (OSError, EOFError):
            return b""   # gone, or a .gz still being written: next time

    def read_new(self, t: Tracked) -> bytes:
        """The complete lines after t.offset (at most max_batch_bytes, but at least one line)."""
        limit = self.max_batch_bytes
        while True:
            if t.fd is not None:
                data = _pread_all(t.fd, limit, t.offset)
            else:
                try:
                    st = os.stat(t.path)
                except OSError:
                    return b""
                seen = (t.path, st.st_size, st.st_mtime_ns, t.offset)
                if seen == t.drained or (not t.gz and st.st_size <= t.offset):
                    return b""   # unchanged since it was read to its end: skip (decompressing) it
                data = self._read_path(t, limit)
                if len(data) < limit and not complete_lines(data):
                    t.drained = seen
            lines = complete_lines(data)
            if lines or len(data) < limit:
                if len(data) >= limit:
                    self.backlog = True
                return lines
            limit *= 2   # a single line longer than the limit

    def poll(self, chunk_bytes: int = CHUNK_BYTES) -> tuple[list[LogChunk], dict[str, tuple[int, int]]]:
        """Find the files, read new complete lines -> (chunks, fid -> (new offset, new line))."""
        self.backlog = False
        cands = self.resolve()
        primary_inodes = {(c.dev, c.ino) for c in cands if c.primary and not c.gz}
        chunks: list[LogChunk] = []
        advance: dict[str, tuple[int, int]] = {}
        now = time.monotonic()
        for fid, t in sorted(self.state.items(), key=lambda kv: (kv[1].source, kv[1].line)):
            data = self.read_new(t)
            if data:
                t.last_growth = now
                input_id = micro_batch_input_id(t.fid, t.line)
                chunks += split_chunks(t.source, input_id, t.line, data, chunk_bytes)
                advance[fid] = (t.offset + len(data), t.line + data.count(b"\n"))
            elif t.fd is not None and (t.dev, t.ino) not in primary_inodes:
                # Rotated away and drained: close when deleted, or idle for a while.
                with contextlib.suppress(OSError):
                    st = os.fstat(t.fd)
                    if (st.st_nlink == 0 and st.st_size <= t.offset) or now - t.last_growth > self.idle_close:
                        t.close()
        return chunks, advance

    def commit(self, advance: dict[str, tuple[int, int]]) -> None:
        for fid, (offset, line) in advance.items():
            if fid in self.state:
                self.state[fid].offset, self.state[fid].line = offset, line

    def close(self) -> None:
        for t in self.state.values():
            t.close()

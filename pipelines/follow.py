"""Follow mode: tail live logs (like `tail -F`) and ingest new lines in micro-batches.

    accesslog follow /var/log/nginx/access.log --warehouse W --keys K [--interval 2s] [--once]
    python -m pipelines.follow PATH... --warehouse W --keys K [--once]

Every --interval the follower reads, for each followed file, the complete lines
appended since the last micro-batch (a partial last line waits until its newline
arrives) and runs them through the batch transforms (`build_follow_pipeline`
mirrors `pipelines.batch.build_pipeline`, fed LogChunks that carry the real
`first_line`), so rows have the same columns and `source_line` is the line number
in the file.

Identity. A followed file is identified like a batch input: by the fingerprint of
its first bytes (up to 64 KiB, as many as it had when first seen); device+inode is
a hint used to find it again. Per identity the follower keeps the byte offset
after the last complete line consumed and the next line number.

Rotation. Files are found among the followed names and their rotated siblings
(`NAME*`: access.log.1, access.log.2.gz, access.log-20261126 ...):
  * rename (`mv access.log access.log.1`, new access.log): the old identity is
    read to its end (through the still-open descriptor, or found again by inode
    or fingerprint), the new file starts at offset 0;
  * copytruncate (the file shrinks below the offset, or its first bytes change):
    the inode becomes a new identity read from 0; the old identity continues in
    the copy if the copy is among the candidates;
  * rotate + gzip: while running the descriptor is kept open until the deleted
    file has been read to the end; after a restart the `.gz` whose decompressed
    content has the identity's fingerprint is read from the (decompressed) offset.

Exactly once. Outputs are written per micro-batch with the input id
`<fingerprint>-L<first line>`, so file names `<fp>-L<line>-<chunk line>.parquet`
depend only on the input identity and where the micro-batch starts. Files are
staged and renamed into place by the batch commit (which also removes files of an
earlier attempt at the same micro-batch that this attempt did not write), and only
then the checkpoint WAREHOUSE/_follow/checkpoint.json (offsets, line numbers,
fingerprints: no log data) is replaced atomically. A crash between the two renames
makes the restart redo the same micro-batch from the same offset: the same files
are rewritten, rows are never duplicated or lost.  Batch `accesslog run` of a
rotated file whose fingerprint equals a followed identity replaces the follow files
(same `<fp>-` prefix).

Limits: one follower per warehouse (a lock in WAREHOUSE/_follow/); `--log-format
auto` is not supported; a multi-line error-log entry cut by a micro-batch
boundary leaves its tail lines as rejects; a micro-batch always commits (its
rejects go to the rejects table, no reject-ratio check on small batches).
"""
from __future__ import annotations

import argparse
import contextlib
import fcntl
import glob
import gzip
import hashlib
import json
import os
import re
import shutil
import signal
import sys
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from accesslog import warehouse as wh
from accesslog.errors import AccesslogError

if TYPE_CHECKING:
    from transforms.chunks import LogChunk

CHECKPOINT_VERSION = 1
MAX_BATCH_BYTES = 64 << 20      # per file and micro-batch: bounds memory
IDLE_CLOSE_SECONDS = 300.0      # a rotated file not growing for this long is closed
_GZIP_MAGIC = b"\x1f\x8b"


# --------------------------------------------------------------------------- paths

def _fingerprint_bytes() -> int:
    """The batch fingerprint length (imported late: importing Beam takes a second)."""
    from transforms.chunks import FINGERPRINT_BYTES
    return FINGERPRINT_BYTES


def follow_dir(warehouse: str | os.PathLike) -> Path:
    return Path(warehouse) / "_follow"


def checkpoint_path(warehouse: str | os.PathLike) -> Path:
    return follow_dir(warehouse) / "checkpoint.json"


def micro_batch_input_id(fid: str, first_line: int) -> str:
    """Input id of the micro-batch of identity `fid` starting at `first_line` (deterministic)."""
    return f"{fid}-L{first_line:010d}"


def parse_interval(text: str) -> float:
    """'2s', '200ms', '0.2s', '1m', '2' (seconds) -> seconds."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|m|h)?\s*", str(text))
    if not m:
        raise AccesslogError(f"--interval {text!r} is not a duration: use e.g. 2s, 500ms or 1m")
    value = float(m.group(1)) * {"ms": 0.001, "s": 1, None: 1, "m": 60, "h": 3600}[m.group(2)]
    if value <= 0:
        raise AccesslogError("--interval must be more than 0")
    return value


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


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def _head(path: str, gz: bool, length: int) -> bytes:
    try:
        if gz:
            with gzip.open(path, "rb") as f:
                return f.read(length)
        with open(path, "rb") as f:
            return f.read(length)
    except (OSError, EOFError):
        return b""


def _pread_all(fd: int, length: int, offset: int) -> bytes:
    parts, got = [], 0
    while got < length:
        block = os.pread(fd, min(length - got, 8 << 20), offset + got)
        if not block:
            break
        parts.append(block)
        got += len(block)
    return b"".join(parts)


def complete_lines(data: bytes) -> bytes:
    """The prefix of data that ends with its last newline (a partial last line waits)."""
    cut = data.rfind(b"\n")
    return data[:cut + 1] if cut >= 0 else b""


def split_chunks(source: str, input_id: str, first_line: int, data: bytes,
                 chunk_bytes: int | None = None) -> list[LogChunk]:
    """Complete lines -> LogChunks of about chunk_bytes, cut at newlines, with their line numbers."""
    from transforms.chunks import CHUNK_BYTES, LogChunk

    chunk_bytes = chunk_bytes or CHUNK_BYTES
    chunks, start = [], 0
    while start < len(data):
        end = len(data) if len(data) - start <= chunk_bytes else data.find(b"\n", start + chunk_bytes - 1) + 1
        if end <= start:
            end = len(data)
        piece = data[start:end]
        chunks.append(LogChunk(source, input_id, first_line, piece))
        first_line += piece.count(b"\n")
        start = end
    return chunks


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
                        gz = f.read(2) == _GZIP_MAGIC
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
            head = _head(c.path, c.gz, length)
            self._fp_cache[key] = _digest(head) if len(head) == length else ""
        return self._fp_cache[key] or None

    def _fd_matches(self, t: Tracked) -> bool:
        try:
            st = os.fstat(t.fd)
            if st.st_size < t.offset:
                return False
            head = os.pread(t.fd, t.fp_bytes, 0)
        except OSError:
            return False
        return len(head) == t.fp_bytes and _digest(head) == t.fid

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
            head = _head(c.path, c.gz, _fingerprint_bytes())
            if b"\n" not in head:
                continue   # identify a file once it has a complete line: a few bytes could match another
            fid = _digest(head)
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

    def poll(self, chunk_bytes: int | None = None) -> tuple[list[LogChunk], dict[str, tuple[int, int]]]:
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


# --------------------------------------------------------------------------- pipeline

def build_follow_pipeline(p, chunks: list[LogChunk], formats, keystore, scrubber, warehouse: str, run_id: str,
                          now: datetime, retention_days: int, ip_mode: str = "hmac",
                          geoip_db: list[str] | None = None, geo_detail: str = "country"):
    """The batch pipeline (`pipelines.batch.process_chunks`) over this micro-batch's LogChunks."""
    import apache_beam as beam

    from pipelines.batch import process_chunks

    created = p | "Chunks" >> beam.Create(chunks).with_output_types(type(chunks[0]))
    # A micro-batch always commits (ratio 1.0): a reject ratio over a handful of lines says
    # little, and its rejects are kept in the rejects table.
    return process_chunks(created, formats, keystore, scrubber, warehouse, run_id, now, retention_days, 1.0,
                          ip_mode, geoip_db, geo_detail)


@dataclass
class FollowConfig:
    paths: list[str]
    warehouse: str
    keys: str | None = None
    log_format: str = "combined"
    interval: float = 2.0
    once: bool = False
    key_period: str | None = None
    retention_days: int = 90
    timezone: str = "UTC"
    trusted_proxies: str | None = None
    secret_params: str | None = None
    nginx_conf: str | None = None
    log_format_name: str | None = None
    field_map: str | None = None
    ip_mode: str = "hmac"
    geoip_db: list[str] | None = None
    geo_detail: str = "country"
    chunk_bytes: int | None = None   # default: the batch chunk size
    quiet_workers: bool = True


class FollowRun:
    """The follow loop: micro-batch, commit outputs, then the checkpoint."""

    def __init__(self, config: FollowConfig, out=sys.stdout):
        from accesslog.retention import parse_now
        from pipelines.batch import prepare_outputs, resolve_formats

        if not config.paths:
            raise AccesslogError("no input: pass the log files (or quoted globs) to follow")
        if config.log_format == "auto":
            raise AccesslogError("--log-format auto is not supported by follow: pass the format")
        if config.retention_days < 0:
            raise AccesslogError("--retention-days must be 0 or more")
        self.config, self.out = config, out
        _, self.formats = resolve_formats(config, [])
        warehouse, self.keystore, self.scrubber = prepare_outputs(config, parse_now(None))
        self.warehouse = str(warehouse)
        self.stop = threading.Event()
        self._lock_fd: int | None = None

    def _lock(self) -> None:
        folder = follow_dir(self.warehouse)
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(folder / "lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise AccesslogError(f"another `accesslog follow` is using {self.warehouse}: stop it first") from None
        self._lock_fd = fd
        # Staging left by a follower that was killed: nobody else follows this warehouse.
        for stale in glob.glob(os.path.join(glob.escape(self.warehouse), "_staging", "follow-*")):
            shutil.rmtree(stale, ignore_errors=True)

    def micro_batch(self, follower: Follower) -> int:
        """One micro-batch: returns the number of lines committed."""
        import apache_beam as beam

        from accesslog.retention import parse_now, retention_cutoff
        from pipelines.batch import beam_options, worker_stderr_silenced

        chunks, advance = follower.poll(self.config.chunk_bytes)
        if not chunks:
            return 0
        now = parse_now(None)
        # The window moves while following: a shredded key must not be met in a worker.
        self.keystore.check_window(retention_cutoff(now, self.config.retention_days).date())
        # Make newly seen files durable before their first output: a crash before the first
        # checkpoint followed by a rotation would otherwise leave the rotated copy unknown.
        save_checkpoint(self.warehouse, follower.state)
        run_id = "follow-" + wh.new_run_id()
        options, _ = beam_options(["--runner=FnApiRunner", "--default_sdk_harness_log_level=WARNING"])
        try:
            with worker_stderr_silenced(self.config.quiet_workers), beam.Pipeline(options=options) as p:
                build_follow_pipeline(p, chunks, self.formats, self.keystore, self.scrubber, self.warehouse,
                                      run_id, now, self.config.retention_days, self.config.ip_mode,
                                      self.config.geoip_db, self.config.geo_detail)
            summaries = self._summaries(run_id, chunks)
        finally:
            wh.remove_staging(self.warehouse, run_id)
        # Outputs are in place: now (and only now) move the checkpoint past them.
        follower.commit(advance)
        save_checkpoint(self.warehouse, follower.state)
        lines = sum(c.data.count(b"\n") for c in chunks)
        for s in summaries:
            print(f"follow: {s['source']} lines {s['first_line']}-{s['last_line']}: read {s['read']}, "
                  f"parsed {s['parsed']}, rejected {s['rejected']}, expired {s['expired']}, "
                  f"rows {s['rows_access'] + s.get('rows_errors', 0)}", file=self.out, flush=True)
        return lines

    def _summaries(self, run_id: str, chunks: list[LogChunk]) -> list[dict]:
        folder = wh.staging_dir(self.warehouse, run_id) / "_inputs"
        spans: dict[str, dict] = {}
        for c in chunks:
            span = spans.setdefault(c.input_id, {"source": c.source, "first_line": c.first_line, "lines": 0})
            span["lines"] += c.data.count(b"\n")
        out = []
        for input_id, span in spans.items():
            path = folder / f"{input_id}.json"
            summary = json.loads(path.read_text()) if path.exists() else {}
            if summary.get("status", "committed") != "committed":
                raise AccesslogError(f"micro-batch of {span['source']} failed: {summary.get('error')}")
            out.append({"read": 0, "parsed": 0, "rejected": 0, "expired": 0, "rows_access": 0, **summary,
                        "source": span["source"], "first_line": span["first_line"],
                        "last_line": span["first_line"] + span["lines"] - 1})
        return out

    def _on_signal(self, signum, _frame) -> None:
        """First Ctrl-C/SIGTERM: finish the micro-batch, then exit. A second one: stop now (the
        checkpoint is not moved, so the next start redoes that micro-batch)."""
        if self.stop.is_set():
            raise KeyboardInterrupt
        self.stop.set()

    def run(self) -> int:
        self._lock()
        follower = Follower(self.config.paths, load_checkpoint(self.warehouse), keep_open=True)
        if self.keystore.created:
            print(f"accesslog: created keystore {self.config.keys or 'from $ACCESSLOG_KEYS'} (0600); keep it "
                  "outside the warehouse and back it up", file=sys.stderr)
        handlers = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                handlers[sig] = signal.signal(sig, self._on_signal)
        try:
            while True:
                lines = self.micro_batch(follower)
                if self.stop.is_set() or (self.config.once and not lines):
                    return 0
                if follower.backlog or self.config.once:
                    continue   # more is waiting: no pause
                self.stop.wait(self.config.interval)
                if self.stop.is_set():
                    return 0
        finally:
            for sig, handler in handlers.items():
                signal.signal(sig, handler)
            follower.close()
            if self._lock_fd is not None:
                os.close(self._lock_fd)
                self._lock_fd = None


# --------------------------------------------------------------------------- CLI

def add_arguments(parser: argparse.ArgumentParser) -> None:
    from accesslog.flags import add_format_arguments  # the format and privacy flags of `accesslog run`

    parser.add_argument("paths", nargs="+", metavar="PATH", help="log files to follow (or quoted globs)")
    parser.add_argument("--warehouse", required=True, help="warehouse folder (created if missing)")
    parser.add_argument("--interval", default="2s", help="time between micro-batches (default 2s)")
    parser.add_argument("--once", action="store_true", help="process what is there and exit")
    parser.add_argument("--retention-days", type=int, default=90,
                        help="drop (and count as expired) records older than N days; default 90")
    add_format_arguments(parser)


_CONFIG_FLAGS = ("keys", "log_format", "key_period", "retention_days", "timezone", "trusted_proxies",
                 "secret_params", "nginx_conf", "log_format_name", "field_map", "ip_mode", "geoip_db", "geo_detail")


def config_from_args(args: argparse.Namespace) -> FollowConfig:
    return FollowConfig(paths=list(args.paths), warehouse=args.warehouse, interval=parse_interval(args.interval),
                        once=args.once, quiet_workers=not os.environ.get("ACCESSLOG_DEBUG"),
                        **{name: getattr(args, name) for name in _CONFIG_FLAGS})


def cmd_follow(args: argparse.Namespace) -> int:
    return FollowRun(config_from_args(args)).run()


def register(subparsers) -> argparse.ArgumentParser:
    """Add `accesslog follow` to the CLI's subparsers; its func(args) returns the exit code."""
    parser = subparsers.add_parser("follow", help="tail live logs into the warehouse in micro-batches",
                                   description="Follow log files like tail -F and ingest new complete lines "
                                               "every --interval, exactly once (checkpoint in "
                                               "WAREHOUSE/_follow/).")
    add_arguments(parser)
    parser.set_defaults(func=cmd_follow)
    return parser


def main(argv: list[str] | None = None) -> int:
    """`python -m pipelines.follow PATH... --warehouse W --keys K [--once]`."""
    import logging
    import warnings

    os.umask(0o077)
    logging.basicConfig(level=logging.ERROR, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger().setLevel(logging.ERROR)
    logging.getLogger("apache_beam").setLevel(logging.CRITICAL)
    warnings.filterwarnings("ignore", module="apache_beam")
    parser = argparse.ArgumentParser(prog="accesslog follow")
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return cmd_follow(args)
    except AccesslogError as e:
        print(f"accesslog: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

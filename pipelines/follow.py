"""Follow mode: tail live logs (like `tail -F`) and ingest new lines in micro-batches.

    accesslog follow /var/log/nginx/access.log --warehouse W --keys K [--interval 2s] [--once]

Every interval the follower (pipelines.tail) reads, for each followed file, the complete lines
appended since the last micro-batch (a partial last line waits for its newline) and runs them
through the batch stages (IngestChunks | WriteAndCommit), fed LogChunks that carry the real
`first_line`, so rows have the same columns as batch and `source_line` is the line number in the
file.

Exactly once. Outputs are written per micro-batch with the input id `<fingerprint>-L<first line>`,
so file names depend only on the input identity and where the micro-batch starts. Files are
staged and renamed into place by the batch commit (which also removes files of an earlier attempt
at the same micro-batch that this attempt did not write), and only then is the checkpoint replaced
atomically. A crash between the two makes the restart redo the same micro-batch from the same
offset: the same files are rewritten, rows are never duplicated or lost. A batch `accesslog run`
of a rotated file whose fingerprint equals a followed identity replaces the follow files.

Limits: one follower per warehouse (a lock in WAREHOUSE/_follow/); the format must be named (no
"auto"); a multi-line error-log entry cut by a micro-batch boundary leaves its tail lines as
rejects; a micro-batch always commits (no reject-ratio check on a handful of lines).
"""
from __future__ import annotations

import errno
import fcntl
import os
import re
import signal
import sys
import threading
from dataclasses import dataclass, field

import apache_beam as beam

from pipelines.batch import collect_summaries
from pipelines.ingest import IngestChunks, WriteAndCommit
from pipelines.prepare import beam_options, prepare_outputs, single_format, worker_stderr_silenced
from pipelines.settings import Settings
from pipelines.tail import Follower, follow_dir, load_checkpoint, save_checkpoint
from schemas.errors import AccesslogError, SettingError
from storage import warehouse as wh
from transforms.chunks import LogChunk
from transforms.lines import CHUNK_BYTES
from transforms.retention import retention_cutoff
from transforms.write import MARKS


def parse_interval(text: str) -> float:
    """'2s', '200ms', '0.2s', '1m', '2' (seconds) -> seconds."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|m|h)?\s*", str(text))
    if not m:
        raise SettingError("{} {text!r} is not a duration: use e.g. 2s, 500ms or 1m", "interval", text=text)
    value = float(m.group(1)) * {"ms": 0.001, "s": 1, None: 1, "m": 60, "h": 3600}[m.group(2)]
    if value <= 0:
        raise SettingError("{} must be more than 0", "interval")
    return value


def build_follow_pipeline(p, chunks: list[LogChunk], formats, keystore, scrubber, settings: Settings,
                          warehouse: str, run_id: str, now):
    """The batch stages over this micro-batch's LogChunks. A micro-batch always commits (reject
    ratio 1.0): a ratio over a handful of lines says little, and its rejects are kept."""
    return (p
            | "Chunks" >> beam.Create(chunks).with_output_types(LogChunk)
            | "IngestChunks" >> IngestChunks(formats, keystore, scrubber, now, settings.retention_days,
                                             settings.ip_mode, settings.geoip_db, settings.geo_detail)
            | "WriteAndCommit" >> WriteAndCommit(warehouse, run_id, 1.0))


@dataclass(frozen=True)
class FollowConfig:
    """A follow job: the shared settings, the files and how often to look."""

    settings: Settings
    paths: list[str] = field(default_factory=list)
    interval: float = 2.0
    once: bool = False
    chunk_bytes: int = CHUNK_BYTES
    quiet_workers: bool = True

    def __post_init__(self):
        self.settings.require_warehouse()
        if not self.paths:
            raise AccesslogError("no input: pass the log files (or quoted globs) to follow")
        if self.interval <= 0:
            raise SettingError("{} must be more than 0", "interval")


class FollowRun:
    """The follow loop: micro-batch, commit outputs, then the checkpoint."""

    def __init__(self, config: FollowConfig, out=None):
        self.config, self.out = config, out if out is not None else sys.stdout   # the stdout of now, not of import
        self.formats = {"": single_format(config.settings, "follow")}
        self.warehouse, self.keystore, self.scrubber = prepare_outputs(config.settings, config.settings.now_at())
        self.stop = threading.Event()
        self._lock_fd: int | None = None

    def _lock(self) -> None:
        folder = follow_dir(self.warehouse)
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        lock = folder / "lock"
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        except OSError as e:
            if e.errno != errno.ELOOP:
                raise
            raise AccesslogError(f"follow lock {lock} is a symbolic link: remove it (`rm {lock}`) and start "
                                 "again; accesslog creates it as a plain file") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise AccesslogError(f"another `accesslog follow` is using {self.warehouse}: stop it first") from None
        self._lock_fd = fd
        wh.remove_stale_staging(self.warehouse)   # left by a follower (or a run) that was killed

    def micro_batch(self, follower: Follower) -> int:
        """One micro-batch: returns the number of lines committed."""
        chunks, advance = follower.poll(self.config.chunk_bytes)
        if not chunks:
            return 0
        settings = self.config.settings
        now = settings.now_at()
        # The window moves while following: a shredded key must not be met in a worker.
        self.keystore.check_window(retention_cutoff(now, settings.retention_days).date())
        # Make newly seen files durable before their first output: a crash before the first
        # checkpoint followed by a rotation would otherwise leave the rotated copy unknown.
        save_checkpoint(self.warehouse, follower.state)
        run_id = "follow-" + wh.new_run_id()
        options, _ = beam_options(["--runner=FnApiRunner", "--default_sdk_harness_log_level=WARN"])
        spans = _spans(chunks)
        with wh.staging(self.warehouse, run_id):   # owned while it lives, removed however this ends
            with worker_stderr_silenced(self.config.quiet_workers), beam.Pipeline(options=options) as p:
                build_follow_pipeline(p, chunks, self.formats, self.keystore, self.scrubber, settings,
                                      self.warehouse, run_id, now)
            summaries = collect_summaries(self.warehouse, run_id, spans)
        for span, summary in zip(spans, summaries):
            if summary["status"] != "committed":
                raise AccesslogError(f"micro-batch of {span.source} failed: {summary.get('error')}")
        # Outputs are in place: now (and only now) move the checkpoint past them.
        follower.commit(advance)
        save_checkpoint(self.warehouse, follower.state)
        for span, s in zip(spans, summaries):
            print(f"follow: {span.source} lines {span.first_line}-{span.first_line + span.lines - 1}: "
                  f"read {s['read']}, parsed {s['parsed']}, rejected {s['rejected']}, expired {s['expired']}, "
                  f"rows {s['rows_access'] + s.get('rows_errors', 0)}"
                  + "".join(f", {mark} {s[mark]}" for mark in MARKS if s.get(mark)), file=self.out, flush=True)
        return sum(span.lines for span in spans)

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
            print(f"accesslog: created keystore {self.config.settings.keys or 'from $ACCESSLOG_KEYS'} (0600); "
                  "keep it outside the warehouse and back it up", file=sys.stderr)
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


@dataclass
class _Span:
    """The lines of one followed input in a micro-batch."""

    input_id: str
    source: str
    first_line: int
    lines: int = 0


def _spans(chunks: list[LogChunk]) -> list[_Span]:
    spans: dict[str, _Span] = {}
    for c in chunks:
        spans.setdefault(c.input_id, _Span(c.input_id, c.source, c.first_line)).lines += c.data.count(b"\n")
    return list(spans.values())

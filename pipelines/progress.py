"""A progress line on stderr while a batch run reads its inputs, when stderr is a terminal.

    accesslog: 1,204 of 3,412 MB (35%), 212,000 lines/s, 0:12 left

It appears after the first two seconds, is redrawn twice a second and erased before the summary;
nothing is written when stderr is not a terminal. The figures come from the readers in this
process (transforms.progress): with multi-process or cluster runners there are none, and no line.
"""
from __future__ import annotations

import io
import os
import sys
import threading
import time

from storage.filesystems import is_remote
from transforms import progress
from transforms.chunks import LogInput, input_size

MB = 1 << 20


def _size(log_input: LogInput) -> int | None:
    """The file's size; None for an object (no request to the store for a progress line)."""
    if is_remote(log_input.path):
        return None
    try:
        return input_size(log_input.path)
    except OSError:
        return None


def progress_text(done: int, lines: int, total: int | None, elapsed: float) -> str:
    """The line for `done` bytes and `lines` lines after `elapsed` seconds, of `total` bytes (None:
    unknown, so no share and no time left)."""
    rate = lines / elapsed if elapsed > 0 else 0
    text = f"accesslog: {done / MB:,.0f}"
    if total:
        left = (total - done) / (done / elapsed) if done and elapsed > 0 else None
        text += f" of {total / MB:,.0f} MB ({min(100, 100 * done // total)}%), {rate:,.0f} lines/s"
        if left is not None:
            minutes, seconds = divmod(int(max(0, left)), 60)
            text += f", {minutes}:{seconds:02d} left"
        return text
    return text + f" MB, {rate:,.0f} lines/s"


class ProgressLine:
    """Context manager: draws the progress line from a background thread while the run reads."""

    def __init__(self, inputs: list[LogInput], stream=None, delay: float = 2.0, interval: float = 0.5,
                 enabled: bool | None = None):
        # Its own copy of fd 2: the run points fd 2 at /dev/null while Beam's workers run
        # (prepare.worker_stderr_silenced), and this line is drawn meanwhile.
        self.owned = False
        if stream is None:
            try:
                stream, self.owned = os.fdopen(os.dup(sys.stderr.fileno()), "w"), True
            except (OSError, ValueError, io.UnsupportedOperation):   # stderr is no file (captured)
                stream = sys.stderr
        self.stream = stream
        sizes = [_size(i) for i in inputs]
        self.total = None if None in sizes else sum(sizes)
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self.delay, self.interval = delay, interval
        self.stop = threading.Event()
        self.drawn = False

    def __enter__(self):
        progress.reset()
        self.started = time.perf_counter()
        if self.enabled:
            self.thread = threading.Thread(target=self._draw, name="progress", daemon=True)
            self.thread.start()
        return self

    def _draw(self) -> None:
        if self.stop.wait(self.delay):
            return
        while not self.stop.is_set():
            done, lines = progress.snapshot()
            if done:
                self.stream.write("\r\x1b[K" + progress_text(done, lines, self.total,
                                                              time.perf_counter() - self.started))
                self.stream.flush()
                self.drawn = True
            self.stop.wait(self.interval)

    def __exit__(self, *exc):
        self.stop.set()
        if self.enabled:
            self.thread.join()
            if self.drawn:
                self.stream.write("\r\x1b[K")
                self.stream.flush()
        if self.owned:
            self.stream.close()
        return False

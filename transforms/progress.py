"""How far this process has read its inputs, for a progress line on a terminal.

The batch readers (transforms.chunks.read_chunks) record, per input, the bytes of the file read so
far (compressed bytes for gzip) and the lines in the chunks handed on; the driver samples that
from another thread (pipelines.progress). Only readers in the driver's own process are seen: with
Beam's in-process runner, not with multi-process workers or a cluster.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass


@dataclass
class InputProgress:
    position: int = 0   # bytes of the file read
    lines: int = 0      # lines handed on


_lock = threading.Lock()
_inputs: dict[str, InputProgress] = {}


def record(input_id: str, position: int, lines: int) -> None:
    """The reader of `input_id` is at byte `position` of its file and handed on `lines` more lines."""
    with _lock:
        progress = _inputs.setdefault(input_id, InputProgress())
        progress.position = max(progress.position, position)
        progress.lines += lines


def snapshot() -> tuple[int, int]:
    """(bytes read, lines handed on) over every input."""
    with _lock:
        return sum(p.position for p in _inputs.values()), sum(p.lines for p in _inputs.values())


def reset() -> None:
    with _lock:
        _inputs.clear()

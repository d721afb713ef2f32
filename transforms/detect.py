"""`--log-format auto`: sniff the first lines of each input and pick a preset.

Candidates are JSON lines, nginx and Apache error logs, and the text presets of
both servers; a text preset scores the number of sample lines it parses into valid
records (shape and types), and the best score wins (ties: the format with more
fields, then the earlier candidate). The choice
is per file, so access and error logs can be mixed in one run.
"""
from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass

from schemas.errors import SettingError
from transforms.chunks import LogChunk, LogInput, open_input
from transforms.errorlog import detect_error_log
from transforms.formats import LogFormat, resolve_format
from transforms.jsonlog import looks_like_json
from transforms.parse import parse_chunk

SAMPLE_LINES = 50
# Text presets to try, most specific first (ties keep the earlier one).
TEXT_CANDIDATES = ("timed_combined", "main", "combined", "apache_combined", "vhost_combined", "combinedio",
                   "common")


@dataclass(frozen=True)
class Detection:
    name: str
    matched: int
    sampled: int
    trailing: bool = False   # the lines carry fields after the preset (kept in extra['trailing'])


def sample_lines(log_input: LogInput, n: int = SAMPLE_LINES) -> list[str]:
    lines = []
    with open_input(log_input.path, log_input.gzipped) as f:
        for raw in f:
            text = raw.decode("utf-8", "replace").rstrip("\r\n")
            if text.strip():
                lines.append(text)
            if len(lines) >= n:
                break
    return lines


@functools.lru_cache(maxsize=None)
def _candidate(name: str, strict: bool) -> LogFormat:
    """A preset compiled once (LogFormat is frozen), not once per input file."""
    fmt = resolve_format(name)
    return dataclasses.replace(fmt, options={**fmt.options, "strict": strict})


def detect(lines: list[str], source: str = "input") -> Detection:
    """The best preset for these lines (a clear error when nothing fits)."""
    if not lines:
        raise SettingError("cannot detect the format of {source}: it has no lines; pass {}", "log_format",
                           source=source)
    if looks_like_json(lines):
        return Detection("json", len(lines), len(lines))
    kind = detect_error_log(lines)
    if kind:
        return Detection(kind, len(lines), len(lines))
    sample = LogChunk("sample", "sample", 1, ("\n".join(lines) + "\n").encode("utf-8"))
    # A preset that reads the lines whole first; else one that reads their start (a server whose
    # format appends fields to a preset's).
    best = _best_preset(sample, len(lines), strict=True)
    if best.matched * 2 < len(lines):
        best = _best_preset(sample, len(lines), strict=False)
    if best.matched * 2 < len(lines):
        raise SettingError("cannot detect the log format of {source} ({matched} of {sampled} sample lines match "
                           "the closest preset, {preset}): pass {} with your nginx log_format or Apache "
                           "LogFormat", "log_format", source=source, matched=best.matched, sampled=len(lines),
                           preset=best.name)
    return best


def _best_preset(sample: LogChunk, n_lines: int, strict: bool) -> Detection:
    """The preset that parses the most sample lines; ties go to the one whose escaping the lines
    show (Apache writes a quote as \\", nginx as \\x22), then to more fields, then to the earlier."""
    backslash_quotes = b'\\"' in sample.data
    best: Detection | None = None
    best_key = None
    for name in TEXT_CANDIDATES:
        fmt = _candidate(name, strict)
        # Typed, not just shaped: `0.010` fits Apache %I's slot textually but is no byte count.
        matched = parse_chunk(fmt, sample)[0].records.num_rows
        key = (matched, (fmt.escape in ("apache", "json")) == backslash_quotes, len(fmt.variables))
        if best_key is None or key > best_key:
            best, best_key = Detection(name, matched, n_lines, trailing=not strict), key
    return best


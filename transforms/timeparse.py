"""Log timestamps -> microseconds since the epoch (UTC), parsed once per unique value.

`datetime.strptime` costs ~5 µs a call; a log has at most one distinct
`$time_local` per second, so we dictionary-encode the column, parse the uniques
by hand and `take` the results back (DESIGN.md §3).
"""
from __future__ import annotations

import calendar
from datetime import datetime, timezone, tzinfo
from typing import Callable

import pyarrow as pa
import pyarrow.compute as pc

_MONTHS = {m: i for i, m in enumerate(("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug",
                                       "Sep", "Oct", "Nov", "Dec"), start=1)}


def time_local_us(text: str) -> int | None:
    """'10/Oct/2000:13:55:36 -0700' (optionally with .fraction, brackets) -> µs UTC."""
    s = text.strip("[]")
    try:
        date, _, zone = s.partition(" ")
        day, month, rest = date.split("/", 2)
        year, hh, mm, ss = rest.split(":", 3)
        frac = 0
        if "." in ss:
            ss, f = ss.split(".", 1)
            frac = int((f + "000000")[:6]) if f.isdigit() else None
        if frac is None or len(zone) != 5 or zone[0] not in "+-" or not zone[1:].isdigit():
            return None
        offset = (int(zone[1:3]) * 60 + int(zone[3:5])) * 60 * (-1 if zone[0] == "-" else 1)
        h, mi, sec = int(hh), int(mm), int(ss)
        d, y, mon = int(day), int(year), _MONTHS[month]
        if not (1 <= d <= calendar.monthrange(y, mon)[1] and h < 24 and mi < 60 and sec <= 60):
            return None
        return (calendar.timegm((y, mon, d, h, mi, sec)) - offset) * 1_000_000 + frac
    except (ValueError, KeyError):
        return None


def iso8601_us(text: str, zone: tzinfo | None = None) -> int | None:
    """'2026-11-20T13:55:36+01:00' (nginx $time_iso8601, any ISO form) -> µs UTC.
    A time without an offset is taken to be in `zone` (rejected when no zone is given)."""
    try:
        t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if t.tzinfo is None:
        if zone is None:
            return None
        t = t.replace(tzinfo=zone)
    delta = t - datetime(1970, 1, 1, tzinfo=timezone.utc)
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds


def msec_us(text: str) -> int | None:
    """'1700000000.123' (nginx $msec, seconds with ms resolution) -> µs UTC."""
    whole, _, frac = text.partition(".")
    if not whole.isdigit() or (frac and not frac.isdigit()):
        return None
    return int(whole) * 1_000_000 + int((frac + "000000")[:6])


# Arrow's strptime handles the common shape of a variable in C; the Python parser
# takes what it leaves null (fractional seconds, odd forms) or is authoritative.
ARROW_FORMATS = {"time_local": "%d/%b/%Y:%H:%M:%S %z"}
# Values Arrow parses without complaint but may get wrong: it rolls an impossible day
# (31/Feb) over into the next month instead of failing. The Python parser checks them.
_ARROW_UNSURE = {"%d/%b/%Y:%H:%M:%S %z": r"^\[?(29|3[01])/"}


def parse_unique(values: pa.Array, parse: Callable[[str], int | None], arrow_format: str | None = None) -> pa.Array:
    """Parse each distinct string of `values` -> int64 µs since the epoch, null where it fails."""
    encoded = pc.dictionary_encode(values)
    if isinstance(encoded, pa.ChunkedArray):
        encoded = encoded.combine_chunks()
    uniques = encoded.dictionary
    if arrow_format is not None:
        parsed = pc.cast(pc.strptime(uniques, format=arrow_format, unit="us", error_is_null=True), pa.int64())
        missed = pc.is_null(parsed)
        if arrow_format in _ARROW_UNSURE:
            missed = pc.or_(missed, pc.match_substring_regex(uniques, _ARROW_UNSURE[arrow_format]))
        if pc.any(missed).as_py():
            rest = pa.array([parse(s) for s in uniques.filter(missed).to_pylist()], pa.int64())
            parsed = pc.replace_with_mask(parsed, missed, rest)
    else:
        parsed = pa.array([parse(s) for s in uniques.to_pylist()], pa.int64())
    return pc.take(parsed, encoded.indices)


def epoch_us(scale: int) -> Callable[[str], int | None]:
    """Apache %{sec}t / %{msec}t / %{usec}t: a count since the epoch (%{sec}t.%{msec_frac}t
    gives seconds with a fraction)."""
    def parse(text: str) -> int | None:
        whole, _, frac = text.partition(".")
        if not whole.isdigit() or (frac and not frac.isdigit()):
            return None
        us = int(whole) * (1_000_000 // scale)
        return us + int((frac + "000000")[:6]) // scale if frac else us
    return parse


def strptime_us(time_format: str, zone: tzinfo = timezone.utc) -> Callable[[str], int | None]:
    """A strftime-style format (Apache %{format}t); times without an offset are in `zone`."""
    def parse(text: str) -> int | None:
        try:
            t = datetime.strptime(text.strip("[]"), time_format)
        except ValueError:
            return None
        if t.tzinfo is None:
            t = t.replace(tzinfo=zone)
        delta = t - datetime(1970, 1, 1, tzinfo=timezone.utc)
        return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds
    return parse


PARSERS: dict[str, Callable[[str], int | None]] = {
    "time_local": time_local_us,
    "time_received": time_local_us,       # Apache %t: the same text, but the arrival time
    "time_iso8601": iso8601_us,
    "msec": msec_us,
    "time_received_sec": epoch_us(1),
    "time_received_msec": epoch_us(1000),
    "time_received_usec": epoch_us(1_000_000),
}
ARROW_FORMATS["time_received"] = ARROW_FORMATS["time_local"]


def parse_times(values: pa.Array, var: str, time_format: str | None = None,
                zone: tzinfo = timezone.utc) -> pa.Array:
    """A time variable's column -> int64 µs UTC (null where unparseable)."""
    if time_format is not None:
        return parse_unique(values, strptime_us(time_format, zone))
    if var == "time_iso8601":
        return parse_unique(values, lambda text: iso8601_us(text, zone))
    return parse_unique(values, PARSERS[var], ARROW_FORMATS.get(var))

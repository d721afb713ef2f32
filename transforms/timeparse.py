"""Log timestamps -> microseconds since the epoch (UTC), parsed once per unique value.

`datetime.strptime` costs ~5 µs a call; a log has at most one distinct
`$time_local` per second, so we dictionary-encode the column, parse the uniques
by hand and `take` the results back (docs/architecture.md, Why chunks).
"""
from __future__ import annotations

import calendar
from datetime import date, datetime, timedelta, timezone, tzinfo
from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

EPOCH = date(1970, 1, 1)
US_PER_DAY = 86_400_000_000


def day_label(day: int) -> str:
    """Days since the epoch -> 'YYYY-MM-DD' (the name of a date= partition)."""
    return (EPOCH + timedelta(days=int(day))).isoformat()


MONTHS = {m: i for i, m in enumerate(("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug",
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
        d, y, mon = int(day), int(year), MONTHS[month]
        if not (1 <= d <= calendar.monthrange(y, mon)[1] and h < 24 and mi < 60 and sec <= 60):
            return None
        us = (calendar.timegm((y, mon, d, h, mi, sec)) - offset) * 1_000_000 + frac
        return us if MIN_US <= us <= MAX_US else None   # the zone can push past year 1 or 9999
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


# The common shape of $time_local, '10/Oct/2000:13:55:36 -0700' (26 characters), is parsed
# column-wise with numpy; the Python parser takes what that leaves null (brackets, fractional
# seconds, odd forms, impossible dates) and is authoritative for them. Measured on a chunk of
# the benchmark log (16k distinct values): 8.5 ms with Arrow strptime (plus a regex to re-check
# days 29-31, which strptime rolls over into the next month), 2 ms this way.
FAST_FORMATS = {"time_local": "clf"}
_MONTH_CODES = np.array(sorted(int.from_bytes(m.encode(), "big") for m in MONTHS), dtype=np.int64)
_MONTH_OF_CODE = np.array([MONTHS[c.to_bytes(3, "big").decode()] for c in _MONTH_CODES.tolist()], dtype=np.int64)
_DIGITS = [0, 1, 7, 8, 9, 10, 12, 13, 15, 16, 18, 19, 22, 23, 24, 25]
_SEPARATORS = {2: b"/", 6: b"/", 11: b":", 14: b":", 17: b":", 20: b" "}


def _days_from_civil(y: np.ndarray, m: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Days since 1970-01-01 of proleptic Gregorian dates (H. Hinnant's algorithm), vectorized."""
    y = y - (m <= 2)
    era = np.floor_divide(y, 400)
    yoe = y - era * 400
    doy = (153 * (m + np.where(m > 2, -3, 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def clf_times_us(values: pa.Array) -> pa.Array:
    """'dd/Mon/yyyy:HH:MM:SS +hhmm' strings -> int64 µs UTC; null where the value has another
    shape or is not a real date and time (left to the Python parser)."""
    if values.type != pa.string():
        values = values.cast(pa.string())
    n = len(values)
    out = np.zeros(n, dtype=np.int64)
    ok = np.zeros(n, dtype=bool)
    lengths = pc.fill_null(pc.binary_length(values), 0).to_numpy(zero_copy_only=False)
    rows = np.flatnonzero(lengths == 26)
    if len(rows):
        fixed = values.take(pa.array(rows)) if len(rows) < n else values
        offsets = np.frombuffer(fixed.buffers()[1], dtype=np.int32)[fixed.offset:fixed.offset + len(rows) + 1]
        data = np.frombuffer(fixed.buffers()[2], dtype=np.uint8)[offsets[0]:offsets[-1]].reshape(len(rows), 26)
        digits = data[:, _DIGITS].astype(np.int64) - 48
        good = ((digits >= 0) & (digits <= 9)).all(axis=1)
        for i, ch in _SEPARATORS.items():
            good &= data[:, i] == ch[0]
        good &= (data[:, 21] == ord("+")) | (data[:, 21] == ord("-"))
        code = (data[:, 3].astype(np.int64) << 16) | (data[:, 4].astype(np.int64) << 8) | data[:, 5]
        where = np.minimum(np.searchsorted(_MONTH_CODES, code), 11)
        good &= _MONTH_CODES[where] == code
        month = _MONTH_OF_CODE[where]

        def number(*positions):
            value = np.zeros(len(rows), dtype=np.int64)
            for pos in positions:
                value = value * 10 + digits[:, _DIGITS.index(pos)]
            return value
        day, year = number(0, 1), number(7, 8, 9, 10)
        hour, minute, second = number(12, 13), number(15, 16), number(18, 19)
        zone_h, zone_m = number(22, 23), number(24, 25)
        leap = ((year % 4 == 0) & (year % 100 != 0)) | (year % 400 == 0)
        month_days = np.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31])[month] + (leap & (month == 2))
        good &= (year >= 1) & (day >= 1) & (day <= month_days) & (hour < 24) & (minute < 60) & (second <= 60)
        good &= (zone_h < 24) & (zone_m < 60)
        sign = np.where(data[:, 21] == ord("-"), -1, 1)
        seconds = (_days_from_civil(year, month, day) * 86400 + hour * 3600 + minute * 60 + second
                   - sign * (zone_h * 3600 + zone_m * 60))
        out[rows] = seconds * 1_000_000
        ok[rows] = good & (out[rows] >= MIN_US) & (out[rows] <= MAX_US)   # the zone can push past year 1 or 9999
    return pa.array(out, pa.int64(), mask=~ok)


# Years 1 to 9999, as Python's datetime (and any reader of the Parquet files) can hold them: a
# time outside is not a time a server logged, and past int64 it would not even fit.
MIN_US, MAX_US = -62_135_596_800_000_000, 253_402_300_799_999_999


def _bounded(parse: Callable[[str], int | None]) -> Callable[[str], int | None]:
    def parse_in_range(text: str) -> int | None:
        us = parse(text)
        return us if us is not None and MIN_US <= us <= MAX_US else None
    return parse_in_range


def parse_unique(values: pa.Array, parse: Callable[[str], int | None], fast: str | None = None) -> pa.Array:
    """Parse each distinct string of `values` -> int64 µs since the epoch, null where it fails.
    `fast` ("clf"): try the column-wise parser first, `parse` the rest."""
    encoded = pc.dictionary_encode(values)
    if isinstance(encoded, pa.ChunkedArray):
        encoded = encoded.combine_chunks()
    uniques = encoded.dictionary
    parse = _bounded(parse)
    if fast == "clf":
        parsed = clf_times_us(uniques)
        missed = pc.is_null(parsed)
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
    "time_received_sec": msec_us,   # seconds with an optional fraction, like $msec
    "time_received_msec": epoch_us(1000),
    "time_received_usec": epoch_us(1_000_000),
}
FAST_FORMATS["time_received"] = FAST_FORMATS["time_local"]


def parse_times(values: pa.Array, var: str, time_format: str | None = None,
                zone: tzinfo = timezone.utc) -> pa.Array:
    """A time variable's column -> int64 µs UTC (null where unparseable)."""
    if time_format is not None:
        return parse_unique(values, strptime_us(time_format, zone))
    if var == "time_iso8601":
        return parse_unique(values, lambda text: iso8601_us(text, zone))
    return parse_unique(values, PARSERS[var], FAST_FORMATS.get(var))

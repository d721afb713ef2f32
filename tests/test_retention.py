"""enforce_retention: rows received before the cutoff are dropped and counted."""
from datetime import datetime, timedelta, timezone

import pyarrow as pa

from transforms.retention import enforce_retention, retention_cutoff

UTC = timezone.utc
CUTOFF = datetime(2026, 11, 1, tzinfo=UTC)


def table(*times):
    return pa.table({"received_at": pa.array(list(times), pa.timestamp("us", tz="UTC")),
                     "n": list(range(len(times)))})


def test_cutoff_is_now_minus_days():
    assert retention_cutoff(datetime(2026, 11, 22, 15, 0, tzinfo=UTC), 21) == datetime(2026, 11, 1, 15, 0, tzinfo=UTC)


def test_rows_before_cutoff_are_dropped_and_counted():
    kept, expired = enforce_retention(table(CUTOFF - timedelta(microseconds=1), CUTOFF, CUTOFF + timedelta(days=3),
                                            CUTOFF - timedelta(days=400)), CUTOFF)
    assert kept["n"].to_pylist() == [1, 2]       # a row exactly at the cutoff is kept
    assert expired == 2


def test_nothing_expired():
    original = table(CUTOFF, CUTOFF + timedelta(hours=1))
    kept, expired = enforce_retention(original, CUTOFF)
    assert kept.equals(original) and expired == 0


def test_everything_expired():
    kept, expired = enforce_retention(table(CUTOFF - timedelta(days=1)), CUTOFF)
    assert kept.num_rows == 0 and expired == 1


def test_empty_table():
    kept, expired = enforce_retention(table(), CUTOFF)
    assert kept.num_rows == 0 and expired == 0

"""transforms.timeparse: the column-wise $time_local parser agrees with the Python parser."""
import random

import pyarrow as pa
import pytest

from transforms.timeparse import clf_times_us, parse_unique, time_local_us

EDGE_CASES = [
    "10/Oct/2000:13:55:36 -0700", "29/Feb/2024:00:00:00 +0000", "29/Feb/2100:00:00:00 +0000",
    "29/Feb/2000:23:59:59 +0000", "31/Apr/2026:10:00:00 +0000", "31/Dec/1969:23:59:59 +0000",
    "01/Jan/1970:00:00:00 +0000", "30/Jun/2026:23:59:60 +0000", "01/Jan/0001:00:00:00 +0000",
    "01/Jan/0000:00:00:00 +0000", "31/Dec/9999:23:59:59 -1200", "20/Nov/2026:10:00:00 +1400",
    "20/Nov/2026:10:00:00 +2400", "20/Nov/2026:10:00:00 +0060", "20/nov/2026:10:00:00 +0000",
    "20/Nov/2026:24:00:00 +0000", "20/Nov/2026:10:60:00 +0000", "00/Nov/2026:10:00:00 +0000",
    "20/Nov/2026:10:00:00 0000", "20/Nov/2026 10:00:00 +0000", "[20/Nov/2026:10:00:00 +0000]",
    "20/Nov/2026:10:00:00.123 +0000", "2O/Nov/2026:10:00:00 +0000", "20/Nov/2026:10:00:00 +01:0",
    "20/Nov/2026:10:00:00 \u00b10100", "", "-", "20/Nov/2026:1:00:00 +00000",
]


def _mutations(seed: int, n: int) -> list[str]:
    rng = random.Random(seed)
    months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
    out = []
    for _ in range(n):
        text = (f"{rng.randint(0, 32):02d}/{rng.choice(months)}/{rng.randint(1, 9999):04d}:"
                f"{rng.randint(0, 25):02d}:{rng.randint(0, 61):02d}:{rng.randint(0, 61):02d} "
                f"{rng.choice('+-')}{rng.randint(0, 25):02d}{rng.randint(0, 61):02d}")
        if rng.random() < 0.2:   # one byte changed
            i = rng.randrange(len(text))
            text = text[:i] + rng.choice("0123456789/: +-xN") + text[i + 1:]
        out.append(text)
    return out


@pytest.mark.parametrize("values", [EDGE_CASES, _mutations(1, 5000)], ids=["edge-cases", "random"])
def test_column_parser_agrees_with_python_parser(values):
    expected = [time_local_us(v) for v in values]
    assert parse_unique(pa.array(values), time_local_us, "clf").to_pylist() == expected
    # what the column-wise parser accepts by itself is right too (the rest is the fallback's)
    fast = clf_times_us(pa.array(values)).to_pylist()
    assert all(f == e for f, e in zip(fast, expected) if f is not None)
    assert sum(f is not None for f in fast) > len(values) // 4


def test_column_parser_on_slices_nulls_and_repeats():
    values = pa.array([None, "20/Nov/2026:10:00:00 +0100", "x", "20/Nov/2026:10:00:00 +0100"] * 3)
    sliced = values.slice(1, 6)
    assert clf_times_us(sliced).to_pylist() == [time_local_us(v) if v else None for v in sliced.to_pylist()]
    assert parse_unique(values, time_local_us, "clf").null_count == 6


def test_times_outside_years_1_to_9999_are_invalid_not_a_crash():
    from transforms.timeparse import msec_us
    values = pa.array(["1795175001.500", "99999999999999.000", "99999999999999999999999.0"])
    assert parse_unique(values, msec_us).to_pylist() == [1795175001500000, None, None]

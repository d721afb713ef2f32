"""Every byte a run leaves behind, as a reader of the disk could see it: each file's raw bytes, the
decompressed content of every zstd frame in it (Parquet data AND dictionary pages, whether or not a
row still points at them), and the rows of DuckDB files (whose strings may be compressed on disk).
Used by the leak scans (tests/test_leak_scan.py) and the erase checks."""
from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import zstandard

ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


def zstd_frames(data: bytes) -> Iterator[bytes]:
    """The decompressed content of every zstd frame found anywhere in `data`."""
    start = data.find(ZSTD_MAGIC)
    while start >= 0:
        try:
            reader = zstandard.ZstdDecompressor().decompressobj()
            yield reader.decompress(data[start:])
        except zstandard.ZstdError:
            pass
        start = data.find(ZSTD_MAGIC, start + 1)


def duckdb_text(path: Path) -> bytes:
    """Every value of every table of a DuckDB file, as text."""
    import duckdb
    out = []
    con = duckdb.connect(str(path), read_only=True)
    try:
        for (schema, table) in con.execute(
                "SELECT table_schema, table_name FROM information_schema.tables WHERE table_type='BASE TABLE'"
        ).fetchall():
            for row in con.execute(f'SELECT * FROM "{schema}"."{table}"').fetchall():
                out.append(repr(row))
    finally:
        con.close()
    return "\n".join(out).encode("utf-8", "replace")


def readable_bytes(root: Path) -> Iterator[tuple[str, bytes]]:
    """(file, bytes) for every view of every file under `root` (see the module docstring)."""
    for folder, _, names in os.walk(root):
        for name in names:
            path = Path(folder) / name
            data = path.read_bytes()
            yield str(path), data
            for frame in zstd_frames(data):
                yield f"{path} (zstd frame)", frame
            if name.endswith(".duckdb"):
                yield f"{path} (tables)", duckdb_text(path)


def find(secrets: list[str], views: list[tuple[str, bytes]]) -> dict[str, list[str]]:
    """secret -> the views it occurs in (empty dict: nothing found)."""
    found: dict[str, list[str]] = {}
    for secret in secrets:
        needle = secret.encode()
        where = [name for name, data in views if needle in data]
        if where:
            found[secret] = where
    return found

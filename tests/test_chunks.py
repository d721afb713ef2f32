"""read_chunks / describe_input / expand_inputs: content-defined chunks of whole lines."""
import gzip
import random
import shutil

import pytest

from schemas.errors import AccesslogError
from transforms.chunks import describe_input, expand_inputs, fingerprint, read_chunks

CHUNK = 1000


def log_bytes(n_lines: int, seed: int = 7) -> bytes:
    """Lines of varying length (20..300 bytes), like a real access log's."""
    rng = random.Random(seed)
    lines = []
    for i in range(n_lines):
        pad = "x" * rng.randint(0, 260)
        lines.append(f"192.0.2.{i % 250} line {i} {pad}")
    return ("\n".join(lines) + "\n").encode()


def expected_chunks(content: bytes, chunk_bytes: int) -> list[tuple[int, bytes]]:
    """The documented contract, computed directly: chunk k starts at the first line
    that begins at or after byte k * chunk_bytes."""
    starts = [0] + [i + 1 for i, b in enumerate(content) if b == 10 and i + 1 < len(content)]
    cuts = sorted({next((s for s in starts if s >= k * chunk_bytes), None)
                   for k in range(1, len(content) // chunk_bytes + 1)} - {None, 0})
    bounds = [0] + cuts + [len(content)]
    out = []
    for a, b in zip(bounds, bounds[1:]):
        out.append((content[:a].count(b"\n") + 1, content[a:b]))
    return out


def chunks_of(path, chunk_bytes=CHUNK):
    return [(c.first_line, c.data) for c in read_chunks(describe_input(str(path)), chunk_bytes=chunk_bytes)]


@pytest.fixture
def plain_and_gzip(tmp_path):
    content = log_bytes(3000)
    plain, gz = tmp_path / "access.log", tmp_path / "access.log.1.gz"
    plain.write_bytes(content)
    gz.write_bytes(gzip.compress(content))
    return content, plain, gz


def test_chunks_follow_the_content_defined_contract(plain_and_gzip):
    content, plain, _ = plain_and_gzip
    got = chunks_of(plain)
    assert len(got) > 100
    assert got == expected_chunks(content, CHUNK)


def test_plain_and_gzip_give_identical_chunks(plain_and_gzip):
    _, plain, gz = plain_and_gzip
    assert chunks_of(plain) == chunks_of(gz)


def test_chunks_concatenate_to_the_file(plain_and_gzip):
    content, plain, gz = plain_and_gzip
    assert b"".join(data for _, data in chunks_of(plain)) == content
    assert b"".join(data for _, data in chunks_of(gz)) == content


def test_chunks_hold_whole_lines_and_first_line_is_cumulative(plain_and_gzip):
    _, plain, _ = plain_and_gzip
    line = 1
    for first_line, data in chunks_of(plain):
        assert first_line == line
        assert data.endswith(b"\n")
        line += data.count(b"\n")
    assert line == 3001


def test_other_chunk_sizes_follow_the_same_contract(plain_and_gzip):
    content, plain, _ = plain_and_gzip
    assert chunks_of(plain, 4000) == expected_chunks(content, 4000)
    # chunk_bytes=1: every line starts a new chunk.
    assert chunks_of(plain, 1) == [(i + 1, l + b"\n") for i, l in enumerate(content.split(b"\n")[:-1])]


def test_grown_file_keeps_earlier_chunks(tmp_path):
    content = log_bytes(2000)
    path = tmp_path / "access.log"
    path.write_bytes(content)
    before = chunks_of(path)
    with open(path, "ab") as f:
        f.write(log_bytes(500, seed=99))
    after = chunks_of(path)
    assert after[:len(before) - 1] == before[:-1]
    assert len(after) > len(before)
    assert after[len(before) - 1][1].startswith(before[-1][1])


def test_last_line_without_newline(tmp_path):
    content = log_bytes(400).rstrip(b"\n")
    path = tmp_path / "access.log"
    path.write_bytes(content)
    got = chunks_of(path)
    assert b"".join(d for _, d in got) == content
    assert not got[-1][1].endswith(b"\n")
    assert got == expected_chunks(content, CHUNK)


def test_a_line_longer_than_a_chunk_is_never_split(tmp_path):
    content = b"short\n" + b"L" * 5000 + b"\nshort again\n" + log_bytes(50)
    path = tmp_path / "access.log"
    path.write_bytes(content)
    got = chunks_of(path)
    assert any(b"L" * 5000 + b"\n" in d for _, d in got)
    assert all(d.endswith(b"\n") for _, d in got)
    assert got == expected_chunks(content, CHUNK)


def test_empty_file_has_no_chunks(tmp_path):
    path = tmp_path / "empty.log"
    path.write_bytes(b"")
    assert chunks_of(path) == []


def test_chunks_carry_source_and_input_id(plain_and_gzip):
    _, plain, _ = plain_and_gzip
    log_input = describe_input(str(plain), source="web-1/access.log")
    chunk = next(read_chunks(log_input, chunk_bytes=CHUNK))
    assert (chunk.source, chunk.input_id) == ("web-1/access.log", log_input.input_id)


# -- identity ---------------------------------------------------------------------------------


def test_fingerprint_identical_for_plain_gzip_and_renamed_copy(plain_and_gzip, tmp_path):
    _, plain, gz = plain_and_gzip
    copy = tmp_path / "renamed.log"
    shutil.copy(plain, copy)
    a, b, c = describe_input(str(plain)), describe_input(str(gz)), describe_input(str(copy))
    assert (a.gzipped, b.gzipped) == (False, True)
    assert a.input_id == b.input_id == c.input_id
    assert len(a.input_id) == 16


def test_fingerprint_differs_for_other_content(tmp_path):
    one, two = tmp_path / "one.log", tmp_path / "two.log"
    one.write_bytes(log_bytes(10, seed=1))
    two.write_bytes(log_bytes(10, seed=2))
    assert describe_input(str(one)).input_id != describe_input(str(two)).input_id


def test_fingerprint_covers_only_the_head(tmp_path):
    head = log_bytes(2000)
    path = tmp_path / "access.log"
    path.write_bytes(head)
    input_id, hashed = fingerprint(str(path), False, length=1024)
    path.write_bytes(head + b"appended line\n")
    assert fingerprint(str(path), False, length=1024) == (input_id, hashed)
    assert hashed == 1024


def test_unreadable_gzip_is_a_clear_error(tmp_path):
    path = tmp_path / "broken.gz"
    path.write_bytes(b"\x1f\x8b" + b"not really gzip")
    with pytest.raises(AccesslogError, match="cannot read"):
        describe_input(str(path))


# -- expand_inputs ----------------------------------------------------------------------------


def test_expand_inputs(tmp_path):
    for name in ("b.log", "a.log", "c.txt"):
        (tmp_path / name).write_text("x\n")
    assert expand_inputs([str(tmp_path / "*.log"), "-", str(tmp_path / "c.txt")]) == \
        [str(tmp_path / "a.log"), str(tmp_path / "b.log"), "-", str(tmp_path / "c.txt")]


def test_expand_inputs_missing_file(tmp_path):
    with pytest.raises(AccesslogError, match="not a readable file"):
        expand_inputs([str(tmp_path / "missing.log")])


def test_expand_inputs_glob_matching_nothing(tmp_path):
    with pytest.raises(AccesslogError, match="no input matches"):
        expand_inputs([str(tmp_path / "*.gz")])


def test_expand_inputs_directory(tmp_path):
    with pytest.raises(AccesslogError, match="not a readable file"):
        expand_inputs([str(tmp_path)])


# -- byte ranges: one file over many workers ----------------------------------------------------


def range_chunks(path, chunk_bytes=CHUNK):
    """What the spread reader makes of a file: its ranges counted, then each read on its own, in
    reverse order (a worker reads only its ranges, in any order)."""
    from transforms.chunks import first_lines, range_newlines, read_range, split_ranges
    ranges = split_ranges(describe_input(str(path)), chunk_bytes)
    counts = [range_newlines(r) for r in ranges if not r.whole]
    firsts = dict([first_lines((counts[0][0], [count for _, count in counts]))]) if counts else {}
    chunks = [c for r in reversed(ranges) for c in read_range(r, firsts, chunk_bytes)]
    return sorted((c.first_line, c.data) for c in chunks)


@pytest.mark.parametrize("seed", range(40))
def test_byte_ranges_give_the_same_chunks_as_reading_in_order(tmp_path, seed):
    rng = random.Random(seed)
    lines = [b"x" * rng.choice((0, 1, 5, 40, 200, 999, 1000, 1001, 2500)) for _ in range(rng.randint(0, 60))]
    content = b"\n".join(lines) + rng.choice((b"\n", b"", b"\n\n"))
    path = tmp_path / "access.log"
    path.write_bytes(content)
    chunk_bytes = rng.choice((1, 2, 7, 100, 1000, 4096))
    assert range_chunks(path, chunk_bytes) == chunks_of(path, chunk_bytes)
    if content.strip(b"\n"):
        assert range_chunks(path, chunk_bytes) == expected_chunks(content, chunk_bytes)


def test_byte_ranges_of_a_log_match_the_contract(plain_and_gzip):
    content, plain, gz = plain_and_gzip
    assert range_chunks(plain) == expected_chunks(content, CHUNK)
    assert range_chunks(gz) == expected_chunks(content, CHUNK)   # gzip: one unit, read in order


def test_a_range_reads_only_its_own_bytes(tmp_path, monkeypatch):
    """No range reads the file from its start: a worker reads its range and the rest of its last
    line (and, counting, the range's own bytes)."""
    import transforms.chunks as chunks
    from transforms.chunks import first_lines, range_newlines, read_range, split_ranges
    path = tmp_path / "access.log"
    path.write_bytes(log_bytes(2000))
    ranges = split_ranges(describe_input(str(path)), 4096)
    assert len(ranges) > 20
    counts = [range_newlines(r) for r in ranges]
    firsts = dict([first_lines((counts[0][0], [count for _, count in counts]))])
    expected = dict(expected_chunks(path.read_bytes(), 4096))
    reads = []
    real_open = chunks._open_seekable

    class Counting:
        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def seek(self, at):
            return self.f.seek(at)

        def read1(self, n):
            piece = self.f.read1(n)
            reads.append(len(piece))
            return piece
    monkeypatch.setattr(chunks, "_open_seekable", lambda p: Counting(real_open(p)))
    for r in ranges[5:]:
        reads.clear()
        chunk, = read_range(r, firsts, 4096)
        assert chunk.data == expected[chunk.first_line]
        assert sum(reads) <= 4096 + 2 * (1 << 16)   # its range and the rest of two lines, never the file


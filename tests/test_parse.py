"""parse_chunk: nginx lines (as ngx_http_log_module writes them) -> access records + rejects.

nginx facts the expectations rely on (ngx_http_log_module docs):
* `$time_local` is written when the response is finished, so the request arrived
  `$request_time` (seconds, millisecond resolution) earlier;
* with escape=default, '"', '\\', bytes < 32 and bytes > 126 are written as \\xHH;
* a variable without a value is written as '-'.
"""
import dataclasses
from datetime import datetime, timedelta, timezone

import pyarrow as pa
import pytest

from schemas import ACCESS
from transforms.chunks import LogChunk
from transforms.formats import compile_format, resolve_format
from transforms.parse import parse_chunk

COMBINED = resolve_format("combined")
TIMED = resolve_format("timed_combined")
UTC = timezone.utc


def at(stamp: str) -> datetime:
    """A $time_local value -> aware UTC datetime, independently of the code under test."""
    return datetime.strptime(stamp, "%d/%b/%Y:%H:%M:%S %z").astimezone(UTC)


def line(ip="203.0.113.7", user="-", stamp="10/Oct/2000:13:55:36 -0700", request="GET / HTTP/1.1",
         status="200", sent="2326", referrer="-", agent="-", timings=None) -> str:
    text = f'{ip} - {user} [{stamp}] "{request}" {status} {sent} "{referrer}" "{agent}"'
    return text if timings is None else f"{text} {timings}"


def parse(fmt, lines, first_line=1, sep="\n", source="access.log"):
    data = lines if isinstance(lines, bytes) else (sep.join(lines) + sep).encode("utf-8")
    return parse_chunk(fmt, LogChunk(source, "0123456789abcdef", first_line, data))


def rows(fmt, *lines):
    records, rejects = parse(fmt, list(lines))
    assert rejects.reasons == [], rejects.reasons
    return records.records.sort_by("source_line").to_pylist()


def one(fmt, text):
    (row,) = rows(fmt, text)
    return row


# -- every field ----------------------------------------------------------------------------


def test_combined_line_every_field():
    text = line(user="frank", request="GET /apache_pb.gif?lang=en&x=1 HTTP/1.0",
                referrer="http://www.example.com/start.html",
                agent="Mozilla/4.08 [en] (Win98; I ;Nav)")
    records, rejects = parse(COMBINED, [text], first_line=42)
    assert rejects.source_lines == []
    (row,) = records.records.to_pylist()
    t = at("10/Oct/2000:13:55:36 -0700")
    assert t == datetime(2000, 10, 10, 20, 55, 36, tzinfo=UTC)
    # Columns combined does not log stay null.
    absent = ("upstream_addr", "request_length", "response_bytes", "scheme", "request_id", "connection_id",
              "tls_protocol")
    assert all(row.pop(name) is None for name in absent)
    assert row == {
        "received_at": t, "responded_at": t, "duration_ms": None,
        "method": "GET", "url_path": "/apache_pb.gif", "url_query": "lang=en&x=1", "protocol": "HTTP/1.0",
        "status": 200, "bytes_sent": 2326,
        "referrer": "http://www.example.com/start.html", "user_agent": "Mozilla/4.08 [en] (Win98; I ;Nav)",
        "host": None, "language": None, "upstream_status": None, "upstream_ms": None,
        "source": "access.log", "source_line": 42,
        "_client_ip": "203.0.113.7", "_remote_user": "frank",
    }
    assert records.lines == 1 and records.rejected == 0


def test_record_columns_have_the_access_schema_types():
    records, _ = parse(TIMED, [line(timings="0.010 0.005")])
    table = records.records
    for name in table.column_names:
        if name.startswith("_"):
            continue  # in-memory only, replaced by PseudonymizeClients
        type_ = table.schema.field(name).type
        if pa.types.is_dictionary(type_):  # strings travel dictionary-encoded; same values
            type_ = type_.value_type
        assert type_ == ACCESS.field(name).type, name


def test_timed_combined_line_every_field():
    text = line(ip="198.51.100.23", stamp="20/Nov/2026:09:15:02 +0100", request="POST /api/v1/items HTTP/2.0",
                status="201", sent="512", referrer="https://shop.example/cart", agent="curl/8.5.0",
                timings="0.123 0.100")
    row = one(TIMED, text)
    responded = datetime(2026, 11, 20, 8, 15, 2, tzinfo=UTC)
    assert row["responded_at"] == responded
    # nginx wrote $time_local at the end of the request: it arrived $request_time earlier.
    assert row["received_at"] == responded - timedelta(milliseconds=123)
    assert row["duration_ms"] == 123.0
    assert row["upstream_ms"] == 100.0
    assert (row["method"], row["url_path"], row["url_query"], row["protocol"]) == \
        ("POST", "/api/v1/items", None, "HTTP/2.0")
    assert (row["status"], row["bytes_sent"]) == (201, 512)
    assert (row["referrer"], row["user_agent"]) == ("https://shop.example/cart", "curl/8.5.0")
    assert row["_client_ip"] == "198.51.100.23"
    assert row["_remote_user"] is None


def test_request_time_with_millisecond_resolution():
    row = one(TIMED, line(stamp="01/Jan/2026:00:00:00 +0000", timings="1.007 -"))
    assert row["duration_ms"] == 1007.0
    assert row["received_at"] == datetime(2025, 12, 31, 23, 59, 58, 993000, tzinfo=UTC)
    assert row["upstream_ms"] is None


def test_request_time_dash_means_no_duration():
    row = one(TIMED, line(timings="- -"))
    assert row["duration_ms"] is None
    assert row["received_at"] == row["responded_at"]


# -- time zones -----------------------------------------------------------------------------


@pytest.mark.parametrize("stamp, utc", [
    ("10/Oct/2000:13:55:36 +0000", datetime(2000, 10, 10, 13, 55, 36, tzinfo=UTC)),
    ("10/Oct/2000:13:55:36 -0700", datetime(2000, 10, 10, 20, 55, 36, tzinfo=UTC)),
    ("10/Oct/2000:13:55:36 +0530", datetime(2000, 10, 10, 8, 25, 36, tzinfo=UTC)),
    ("10/Oct/2000:13:55:36 +1400", datetime(2000, 10, 9, 23, 55, 36, tzinfo=UTC)),
    ("31/Dec/2023:23:30:00 -0100", datetime(2024, 1, 1, 0, 30, 0, tzinfo=UTC)),
    ("29/Feb/2024:00:00:00 +0000", datetime(2024, 2, 29, 0, 0, 0, tzinfo=UTC)),
    ("31/Oct/2026:23:59:59 +0100", datetime(2026, 10, 31, 22, 59, 59, tzinfo=UTC)),
    ("30/Apr/2026:12:00:00 +0000", datetime(2026, 4, 30, 12, 0, 0, tzinfo=UTC)),
])
def test_time_local_converted_to_utc(stamp, utc):
    assert at(stamp) == utc   # the oracle agrees with the hand-written value
    row = one(COMBINED, line(stamp=stamp))
    assert row["responded_at"] == utc


def test_time_local_with_fraction():
    # Not nginx's own shape, but some log shippers add milliseconds; handled by the Python parser.
    row = one(COMBINED, line(stamp="10/Oct/2000:13:55:36.250 +0000"))
    assert row["responded_at"] == datetime(2000, 10, 10, 13, 55, 36, 250000, tzinfo=UTC)


# -- escapes and encodings ------------------------------------------------------------------


def test_escaped_quote_in_user_agent_is_decoded():
    row = one(COMBINED, line(agent=r"Mozilla/5.0 \x22quoted\x22 (X11)"))
    assert row["user_agent"] == 'Mozilla/5.0 "quoted" (X11)'


def test_escaped_backslash_is_decoded():
    row = one(COMBINED, line(agent=r"C:\x5CProgram Files\x5Cagent"))
    assert row["user_agent"] == "C:\\Program Files\\agent"


def test_escapes_are_decoded_in_one_pass():
    # A client sending the four characters \x41 is logged as \x5Cx41: decoding must give \x41 back, not A.
    row = one(COMBINED, line(request=r"GET /a\x5Cx41 HTTP/1.1", agent=r"not an escape: \xZZ"))
    assert row["url_path"] == r"/a\x41"
    assert row["user_agent"] == r"not an escape: \xZZ"


def test_escaped_utf8_bytes_are_decoded():
    row = one(COMBINED, line(request=r"GET /caf\xC3\xA9 HTTP/1.1", agent=r"caf\xC3\xA9-bot"))
    assert row["url_path"] == "/café"
    assert row["user_agent"] == "café-bot"


def test_raw_utf8_next_to_an_escape_survives():
    # escape=none logs or foreign writers carry raw UTF-8; an escape in the same value must not mangle it.
    row = one(COMBINED, line(agent=r"café \x22x\x22"))
    assert row["user_agent"] == 'café "x"'


def test_escaped_invalid_utf8_becomes_replacement_character():
    row = one(COMBINED, line(agent=r"bad \xFF byte"))
    assert row["user_agent"] == "bad \ufffd byte"


def test_raw_invalid_utf8_bytes_never_crash():
    good = line().encode()
    raw = (b'203.0.113.7 - - [10/Oct/2000:13:55:36 -0700] "GET /caf\xe9 HTTP/1.1" 200 1 "-" "agent \xff\xfe"\n'
           + good + b"\n")
    records, rejects = parse(COMBINED, raw)
    assert rejects.source_lines == []
    first, second = records.records.sort_by("source_line").to_pylist()
    assert first["url_path"] == "/caf\ufffd"
    assert first["user_agent"] == "agent \ufffd\ufffd"
    assert second["url_path"] == "/"


# -- client addresses -----------------------------------------------------------------------


@pytest.mark.parametrize("logged, canonical", [
    ("203.0.113.7", "203.0.113.7"),
    ("2001:db8::1", "2001:db8::1"),
    ("2001:0db8:0000:0000:0000:0000:0000:0001", "2001:db8::1"),
    ("::1", "::1"),
    ("::ffff:192.0.2.1", "192.0.2.1"),   # IPv4-mapped: one client, one pseudonym
])
def test_client_address(logged, canonical):
    assert one(COMBINED, line(ip=logged))["_client_ip"] == canonical


# -- dashes ---------------------------------------------------------------------------------


def test_dash_means_null():
    row = one(COMBINED, line(user="-", referrer="-", agent="-", sent="-"))
    assert row["_remote_user"] is None
    assert row["referrer"] is None
    assert row["user_agent"] is None
    assert row["bytes_sent"] is None


def test_zero_bytes_is_not_null():
    assert one(COMBINED, line(sent="0"))["bytes_sent"] == 0


# -- request lines --------------------------------------------------------------------------


def test_tls_handshake_sent_to_http_port_is_kept_with_null_request():
    row = one(COMBINED, line(request=r"\x16\x03\x01\x00\xF5\x01", status="400", sent="157"))
    assert row["status"] == 400
    assert row["method"] is None and row["url_path"] is None
    assert row["url_query"] is None and row["protocol"] is None


def test_empty_request():
    row = one(COMBINED, line(request="", status="400", sent="0"))
    assert (row["method"], row["url_path"], row["protocol"]) == (None, None, None)
    assert row["status"] == 400


def test_request_without_protocol():
    row = one(COMBINED, line(request="GET /"))
    assert (row["method"], row["url_path"], row["protocol"]) == ("GET", "/", None)


def test_lowercase_method_is_kept_as_sent():
    row = one(COMBINED, line(request="get /index.html HTTP/1.1"))
    assert (row["method"], row["url_path"], row["protocol"]) == ("get", "/index.html", "HTTP/1.1")


def test_spaces_in_target():
    row = one(COMBINED, line(request="GET /my file.html?q=a b HTTP/1.1"))
    assert (row["method"], row["url_path"], row["url_query"], row["protocol"]) == \
        ("GET", "/my file.html", "q=a b", "HTTP/1.1")


@pytest.mark.parametrize("target, path, query", [
    ("/search?q=beam&page=2", "/search", "q=beam&page=2"),
    ("/a?", "/a", ""),
    ("/a", "/a", None),
    ("/a?b?c", "/a", "b?c"),
    ("*", "*", None),
])
def test_query_string_split(target, path, query):
    row = one(COMBINED, line(request=f"GET {target} HTTP/1.1"))
    assert (row["url_path"], row["url_query"]) == (path, query)


# -- upstream timings -----------------------------------------------------------------------


def test_upstream_response_time_list_is_summed():
    # Several upstreams tried (', ') and an internal redirect (' : '): the value has spaces,
    # so the line needs the regex path; it must still parse.
    records, rejects = parse(TIMED, [line(timings="0.010 0.001, 0.002 : 0.003")])
    assert rejects.reasons == []
    (row,) = records.records.to_pylist()
    assert row["upstream_ms"] == pytest.approx(6.0)
    assert row["duration_ms"] == 10.0


def test_upstream_dash_entries_are_skipped():
    assert one(TIMED, line(timings="0.010 -, 0.004"))["upstream_ms"] == pytest.approx(4.0)


# -- rejects --------------------------------------------------------------------------------


REJECT_CASES = [
    ("this is not an access log line", "line does not match log format 'combined'"),
    ("", "empty line"),
    (line(status="2x0"), "invalid $status"),
    (line(stamp="32/Oct/2000:13:55:36 -0700"), "invalid $time_local"),
    (line(stamp="10/Foo/2000:13:55:36 -0700"), "invalid $time_local"),
    (line(stamp="10/Oct/2000:25:55:36 -0700"), "invalid $time_local"),
    (line(stamp="31/Feb/2000:13:55:36 +0000"), "invalid $time_local"),   # not rolled over into March
    (line(stamp="31/Apr/2026:13:55:36 +0000"), "invalid $time_local"),
    (line(stamp="29/Feb/2023:13:55:36 +0000"), "invalid $time_local"),
    (line(ip="not_an_ip!"), "invalid $remote_addr"),
    (line(ip="999.1.1.1"), "invalid $remote_addr"),
    (line(sent="12k"), "invalid $body_bytes_sent"),
]


@pytest.mark.parametrize("text, reason", REJECT_CASES)
def test_reject_reason(text, reason):
    good = line()
    records, rejects = parse(COMBINED, [good, text, good], first_line=100)
    assert rejects.source_lines == [101]
    assert rejects.reasons == [reason]
    assert rejects.lines == [text]            # raw until RedactRejects
    assert sorted(records.records["source_line"].to_pylist()) == [100, 102]


def test_invalid_request_time_is_rejected():
    records, rejects = parse(TIMED, [line(timings="fast -")])
    assert rejects.reasons == ["invalid $request_time"]
    assert records.records.num_rows == 0


def test_reject_reasons_never_quote_the_line():
    secrets = ["198.51.100.23", "mallory", "Secret-Agent"]
    lines = [
        line(ip="198.51.100.23", user="mallory", agent="Secret-Agent", status="2x0"),
        line(ip="198.51.100.23", user="mallory", agent="Secret-Agent", stamp="99/Oct/2000:13:55:36 +0000"),
        line(ip="198.51.100.23/x", user="mallory", agent="Secret-Agent"),   # no address, no host name
        "198.51.100.23 mallory Secret-Agent garbage",
    ]
    _, rejects = parse(COMBINED, lines)
    assert len(rejects.reasons) == 4
    for reason in rejects.reasons:
        for secret in secrets:
            assert secret not in reason


def test_all_lines_rejected_gives_empty_records():
    records, rejects = parse(COMBINED, ["garbage one", "garbage two"])
    assert records.records.num_rows == 0
    assert rejects.source_lines == [1, 2]


# -- line endings and conservation ----------------------------------------------------------


def test_crlf_line_endings():
    records, rejects = parse(COMBINED, [line(agent="a"), line(agent="b")], sep="\r\n")
    assert rejects.reasons == []
    table = records.records.sort_by("source_line")
    assert table["user_agent"].to_pylist() == ["a", "b"]
    assert table["source_line"].to_pylist() == [1, 2]


def test_crlf_lines_read_as_lf_lines_on_the_fast_path():
    """A CRLF log, and CRLF lines amid LF ones, give the rows their LF copies give; the CR of a
    CR LF is no damage (the line stays on the tokenizer's path), a CR inside a line or before
    another CR is (that line alone goes to the regex)."""
    from transforms.formats import resolve_format as rf
    from transforms.parse import tokenize_chunk
    texts = [line(agent=f"a{i}", request=f"GET /p{i} HTTP/1.1") for i in range(40)]
    lf = parse(COMBINED, texts)[0].records.sort_by("source_line").to_pylist()
    assert parse(COMBINED, texts, sep="\r\n")[0].records.sort_by("source_line").to_pylist() == lf
    mixed = "".join(t + ("\r\n" if i % 3 else "\n") for i, t in enumerate(texts)).encode()
    assert parse(COMBINED, mixed)[0].records.sort_by("source_line").to_pylist() == lf
    tok = tokenize_chunk(rf("combined"), LogChunk("a", "0123456789abcdef", 1, mixed))
    assert len(tok.rows) == 40 and not tok.redo.any()   # every line tokenized, none redone
    damaged = [t + "\r" if i == 5 else t for i, t in enumerate(texts)]   # "...\r\r\n"
    damaged[7] = damaged[7].replace('" 200', '"\r 200')
    records, rejects = parse(COMBINED, damaged, sep="\r\n")
    got = {r["source_line"]: r for r in records.records.to_pylist()}
    assert set(got) | set(rejects.source_lines) == set(range(1, 41))
    assert all(got[n] == lf[n - 1] for n in got if n not in (6, 8))


def test_last_line_without_newline():
    data = (line(agent="a") + "\n" + line(agent="b")).encode()
    records, rejects = parse(COMBINED, data)
    assert rejects.reasons == []
    assert sorted(records.records["user_agent"].to_pylist()) == ["a", "b"]
    assert records.lines == 2


def test_empty_chunk():
    records, rejects = parse(COMBINED, b"")
    assert records.lines == 0 and records.records.num_rows == 0 and rejects.lines == []


MIXED = [
    line(agent="ok-1"),
    "garbage",
    line(request="GET /a b HTTP/1.1", agent="space in target"),
    "",
    line(status="2x0"),
    'abc "unbalanced quote',
    line(ip="2001:db8::1", user="bob", referrer="https://example.com/?q=1", agent=r"\x22quoted\x22"),
    line(ip="::ffff:192.0.2.1", request=r"\x16\x03\x01\x00\xF5\x01", status="400"),
    line(stamp="10/Oct/2000:13:55:36 +1400", request="", status="400", sent="-"),
    line(ip="no/pe"),
    line(agent="ok-2"),
]
MIXED_REJECTED = [2, 4, 5, 6, 10]


def test_every_line_is_a_record_or_a_reject():
    records, rejects = parse(COMBINED, MIXED, first_line=1)
    kept = records.records["source_line"].to_pylist()
    assert len(kept) + len(rejects.source_lines) == len(MIXED) == records.lines
    assert records.rejected == len(rejects.source_lines)
    assert sorted(kept + rejects.source_lines) == list(range(1, len(MIXED) + 1))
    assert rejects.source_lines == MIXED_REJECTED


def _normalized(records, rejects):
    table = records.records.sort_by("source_line")
    return table.to_pylist(), list(zip(rejects.source_lines, rejects.reasons, rejects.lines))


@pytest.mark.parametrize("fmt, lines", [
    (COMBINED, MIXED),
    (TIMED, [line(timings="0.123 0.100"), line(timings="0.001 0.001, 0.002 : 0.003"), "garbage",
             line(timings="- -"), line(timings="x -")]),
    (compile_format('$remote_addr [$time_local] "$request" $status rt=$request_time "$http_user_agent" $host'),
     ['192.0.2.1 [10/Oct/2000:13:55:36 +0000] "GET /x?y=1 HTTP/1.1" 200 rt=0.004 "curl/8" example.org',
      '192.0.2.1 [10/Oct/2000:13:55:36 +0000] "GET / HTTP/1.1" 200 0.004 "curl/8" example.org',
      '::1 [10/Oct/2000:13:55:36 -0700] "GET / HTTP/1.1" 503 rt=1.500 "-" -']),
])
def test_tokenizer_and_regex_paths_agree(fmt, lines):
    assert fmt.columns is not None
    regex_only = dataclasses.replace(fmt, columns=None)
    fast = _normalized(*parse(fmt, lines, first_line=7))
    slow = _normalized(*parse(regex_only, lines, first_line=7))
    assert fast == slow
    assert fast[0], "some lines must parse"


def test_custom_format_with_host():
    fmt = compile_format('$remote_addr [$time_local] "$request" $status rt=$request_time "$http_user_agent" $host')
    row = one(fmt, '192.0.2.1 [10/Oct/2000:13:55:36 +0000] "GET / HTTP/1.1" 200 rt=0.250 "curl/8" Example.ORG')
    assert row["host"] == "Example.ORG"
    assert row["duration_ms"] == 250.0
    assert row["bytes_sent"] is None   # the format has no $body_bytes_sent
    assert row["received_at"] == datetime(2000, 10, 10, 13, 55, 35, 750000, tzinfo=UTC)



def test_utf8_byte_order_mark_at_the_start_of_a_file_is_ignored():
    text = '192.0.2.1 - - [10/Oct/2000:13:55:36 -0700] "GET / HTTP/1.1" 200 1 "-" "-"'
    records, rejects = parse_chunk(COMBINED, LogChunk("a.log", "id", 1, b"\xef\xbb\xbf" + text.encode() + b"\n"))
    assert records.records.num_rows == 1 and rejects.source_lines == []
    assert records.records["_client_ip"].to_pylist() == ["192.0.2.1"]


@pytest.mark.parametrize("text, fmt, reason", [
    ('192.0.2.1 - - [20/Nov/2026:10:00:01 +0000] "GET / HTTP/1.1" 200 99999999999999999999999 "-" "UA"',
     "combined", "invalid $body_bytes_sent"),
    ('192.0.2.1 - - [20/Nov/2026:10:00:01 +0000] "GET / HTTP/1.1" 200 9223372036854775808 "-" "UA"',
     "combined", "invalid $body_bytes_sent"),
    ('{"ts": 1795175001, "status": 200, "remote_addr": "192.0.2.1", "request": "GET / HTTP/1.1", '
     '"duration": "9999999999999999999999h"}', "json", "invalid $request_time"),
    ('192.0.2.1 - - [20/Nov/2026:10:00:01 +0000] "GET / HTTP/1.1" 200 5 "-" "UA" 99999999999999999999.5',
     '$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" '
     '"$http_user_agent" $request_time', "invalid $request_time"),
])
def test_numbers_too_large_for_their_column_reject_the_line(text, fmt, reason):
    """Not a crash: a number that does not fit (int64 bytes, a duration of millennia) is a bad line."""
    from transforms.chunks import LogChunk
    from transforms.formats import resolve_format
    from transforms.parse import parse_chunk

    good = '192.0.2.2 - - [20/Nov/2026:10:00:02 +0000] "GET /ok HTTP/1.1" 200 9223372036854775807 "-" "UA"'
    records, rejects = parse_chunk(resolve_format(fmt), LogChunk("a.log", "id", 1, f"{text}\n".encode()))
    assert rejects.reasons == [reason] and records.records.num_rows == 0
    records, rejects = parse_chunk(resolve_format("combined"), LogChunk("a.log", "id", 1, f"{good}\n".encode()))
    assert records.records["bytes_sent"].to_pylist() == [2**63 - 1] and not rejects.reasons


# -- a damaged line costs only itself ------------------------------------------------------------


@pytest.mark.parametrize("damage", [b"\r", b"\x00\x00", b"\xff\xfe", b'"'])
def test_a_damaged_line_leaves_the_rest_of_its_chunk_to_the_tokenizer(damage):
    """A carriage return, a NUL run, invalid UTF-8 or a stray quote in one line sends only that
    line to the regex path; before, one CR sent the whole 8 MiB chunk there."""
    from transforms.parse import finish_chunk, tokenize_chunk
    good = [line(agent=f"ok-{i}").encode() for i in range(50)]
    damaged = good[:25] + [good[25][:40] + damage + good[25][40:]] + good[26:]
    chunk = LogChunk("access.log", "0123456789abcdef", 1, b"\n".join(damaged) + b"\n")
    tok = tokenize_chunk(COMBINED, chunk)
    assert set(range(50)) - {25} <= set(tok.rows[~tok.redo].tolist())   # the others: tokenizer
    records, rejects = finish_chunk(COMBINED, tok)
    whole, whole_rejects = parse_chunk(dataclasses.replace(COMBINED, columns=None), chunk)   # all by regex
    assert records.records.sort_by("source_line").to_pylist() == whole.records.sort_by("source_line").to_pylist()
    assert (rejects.source_lines, rejects.reasons) == (whole_rejects.source_lines, whole_rejects.reasons)


def test_only_lines_with_invalid_utf8_are_found():
    from transforms.parse import _line_bounds, invalid_utf8_lines
    valid = "café 😀\n".encode() * 3
    assert invalid_utf8_lines(valid, _line_bounds(valid)[0]) == []
    data = b"ok\xc3\xa9\nbad\xff\xfe x\n\xc3\nfine\nlast \xe2\x82"
    assert invalid_utf8_lines(data, _line_bounds(data)[0]) == [1, 2, 4]
    many = (b"good line\n" * 5000 + b"bad \xff\n") * 20   # spans many decoding windows
    assert invalid_utf8_lines(many, _line_bounds(many)[0]) == [5000 + 5001 * k for k in range(20)]



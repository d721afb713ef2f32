"""parse_json_chunk: JSON-lines access logs -> nginx field strings, rows, rejects, extras.

Server facts the expectations rely on:
* nginx `escape=json` writes '"' as \\", '\\' as \\\\, bytes < 0x20 as \\n \\r \\t or \\u00XX,
  other bytes raw (so invalid UTF-8 can reach the file), and a variable without a value
  as "" (not '-'); every value is a JSON string because the format quotes it.
* Caddy's access log: `ts` epoch seconds (float), `request` object with header lists,
  `duration` seconds (float), `size`, `status` numbers.
* Traefik's JSON access log: `Duration`/`OriginDuration` in nanoseconds, `time` RFC 3339
  (the log line's time), `StartUTC` with nanoseconds, kept headers as `request_<Name>`,
  `ServiceURL` an object.
"""
import json

import numpy as np
import pyarrow as pa
import pytest

from schemas.errors import AccesslogError
from transforms.chunks import LogChunk
from transforms.jsonlog import (
    CANONICAL_FIELDS,
    DEFAULT_FIELD_MAP,
    MAX_EXTRA_KEYS,
    looks_like_json,
    parse_field_map,
    parse_json_chunk,
)

NGINX = ('{"time_local":"%(time)s","remote_addr":"%(ip)s","remote_user":"%(user)s","request":"%(request)s",'
         '"status": "%(status)s","body_bytes_sent":"%(sent)s","request_time":"%(rt)s","http_referrer":"%(ref)s",'
         '"http_user_agent":"%(ua)s"}')
CADDY = {"level": "info", "ts": 1700000000.123, "logger": "http.log.access", "msg": "handled request",
         "request": {"remote_ip": "10.0.0.2", "remote_port": "51234", "client_ip": "203.0.113.7",
                     "proto": "HTTP/2.0", "method": "GET", "host": "example.com", "uri": "/a?b=1",
                     "headers": {"User-Agent": ["Mozilla/5.0"], "Referer": ["https://x/"],
                                 "Accept-Language": ["de-DE"]}},
         "bytes_read": 0, "user_id": "", "duration": 0.0012, "size": 512, "status": 200,
         "resp_headers": {"Server": ["Caddy"], "Content-Type": ["text/html"]}}
TRAEFIK = {"ClientAddr": "203.0.113.9:51234", "ClientHost": "203.0.113.9", "ClientPort": "51234",
           "ClientUsername": "-", "DownstreamContentSize": 1234, "DownstreamStatus": 404, "Duration": 1234567,
           "OriginContentSize": 1234, "OriginDuration": 1000000, "OriginStatus": 404, "RequestAddr": "example.com",
           "RequestContentSize": 0, "RequestHost": "example.com", "RequestMethod": "GET",
           "RequestPath": "/missing?x=1", "RequestPort": "-", "RequestProtocol": "HTTP/1.1", "RequestScheme": "https",
           "RouterName": "web@docker", "ServiceAddr": "10.0.0.5:80",
           "ServiceURL": {"Scheme": "http", "Host": "10.0.0.5:80", "Path": ""},
           "StartUTC": "2023-11-14T22:13:20.123456789Z", "TLSVersion": "1.3", "level": "info", "msg": "",
           "request_User-Agent": "curl/8.4.0", "time": "2023-11-14T22:13:20Z"}


def nginx_line(time="10/Oct/2000:13:55:36 -0700", ip="203.0.113.7", user="", request="GET /a?b=1 HTTP/1.1",
               status="200", sent="2326", rt="0.005", ref="", ua="Mozilla/5.0") -> str:
    """A line as `log_format json_combined escape=json` writes it (values already escaped)."""
    return NGINX % dict(time=time, ip=ip, user=user, request=request, status=status, sent=sent, rt=rt,
                        ref=ref, ua=ua)


def parse(lines, field_map=None, first_line=1):
    data = lines if isinstance(lines, bytes) else "".join(
        (line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines).encode("utf-8")
    return parse_json_chunk(LogChunk("access.json", "0123456789abcdef", first_line, data), field_map)


def records(lines, field_map=None) -> list[dict]:
    """Parsed lines as dicts of field strings; asserts nothing was rejected."""
    fields, rows, rejects, _ = parse(lines, field_map)
    assert rejects == []
    return [{name: values[i].as_py() for name, values in fields.items()} for i in range(len(rows))]


def one(line, field_map=None) -> dict:
    (row,) = records([line], field_map)
    return row


# -- nginx escape=json ----------------------------------------------------------------------


def test_nginx_json_combined_strings_as_logged():
    row = one(nginx_line(ref="https://example.org/start", user="frank"))
    assert row == {
        "time_local": "10/Oct/2000:13:55:36 -0700", "remote_addr": "203.0.113.7", "remote_user": "frank",
        "request": "GET /a?b=1 HTTP/1.1", "status": "200", "body_bytes_sent": "2326", "request_time": "0.005",
        "http_referer": "https://example.org/start", "http_user_agent": "Mozilla/5.0"}


def test_nginx_empty_variables_read_as_dash():
    # escape=json writes an unset $remote_user / $http_referer as "", text formats as '-'.
    row = one(nginx_line(user="", ref=""))
    assert row["remote_user"] == "-" and row["http_referer"] == "-"


def test_nginx_json_escapes_are_decoded():
    request = r'GET /q?x=\"a\\b\u0001\t HTTP/1.1'
    row = one(nginx_line(request=request, ua=r"Mozilla \"quoted\" caf\u00e9"))
    assert row["request"] == 'GET /q?x="a\\b\x01\t HTTP/1.1'
    assert row["http_user_agent"] == 'Mozilla "quoted" café'


def test_raw_utf8_and_invalid_bytes():
    # nginx passes bytes >= 0x80 through unescaped: valid UTF-8 stays, invalid becomes U+FFFD.
    data = (nginx_line(ua="Motörhead").encode("utf-8") + b"\n"
            + nginx_line(request="GET /\xff HTTP/1.1").encode("latin-1") + b"\n")
    fields, rows, rejects, _ = parse(data)
    assert rejects == [] and rows.tolist() == [0, 1]
    assert fields["http_user_agent"][0].as_py() == "Motörhead"
    assert fields["request"][1].as_py() == "GET /\ufffd HTTP/1.1"


def test_unicode_escapes_with_surrogate_pairs():
    row = one('{"time":"2023-11-14T22:13:20Z","status":200,"user_agent":"\\u00e9\\ud83d\\ude00\\u4e2d"}')
    assert row["http_user_agent"] == "é😀中"


# -- Caddy and Traefik ----------------------------------------------------------------------


def test_caddy_access_log():
    row = one(CADDY)
    assert row == {
        "msec": "1700000000.123", "remote_addr": "203.0.113.7", "request_method": "GET", "request_uri": "/a?b=1",
        "server_protocol": "HTTP/2.0", "host": "example.com", "http_user_agent": "Mozilla/5.0",
        "http_referer": "https://x/", "http_accept_language": "de-DE", "request_time": "0.0012",
        "body_bytes_sent": "512", "status": "200", "request": "GET /a?b=1 HTTP/2.0",
        "remote_user": "-"}   # user_id "" is a named, empty field


def test_caddy_falls_back_to_remote_ip_and_reads_string_durations():
    line = json.loads(json.dumps(CADDY))
    del line["request"]["client_ip"]
    line["duration"] = "1.5ms"   # duration_format string
    row = one(line)
    assert row["remote_addr"] == "10.0.0.2"
    assert row["request_time"] == "0.0015"


def test_traefik_access_log_durations_in_nanoseconds():
    row = one(TRAEFIK)
    assert row["remote_addr"] == "203.0.113.9"
    assert row["time_iso8601"] == "2023-11-14T22:13:20Z"   # `time` (end), not StartUTC (start)
    assert float(row["request_time"]) == pytest.approx(0.001234567)
    assert row["request_time"] == "0.001234567"
    assert float(row["upstream_response_time"]) == pytest.approx(0.001)
    assert row["status"] == "404" and row["upstream_status"] == "404"
    assert row["body_bytes_sent"] == "1234" and row["request_length"] == "0"
    assert row["request"] == "GET /missing?x=1 HTTP/1.1"
    assert row["host"] == "example.com" and row["http_host"] == "example.com"
    assert row["scheme"] == "https" and row["ssl_protocol"] == "TLSv1.3"
    assert row["http_user_agent"] == "curl/8.4.0"
    assert row["upstream_addr"] == "10.0.0.5:80"


def test_traefik_start_time_when_time_is_missing():
    line = {k: v for k, v in TRAEFIK.items() if k != "time"}
    assert one(line)["time_iso8601"] == "2023-11-14T22:13:20.123456789Z"


def test_caddy_request_object_and_nginx_request_line_share_the_key():
    nginx, caddy = records([nginx_line(), CADDY])
    assert nginx["request"] == "GET /a?b=1 HTTP/1.1"
    assert caddy["request"] == "GET /a?b=1 HTTP/2.0"


# -- generic JSON ----------------------------------------------------------------------------


def test_generic_numbers_are_printed_like_nginx():
    row = one({"timestamp": "2023-11-14T22:13:20.5+01:00", "ip": "2001:db8::1", "method": "POST",
               "url": "/api/items?id=3", "status": 201, "bytes": 0, "response_time": 0.25,
               "userAgent": "ua/1", "referrer": None})
    assert row == {"time_iso8601": "2023-11-14T22:13:20.5+01:00", "remote_addr": "2001:db8::1",
                   "request_method": "POST", "request_uri": "/api/items?id=3", "status": "201",
                   "body_bytes_sent": "0", "request_time": "0.25", "http_user_agent": "ua/1",
                   "http_referer": "-", "request": "POST /api/items?id=3"}


def test_floats_keep_decimal_text_without_exponent():
    row = one({"ts": 1700000000.5, "status": 200, "request_time": 0.00001, "bytes_sent": 10})
    assert row["request_time"] == "0.00001"
    assert row["msec"] == "1700000000.5"


@pytest.mark.parametrize("key, value, expected", [
    ("duration_ms", 12.5, "0.0125"),
    ("latency_ms", 7, "0.007"),
    ("responseTime", 5, "0.005"),          # pino-http / morgan: milliseconds
    ("elapsed_us", 250, "0.000250"),
    ("took_ns", 1500000, "0.001500000"),
    ("duration", 0.5, "0.5"),              # Caddy: seconds
    ("Duration", 500000000, "0.500000000"),  # Traefik: nanoseconds
    ("duration", "1m2.5s", "62.5"),        # Go duration text
])
def test_duration_units_by_key(key, value, expected):
    field_map = {key: "request_time"} if key in ("elapsed_us", "took_ns") else None
    row = one({"time": "2023-11-14T22:13:20Z", "status": 200, key: value}, field_map)
    assert row["request_time"] == expected


@pytest.mark.parametrize("value, column, expected", [
    ("2023-11-14T22:13:20Z", "time_iso8601", "2023-11-14T22:13:20Z"),
    ("2023-11-14T23:13:20.123+01:00", "time_iso8601", "2023-11-14T23:13:20.123+01:00"),
    ("2023-11-14 22:13:20+00:00", "time_iso8601", "2023-11-14 22:13:20+00:00"),
    ("10/Oct/2000:13:55:36 -0700", "time_local", "10/Oct/2000:13:55:36 -0700"),
    ("[10/Oct/2000:13:55:36 -0700]", "time_local", "[10/Oct/2000:13:55:36 -0700]"),
    ("1700000000.123", "msec", "1700000000.123"),
    (1700000000.123, "msec", "1700000000.123"),
    (1700000000, "msec", "1700000000"),
    (1700000000123, "msec", "1700000000.123"),                 # milliseconds
    (1700000000123456, "msec", "1700000000.123456"),           # microseconds
    (1700000000123456789, "msec", "1700000000.123456789"),     # nanoseconds
    ("1700000000123", "msec", "1700000000.123"),
])
def test_time_column_follows_value_shape(value, column, expected):
    for key in ("time", "timestamp", "@timestamp", "ts"):
        row = one({key: value, "status": 200})
        assert row[column] == expected
        assert not {"time_local", "time_iso8601", "msec"} - {column} & set(row)


def test_mixed_time_shapes_in_one_chunk_become_msec():
    fields, rows, rejects, _ = parse([{"time": "2000-10-10T20:55:36Z", "status": 200},
                                      {"time_local": "10/Oct/2000:13:55:36 -0700", "status": 200},
                                      {"ts": 971211336.25, "status": 200}])
    assert rejects == [] and set(fields) & {"time_local", "time_iso8601", "msec"} == {"msec"}
    assert fields["msec"].to_pylist() == ["971211336.000000", "971211336.000000", "971211336.250000"]


def test_time_local_preferred_over_msec_like_build_records():
    row = one({"msec": "1700000000.123", "time_local": "14/Nov/2023:22:13:20 +0000", "status": "200"})
    assert row["time_local"] == "14/Nov/2023:22:13:20 +0000" and "msec" not in row


def test_keys_match_case_insensitively_first_present_wins():
    row = one({"TIME": "2023-11-14T22:13:20Z", "Status_Code": 200, "client_ip": "", "Remote_IP": "198.51.100.1",
               "IP": "192.0.2.1", "UserAgent": ["first", "second"]})
    assert row["status"] == "200"
    assert row["remote_addr"] == "198.51.100.1"   # "" counts as absent
    assert row["http_user_agent"] == "first"


def test_absolute_url_gives_origin_form_request():
    row = one({"timestamp": "2023-11-14T22:13:20Z", "httpRequest": {
        "requestMethod": "GET", "requestUrl": "https://user:pw@example.com:8443/p?q=1", "status": 200,
        "remoteIp": "192.0.2.7", "latency": "0.123s", "protocol": "HTTP/1.1"}})
    assert row["request"] == "GET /p?q=1 HTTP/1.1"
    assert row["host"] == "example.com:8443" and row["scheme"] == "https"
    assert row["request_time"] == "0.123" and row["remote_addr"] == "192.0.2.7"


def test_separate_path_and_args_are_joined_in_the_request_line():
    row = one({"time": "2023-11-14T22:13:20Z", "status": 200, "method": "GET", "path": "/s", "args": "q=1"})
    assert row["request"] == "GET /s?q=1" and row["request_uri"] == "/s" and row["args"] == "q=1"


# -- field maps ------------------------------------------------------------------------------


def test_parse_field_map_dotted_paths():
    field_map = parse_field_map("when.unix=msec, http.req.line=request,http.code=status ,who=remote_addr")
    assert field_map == {"when.unix": "msec", "http.req.line": "request", "http.code": "status",
                         "who": "remote_addr"}
    row = one({"when": {"unix": 1700000000}, "http": {"req": {"line": "GET / HTTP/1.1"}, "code": 204},
               "who": "192.0.2.1"}, field_map)
    assert row == {"msec": "1700000000", "request": "GET / HTTP/1.1", "status": "204", "remote_addr": "192.0.2.1"}


def test_dotted_path_matches_literal_dotted_keys_too():
    row = one({"@timestamp": "2023-11-14T22:13:20Z", "http.response.status_code": 200,
               "http": {"request": {"method": "GET"}}, "url.original": "/x", "source.ip": "192.0.2.9",
               "event": {"duration": 2000000}})
    assert row["status"] == "200" and row["request_method"] == "GET" and row["request"] == "GET /x"
    assert row["remote_addr"] == "192.0.2.9" and row["request_time"] == "0.002000000"


def test_user_entries_take_precedence_over_defaults():
    field_map = parse_field_map("real_status=status,ip=realip_remote_addr")
    row = one({"time": "2023-11-14T22:13:20Z", "status": 500, "real_status": 200, "ip": "192.0.2.1",
               "client_ip": "198.51.100.2"}, field_map)
    assert row["status"] == "200"
    assert row["realip_remote_addr"] == "192.0.2.1" and row["remote_addr"] == "198.51.100.2"


def test_parse_field_map_rejects_unknown_columns_with_the_valid_names():
    with pytest.raises(AccesslogError) as e:
        parse_field_map("latency=duration_ms")
    assert "duration_ms" in str(e.value) and "request_time" in str(e.value) and "remote_addr" in str(e.value)
    with pytest.raises(AccesslogError, match="key=column"):
        parse_field_map("latency")
    assert parse_field_map(" , ") == {}


def test_default_field_map_targets_canonical_names_and_has_no_case_duplicates():
    assert set(DEFAULT_FIELD_MAP.values()) <= set(CANONICAL_FIELDS)
    lowered = [key.lower() for key in DEFAULT_FIELD_MAP]
    assert len(lowered) == len(set(lowered))


# -- rejects and line accounting -------------------------------------------------------------

SECRET_IP = "198.51.100.77"


def test_every_line_is_a_row_or_a_reject_and_reasons_quote_nothing():
    good = {"time": "2023-11-14T22:13:20Z", "status": 200, "ip": SECRET_IP}
    lines = [
        json.dumps(good),                                              # 0
        "",                                                            # 1
        "   \t",                                                       # 2
        f"{SECRET_IP} - - [10/Oct/2000:13:55:36 -0700] \"GET /\" 200",  # 3 not JSON
        "[1, 2]",                                                      # 4
        '"just a string"',                                             # 5
        json.dumps({"status": 200, "ip": SECRET_IP}),                  # 6 no time
        json.dumps({"time": "2023-11-14T22:13:20Z", "ip": SECRET_IP}),  # 7 no status
        json.dumps({"time": "yesterday", "status": 200}),              # 8 not a timestamp
        json.dumps({"time": None, "status": None}),                    # 9
        '{"time":"2023-11-14T22:13:20Z","status":2',                   # 10 truncated
        json.dumps({"time": "2023-11-14T22:13:20Z", "status": "", "ip": SECRET_IP}),  # 11
        json.dumps(good),                                              # 12
    ]
    fields, rows, rejects, _ = parse(lines)
    assert rows.dtype == np.int64 and rows.tolist() == [0, 12]
    assert rejects == [(1, "empty line"), (2, "empty line"), (3, "invalid JSON"),
                       (4, "JSON value is not an object"), (5, "JSON value is not an object"),
                       (6, "JSON object has no time field"), (7, "JSON object has no status field"),
                       (8, "JSON time field is not a recognized timestamp"), (9, "JSON object has no time field"),
                       (10, "invalid JSON"), (11, "JSON object has no status field")]
    assert sorted(rows.tolist() + [i for i, _ in rejects]) == list(range(len(lines)))
    assert all(SECRET_IP not in reason and "yesterday" not in reason for _, reason in rejects)
    assert all(len(values) == len(rows) for values in fields.values())


def test_crlf_bom_and_missing_final_newline():
    line = json.dumps({"time": "2023-11-14T22:13:20Z", "status": 200})
    data = b"\xef\xbb\xbf" + line.encode() + b"\r\n\r\n" + line.encode()
    fields, rows, rejects, _ = parse(data)
    assert rows.tolist() == [0, 2] and rejects == [(1, "empty line")]
    assert fields["status"].to_pylist() == ["200", "200"]


def test_empty_chunk_and_all_rejected_chunk():
    fields, rows, rejects, extra = parse(b"")
    assert (fields, rows.tolist(), rejects, extra) == ({}, [], [], {})
    fields, rows, rejects, extra = parse(b"nope\n")
    assert (fields, rows.tolist(), rejects, extra) == ({}, [], [(0, "invalid JSON")], {})


def test_columns_only_for_fields_some_line_has():
    fields, _, _, _ = parse([{"time": "2023-11-14T22:13:20Z", "status": 200},
                             {"time": "2023-11-14T22:13:21Z", "status": 200, "referer": "https://a/"}])
    assert set(fields) == {"time_iso8601", "status", "http_referer"}
    assert fields["http_referer"].to_pylist() == ["-", "https://a/"]
    assert all(values.type == pa.string() for values in fields.values())


# -- extra keys ------------------------------------------------------------------------------


def test_extra_top_level_scalars_aligned_with_rows():
    fields, rows, rejects, extra = parse([
        {"time": "2023-11-14T22:13:20Z", "status": 200, "level": "info", "cache": True, "tries": 2,
         "nested": {"a": 1}, "tags": ["x"]},
        "not json",
        {"time": "2023-11-14T22:13:21Z", "status": 200, "level": "warn", "shard": None},
        {"time": "2023-11-14T22:13:22Z", "status": 200, "ratio": 0.5},
    ])
    assert rows.tolist() == [0, 2, 3]
    assert extra == {"level": extra["level"], "cache": extra["cache"], "tries": extra["tries"],
                     "shard": extra["shard"], "ratio": extra["ratio"]}   # no nested objects or lists
    assert extra["level"].to_pylist() == ["info", "warn", None]
    assert extra["cache"].to_pylist() == ["true", None, None]
    assert extra["tries"].to_pylist() == ["2", None, None]
    assert extra["shard"].to_pylist() == [None, None, None]
    assert extra["ratio"].to_pylist() == [None, None, "0.5"]


def test_mapped_keys_and_used_objects_are_not_extra():
    _, _, _, extra = parse([CADDY, TRAEFIK])
    assert set(extra) == {"level", "logger", "msg", "bytes_read", "ClientPort", "OriginContentSize",
                          "RequestPort", "RouterName"}
    assert extra["bytes_read"].to_pylist() == ["0", None]
    assert extra["ClientPort"].to_pylist() == [None, "51234"]


def test_extra_columns_are_capped_per_chunk():
    lines = [{"time": "2023-11-14T22:13:20Z", "status": 200, f"k{i}": i} for i in range(MAX_EXTRA_KEYS + 5)]
    fields, rows, _, extra = parse(lines)
    assert len(rows) == MAX_EXTRA_KEYS + 5 and len(extra) == MAX_EXTRA_KEYS


# -- detection -------------------------------------------------------------------------------


def test_looks_like_json():
    assert looks_like_json([nginx_line(), json.dumps(CADDY), ""])
    assert looks_like_json(["\ufeff" + json.dumps(TRAEFIK), json.dumps(TRAEFIK)[:40]])   # truncated tail
    assert not looks_like_json(['203.0.113.7 - - [10/Oct/2000:13:55:36 -0700] "GET / HTTP/1.1" 200 2326'])
    assert not looks_like_json(["[1, 2]", "[3]"])
    assert not looks_like_json(["", "  "])
    assert not looks_like_json(["{not json", "{neither", "{nor this"])


# -- the contract with build_records ---------------------------------------------------------


def test_fields_feed_build_records():
    from transforms.fields import build_records
    fields, rows, rejects, _ = parse([nginx_line(), CADDY, TRAEFIK])
    assert rejects == []
    out, reasons = build_records(fields, len(rows))
    assert list(reasons) == [None, None, None]
    assert out["status"].to_pylist() == [200, 200, 404]
    assert out["url_path"].to_pylist() == ["/a", "/a", "/missing"]
    assert out["method"].to_pylist() == ["GET", "GET", "GET"]
    assert out["duration_ms"].to_pylist() == pytest.approx([5.0, 1.2, 1.235], abs=1e-3)

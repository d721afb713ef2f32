"""End-to-end tests of the formats issue: auto-detection, mixed inputs, error logs joined to
access rows, nginx.conf formats, realip, extras, `accesslog parse`, and format errors."""
from __future__ import annotations

import glob
import json
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from accesslog.cli import main

ACCESS = """\
192.0.2.10 - - [20/Nov/2026:10:00:00 +0000] "GET /index.html HTTP/1.1" 200 512 "-" "Mozilla/5.0" 0.010 0.009
192.0.2.11 - - [20/Nov/2026:10:00:01 +0000] "GET /missing.png?token=abc HTTP/1.1" 404 0 "-" "curl/8" 0.001 -
192.0.2.12 - - [20/Nov/2026:10:00:05 +0000] "GET /api/slow HTTP/1.1" 504 0 "-" "curl/8" 60.001 60.000
"""
ERRORS = """\
2026/11/20 10:00:01 [error] 1234#1234: *55 open() "/var/www/missing.png" failed (2: No such file or directory), \
client: 192.0.2.11, server: example.com, request: "GET /missing.png?token=abc HTTP/1.1", host: "example.com"
2026/11/20 10:00:05 [crit] 1234#1234: *56 upstream timed out (110: Connection timed out) while reading response \
header from upstream, client: 192.0.2.12, server: example.com, request: "GET /api/slow HTTP/1.1", \
upstream: "http://10.0.0.5:8080/api/slow", host: "example.com"
2026/11/20 10:00:06 [notice] 1234#1234: signal process started
"""
CADDY = ('{"level":"info","ts":1795168800.5,"logger":"http.log.access","msg":"handled request","request":'
         '{"remote_ip":"198.51.100.7","proto":"HTTP/2.0","method":"GET","host":"example.org","uri":"/a?b=1",'
         '"headers":{"User-Agent":["Mozilla/5.0"],"Accept-Language":["de-DE,de;q=0.9"]}},"duration":0.0012,'
         '"size":512,"status":200}\n')
APACHE = '203.0.113.9 - alice [20/Nov/2026:10:00:00 +0100] "GET /x HTTP/1.1" 200 - "http://ref/" "UA \\"q\\""\n'


def table(wh: Path, name: str) -> pa.Table:
    files = sorted(glob.glob(str(wh / name / "date=*" / "*.parquet")))
    return pa.concat_tables(pq.read_table(f, partitioning=None) for f in files) if files else pa.table({})


def write(tmp: Path, name: str, text: str) -> str:
    (tmp / name).write_text(text)
    return str(tmp / name)


def test_auto_detects_each_file_and_joins_error_logs(tmp_path, capsys):
    files = [write(tmp_path, "access.log", ACCESS), write(tmp_path, "error.log", ERRORS),
             write(tmp_path, "caddy.json", CADDY), write(tmp_path, "apache.log", APACHE)]
    wh = tmp_path / "wh"
    code = main(["run", *files, "--log-format", "auto", "--warehouse", str(wh), "--keys", str(tmp_path / "k"),
                 "--now", "2026-11-21T00:00:00Z"])
    out, err = capsys.readouterr()
    assert code == 0, err
    for name, preset in [("access.log", "timed_combined"), ("error.log", "nginx_error"), ("caddy.json", "json"),
                         ("apache.log", "apache_combined")]:
        assert f"{name}: detected {preset}" in err
    access = table(wh, "access")
    by_path = {r["url_path"]: r for r in access.to_pylist()}
    assert set(by_path) == {"/index.html", "/missing.png", "/api/slow", "/a", "/x"}
    assert (by_path["/missing.png"]["error_count"], by_path["/missing.png"]["error_level"]) == (1, "error")
    assert (by_path["/api/slow"]["error_count"], by_path["/api/slow"]["error_level"]) == (1, "crit")
    assert by_path["/index.html"]["error_count"] is None
    assert by_path["/x"]["user_agent"] == 'UA "q"' and by_path["/x"]["user_id"] is not None
    assert by_path["/a"]["language"] == "de" and by_path["/a"]["host"] == "example.org"
    # Apache %t is the arrival time; nginx writes at the response end (received = responded - request_time).
    assert by_path["/api/slow"]["responded_at"].isoformat() == "2026-11-20T10:00:05+00:00"
    assert by_path["/api/slow"]["received_at"].isoformat() == "2026-11-20T09:59:04.999000+00:00"
    errors = table(wh, "errors")
    assert errors.num_rows == 3 and sorted(errors["level"].to_pylist()) == ["crit", "error", "notice"]
    text = json.dumps(errors.to_pylist(), default=str) + json.dumps(access.to_pylist(), default=str)
    for raw in ["192.0.2.11", "192.0.2.12", "10.0.0.5", "198.51.100.7", "203.0.113.9", "alice", "token=abc"]:
        assert raw not in text
    assert "upstream: " not in text and "http://REDACTED:8080/api/slow" in errors["upstream"].to_pylist()


def test_nginx_conf_format_and_trusted_proxies(tmp_path, capsys):
    conf = tmp_path / "nginx.conf"
    conf.write_text("""
http {
    # comment with a "quote
    log_format proxied '$remote_addr [$time_local] "$request" $status '
                       '"$http_x_forwarded_for" rt=$request_time '
                       'cookie="$cookie_session" auth="$http_authorization" $connection';
    server { listen 80; }
}
""")
    line = ('10.0.0.2 [20/Nov/2026:10:00:00 +0000] "GET /p?email=a%40b.example HTTP/1.1" 200 '
            '"198.51.100.23, 10.0.0.9" rt=0.050 cookie="s3cr3tcookie" auth="Basic dXNlcjpwYXNzd29yZA==" 77\n')
    log = write(tmp_path, "proxied.log", line)
    for args in (["--log-format", f"{conf}:proxied"], ["--nginx-conf", str(conf), "--log-format-name", "proxied"]):
        wh = tmp_path / ("wh" + str(len(args)))
        code = main(["run", log, *args, "--warehouse", str(wh), "--keys", str(tmp_path / "k"), "--trusted-proxies",
                     "10.0.0.0/8", "--now", "2026-11-21T00:00:00Z"])
        assert code == 0, capsys.readouterr().err
        (row,) = table(wh, "access").to_pylist()
        assert row["client_network"] == "198.51.100.0/24"      # realip: right-most untrusted address
        assert row["connection_id"] == 77 and row["url_query"] == "email=REDACTED"
        extra = dict(row["extra"])
        assert extra["cookie_session"] != "s3cr3tcookie" and len(extra["cookie_session"]) == 32
        assert extra["http_authorization"] == "REDACTED"
        dump = json.dumps(row, default=str)
        assert "s3cr3tcookie" not in dump and "dXNlcjpw" not in dump and "198.51.100.23" not in dump


def test_parse_prints_one_json_object_per_line(tmp_path):
    log = write(tmp_path, "access.log", ACCESS + "garbage from 192.0.2.99\n")
    proc = subprocess.run([sys.executable, "-m", "accesslog.cli", "parse", "--log-format", "timed_combined", "-"],
                          input=Path(log).read_bytes(), capture_output=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    items = [json.loads(x) for x in proc.stdout.decode().splitlines()]
    assert [i["line"] for i in items] == [1, 2, 3, 4]
    assert items[1]["record"]["url_query"] == "token=REDACTED" and items[1]["record"]["status"] == 404
    assert items[3]["reject"].startswith("line does not match") and "192.0.2.99" not in items[3]["text"]
    assert b"192.0.2.1" not in proc.stdout
    explain = subprocess.run([sys.executable, "-m", "accesslog.cli", "parse", "--explain", "--log-format",
                              '%h %l %u %t "%r" %>s %b %D'], capture_output=True, text=True, timeout=120)
    fields = {i.get("variable"): i.get("column") for i in map(json.loads, explain.stdout.splitlines())}
    assert fields["request_time_us"] == "duration_ms" and fields["time_received"] == "received_at"


def test_parse_of_rejected_lines_files_their_key_like_a_run(tmp_path, capsys):
    """Lines with no time are redacted under today's key, as `accesslog run` files them; no key
    for 1970-01-01 appears in the keystore."""
    from datetime import datetime, timezone

    log = write(tmp_path, "bad.log", "garbage from 192.0.2.99\nmore garbage\n")
    keys = tmp_path / "keys.json"
    assert main(["parse", log, "--keys", str(keys)]) == 0, capsys.readouterr().err
    items = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [i["line"] for i in items] == [1, 2] and all("reject" in i for i in items)
    assert "192.0.2.99" not in items[0]["text"]
    [label] = json.loads(keys.read_text())["keys"]
    assert label >= "2026-11-26" and label <= datetime.now(timezone.utc).date().isoformat()


@pytest.mark.parametrize("spec, fragment", [
    ('$remote_addr [$time_local] "$request $status', "position 28"),
    ("%h %l %u %t %Z %>s", "'%Z' at position 13"),
    ("bogus_preset", "unknown log format 'bogus_preset'"),
    ('${remote_addr [$time_local] $status', "position 1"),
])
def test_bad_format_fails_before_reading_input(tmp_path, capsys, spec, fragment):
    code = main(["run", str(tmp_path / "does-not-exist.log"), "--log-format", spec, "--warehouse", str(tmp_path / "w"),
                 "--keys", str(tmp_path / "k")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and fragment in err[0], err
    assert not (tmp_path / "w").exists() and not (tmp_path / "k").exists()

"""Redaction does not depend on chunk boundaries (issue: "Redaction must not depend on chunk boundaries").

The same line must give the same record (and the same reject) whether it is parsed alone, in a
chunk with lines of other users (one of them called `admin`, others named like the words of the
paths), as the first or the last line of a chunk, or in a file of its own. User names are redacted
where they are personal data, the same way everywhere: the user field (a keyed pseudonym), the
Authorization header, a user directory `/~name/` and the segments after the `--user-paths`
prefixes; a user name elsewhere in a URL (`/solr/admin/`) is not recognized as one and stays.
"""
from __future__ import annotations

import contextlib
import io
import json
from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from accesslog.cli import main
from storage.keystore import Keystore
from tests.leakscan import find, readable_bytes
from transforms.chunks import LogChunk, split_chunks
from transforms.formats import resolve_format
from transforms.parse import parse_chunk
from transforms.pseudonymize import pseudonymize_records
from transforms.rejects import redaction_plan, rejects_table
from transforms.scrub import REDACTED, Scrubber, scrub_records

FORMAT = ('$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" '
          '"$http_user_agent" "$http_authorization"')
NOW = "2026-11-21T00:00:00Z"
USER_PATHS = "/users/,/u/"
BASIC = "Basic YWRtaW46U29sclBhc3M5OQ=="          # admin:SolrPass99
BEARER = "Bearer tok_live_Zq81xPw7"


def line(n: int, user: str, target: str, status: int = 200, referrer: str = "-", auth: str = "-",
         agent: str = "curl/8.5.0") -> str:
    return (f'192.0.2.{n % 250 + 1} - {user} [20/Nov/2026:10:{n // 60 % 60:02d}:{n % 60:02d} +0000] '
            f'"GET {target} HTTP/1.1" {status} {100 + n} "{referrer}" "{agent}" "{auth}"')


# The lines the issue is about (and their neighbours must not change them).
TARGETS = [
    line(1, "admin", "/solr/admin/info/system?wt=json", 500, auth=BASIC),
    line(2, "-", "/solr/admin/info/system?wt=json", 503),
    line(3, "admin", "/admin.php", 404, referrer="https://example.com/admin/"),
    line(4, "zoltan77", "/~zoltan77/index.html", referrer="https://example.com/~zoltan77/", auth=BEARER),
    line(5, "-", "/~alice/cv.pdf", referrer="https://example.com/users/alice.smith/profile?tab=1",
         agent="Bot/1.0 (+http://example.edu/~alice/bot.html)"),
    line(6, "alice.smith", "/users/alice.smith/settings?next=%2Fu%2Falice.smith%2F", 403),
    line(7, "admin", "/solr/admin/cores", status="2x0"),          # rejected: invalid $status
    line(8, "zoltan77", "/~zoltan77/x", status="2x0", referrer="https://example.com/admin/"),
]
# Users of the other lines: named like the words of the paths above.
OTHER_USERS = ["admin", "solr", "info", "system", "index", "users", "cores", "example", "json", "php", "cv", "-"]
# Names that appear only where they are personal data: no byte of any output may hold them.
PERSONAL = ["zoltan77", "alice", "YWRtaW46U29sclBhc3M5OQ", "SolrPass99", "tok_live_Zq81xPw7"]


def filler(count: int) -> list[str]:
    paths = ["/solr/admin/info/system?wt=json", "/admin.php", "/index.html", "/solr/cores", "/info/php",
             "/users/", "/static/users/list", "/docs/~draft/"]
    return [line(100 + i, OTHER_USERS[i % len(OTHER_USERS)], paths[i % len(paths)], [200, 404, 500][i % 3],
                 auth=BASIC if i % 7 == 0 else "-") for i in range(count)]


def path_of(text: str) -> str:
    return text.split('"')[1].split()[1].split("?")[0]


def status_of(text: str) -> str:
    return text.split('" ')[1].split()[0]


def log_lines() -> list[str]:
    lines = filler(240)
    for i, target in enumerate(TARGETS):   # spread over the file, the neighbours of other users
        lines.insert(20 + i * 25, target)
    return lines


def offsets(lines: list[str]) -> list[int]:
    out, at = [], 0
    for text in lines:
        out.append(at)
        at += len(text.encode()) + 1
    return out


# -- the real pipeline: `accesslog run` with different chunk sizes ------------------------------------


def run(tmp: Path, name: str, inputs: list[Path], *args: str) -> Path:
    warehouse = tmp / name
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed), contextlib.redirect_stderr(printed):
        code = main(["run", *map(str, inputs), "--warehouse", str(warehouse), "--keys", str(tmp / "keys" / "k.json"),
                     "--log-format", FORMAT, "--now", NOW, "--user-paths", USER_PATHS, "--max-reject-ratio", "1",
                     *args])
    assert code == 0, printed.getvalue()[-3000:]
    return warehouse


def rows(warehouse: Path, table: str = "access") -> list[dict]:
    """The committed rows, ordered by source and line (no column depends on the time of the run)."""
    files = sorted((warehouse / table).glob("date=*/*.parquet"))
    found = pa.concat_tables(pq.read_table(f, partitioning=None) for f in files).to_pylist()
    return sorted(found, key=lambda r: (r["source"], r["source_line"]))


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict:
    tmp = tmp_path_factory.mktemp("chunks")
    lines = log_lines()
    log = tmp / "access.log"
    log.write_text("\n".join(lines) + "\n")
    starts = offsets(lines)
    first, last = lines.index(TARGETS[0]), lines.index(TARGETS[-1])
    warehouses = {
        "one chunk": run(tmp, "one", [log]),                                       # 8 MiB: everything together
        "every line alone": run(tmp, "alone", [log], "--chunk-bytes", "1"),
        "small chunks": run(tmp, "small", [log], "--chunk-bytes", "700"),
        # a chunk ends right after the first target (chunk k ends with the line holding byte
        # k * chunk_bytes - 1), and one starts right at the last
        "boundary after a target": run(tmp, "after", [log], "--chunk-bytes", str(starts[first] + 1)),
        "boundary before a target": run(tmp, "before", [log], "--chunk-bytes", str(starts[last])),
    }
    singles = []
    for i, target in enumerate(TARGETS):
        single = tmp / f"single-{i}.log"
        single.write_text(target + "\n")
        singles.append(single)
    warehouses["each target in its own file"] = run(tmp, "files", singles)
    return {"lines": lines, "warehouses": warehouses, "log": log}


def test_chunk_boundaries_are_where_the_test_wants_them(runs):
    lines, starts = runs["lines"], offsets(runs["lines"])
    first, last = lines.index(TARGETS[0]), lines.index(TARGETS[-1])
    data = runs["log"].read_bytes()
    after = split_chunks("a", "i", 1, data, starts[first] + 1)
    assert after[0].data.decode().splitlines()[-1] == TARGETS[0]
    before = split_chunks("a", "i", 1, data, starts[last])
    assert any(c.data.decode().splitlines()[0] == TARGETS[-1] for c in before)
    assert len(split_chunks("a", "i", 1, data, 700)) > 20


@pytest.mark.parametrize("table", ["access", "rejects"])
def test_every_chunking_commits_the_same_rows(runs, table):
    reference = rows(runs["warehouses"]["one chunk"], table)
    assert len(reference) == (len(runs["lines"]) - 2 if table == "access" else 2)
    for name, warehouse in runs["warehouses"].items():
        if name != "each target in its own file":
            assert rows(warehouse, table) == reference, name


def test_a_line_alone_in_its_file_gives_the_same_record(runs):
    """Lineage (source, source_line) aside, every column of a target's row is the same as in the big file."""
    def by_target(found: list[dict], line_of) -> dict[str, dict]:
        return {line_of(r): {k: v for k, v in r.items() if k not in ("source", "source_line")} for r in found}
    lines = runs["lines"]
    for table in ("access", "rejects"):
        big = by_target([r for r in rows(runs["warehouses"]["one chunk"], table) if lines[r["source_line"] - 1] in TARGETS],
                        lambda r: lines[r["source_line"] - 1])
        alone = by_target(rows(runs["warehouses"]["each target in its own file"], table),
                          lambda r: TARGETS[int(Path(r["source"]).stem.split("-")[1])])
        assert alone == big and len(big) == (6 if table == "access" else 2), table


def test_what_is_redacted_and_what_stays(runs):
    access = rows(runs["warehouses"]["one chunk"])
    paths = [r["url_path"] for r in access]
    assert paths.count("/solr/admin/info/system") == sum(path_of(t) == "/solr/admin/info/system"
                                                         for t in runs["lines"]) > 20
    assert not any("REDACTED" in p for p in paths if p.startswith("/solr/") or p == "/admin.php")
    assert "/admin.php" in paths and "/~REDACTED/index.html" in paths and "/~REDACTED/cv.pdf" in paths
    assert "/users/REDACTED/settings" in paths
    assert "/docs/~draft/" in paths and "/static/users/list" in paths and "/users/" in paths   # not at a path's start
    target = {r["source_line"]: r for r in access}
    lines = runs["lines"]

    def row(target_line: str) -> dict:
        return target[lines.index(target_line) + 1]
    assert row(TARGETS[3])["referrer"] == "https://example.com/~REDACTED/"
    assert row(TARGETS[4])["referrer"] == "https://example.com/users/REDACTED/profile?tab=1"
    assert row(TARGETS[4])["user_agent"] == "Bot/1.0 (+http://example.edu/~REDACTED/bot.html)"
    assert row(TARGETS[5])["url_query"] == "next=%2Fu%2FREDACTED%2F"
    assert row(TARGETS[2])["referrer"] == "https://example.com/admin/"
    # the user field is a keyed pseudonym; Authorization values are REDACTED
    admins = {row(TARGETS[0])["user_id"], row(TARGETS[2])["user_id"]}
    assert len(admins) == 1 and None not in admins and "admin" not in admins.pop()
    assert dict(row(TARGETS[0])["extra"])["http_authorization"] == REDACTED
    assert dict(row(TARGETS[3])["extra"])["http_authorization"] == REDACTED
    rejected = [r["line"] for r in rows(runs["warehouses"]["one chunk"], "rejects")]
    # a reject redacts its own user field and that name wherever else the same line shows it
    assert any(f"/solr/{REDACTED}/cores" in r for r in rejected)
    assert any(f"/~{REDACTED}/x" in r and "example.com/admin/" in r for r in rejected)


def test_stats_do_not_split_a_path(runs, capsys):
    warehouse = runs["warehouses"]["small chunks"]
    capsys.readouterr()
    assert main(["stats", "--warehouse", str(warehouse), "--report", "top_failing_paths", "--top", "50",
                 "--include-bots", "--include-assets", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)["top_failing_paths"]
    failing = {r["url_path"]: r["failed_requests"] for r in report}
    expected = sum(path_of(t) == "/solr/admin/info/system" and status_of(t) in ("404", "500", "503")
                   for t in runs["lines"])
    assert failing["/solr/admin/info/system"] == expected > 10
    assert not any("REDACTED" in path for path in failing if "solr" in path)


def test_user_names_reach_no_output(runs):
    views = [view for warehouse in runs["warehouses"].values() for view in readable_bytes(warehouse)]
    assert views and find(PERSONAL, views) == {}


# -- the transforms, chunk by chunk -----------------------------------------------------------------


def transformed(lines: list[str], chunk_bytes: int | None, tmp_path: Path) -> tuple[list[dict], list[str]]:
    """parse_chunk + scrub_records + pseudonymize_records (and the rejects' redaction) per chunk."""
    fmt, scrubber = resolve_format(FORMAT), Scrubber(user_paths=("/users/", "/u/"))
    keystore = Keystore(tmp_path / "keys.json")
    data = ("\n".join(lines) + "\n").encode()
    chunks = split_chunks("a.log", "id", 1, data, chunk_bytes) if chunk_bytes else [LogChunk("a.log", "id", 1, data)]
    records, rejected = [], []
    for chunk in chunks:
        parsed, rejects = parse_chunk(fmt, chunk)
        if parsed.records.num_rows:
            table = pseudonymize_records(scrub_records(parsed.records, scrubber), keystore)
            records += [{k: v for k, v in r.items() if k != "source_line"} for r in table.to_pylist()]
        if rejects.lines:
            rejected += rejects_table(rejects, keystore, scrubber, redaction_plan(fmt),
                                      now=datetime(2026, 11, 21, tzinfo=timezone.utc))["line"].to_pylist()
    return records, rejected


def test_transforms_give_a_line_the_same_record_in_any_chunk(tmp_path):
    lines = log_lines()
    together = transformed(lines, None, tmp_path)
    assert len(together[0]) == len(lines) - 2 and len(together[1]) == 2
    for chunk_bytes in (1, 333, 4096):
        assert transformed(lines, chunk_bytes, tmp_path) == together, chunk_bytes
    records = {line: record for line, record in zip([t for t in lines if "2x0" not in t], together[0])}
    for target in TARGETS:
        alone = transformed([target], None, tmp_path)
        if "2x0" in target:
            assert alone[1][0] in together[1]
        else:
            assert alone[0] == [records[target]]
    assert records[TARGETS[0]]["url_path"] == "/solr/admin/info/system"
    assert records[TARGETS[3]]["url_path"] == "/~REDACTED/index.html"


def test_authorization_headers_are_redacted_in_every_format(tmp_path):
    """nginx $http_authorization / $http_proxy_authorization and Apache %{Authorization}i /
    %{Proxy-Authorization}i: the value is REDACTED whatever scheme it uses."""
    keystore, scrubber = Keystore(tmp_path / "keys.json"), Scrubber()
    cases = {
        '$remote_addr - $remote_user [$time_local] "$request" $status "$http_authorization" '
        '"$http_proxy_authorization"': '192.0.2.1 - bob [20/Nov/2026:10:00:00 +0000] "GET / HTTP/1.1" 200 "{a}" "{b}"',
        '%h %l %u %t "%r" %>s "%{Authorization}i" "%{Proxy-Authorization}i"':
            '192.0.2.1 - bob [20/Nov/2026:10:00:00 +0000] "GET / HTTP/1.1" 200 "{a}" "{b}"',
    }
    for spec, template in cases.items():
        for a, b in ((BASIC, "Digest username=bob, realm=example, response=6629fae49393a05397450978507c4ef1"),
                     (BEARER, "Negotiate YIIGhgYJKoZIhvcSAQICAQBuggZ1MIIGcaADAgEF"), ("opaque-api-key-Q9", "x")):
            parsed, _ = parse_chunk(resolve_format(spec), LogChunk("a.log", "id", 1,
                                                                     (template.format(a=a, b=b) + "\n").encode()))
            [row] = pseudonymize_records(scrub_records(parsed.records, scrubber), keystore).to_pylist()
            extra = dict(row["extra"])
            assert extra["http_authorization"] == REDACTED and extra["http_proxy_authorization"] == REDACTED, spec
            assert a not in json.dumps(row, default=str) and "bob" not in json.dumps(row, default=str)

"""accesslog's figures against GoAccess's on the same logs (the bundled samples).

GoAccess (`--log-format=COMBINED`, which ignores the two trailing timing fields of our
`timed_combined` samples) parses the same lines independently; where both count the same thing
the numbers must be equal.

Where GoAccess counts differently, and what the tests do about it:

* Bad lines. GoAccess skips an empty line without counting it at all, and counts a whitespace-only
  line and a malformed line as `failed_requests`. accesslog rejects all three into the `rejects`
  table (with a reason). So GoAccess's `valid_requests` = our rows, its `failed_requests` = our
  rejects minus the empty lines, its `total_requests` = lines read minus the empty lines.
* Statuses. Both keep the logged status as is (GoAccess's --444-as-404 is off by default), 499
  included, and both count bots (no --ignore-crawlers): per-status and per-class counts are equal.
* Days. GoAccess buckets by the logged local date; accesslog partitions by UTC day. Compared after
  shifting our responded_at ($time_local) by the logs' UTC offset.
* Not compared: unique visitors (GoAccess: IP + date + user agent per local day over all requests;
  accesslog: daily pseudonyms per UTC day over page views only), "requests"/unique files (GoAccess
  keys by path with query string and method), latency (COMBINED has no $request_time), static files
  and crawler detection (different lists).
"""
from __future__ import annotations

import gzip
import json
import re
import shutil
import subprocess
from pathlib import Path

import pyarrow as pa
import pytest

from accesslog.stats import StatsFilter, connect, status_classes, totals
from tests.conftest import SAMPLES

GOACCESS = shutil.which("goaccess")
pytestmark = pytest.mark.skipif(GOACCESS is None, reason="goaccess is not installed (Debian: apt-get install "
                                                           "goaccess; .ci/run does this)")
LOCAL_TIME = re.compile(r"\[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d ([+-])(\d\d)(\d\d)\]")


@pytest.fixture(scope="module")
def sample_logs(tmp_path_factory) -> list[Path]:
    """The samples as plain files (GoAccess builds may lack gzip support)."""
    folder = tmp_path_factory.mktemp("goaccess-logs")
    plain = folder / "access.log.1"
    plain.write_bytes(gzip.decompress((SAMPLES / "access.log.1.gz").read_bytes()))
    return [plain, SAMPLES / "access.log"]


@pytest.fixture(scope="module")
def goaccess(sample_logs, tmp_path_factory) -> dict:
    """GoAccess's JSON report of the samples: no config file, no network, no terminal."""
    folder = tmp_path_factory.mktemp("goaccess")
    report = folder / "report.json"
    done = subprocess.run([GOACCESS, *map(str, sample_logs), "--no-global-config", "--log-format=COMBINED",
                           "--no-progress", "-o", str(report)], cwd=folder, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=120, env={"HOME": str(folder), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    return json.loads(report.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def con(sample_warehouse):
    connection = connect(sample_warehouse)
    yield connection
    connection.close()


def goaccess_statuses(report: dict) -> dict[int, int]:
    # items look like {"data": "404 - Not Found: Requested Resource could not be found", "hits": {"count": 241}}
    return {int(item["data"][:3]): item["hits"]["count"]
            for status_class in report["status_codes"]["data"] for item in status_class["items"]}


def test_valid_requests_and_bytes_agree(goaccess, con):
    ours = totals(con, StatsFilter()).to_pylist()[0]
    assert goaccess["general"]["valid_requests"] == ours["requests"] == 5996
    assert goaccess["general"]["bandwidth"] == ours["bytes"]


def test_bad_lines_are_counted_as_documented(goaccess, con, sample_logs):
    lines = [line for log in sample_logs for line in log.read_text(encoding="utf-8").split("\n")[:-1]]
    empty = sum(1 for line in lines if line == "")
    rejects = con.sql("SELECT count(*) FROM rejects").fetchall()[0][0]
    assert empty > 0 and rejects > empty  # the samples hold both kinds, so the rule is exercised
    assert goaccess["general"]["failed_requests"] == rejects - empty
    assert goaccess["general"]["total_requests"] == len(lines) - empty


def test_per_status_counts_agree(goaccess, con):
    ours = dict(con.sql("SELECT status, count(*) FROM access GROUP BY status").fetchall())
    assert goaccess_statuses(goaccess) == ours
    assert {499, 404, 500, 304} <= set(ours)


def test_status_classes_agree(goaccess, con):
    # GoAccess's class rows: {"data": "4xx Client Errors", "hits": {"count": 361}, ...}
    theirs = {row["data"][:3]: row["hits"]["count"] for row in goaccess["status_codes"]["data"]}
    ours = {row["status_class"]: row["requests"] for row in status_classes(con, StatsFilter()).to_pylist()}
    assert theirs == ours


def test_requests_per_logged_day_agree(goaccess, con, sample_logs):
    # The samples mix UTC offsets, so each row is shifted by the offset written on its own line
    # (matched by file name and line number: the .gz was decompressed for GoAccess).
    offsets = {"name": [], "source_line": [], "offset_s": []}
    for log, name in zip(sample_logs, ["access.log.1.gz", "access.log"]):
        for number, line in enumerate(log.read_text(encoding="utf-8").split("\n"), start=1):
            if found := LOCAL_TIME.search(line):
                sign, hours, minutes = found.groups()
                offsets["name"].append(name)
                offsets["source_line"].append(number)
                offsets["offset_s"].append((1 if sign == "+" else -1) * (int(hours) * 3600 + int(minutes) * 60))
    line_offsets = pa.table(offsets)  # noqa: F841 (DuckDB reads it by name)
    assert len(set(offsets["offset_s"])) > 1  # several zones: a fixed shift would not do
    ours = dict(con.sql(
        """SELECT strftime(a.responded_at + to_seconds(o.offset_s), '%Y%m%d') AS day, count(*)
           FROM access a JOIN line_offsets o
             ON o.name = regexp_extract(a.source, '[^/]+$') AND o.source_line = a.source_line
           GROUP BY day""").fetchall())
    theirs = {day["data"]: day["hits"]["count"] for day in goaccess["visitors"]["data"]}
    assert sum(ours.values()) == 5996
    assert theirs == ours

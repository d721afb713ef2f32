"""`accesslog.open`: the analysts' API, and the README's worked questions run as written."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pyarrow as pa

import accesslog
from tests.conftest import ROOT


def readme_example() -> str:
    text = (Path(ROOT) / "README.md").read_text(encoding="utf-8")
    section = text.split("### Asking your own questions: `accesslog.open`", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_readme_worked_questions_run_and_answer(sample_warehouse, capsys):
    code = readme_example().replace('accesslog.open("warehouse")', f"accesslog.open({str(sample_warehouse)!r})")
    scope: dict = {}
    exec(compile(code, "README.md", "exec"), scope)   # noqa: S102 - the README's own example
    not_found, p95, slower = scope["not_found"], scope["p95"], scope["slower"]
    # the answers against the same question asked of the rows directly
    with accesslog.open(str(sample_warehouse)) as wh:
        rows = wh.query("SELECT url_path, status, duration_ms FROM access").to_pylist()
    hits: dict[str, int] = {}
    for r in rows:
        if r["status"] == 404:
            hits[r["url_path"]] = hits.get(r["url_path"], 0) + 1
    assert not_found.num_rows > 0
    assert dict(zip(not_found["url_path"].to_pylist(), not_found["hits"].to_pylist())) == \
        dict(sorted(hits.items(), key=lambda kv: (-kv[1], kv[0]))[:20])
    counts: dict[str, int] = {}
    for r in rows:
        if r["duration_ms"] is not None:
            counts[r["url_path"]] = counts.get(r["url_path"], 0) + 1
    assert len(p95) > 0 and all(counts[path] >= 50 for path in p95["url_path"])
    assert isinstance(slower, pa.Table) and set(slower.column_names) >= {"url_path", "ratio"}
    assert all(r > 1 for r in slower["ratio"].to_pylist())
    assert "latency_by_path" not in capsys.readouterr().err


def test_open_gives_views_helpers_and_the_connection(sample_warehouse):
    with accesslog.open(str(sample_warehouse)) as wh:
        first, last = wh.date_range()
        assert first <= last
        assert wh.query("SELECT count(*) AS n FROM access WHERE date BETWEEN $a AND $b", a=first, b=last)["n"][0] \
            .as_py() == wh.report("totals")["requests"][0].as_py() > 0
        assert wh.hosts().column_names == ["host", "requests"]
        assert wh.sql("SELECT 1 AS x").fetchall() == [(1,)]          # the connection's own methods
        assert list(wh.df("SELECT $v AS v", v="a'b")["v"]) == ["a'b"]  # bound, never SQL text


def test_opening_a_warehouse_does_not_import_beam(sample_warehouse):
    out = subprocess.run([sys.executable, "-c", "import sys, accesslog; wh = accesslog.open(sys.argv[1]); "
                          "print(wh.date_range() is not None, 'apache_beam' in sys.modules)", str(sample_warehouse)],
                         capture_output=True, text=True, cwd=ROOT, check=True).stdout.split()
    assert out == ["True", "False"]


def test_reports_take_the_path_and_publication_rules(sample_warehouse):
    """The API's report keywords are `accesslog stats`' flags: --exclude-path, --site-host, --min-visitors."""
    with accesslog.open(str(sample_warehouse)) as wh:
        plain = wh.report("top_pages", top=50)
        assert "/" in plain["url_path"].to_pylist()
        without_home = wh.report("top_pages", top=50, exclude_paths="/")   # one string is one glob
        assert "/" not in without_home["url_path"].to_pylist()
        hosts = wh.report("referrer_hosts", top=50)["referrer_host"].to_pylist()
        assert "www.example.com" in hosts   # the samples' own site: their format logs no $host
        assert "www.example.com" not in wh.report("referrer_hosts", top=50,
                                                  site_hosts=["www.example.com"])["referrer_host"].to_pylist()
        suppressed = wh.report("top_pages", top=50, min_visitors=20)["url_path"].to_pylist()
        assert suppressed[-1] == "(fewer than 20 visitors)"
        no_path = wh.query("SELECT count(*) AS n FROM access WHERE url_path IS NULL")["n"][0].as_py()
    # '*' excludes every path: what is left are the requests without one (garbage request lines)
    totals = accesslog.usage_stats(str(sample_warehouse), ["totals"], exclude_paths=["*"])["totals"].to_pylist()[0]
    assert totals["requests"] == no_path and totals["pages"] == 0

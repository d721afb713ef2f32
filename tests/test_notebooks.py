"""The analysts' notebooks run end to end (nbclient, a real kernel) against warehouses built by
the real pipeline, and are committed without outputs."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.conftest import ROOT, SAMPLES, build_warehouse

nbformat = pytest.importorskip("nbformat", reason="pip install -e '.[test]' (nbformat, nbclient, ipykernel)")
nbclient = pytest.importorskip("nbclient", reason="pip install -e '.[test]' (nbformat, nbclient, ipykernel)")
pytest.importorskip("matplotlib", reason="pip install -e '.[test]' (matplotlib)")

NOTEBOOKS = Path(ROOT) / "notebooks"
# The error log entry of one sample request (200.44.254.246 "GET /category/hats" at 02:02:34 +0100;
# error logs carry no offset and are read as UTC), ingested in the same run so error_count is set.
ERROR_LOG = """\
2026/11/20 01:02:34 [error] 1#1: *9 upstream timed out (110: Connection timed out), client: 200.44.254.246, server: shop, request: "GET /category/hats HTTP/1.1", host: "shop"
2026/11/20 01:02:34 [warn] 1#1: *9 an upstream response is buffered, client: 200.44.254.246, server: shop, request: "GET /category/hats HTTP/1.1", host: "shop"
"""


def execute(name: str, warehouse: Path, monkeypatch) -> list:
    """Run notebooks/<name> in a fresh kernel (cwd notebooks/) with ACCESSLOG_WAREHOUSE set -> its cells."""
    monkeypatch.setenv("ACCESSLOG_WAREHOUSE", str(warehouse))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")])))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    client = nbclient.NotebookClient(notebook, timeout=180, kernel_name="python3",
                                     resources={"metadata": {"path": str(NOTEBOOKS)}})
    client.execute()  # raises CellExecutionError naming the cell when one fails
    errors = [o for c in notebook.cells for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors, errors
    return notebook.cells


def text_of(cells) -> str:
    return "".join(o.get("text", "") for c in cells for o in c.get("outputs", []) if o.output_type == "stream")


def test_usage_stats_notebook(sample_warehouse, monkeypatch):
    cells = execute("usage_stats.ipynb", sample_warehouse, monkeypatch)
    figures = [o for c in cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    # traffic per day and per hour, status mix, latency, top pages, countries, browsers, sessions
    assert len(figures) == 8
    text = text_of(cells)
    for report in ("totals", "traffic", "status_classes", "latency_by_path", "top_pages", "browsers", "devices",
                   "countries", "referrer_hosts", "sessions", "errors_by_level"):
        assert f"\n{report}\n{'=' * len(report)}\n" in f"\n{text}", report
    assert "5,996" in text  # the samples' requests


def test_adhoc_sql_notebook(sample_warehouse, monkeypatch):
    text = text_of(execute("adhoc_sql.ipynb", sample_warehouse, monkeypatch))
    assert "5996" in text and "running_total" in text and "avg_3_days" in text
    assert "requests with errors: 0" in text


def test_adhoc_sql_joins_errors_to_their_requests(tmp_path, monkeypatch):
    (tmp_path / "error.log").write_text(ERROR_LOG, encoding="utf-8")
    warehouse = build_warehouse(tmp_path, [str(SAMPLES / "access.log"), str(tmp_path / "error.log")], "auto")
    text = text_of(execute("adhoc_sql.ipynb", warehouse, monkeypatch))
    assert "requests with errors: 1, whose entries the join did not all find: 0" in text


@pytest.mark.parametrize("name", ["usage_stats.ipynb", "adhoc_sql.ipynb"])
def test_committed_without_outputs(name):
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    nbformat.validate(notebook)
    code = [c for c in notebook.cells if c.cell_type == "code"]
    assert code and all(c.outputs == [] and c.execution_count is None for c in code)
    assert "parameters" in code[0].metadata.get("tags", [])
    assert 'os.environ.get("ACCESSLOG_WAREHOUSE", "../.demo/warehouse")' in code[0].source


def test_adhoc_sql_covers_the_warehouses_own_days(tmp_path, monkeypatch):
    """No hard-coded month: a warehouse of March 2025 gets its own rows, not an empty range."""
    from accesslog.cli import main
    moved = (SAMPLES / "access.log").read_text(encoding="utf-8").replace("/Nov/2026:", "/Mar/2025:")
    (tmp_path / "march.log").write_text(moved, encoding="utf-8")
    warehouse = tmp_path / "wh"
    assert main(["run", str(tmp_path / "march.log"), "--log-format", "timed_combined", "--warehouse", str(warehouse),
                 "--keys", str(tmp_path / "keys"), "--now", "2025-03-30T00:00:00Z"]) == 0
    text = text_of(execute("adhoc_sql.ipynb", warehouse, monkeypatch))
    assert "requests from 2025-03-" in text and "the queries below cover 2025-03-" in text
    assert "2026-11" not in text
    per_day_rows = [line for line in text.splitlines() if line.startswith("│ 2025-03-")]
    assert per_day_rows, text[:2000]

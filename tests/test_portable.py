"""The batch pipeline on a portable runner: Beam's job service + a separate Python worker pool.

This is the topology of Flink (or Spark) with a Python worker-pool sidecar, without the Java
job-server jars (docs/architecture.md, Beam runners here):

    driver --PortableRunner--> local_job_service_main (port P) --EXTERNAL--> worker_pool_main (port Q)

Every element crosses process boundaries as a pickle or through a coder, so this catches what the
in-process FnApiRunner does not: unpicklable DoFns, state captured from the driver, paths relative to
the driver's working directory (the services run in another folder). Both services run on this machine,
so the pipeline's local-filesystem writes (WriteParquetPartitions, CommitInputs) reach the warehouse.

The output must equal, file for file and row for row, an in-process FnApiRunner run of the same input.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.logfiles import MALFORMED, render, sample_requests, write_log

pq = pytest.importorskip("pyarrow.parquet")

START_TIMEOUT = 30.0      # seconds for each service to listen
PIPELINE_TIMEOUT = 75.0   # seconds for the portable run (the whole test stays under 120 s)
NOW = "2026-11-24T00:00:00Z"  # sample_requests span 2026-11-20..23


def _venv_bin() -> Path:
    """The project's venv bin folder: the worker pool starts SDK workers with `python` from PATH."""
    venv = Path(ROOT) / ".venv" / "bin"
    return venv if (venv / "python").exists() else Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tail(path: Path, lines: int = 25) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no output)"
    return "\n".join(text.splitlines()[-lines:]) or "(empty)"


class _Service:
    def __init__(self, name: str, args: list[str], port: int, workdir: Path, env: dict):
        self.name, self.port = name, port
        self.stderr_path = workdir / f"{name}.stderr"
        self._stderr = open(self.stderr_path, "wb")
        # Own session: the worker pool forks SDK worker processes; stopping the group stops them too.
        self.proc = subprocess.Popen([str(_venv_bin() / "python"), "-m", *args], cwd=workdir, env=env,
                                     stdin=subprocess.DEVNULL, stdout=self._stderr, stderr=subprocess.STDOUT,
                                     start_new_session=True)

    def describe(self) -> str:
        return f"{self.name} (pid {self.proc.pid}, port {self.port}) output:\n{_tail(self.stderr_path)}"

    def wait_listening(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"{self.name} exited with code {self.proc.returncode} before listening.\n"
                            f"{self.describe()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.2)
        pytest.fail(f"{self.name} did not listen on 127.0.0.1:{self.port} within {timeout:.0f} s.\n"
                    f"{self.describe()}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        else:   # the leader is gone; its SDK workers may not be
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        self._stderr.close()


@pytest.fixture(scope="module")
def portable_services(tmp_path_factory):
    """(job service, worker pool), both listening; stopped (with their worker processes) afterwards."""
    workdir = tmp_path_factory.mktemp("portable-services")   # not the repo: relative paths must not leak
    env = dict(os.environ)
    env["PATH"] = str(_venv_bin()) + os.pathsep + env.get("PATH", "")
    env["PYTHONPATH"] = ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["PYTHONUNBUFFERED"] = "1"
    services: list[_Service] = []
    try:
        job_port, pool_port = _free_port(), _free_port()
        while pool_port == job_port:
            pool_port = _free_port()
        services.append(_Service("job-service", ["apache_beam.runners.portability.local_job_service_main",
                                                 "--port", str(job_port)], job_port, workdir, env))
        services.append(_Service("worker-pool", ["apache_beam.runners.worker.worker_pool_main",
                                                 "--service_port", str(pool_port)], pool_port, workdir, env))
        for service in services:
            service.wait_listening(START_TIMEOUT)
        yield services[0], services[1]
    finally:
        for service in services:
            service.stop()


def _table_rows(warehouse: Path, skip: tuple[str, ...] = ()) -> dict[str, tuple[list[str], list[tuple]]]:
    """table -> (relative file paths, sorted rows without the `skip` columns) for every committed
    table of the warehouse."""
    out = {}
    for table_dir in sorted(p for p in warehouse.iterdir() if p.is_dir() and not p.name.startswith("_")):
        files = sorted(table_dir.glob("date=*/*.parquet"))
        rows = []
        for f in files:
            for row in pq.read_table(f).to_pylist():
                rows.append(tuple(sorted((k, repr(v)) for k, v in row.items() if k not in skip)))
        out[table_dir.name] = ([str(f.relative_to(warehouse)) for f in files], sorted(rows))
    return out


def _with_deadline(fn, timeout: float, what: str):
    """fn() in a thread with a deadline (a stuck portable job must fail the test, not hang it)
    -> (its result, seconds taken)."""
    box: dict = {}

    def target():
        try:
            box["result"] = fn()
        except BaseException as e:   # noqa: BLE001 - re-raised in the test thread
            box["error"] = e

    thread = threading.Thread(target=target, name=what, daemon=True)
    started = time.monotonic()
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise TimeoutError(f"{what} run did not finish within {timeout:.0f} s")
    if "error" in box:
        raise box["error"]
    return box["result"], time.monotonic() - started


def _run(config, timeout: float, what: str):
    from pipelines.batch import run_batch

    return _with_deadline(lambda: run_batch(config), timeout, what)


def test_portable_runner_matches_in_process(tmp_path, portable_services):
    from pipelines.batch import RunConfig
    from pipelines.settings import Settings

    job_service, worker_pool = portable_services
    lines = [render(r) for r in sample_requests(300)]
    lines[40:40] = MALFORMED          # rejects, in the middle of a chunk
    plain = write_log(tmp_path / "access.log", lines[:180])
    gzipped = write_log(tmp_path / "access.log.1.gz", lines[180:], gz=True)
    keys = tmp_path / "keys"

    def config(warehouse: str, beam_args: list[str]) -> RunConfig:
        # Small chunks: several chunks per input, spread across workers on the portable runner.
        return RunConfig(Settings(warehouse=str(tmp_path / warehouse), log_format="timed_combined", keys=str(keys),
                                  now=NOW), inputs=[str(plain), str(gzipped)], chunk_bytes=8192, beam_args=beam_args)

    # In-process first: it creates the keystore the portable run's workers then read.
    reference, ref_seconds = _run(config("wh-inprocess", ["--runner=FnApiRunner"]), 60, "FnApiRunner")
    assert reference.ok, reference.failed

    try:
        portable, portable_seconds = _run(config("wh-portable", [
            "--runner=PortableRunner", f"--job_endpoint=localhost:{job_service.port}",
            "--environment_type=EXTERNAL", f"--environment_config=localhost:{worker_pool.port}",
        ]), PIPELINE_TIMEOUT, "PortableRunner")
    except BaseException as e:
        pytest.fail(f"portable run failed: {type(e).__name__}: {e}\n\n{job_service.describe()}\n\n"
                    f"{worker_pool.describe()}")
    print(f"FnApiRunner {ref_seconds:.1f} s, PortableRunner (job service + worker pool) {portable_seconds:.1f} s")
    assert portable.ok, portable.failed

    def counts(result):
        return sorted((s["source"], s["read"], s["parsed"], s["rejected"], s["expired"], s["rows_access"],
                       s["rows_rejects"], s["status"]) for s in result.inputs)

    assert counts(portable) == counts(reference)
    assert sum(s["read"] for s in portable.inputs) == len(lines)
    assert sum(s["rejected"] for s in portable.inputs) == len(MALFORMED)

    expected = _table_rows(tmp_path / "wh-inprocess")
    got = _table_rows(tmp_path / "wh-portable")
    assert {"access", "rejects"} <= set(expected), sorted(expected)
    assert len(expected["access"][0]) > 2, "expected several chunk files (chunk_bytes too large?)"
    assert sorted(got) == sorted(expected)
    for table in expected:
        assert got[table][0] == expected[table][0], f"{table}: different files"
        assert len(got[table][1]) == len(expected[table][1]), f"{table}: different row counts"
        assert got[table][1] == expected[table][1], f"{table}: different rows"
    assert not (tmp_path / "wh-portable" / "_staging").exists() or \
        not any((tmp_path / "wh-portable" / "_staging").iterdir())


def test_portable_runner_relative_paths(tmp_path, portable_services, monkeypatch):
    """`accesslog run access.log --keys keys` from the log's folder, with workers running elsewhere."""
    from pipelines.batch import RunConfig
    from pipelines.settings import Settings

    job_service, worker_pool = portable_services
    write_log(tmp_path / "access.log", [render(r) for r in sample_requests(20)])
    monkeypatch.chdir(tmp_path)
    result, _ = _run(RunConfig(Settings(warehouse="wh", log_format="timed_combined", keys="keys", now=NOW),
                               inputs=["access.log"], beam_args=[
                                   "--runner=PortableRunner", f"--job_endpoint=localhost:{job_service.port}",
                                   "--environment_type=EXTERNAL",
                                   f"--environment_config=localhost:{worker_pool.port}"]),
                     PIPELINE_TIMEOUT, "PortableRunner")
    assert result.ok, result.failed
    assert sum(s["rows_access"] for s in result.inputs) == 20


def _run_streaming_graph(lines: list[bytes], warehouse: Path, keys: Path, beam_args: list[str], timeout: float,
                         what: str) -> float:
    """pipelines.streaming's graph (sessions on) over a bounded source of raw lines."""
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions

    from pipelines.settings import Settings
    from pipelines.streaming import StreamingConfig, build_streaming_pipeline
    from storage.keystore import Keystore
    from storage.retention import parse_now
    from transforms.formats import resolve_format
    from transforms.scrub import Scrubber

    warehouse.mkdir(parents=True, exist_ok=True)

    def run():
        p = beam.Pipeline(options=PipelineOptions(beam_args))
        config = StreamingConfig(Settings(warehouse=str(warehouse), retention_days=90), source="kafka",
                                 bootstrap_servers="k:9092", topic="test", window_minutes=5,
                                 allowed_lateness_minutes=10, sessions=True)
        build_streaming_pipeline(p | "Lines" >> beam.Create(lines), config, resolve_format("timed_combined"),
                                 Keystore(keys), Scrubber(), str(warehouse), parse_now(NOW))
        p.run().wait_until_finish()

    return _with_deadline(run, timeout, what)[1]


def test_portable_runner_streaming_graph_matches_in_process(tmp_path, portable_services):
    """The streaming pipeline (LateGate state and timers, windowed pane writes, Sessionize and the
    sessions upsert) serializes through the portability layer and gives the in-process output."""
    job_service, worker_pool = portable_services
    lines = [render(r).encode() for r in sample_requests(200)] + [m.encode() for m in MALFORMED]
    keys = tmp_path / "keys"
    _run_streaming_graph(lines, tmp_path / "wh-inprocess", keys, ["--runner=FnApiRunner"], 60, "FnApiRunner")
    try:
        _run_streaming_graph(lines, tmp_path / "wh-portable", keys, [
            "--runner=PortableRunner", f"--job_endpoint=localhost:{job_service.port}",
            "--environment_type=EXTERNAL", f"--environment_config=localhost:{worker_pool.port}",
        ], PIPELINE_TIMEOUT, "PortableRunner")
    except BaseException as e:
        pytest.fail(f"portable run failed: {type(e).__name__}: {e}\n\n{job_service.describe()}\n\n"
                    f"{worker_pool.describe()}")
    # In streaming, source_line is the line's position in the worker process's stream (documented
    # in pipelines.streaming), so it depends on what that process read before: compared apart.
    expected = _table_rows(tmp_path / "wh-inprocess", skip=("source_line",))
    got = _table_rows(tmp_path / "wh-portable", skip=("source_line",))
    for wh in ("wh-inprocess", "wh-portable"):
        access = [r["source_line"] for f in (tmp_path / wh).glob("access/*/*.parquet")
                  for r in pq.read_table(f, columns=["source_line"]).to_pylist()]
        assert len(set(access)) == len(access) == 200 and min(access) >= 1
    assert set(expected) == {"access", "rejects", "sessions"}
    assert sum(1 for row in expected["access"][1]) == 200
    assert len(expected["rejects"][1]) == len(MALFORMED)
    assert len(expected["access"][0]) > 5, "expected one file per 5-minute window"
    for table in expected:
        assert got[table][0] == expected[table][0], f"{table}: different files"
        assert got[table][1] == expected[table][1], f"{table}: different rows"

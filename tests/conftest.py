"""Put the repository root on sys.path so tests import `accesslog`, `schemas`, ... uninstalled.

Also the warehouse built by the real pipeline from the bundled samples, shared by the report,
notebook and GoAccess tests (`build_warehouse` for other inputs).
"""
import sys
from pathlib import Path

import pytest

ROOT = str(Path(__file__).resolve().parent.parent)
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from tests.cluster import s3_env, s3_warehouse  # noqa: E402,F401 (fixtures of the `cluster` tests)

SAMPLES = Path(ROOT) / "samples" / "nginx"
SAMPLE_NOW = "2026-11-24T00:00:00Z"  # pins the retention window to the samples (2026-11-16..22)


def build_warehouse(root: Path, inputs: list[str], log_format: str = "timed_combined") -> Path:
    """Run `accesslog run` (the real Beam pipeline) on inputs into root/warehouse; keys in root/keys."""
    from accesslog.cli import main

    warehouse = root / "warehouse"
    code = main(["run", *inputs, "--log-format", log_format, "--warehouse", str(warehouse),
                 "--keys", str(root / "keys"), "--now", SAMPLE_NOW])
    assert code == 0, f"accesslog run failed with exit code {code}"
    return warehouse


def vhost_warehouse(root: Path, hosts: list[str]) -> Path:
    """A vhost_combined log with one request per entry of `hosts` (in that order), run into root/warehouse."""
    log = root / "vhosts.log"
    log.write_text("".join(
        f'{h}:443 192.0.2.{i} - - [20/Nov/2026:10:00:{i:02d} +0000] "GET / HTTP/1.1" 200 5 "-" "curl/8"\n'
        for i, h in enumerate(hosts)))
    return build_warehouse(root, [str(log)], "vhost_combined")


@pytest.fixture(scope="session")
def sample_warehouse(tmp_path_factory) -> Path:
    """The warehouse of `make demo`: both bundled sample logs, timed_combined."""
    return build_warehouse(tmp_path_factory.mktemp("samples"),
                           [str(SAMPLES / "access.log.1.gz"), str(SAMPLES / "access.log")])

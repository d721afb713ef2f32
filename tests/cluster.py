"""The local cluster (`make cluster`) for tests marked `cluster`: its .cluster/env, read once.

A test marked `cluster` is skipped when the cluster is not up, unless ACCESSLOG_REQUIRE_CLUSTER=1
(set by .ci/run, which starts the cluster itself): then a cluster that is not up fails the test.
"""
from __future__ import annotations

import os
import shlex
import socket
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ENV_FILE = ROOT / ".cluster" / "env"


def cluster_env() -> dict[str, str]:
    """The variables .cluster/env exports (empty when there is none)."""
    if not ENV_FILE.exists():
        return {}
    env = {}
    for line in ENV_FILE.read_text().splitlines():
        if line.startswith("export ") and "=" in line:
            name, _, value = line[len("export "):].partition("=")
            env[name] = shlex.split(value)[0] if value else ""
    return env


def _open(address: str) -> bool:
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host.split("//")[-1], int(port)), timeout=1):
            return True
    except OSError:
        return False


def require(*names: str) -> dict[str, str]:
    """The cluster's variables, after checking the services named by `names` answer (e.g.
    "S3_ENDPOINT", "JOB_ENDPOINT", "KAFKA_BOOTSTRAP"); skips (or, in CI, fails) otherwise."""
    env = cluster_env()
    missing = [n for n in names if not env.get(n) or not _open(env[n])]
    if missing:
        message = (f"local cluster not up ({', '.join(missing)} not answering): run `make cluster` "
                   "(.ci/run starts it)")
        if os.environ.get("ACCESSLOG_REQUIRE_CLUSTER") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return env


@pytest.fixture
def s3_env(monkeypatch) -> dict[str, str]:
    """The S3 variables of the local store in this process's environment."""
    env = require("S3_ENDPOINT")
    for name in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION"):
        monkeypatch.setenv(name, env[name])
    return env


@pytest.fixture
def s3_warehouse(s3_env) -> str:
    """A fresh s3:// warehouse prefix in the local store's bucket."""
    return f"s3://{s3_env.get('S3_BUCKET', 'accesslog')}/test-{uuid.uuid4().hex[:12]}"

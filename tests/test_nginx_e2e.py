"""End to end against a real nginx: requests -> nginx access log -> `accesslog follow` -> Parquet.

A private nginx (own config, prefix, pid, logs and temp folders in tmp; runs as root or not) logs
with a custom `log_format timed` that accesslog reads from that nginx.conf (`--log-format
CONF:timed`). `accesslog follow --interval 0.2s` runs as a subprocess while known requests go to
127.0.0.1 (and [::1] when IPv6 loopback works): mixed statuses, secrets in query strings,
Accept-Language on some. Mid-way the follower is killed with SIGKILL and restarted, and the log is
rotated the nginx way (`mv access.log access.log.1`, `nginx -s reopen`). At the end the rows must
match the requests one for one, with secrets scrubbed, languages filled and nothing duplicated.

Each request carries a unique User-Agent `accesslog-e2e/<n>`, so every row maps back to the request
that made it. `benchmarks/follow_latency.py` reuses `NginxServer` and `follow_command`.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

ROOT = Path(__file__).resolve().parent.parent


def find_nginx() -> str | None:
    found = shutil.which("nginx")
    if found:
        return found
    for candidate in ("/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/local/nginx/sbin/nginx"):
        if os.access(candidate, os.X_OK):
            return candidate
    return None


NGINX = find_nginx()

LOG_FORMAT = ("'$remote_addr - $remote_user [$time_local] \"$request\" $status $body_bytes_sent "
              "\"$http_referer\" \"$http_user_agent\" $request_time \"$http_accept_language\"'")


def ipv6_loopback() -> bool:
    """True when a socket can be bound to [::1] (IPv6 loopback configured)."""
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def free_port(v6: bool) -> int:
    """A TCP port free on 127.0.0.1 (and on [::1] when v6)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if not v6:
            return port
        try:
            with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
                s.bind(("::1", port))
            return port
        except OSError:
            continue
    raise RuntimeError("no free port on both 127.0.0.1 and [::1]")


class NginxServer:
    """A private nginx in `folder`: config, prefix, pid, error log, access log and temp dirs in there."""

    def __init__(self, folder: Path, binary: str | None = None, v6: bool | None = None):
        self.binary = binary or NGINX
        self.folder = Path(folder)
        self.v6 = ipv6_loopback() if v6 is None else v6
        self.port = free_port(self.v6)
        self.conf = self.folder / "nginx.conf"
        self.access_log = self.folder / "access.log"
        self.error_log = self.folder / "error.log"
        self.pid_file = self.folder / "nginx.pid"
        self.proc: subprocess.Popen | None = None
        self._stderr = None

    def urls(self) -> list[str]:
        """Base URLs to send requests to: IPv4 loopback, and IPv6 loopback when available."""
        return [f"http://127.0.0.1:{self.port}"] + ([f"http://[::1]:{self.port}"] if self.v6 else [])

    def write_conf(self) -> None:
        temp = self.folder / "temp"
        for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (temp / name).mkdir(parents=True, exist_ok=True)
        v6_listen = f"        listen [::1]:{self.port};\n" if self.v6 else ""
        # As root the workers would run as `nobody`, which cannot reopen logs in a 0700 tmp folder
        # after `nginx -s reopen`: keep them as the current user (the directive is ignored otherwise).
        user = ""
        if os.geteuid() == 0:
            import grp
            import pwd
            user = f"user {pwd.getpwuid(os.geteuid()).pw_name} {grp.getgrgid(os.getegid()).gr_name};\n"
        self.conf.write_text(
            f"""# private nginx for tests/test_nginx_e2e.py
{user}worker_processes 1;
pid {self.pid_file};
error_log {self.error_log} warn;

events {{
    worker_connections 256;
}}

http {{
    log_format timed {LOG_FORMAT};
    access_log {self.access_log} timed;
    client_body_temp_path {temp / "client_body"};
    proxy_temp_path {temp / "proxy"};
    fastcgi_temp_path {temp / "fastcgi"};
    uwsgi_temp_path {temp / "uwsgi"};
    scgi_temp_path {temp / "scgi"};

    server {{
        listen 127.0.0.1:{self.port};
{v6_listen}        location / {{ return 200 "ok"; }}
        location /missing {{ return 404; }}
        location /boom {{ return 500; }}
        location /redirect {{ return 302 /; }}
    }}
}}
""")

    def command(self, *extra: str) -> list[str]:
        # -e: the error log before the config is read (nginx >= 1.19.5), else /var/log/nginx/error.log
        return [self.binary, "-e", str(self.error_log), "-p", str(self.folder), "-c", str(self.conf), *extra]

    def start(self, timeout: float = 10.0) -> None:
        self.write_conf()
        self._stderr = open(self.folder / "nginx.stderr", "wb")
        self.proc = subprocess.Popen(self.command("-g", "daemon off;"), stdin=subprocess.DEVNULL,
                                     stdout=self._stderr, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"nginx exited with {self.proc.returncode}: {self.diagnostics()}")
            if all(self._listening(host) for host in ["127.0.0.1"] + (["::1"] if self.v6 else [])):
                return
            time.sleep(0.05)
        raise RuntimeError(f"nginx did not listen on port {self.port} within {timeout} s: {self.diagnostics()}")

    def _listening(self, host: str) -> bool:
        try:
            with socket.create_connection((host, self.port), timeout=0.5):
                return True
        except OSError:
            return False

    def diagnostics(self) -> str:
        parts = []
        for path in (self.folder / "nginx.stderr", self.error_log):
            with contextlib.suppress(OSError):
                parts.append(f"{path.name}: {path.read_text(errors='replace')[-2000:]}")
        return " | ".join(parts)

    def reopen(self, timeout: float = 5.0) -> None:
        """`nginx -s reopen` with the same -c/-p; returns once the new access.log exists."""
        done = subprocess.run(self.command("-s", "reopen"), capture_output=True, text=True, timeout=timeout)
        assert done.returncode == 0, f"nginx -s reopen failed: {done.stderr} {self.diagnostics()}"
        deadline = time.monotonic() + timeout
        while not self.access_log.exists():
            assert time.monotonic() < deadline, f"nginx did not reopen its access log: {self.diagnostics()}"
            time.sleep(0.02)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()   # SIGTERM: fast shutdown (master and workers)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None   # a 3xx becomes an HTTPError carrying its status


# No proxies from the environment: the requests must reach the local nginx directly.
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}), NoRedirect())


def get(url: str, headers: dict[str, str] | None = None, timeout: float = 5.0) -> int:
    """GET url (no redirects followed, no proxy); returns the HTTP status."""
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with OPENER.open(request, timeout=timeout) as response:
            response.read()
            return response.status
    except urllib.error.HTTPError as e:
        e.read()
        e.close()
        return e.code


def follow_command(log: Path, warehouse: Path, keys: Path, conf: Path, interval: str, once: bool = False) -> list[str]:
    """`accesslog follow` (the venv's console script next to sys.executable; else `-m pipelines.follow`)."""
    script = Path(sys.executable).parent / "accesslog"
    base = [str(script), "follow"] if script.exists() else [sys.executable, "-m", "pipelines.follow"]
    return [*base, str(log), "--warehouse", str(warehouse), "--keys", str(keys),
            "--log-format", f"{conf}:timed", "--interval", interval, *(["--once"] if once else [])]


def follow_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}


def access_table(warehouse: Path, columns: list[str]) -> pa.Table:
    """Every access row, plus `file` (the Parquet file name: `<input fingerprint>-L<line>-...`)."""
    tables = []
    for path in sorted((warehouse / "access").glob("date=*/*.parquet")):
        table = pq.read_table(path, columns=columns)
        tables.append(table.append_column("file", pa.array([path.name] * table.num_rows, pa.string())))
    if not tables:
        return pa.table({c: pa.array([], pa.null()) for c in [*columns, "file"]})
    return pa.concat_tables(tables, promote_options="default")


def row_count(warehouse: Path) -> int:
    total = 0
    for path in (warehouse / "access").glob("date=*/*.parquet"):
        with contextlib.suppress(OSError, pa.ArrowInvalid):   # a file replaced while counting
            total += pq.ParquetFile(path).metadata.num_rows
    return total


# --------------------------------------------------------------------------- the test

SECRETS = (b"abc123", b"hunter2", b"jane")
LANGUAGES = {"de-DE,de;q=0.9,en;q=0.8": "de", "fr-CH, fr;q=0.9, en;q=0.8": "fr", "en-US": "en",
             "es;q=0.2, pt-BR": "pt"}
# (path and query, expected status, Accept-Language or None)
REQUESTS = [
    ("/", 200, None),
    ("/missing", 404, "de-DE,de;q=0.9,en;q=0.8"),
    ("/boom", 500, None),
    ("/redirect", 302, "en-US"),
    ("/?token=abc123&x=1", 200, "fr-CH, fr;q=0.9, en;q=0.8"),
    ("/?password=hunter2", 200, None),
    ("/?email=jane%40example.org", 200, "es;q=0.2, pt-BR"),
    ("/missing/deeper?x=2", 404, None),
]


class Client:
    """Sends the requests, remembering for each (by its unique User-Agent) what it expects."""

    def __init__(self, nginx: NginxServer):
        self.nginx = nginx
        self.sent: dict[str, tuple[int, str, str | None]] = {}   # user agent -> (status, url_path, language)

    def send_round(self) -> None:
        for base in self.nginx.urls():
            for target, status, accept_language in REQUESTS:
                agent = f"accesslog-e2e/{len(self.sent) + 1}"
                headers = {"User-Agent": agent}
                if accept_language:
                    headers["Accept-Language"] = accept_language
                got = get(base + target, headers)
                assert got == status, f"{base + target}: nginx answered {got}, expected {status}"
                self.sent[agent] = (status, target.split("?", 1)[0], LANGUAGES.get(accept_language))

    def expected(self) -> Counter:
        return Counter((status, path) for status, path, _ in self.sent.values())


def wait_for_rows(warehouse: Path, want: int, timeout: float, stable: float = 12.0) -> int:
    """Poll the warehouse until it holds `want` rows, or the count has not changed for `stable`
    seconds (long enough for a follower that has just been started to import Beam), or timeout."""
    deadline = time.monotonic() + timeout
    last, stable_since = -1, time.monotonic()
    while time.monotonic() < deadline:
        count = row_count(warehouse)
        if count >= want:
            return count
        if count != last:
            last, stable_since = count, time.monotonic()
        elif time.monotonic() - stable_since > stable:
            return count   # no progress: let the assertions say what is missing
        time.sleep(0.1)
    return row_count(warehouse)


@pytest.mark.skipif(NGINX is None, reason="nginx is not installed (Debian: apt-get install nginx-light or "
                                          "nginx; .ci/run does this)")
def test_real_nginx_rotation_and_kill_9_rows_match_requests(tmp_path):
    started = time.monotonic()
    nginx = NginxServer(tmp_path / "nginx")
    nginx.folder.mkdir()
    warehouse, keys = tmp_path / "wh", tmp_path / "keys"
    follow_logs = tmp_path / "follow.out"
    procs: list[subprocess.Popen] = []

    def start_follow() -> subprocess.Popen:
        with open(follow_logs, "ab") as err:
            proc = subprocess.Popen(follow_command(nginx.access_log, warehouse, keys, nginx.conf, "0.2s"),
                                    cwd=ROOT, env=follow_env(), stdin=subprocess.DEVNULL,
                                    stdout=err, stderr=subprocess.STDOUT, start_new_session=True)
        procs.append(proc)
        return proc

    def follow_errors() -> str:
        return follow_logs.read_text(errors="replace")[-3000:] if follow_logs.exists() else ""

    try:
        nginx.start()
        client = Client(nginx)
        follower = start_follow()

        client.send_round()
        client.send_round()
        # Kill the first follower once it has committed rows (any moment after that is fair game:
        # follow checkpoints a newly seen file before its first output, so a restart after the
        # rotation below still finds access.log.1; tests/test_follow.py pins that case).
        checkpoint = warehouse / "_follow" / "checkpoint.json"
        deadline = time.monotonic() + 20
        while (not checkpoint.exists() or row_count(warehouse) == 0) and time.monotonic() < deadline \
                and follower.poll() is None:
            time.sleep(0.05)
        assert checkpoint.exists() and row_count(warehouse) > 0, f"the follower committed nothing: {follow_errors()}"
        client.send_round()
        follower.send_signal(signal.SIGKILL)
        follower.wait(timeout=10)
        client.send_round()
        follower = start_follow()
        client.send_round()

        os.rename(nginx.access_log, nginx.folder / "access.log.1")
        client.send_round()   # still written to access.log.1 (nginx has not reopened yet)
        nginx.reopen()
        client.send_round()   # the new access.log
        client.send_round()

        count = wait_for_rows(warehouse, len(client.sent), timeout=30)
        assert follower.poll() is None, f"the follower exited with {follower.returncode}: {follow_errors()}"
        follower.send_signal(signal.SIGTERM)
        assert follower.wait(timeout=20) == 0, follow_errors()
        done = subprocess.run(follow_command(nginx.access_log, warehouse, keys, nginx.conf, "0.2s", once=True),
                              cwd=ROOT, env=follow_env(), stdin=subprocess.DEVNULL, capture_output=True,
                              text=True, timeout=30)
        assert done.returncode == 0, done.stderr
        assert count == len(client.sent), "the running follower had not caught up (the --once run did)"
    finally:
        for proc in procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        nginx.stop()

    nginx_log = (nginx.folder / "access.log.1").read_bytes() + nginx.access_log.read_bytes()
    assert nginx_log.count(b"\n") == len(client.sent)   # nginx logged every request, once

    table = access_table(warehouse, ["status", "url_path", "url_query", "user_agent", "language", "source",
                                     "source_line", "duration_ms", "received_at", "responded_at", "client_id"])
    rows = table.to_pylist()

    # One row per request, per (status, path).
    assert Counter((r["status"], r["url_path"]) for r in rows) == client.expected()
    by_agent = Counter(r["user_agent"] for r in rows)
    assert set(by_agent) == set(client.sent) and max(by_agent.values()) == 1

    # Accept-Language -> language (primary subtag of the preferred language), null without it.
    for r in rows:
        status, path, language = client.sent[r["user_agent"]]
        assert (r["status"], r["url_path"], r["language"]) == (status, path, language), r

    # No duplicates: (input identity, source_line) unique. Both files were first seen as
    # access.log, so the input fingerprint (the file name's prefix) tells them apart.
    lines = Counter((r["source"], r["file"].split("-", 1)[0], r["source_line"]) for r in rows)
    assert max(lines.values()) == 1
    assert len({r["file"].split("-", 1)[0] for r in rows}) == 2   # access.log before and after rotation
    assert {r["source"] for r in rows} == {str(nginx.access_log)}

    # Durations: $request_time >= 0, received_at = responded_at - duration.
    for r in rows:
        assert r["duration_ms"] is not None and r["duration_ms"] >= 0, r
        assert r["received_at"] <= r["responded_at"], r
    assert all(r["client_id"] for r in rows)
    assert len({r["client_id"] for r in rows}) == len(nginx.urls())   # 127.0.0.1 and ::1: one pseudonym each

    # Secrets scrubbed: not in any decoded value, and not in any byte the pipeline wrote.
    queries = [r["url_query"] for r in rows if r["url_query"]]
    assert any("REDACTED" in q for q in queries), queries
    for q in queries:
        assert not any(s.decode() in q for s in SECRETS), q
    for path in [p for p in warehouse.rglob("*") if p.is_file()] + [follow_logs]:
        data = path.read_bytes()
        for secret in SECRETS:
            assert secret not in data, f"{secret!r} in {path}"
    for path in warehouse.rglob("*.parquet"):
        decoded = repr(pq.read_table(path).to_pylist()).encode()
        for secret in SECRETS:
            assert secret not in decoded, f"{secret!r} in {path}"

    assert time.monotonic() - started < 60, "the end-to-end test must stay under 60 s"

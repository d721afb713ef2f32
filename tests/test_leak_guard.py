"""Leak guard (privacy issue, point 7): input full of personal data goes through every
command of the product; no raw IP, user name, e-mail, password, token, cookie or
credential may appear in any file under the warehouse, in any printed line, or in any
log message (Beam's included, captured at INFO with ACCESSLOG_DEBUG=1)."""
from __future__ import annotations

import gzip
import json
import logging
import os
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from accesslog.cli import main

IPS_V4 = ["198.51.100.23", "203.0.113.77", "192.0.2.145", "100.64.12.34"]
IPS_V6 = ["2001:db8:abcd:12::7", "2001:db8:feed:1::99", "fd00:1234:5678::42"]
USERS = ["alice.smith", "bob_jones", "carol-xyz"]
EMAILS = ["jane.doe@example.org", "max.mustermann@example.net"]
PASSWORDS = ["hunter2secret", "Tr0ub4dorPass"]
TOKENS = ["tok_9f8e7d6c5b4a", "sk_live_51Habc", "eyJhbGciOiJIUzI1NiJ9.payload.sig"]
COOKIES = ["sessvalue8842", "trackid77aa"]
BASIC = "Basic YWxpY2U6aHVudGVyMnNlY3JldA=="     # alice:hunter2secret
SECRETS = IPS_V4 + IPS_V6 + USERS + EMAILS + PASSWORDS + TOKENS + COOKIES + [
    BASIC.split()[1], *(e.replace("@", "%40") for e in EMAILS)]

FORMAT = ('$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" '
          '"$http_user_agent" "$http_x_forwarded_for" "$http_cookie" "$http_authorization" $request_time')


def access_lines() -> list[str]:
    lines = []
    for i in range(120):
        ip = (IPS_V4 + IPS_V6)[i % 7]
        user = USERS[i % 3] if i % 2 else "-"
        target = [f"/login?user={USERS[0]}&password={PASSWORDS[0]}", f"/api?access_token={TOKENS[0]}&x=1",
                  f"/reset?email={EMAILS[0].replace('@', '%40')}", f"/u/{EMAILS[1]}/profile",
                  f"/cb?next=%2Fa%3Ftoken%3D{TOKENS[1]}", f"/ip?addr={IPS_V4[2]}", "/"][i % 7]
        referrer = [f"https://{USERS[1]}:{PASSWORDS[1]}@intra.example.com/?session={TOKENS[2]}",
                    "-", f"https://example.com/?mail={EMAILS[1]}"][i % 3]
        agent = f"crawler/1.0 (+mailto:{EMAILS[0]})" if i % 5 == 0 else "Mozilla/5.0 (X11; Linux x86_64)"
        cookie = f"sid={COOKIES[0]}; track={COOKIES[1]}" if i % 2 else "-"
        auth = BASIC if i % 4 == 0 else f"Bearer {TOKENS[2]}" if i % 4 == 1 else "-"
        xff = f"{IPS_V4[3]}, {IPS_V6[2]}" if i % 3 == 0 else "-"
        lines.append(f'{ip} - {user} [20/Nov/2026:10:{i // 60:02d}:{i % 60:02d} +0000] "GET {target} HTTP/1.1" '
                     f'{[200, 404, 500][i % 3]} {100 + i} "{referrer}" "{agent}" "{xff}" "{cookie}" "{auth}" '
                     f'0.0{i % 10}1')
    # Malformed lines carrying the same data.
    lines += [f"{IPS_V4[0]} - {USERS[0]} [20/Nov/2026:11:00:00 +0000] \"GET /x?password={PASSWORDS[0]}",
              f"garbage {IPS_V6[0]} {EMAILS[0]} token={TOKENS[0]} sid={COOKIES[0]} {BASIC}",
              ""]
    return lines


ERROR_LOG = (f"2026/11/20 10:00:01 [error] 7#7: *5 open() \"/srv/x\" failed (2: No such file or directory), "
             f"client: {IPS_V4[1]}, server: example.com, request: \"GET /x?password={PASSWORDS[1]} HTTP/1.1\", "
             f"host: \"example.com\", referrer: \"https://example.com/?email={EMAILS[0]}\"\n"
             f"2026/11/20 10:00:02 [warn] 7#7: *6 upstream sent invalid header from {IPS_V6[1]} while reading, "
             f"client: {IPS_V6[1]}, server: example.com, request: \"GET / HTTP/1.1\", "
             f"upstream: \"http://{IPS_V4[2]}:8080/\"\n")


@pytest.fixture
def inputs(tmp_path: Path) -> list[str]:
    access = tmp_path / "access.log.gz"
    access.write_bytes(gzip.compress(("\n".join(access_lines()) + "\n").encode()))
    errors = tmp_path / "error.log"
    errors.write_text(ERROR_LOG)
    return [str(access), str(errors)]


def scan_tree(root: Path) -> dict[str, str]:
    texts = {}
    for path in root.rglob("*"):
        if path.is_file():
            texts[str(path)] = path.read_bytes().decode("latin-1")
            if path.suffix == ".parquet":   # compressed pages hide text: the decoded values too
                texts[f"{path} (decoded)"] = json.dumps(pq.read_table(path).to_pylist(), default=str)
    return texts


def assert_clean(texts: dict[str, str]) -> None:
    for where, text in texts.items():
        for secret in SECRETS:
            assert secret not in text, f"{secret!r} leaked into {where}"


def test_every_command_keeps_personal_data_out(tmp_path, inputs, capsys, caplog, monkeypatch):
    monkeypatch.setenv("ACCESSLOG_DEBUG", "1")    # let every log message through, Beam's included
    caplog.set_level(logging.DEBUG)
    wh, keys = tmp_path / "wh", str(tmp_path / "keys" / "keys.json")
    printed = []

    def run(*argv: str) -> int:
        code = main(list(argv))
        out, err = capsys.readouterr()
        printed.append(out + err)
        return code

    common = ["--keys", keys, "--now", "2026-11-21T00:00:00Z"]
    access, errors = inputs
    assert run("run", access, "--log-format", FORMAT, "--warehouse", str(wh), *common) == 0
    assert run("run", errors, "--log-format", "nginx_error", "--warehouse", str(wh), *common) == 0
    assert run("run", access, "--log-format", FORMAT, "--warehouse", str(tmp_path / "wh2"),
               "--trusted-proxies", "10.0.0.0/8", "--ip-mode", "hmac", *common) == 0
    for mode in ("cryptopan", "truncate"):
        assert run("run", access, errors, "--log-format", FORMAT, "--warehouse",
                   str(tmp_path / f"wh-{mode}"), "--ip-mode", mode, *common) in (0, 1)
    # combined reads the first part of these lines; the fields after it (cookies, credentials,
    # forwarded-for addresses) are kept scrubbed in extra['trailing'] -- or rejected with --strict.
    assert run("run", access, "--log-format", "combined", "--warehouse", str(tmp_path / "wh3"), *common) == 0
    assert run("run", access, "--log-format", "combined", "--warehouse", str(tmp_path / "wh4"), "--strict",
               *common) == 2   # stopped by its first lines, before the run (the message names no data)
    assert run("run", errors, access, "--log-format", "auto", "--warehouse", str(tmp_path / "wh3"), *common) == 0
    assert run("parse", access, "--log-format", FORMAT, "--keys", keys) == 0
    assert run("parse", errors, "--log-format", "nginx_error", "--keys", keys) == 0
    assert run("stats", "--warehouse", str(wh), "--json") == 0
    assert run("stats", "--warehouse", str(wh)) == 0
    # Data-subject requests name raw identifiers on the command line; none may echo them.
    assert run("subject", "export", "--warehouse", str(wh), "--keys", keys, "--ip", IPS_V4[0]) == 0
    found = printed[-1]
    assert '"table"' in found and found.count("\n") >= 10, "the subject's rows are exported"
    assert run("subject", "export", "--warehouse", str(wh), "--keys", keys, "--ip", IPS_V6[1], "--format", "csv") == 0
    assert run("subject", "export", "--warehouse", str(wh), "--keys", keys, "--user", USERS[1]) == 0
    assert run("subject", "erase", "--warehouse", str(wh), "--keys", keys, "--ip", IPS_V4[1], "--dry-run") == 0
    assert run("subject", "erase", "--warehouse", str(wh), "--keys", keys, "--ip", IPS_V4[1]) == 0
    assert run("retention", "--warehouse", str(tmp_path / "wh2"), "--days", "1", "--now", "2026-11-23T00:00:00Z",
               "--dry-run") == 0
    assert run("retention", "--warehouse", str(tmp_path / "wh2"), "--days", "1", "--now", "2026-11-23T00:00:00Z",
               "--keys", keys) == 0
    assert run("keys", "list", "--keys", keys) == 0
    assert run("keys", "list", "--keys", keys, "--json") == 0
    # The rows really are there (the scan is not vacuous).
    tables = {t: [f for f in (wh / t).rglob("*.parquet")] for t in ("access", "errors", "rejects")}
    assert all(tables.values()), tables
    assert_clean(scan_tree(wh) | scan_tree(tmp_path / "wh2") | scan_tree(tmp_path / "wh3") | scan_tree(tmp_path / "wh4")
                 | scan_tree(tmp_path / "wh-cryptopan") | scan_tree(tmp_path / "wh-truncate"))
    for i, text in enumerate(printed):   # printed output, with exported rows' decoded values
        assert_clean({f"printed[{i}]": text})
    key_material = [k.get("secret") for k in json.loads(Path(keys).read_text())["keys"].values()]
    for secret in filter(None, key_material):
        assert not any(secret in text for text in printed + list(scan_tree(wh).values())), "key material leaked"
    assert_clean({"log messages": "\n".join(r.getMessage() for r in caplog.records)})
    assert os.stat(keys).st_mode & 0o077 == 0
    # Policy 4.1: nothing accesslog writes is readable by other users.
    for path in [wh, *wh.rglob("*")]:
        assert path.stat().st_mode & 0o077 == 0, f"{path} is group/other accessible"

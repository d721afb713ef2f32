"""The planted-secret scanner: secrets planted in every field of every preset (access and error logs,
rows and rejects) go through `run`, `parse`, `stats` and `report`; no planted byte may appear in any
output: data pages, dictionary pages, the stats cache, manifests, audit files, stdout, stderr or the
log. `python -m tests.test_leak_scan` prints the figures (lines, planted values, values found)."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from accesslog.cli import main
from tests.leakscan import find, readable_bytes

# One kind of secret per line, planted in every field that can carry it. Distinct values per
# field, so a finding names the field it came from.
FIELDS = ("path", "query", "ref", "ua", "user", "ident", "xff", "host")


def planted(kind: str, field: str) -> tuple[str, list[str]]:
    """(text to plant in `field`, the secret strings whose bytes must not survive)."""
    n = FIELDS.index(field) + 1
    if kind == "ipv4":
        return f"198.51.100.{n}", [f"198.51.100.{n}"]
    if kind == "ipv6":
        return f"2001:db8:77::{n}", [f"2001:db8:77::{n}"]
    if kind == "pct_ip":
        return f"192%2E0%2E2%2E{n}", [f"192%2E0%2E2%2E{n}", f"192.0.2.{n}"]
    if kind == "email":
        return f"planted{n}@example.org", [f"planted{n}@example.org", f"planted{n}%40example.org"]
    if kind == "password":
        return f"password=Pw{n}SecretX", [f"Pw{n}SecretX"]
    if kind == "pct_name":
        return f"pass%77ord=Pq{n}SecretY&%70assword=Pr{n}SecretZ", [f"Pq{n}SecretY", f"Pr{n}SecretZ"]
    if kind == "token":
        return f"access_token=tok{n}PlantedValue", [f"tok{n}PlantedValue"]
    if kind == "jwt":
        jwt = f"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJwbGFudGVk{n}In0.c2lnbmF0dXJl{n}cGxhbnRlZA"
        return jwt, [jwt, jwt.split(".")[1]]
    if kind == "card":
        cards = ["4111111111111111", "5500000000000004", "4012888888881881", "6011000000000004",
                 "3530111333300000", "4242424242424242", "5105105105105100", "4000056655665556"]
        card = cards[n - 1]
        shown = "-".join(card[i:i + 4] for i in range(0, 16, 4)) if n % 2 else card
        return shown, [card, shown, " ".join(card[i:i + 4] for i in range(0, 16, 4))]
    if kind == "user":
        return f"user=planteduser{n}", [f"planteduser{n}"]
    raise ValueError(kind)


KINDS = ("ipv4", "ipv6", "pct_ip", "email", "password", "pct_name", "token", "jwt", "card", "user")


def value(kind: str, field: str) -> str:
    text, _ = planted(kind, field)
    if field == "path":   # a name=value pair is a parameter, in a query; a path holds values alone
        return "/p/" + (text if "=" not in text else "x")
    if field == "query":
        return "?q=1&" + (text if "=" in text else f"v={text}")
    if field == "ref":
        return "https://ref.example.com/r?" + (text if "=" in text else f"v={text}")
    if field == "ua":
        return f"Mozilla/5.0 (compatible; bot {text})"
    if field in ("user", "ident"):   # a name field holds the bare value
        return text.split("=", 1)[-1].split("&")[0].replace("%", "")
    if field == "xff":
        return f"203.0.113.9, {text}" if kind in ("ipv4", "ipv6") else "-"
    return f"host{FIELDS.index(field)}.example.com"


def secrets_of(kind: str) -> list[str]:
    out = []
    for field in FIELDS:
        if field == "xff" and kind not in ("ipv4", "ipv6"):
            continue
        if field == "host":
            continue
        _, found = planted(kind, field)
        if field == "path" and "=" in planted(kind, field)[0]:
            continue
        out += found if field not in ("user", "ident") else [value(kind, field)]
    return out


CLIENT = "198.51.100.200"
STAMP = "20/Nov/2026:10:00:00 +0000"


def access_line(preset: str, kind: str, broken: bool = False) -> str:
    v = {f: value(kind, f) for f in FIELDS}
    request = f"GET {v['path']}{v['query']} HTTP/1.1"
    if preset == "json":
        return json.dumps({"remote_addr": CLIENT, "remote_user": v["user"], "time_local": STAMP,
                           "request": request, "status": "200", "body_bytes_sent": "12",
                           "http_referer": v["ref"], "http_user_agent": v["ua"],
                           "http_x_forwarded_for": v["xff"]})[: -30 if broken else None]
    if preset in ("common", "vhost_combined", "combinedio"):
        head = f'{CLIENT} {v["ident"]} {v["user"]} [{STAMP}] "{request}" 200 12'
        line = {"common": head, "combinedio": f'{head} "{v["ref"]}" "{v["ua"]}" 345 678',
                "vhost_combined": f'{v["host"]}:443 {head} "{v["ref"]}" "{v["ua"]}"'}[preset]
    else:
        line = f'{CLIENT} - {v["user"]} [{STAMP}] "{request}" 200 12 "{v["ref"]}" "{v["ua"]}"'
        line += {"combined": "", "main": f' "{v["xff"]}"', "timed_combined": " 0.012 0.010"}[preset]
    return line.replace(" 200 12", " 2x0 12") if broken else line


def error_line(preset: str, kind: str) -> str:
    v = {f: value(kind, f) for f in FIELDS}
    if preset == "nginx_error":
        return (f'2026/11/20 10:00:00 [error] 7#7: *5 open() "/srv{v["path"]}" failed (2: No such file), '
                f'client: {CLIENT}, server: example.com, request: "GET {v["path"]}{v["query"]} HTTP/1.1", '
                f'host: "{v["host"]}", referrer: "{v["ref"]}" {v["ua"]}')
    return (f"[Fri Nov 20 10:00:00.123456 2026] [core:error] [pid 7] [client {CLIENT}:5555] AH00128: File does "
            f"not exist: /srv{v['path']}{v['query']} {v['ua']}, referer: {v['ref']}")


PRESETS = ("combined", "main", "timed_combined", "common", "vhost_combined", "combinedio", "json", "nginx_error",
           "apache_error")


def planted_log(preset: str) -> tuple[list[str], list[str]]:
    """(lines: one parsed and one rejected line per kind of secret, every secret planted)."""
    lines, secrets = [], [CLIENT]
    for kind in KINDS:
        if preset.endswith("_error"):
            lines += [error_line(preset, kind), "garbage " + error_line(preset, kind)]
        else:
            lines += [access_line(preset, kind), access_line(preset, kind, broken=True)]
        secrets += secrets_of(kind)
    return lines, secrets


def scan(tmp_path: Path, preset: str, capsys, caplog) -> tuple[int, int, dict[str, list[str]]]:
    """Plant, run every command, scan -> (lines, planted values, {value: where it was found})."""
    lines, secrets = planted_log(preset)
    log = tmp_path / f"{preset}.log"
    log.write_text("\n".join(lines) + "\n")
    wh, keys = tmp_path / "wh", str(tmp_path / "keys" / "keys.json")
    views = []
    caplog.set_level(logging.INFO)
    commands = [["run", str(log), "--warehouse", str(wh), "--keys", keys, "--log-format", preset,
                 "--now", "2026-11-21T00:00:00Z", "--max-reject-ratio", "1"],
                ["parse", str(log), "--keys", keys, "--log-format", preset, "--all-columns"],
                ["stats", "--warehouse", str(wh)],
                ["stats", "--warehouse", str(wh), "--format", "json"],
                ["report", "--warehouse", str(wh), "-o", str(tmp_path / "report.html")]]
    for args in commands:
        code = main(args)
        out, err = capsys.readouterr()
        assert code in (0, 1), (args[0], err)
        views += [(f"{args[0]} stdout", out.encode()), (f"{args[0]} stderr", err.encode())]
    views.append(("log records", "\n".join(r.getMessage() for r in caplog.records).encode()))
    views += list(readable_bytes(wh))
    if (tmp_path / "report.html").exists():
        views.append(("report.html", (tmp_path / "report.html").read_bytes()))
    return len(lines), len(secrets), find(secrets, views)


@pytest.mark.parametrize("preset", PRESETS)
def test_no_planted_secret_reaches_any_output_byte(tmp_path, capsys, caplog, preset):
    lines, planted_values, found = scan(tmp_path, preset, capsys, caplog)
    assert lines >= 2 * len(KINDS) and planted_values > 50
    assert not found, sorted(found)


if __name__ == "__main__":   # the figures for the closing note
    import sys
    import tempfile

    class _Capsys:
        def readouterr(self):
            return "", ""
    total_lines = total_values = 0
    for preset in PRESETS:
        with tempfile.TemporaryDirectory() as tmp:
            lines, secrets = planted_log(preset)
            total_lines += len(lines)
            total_values += len(secrets)
    print(f"{len(PRESETS)} formats, {total_lines} lines, {total_values} planted values", file=sys.stderr)

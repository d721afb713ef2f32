"""Hostile log lines for the fuzz properties (tests/test_fuzz.py) and `python -m tests.fuzzing`.

A line starts as one a server would write (nginx combined, Apache common, JSON, nginx and Apache
error logs) and is then damaged the ways real logs are: bytes from disk or rotation damage (NUL,
CR, invalid UTF-8), truncated writes, values at the edges (years 1, 1969, 9999, zones ±1400, huge
numbers), quotes and escapes in the wrong places, scanner payloads and very long lines.
"""
from __future__ import annotations

import json
import random

TEMPLATES = {
    "combined": ('{ip} - {user} [{day}/{mon}/{year}:{hms} {zone}] "{method} {path} HTTP/1.1" {status} {size} '
                 '"{ref}" "{ua}"'),
    "common": '{ip} - {user} [{day}/{mon}/{year}:{hms} {zone}] "{method} {path} HTTP/1.0" {status} {size}',
    "nginx_error": "{year}/11/20 {hms} [error] 1234#0: *5 open() \"{path}\" failed, client: {ip}, "
                   "server: example.com, request: \"{method} {path} HTTP/1.1\"",
    "apache_error": "[Fri Nov 20 {hms}.123456 {year}] [core:error] [pid 1234] [client {ip}:5555] "
                    "AH00128: File does not exist: {path}",
}

EDGE = {
    "ip": ["10.0.0.1", "10.0.0.1\x00", "::ffff:10.0.0.1", "[2001:db8::1]:443", "unix:", "999.1.1.1", "-",
           "10.0.0.1, 10.0.0.2", "fe80::1%eth0", "", "\u00a0", "10.0.0.1" * 40],
    "user": ["-", "alice", "bob@example.com", "\x00", '"', "a b", "\\x22"],
    "day": ["20", "31", "00", "29", "99", "1", "\x00\x00"],
    "mon": ["Nov", "Feb", "Xyz", "nov", "N\x00v"],
    "year": ["2026", "9999", "0001", "1969", "1970", "0000", "10000", "2026\x00"],
    "hms": ["10:00:00", "23:59:60", "24:00:00", "00:00:00", "99:99:99", "10:00"],
    "zone": ["+0000", "-1400", "+1400", "+9999", "-0000", "+00", "UTC"],
    "method": ["GET", "POST", "\\x16\\x03\\x01", "", "G\x00T", "CONNECT", "X" * 300],
    "path": ["/", "/index.html?a=1", "/login?password=hunter2", "/%00", "/a b", "/" + "a@" * 500,
             "/x?email=a@b.c&token=eyJhbGciOi.eyJzdWIi.sig", "/\xff\xfe", "/" + "%" * 200, "*", "//..//"],
    "status": ["200", "404", "-", "999", "0", "2000", "20\x00", "-1"],
    "size": ["0", "123", "-", "99999999999999999999999", "-5", "1e9"],
    "ref": ["-", "https://example.com/?user=alice", "", '\\"', "\x00"],
    "ua": ["Mozilla/5.0", "curl/8.0 (10.1.2.3)", "", "\\x00", "a" * 2000, '"quoted"'],
}

DAMAGE = ("none", "none", "truncate", "nul", "cr", "invalid_utf8", "quote", "duplicate", "long", "garbage",
          "strip", "tab")


def clean_line(rng: random.Random, kind: str, edgy: float = 0.3) -> str:
    """One line of `kind` ('combined', 'common', 'json', 'nginx_error', 'apache_error'), each value
    an edge case with probability `edgy`."""
    values = {k: (rng.choice(v) if rng.random() < edgy else v[0]) for k, v in EDGE.items()}
    if kind == "json":
        return json.dumps({"remote_addr": values["ip"], "time_local": "{day}/{mon}/{year}:{hms} {zone}".format(
            **values), "request": f"{values['method']} {values['path']} HTTP/1.1", "status": values["status"],
            "body_bytes_sent": values["size"], "http_referer": values["ref"], "http_user_agent": values["ua"]})
    return TEMPLATES[kind].format(**values)


def damage(rng: random.Random, line: bytes) -> bytes:
    """The line as a crash, a disk or a scanner may have left it."""
    how = rng.choice(DAMAGE)
    at = rng.randrange(len(line) + 1)
    if how == "truncate":
        return line[:at]
    if how == "nul":
        return line[:at] + b"\x00" * rng.randint(1, 64) + line[at:]
    if how == "cr":
        return line[:at] + b"\r" + line[at:]
    if how == "invalid_utf8":
        return line[:at] + rng.choice([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xf4\x90\x80\x80"]) + line[at:]
    if how == "quote":
        return line[:at] + rng.choice([b'"', b"\\", b'\\"', b"[", b"]"]) + line[at:]
    if how == "duplicate":
        return line[:at] + line
    if how == "long":
        return line + b"A" * rng.choice([10_000, 70_000])
    if how == "garbage":
        return bytes(rng.randrange(256) for _ in range(rng.randint(0, 200))).replace(b"\n", b" ")
    if how == "strip":
        return line.strip()
    if how == "tab":
        return line.replace(b" ", b"\t", 1)
    return line


def fuzzed_log(seed: int, kind: str, lines: int, edgy: float = 0.3) -> bytes:
    """`lines` newline-terminated lines of `kind`, about half of them damaged."""
    rng = random.Random(seed)
    out = []
    for _ in range(lines):
        line = clean_line(rng, kind, edgy).encode("utf-8", "surrogateescape")
        if rng.random() < 0.5:
            line = damage(rng, line)
        out.append(line.replace(b"\n", b" "))
    return b"\n".join(out) + b"\n"


FORMATS = {"combined": "combined", "common": "common", "json": "json", "nginx_error": "nginx_error",
           "apache_error": "apache_error"}


if __name__ == "__main__":   # python -m tests.fuzzing KIND LINES SEED > file.log
    import sys
    kind, n, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    sys.stdout.buffer.write(fuzzed_log(seed, kind, n))

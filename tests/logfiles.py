"""Small nginx logs for end-to-end tests, with the personal data they contain listed.

Lines are rendered from the nginx `timed_combined` format by hand, so the tests
know exactly what each line holds and can compute expected results independently.
"""
from __future__ import annotations

import gzip
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

# Personal data planted in the input; none of it may reach any output.
CLIENT_IPS = ["198.51.100.23", "203.0.113.77", "192.0.2.145", "2001:db8:abcd:12::7", "2001:db8:feed::99"]
USER_NAMES = ["alice.smith", "bob_jones"]
PASSWORDS = ["hunter2secret", "Tr0ub4dor&3x"]
TOKENS = ["tok_9f8e7d6c5b4a", "sk_live_51Habc"]
EMAILS = ["jane.doe@example.org", "max.mustermann@example.net"]


@dataclass
class Request:
    ip: str
    user: str
    when: datetime          # time the response finished (what nginx logs)
    method: str
    target: str
    status: int
    bytes_sent: int
    referrer: str
    user_agent: str
    request_time: float


def render(r: Request) -> str:
    stamp = r.when.strftime("%d/%b/%Y:%H:%M:%S %z")
    return (f'{r.ip} - {r.user} [{stamp}] "{r.method} {r.target} HTTP/1.1" {r.status} {r.bytes_sent} '
            f'"{r.referrer}" "{r.user_agent}" {r.request_time:.3f} {r.request_time * 0.9:.3f}')


def sample_requests(n: int = 300, start: datetime | None = None) -> list[Request]:
    """Deterministic requests over ~3 days, secrets and e-mails in URLs and referrers."""
    start = start or datetime(2026, 11, 20, 8, 0, 0, tzinfo=timezone(timedelta(hours=1)))
    targets = ["/", "/index.html", "/about", "/static/app.js", "/blog/post-1?utm_source=x",
               f"/login?user=alice&password={PASSWORDS[0]}", f"/api/items?id=7&token={TOKENS[0]}",
               f"/reset?email={EMAILS[0].replace('@', '%40')}", f"/users/{EMAILS[1]}/profile",
               f"/cb?code=abc123&state=xyz&api_key={TOKENS[1]}", f"/p?pwd={PASSWORDS[1].replace('&', '%26')}"]
    referrers = ["-", "https://www.google.com/", "https://example.com/index.html",
                 f"https://bob:{PASSWORDS[0]}@intranet.example.com/x?session={TOKENS[0]}"]
    agents = ["Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
              "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
              f"crawler/1.0 (+mailto:{EMAILS[0]})", "curl/8.5.0"]
    statuses = [200, 200, 200, 304, 404, 500, 301, 200, 502]
    out = []
    for i in range(n):
        out.append(Request(
            ip=CLIENT_IPS[i % len(CLIENT_IPS)],
            user=USER_NAMES[i % 7] if i % 7 < len(USER_NAMES) else "-",
            when=start + timedelta(seconds=i * 797),
            method="POST" if i % 11 == 0 else "GET",
            target=targets[i % len(targets)],
            status=statuses[i % len(statuses)],
            bytes_sent=0 if statuses[i % len(statuses)] == 304 else 100 + i,
            referrer=referrers[i % len(referrers)],
            user_agent=agents[i % len(agents)],
            request_time=(i % 13) * 0.017,
        ))
    return out


MALFORMED = [
    f"{CLIENT_IPS[0]} - {USER_NAMES[0]} [20/Nov/2026:10:00:00 +0100] \"GET /truncated?password={PASSWORDS[0]}",
    "",
    f"totally not a log line from {EMAILS[0]} at {CLIENT_IPS[3]}",
]


def write_log(path: Path, lines: list[str], gz: bool = False) -> Path:
    data = ("\n".join(lines) + "\n").encode("utf-8")
    path.write_bytes(gzip.compress(data) if gz else data)
    return path

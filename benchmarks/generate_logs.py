#!/usr/bin/env python3
"""Deterministic generator of realistic nginx access logs (benchmarks, demo samples, tests).

    python benchmarks/generate_logs.py --lines 1000000 --format timed_combined --out /tmp/access.log
    python benchmarks/generate_logs.py --lines 2000 --format combined --out /tmp/access.log.1.gz \
        --start 2026-11-17T00:00:00+00:00 --days 3

The same arguments always produce the same bytes (``--seed``, default 42; gzip output is written
with ``mtime=0`` and no file name in the header, so even ``.gz`` files are byte-identical).

What the output looks like, and why (the parser and the privacy transforms are tested on it):

* **One site, many visits.** A fixed *site* (client pool, user agents, pages, assets, API) is derived
  from ``seed`` alone, so files generated with the same seed but a different ``--start`` look like
  rotated logs of the same site (same returning clients). Traffic is a sequence of *visits*: a client
  (Zipf-ish popularity) loads a page, then its assets, then more pages; crawlers crawl, scanners probe
  ``/wp-login.php`` and ``/.env``, API clients (curl, python-requests) call ``/api/...``, an uptime
  monitor (also from ``::1``) sends ``HEAD /``. Distinct client IPs: ~6000 per 1M lines (scaled down
  as ``6000 * (N/1e6)**0.6`` for smaller files), ~10% IPv6 in compressed form, a few clients sharing a
  /24 or /48, one IPv4-mapped ``::ffff:a.b.c.d`` client.
* **Time.** ``$time_local`` is the time the response finished (nginx writes the line then), so lines
  are ordered by response end and the logged UTC instant never decreases; the arrival time is
  ``logged time - $request_time``. The server's UTC offset changes a few times over the span (default
  ``+0100``, with ``+0000``, ``-0500`` and ``+0530`` stretches in the middle, back to ``+0100`` at the
  end, so consecutive rotated files stitch): the *local* clock text jumps backwards there even though
  the instant does not - a parser must use the offset. Human traffic follows a day/night cycle.
* **Personal data and secrets** appear where they do in real logs: query strings with ``token=``,
  ``password=``, ``api_key=``, ``email=john.doe%40example.com``, ``session=``, ``access_token=``;
  e-mail addresses in paths (``/users/jane@example.org/profile``); referrers that carry the previous
  page's secret query; ``$remote_user`` names on a basic-auth ``/admin/`` area; client IPs in
  ``$http_x_forwarded_for`` (``main`` format).
* **nginx quirks**: values escaped nginx-style (``"`` -> ``\\x22``, ``\\`` -> ``\\x5C``), TLS
  handshakes sent to the plain-HTTP port (``"\\x16\\x03\\x01..."`` 400), empty requests (``""`` 400),
  ``CONNECT``/``PRI`` probes, ``499`` client-closed requests, ``0`` bytes for 304/HEAD/204,
  ``$upstream_response_time`` ``-`` for static files and occasionally a list such as
  ``0.001, 0.002 : 0.003`` (retries and internal redirects; note the spaces in an unquoted field).
* **Malformed lines** (``--malformed-ratio``, default 0.0005; ``--min-malformed``): lines a parser
  must reject - truncated lines (cut before the request's closing quote), random text, empty lines.
  ``--lines`` counts them: the file has exactly N lines, ``N - malformed`` of them well-formed
  (printed on stderr, and available through ``generate(..., stats={})``).

Speed: ~3-4 s per 1M lines on one core (pools precomputed, lines built from pre-formatted
pieces, written in batches); memory stays bounded (lines are emitted in time windows).
"""
from __future__ import annotations

import argparse
import gzip
import ipaddress
import math
import os
import random
import sys
import time
from datetime import datetime, timezone
from operator import itemgetter
from pathlib import Path
from typing import Iterator

# nginx log_format bodies (kept in sync with transforms/formats.py on purpose, not imported from it:
# the benchmark must not depend on the code it measures).
COMBINED = ('$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent '
            '"$http_referer" "$http_user_agent"')
FORMATS = {
    "combined": COMBINED,
    "main": COMBINED + ' "$http_x_forwarded_for"',
    "timed_combined": COMBINED + " $request_time $upstream_response_time",
}

DEFAULT_START = "2026-11-20T00:00:00+00:00"
DEFAULT_DAYS = 3.0
DEFAULT_MALFORMED_RATIO = 0.0005
DEFAULT_TIMEZONES = ("+0100", "+0000", "-0500", "+0530")
SITE = "https://www.example.com"

MONTHS = ("", "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")

# client kinds
HUMAN, ADMIN, GOOGLEBOT, BINGBOT, SCANNER, APICLIENT, MONITOR = range(7)


# ----------------------------------------------------------------------------- small helpers
class Table:
    """Weighted choice by table lookup: ``t.pick(rnd)`` costs one multiply and one index."""

    __slots__ = ("items", "n")

    def __init__(self, weighted: list[tuple[object, float]], size: int = 2048):
        total = sum(w for _, w in weighted)
        items: list = []
        acc = 0.0
        for item, w in weighted:
            acc += w
            while len(items) < round(acc / total * size):
                items.append(item)
        self.items = items
        self.n = len(items)

    def pick(self, rnd) -> object:
        return self.items[int(rnd() * self.n)]


def _hex(rng: random.Random, n: int) -> str:
    return "".join(rng.choice("0123456789abcdef") for _ in range(n))


def _b64(rng: random.Random, n: int) -> str:
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    return "".join(rng.choice(alphabet) for _ in range(n))


def target_distinct_ips(lines: int) -> int:
    """~6000 distinct client IPs per 1M lines, scaled sub-linearly (Heaps-like) for other sizes."""
    return max(3, min(int(6000 * (max(lines, 1) / 1e6) ** 0.6), max(3, lines // 4)))


# ----------------------------------------------------------------------------- the site
def _public_ipv4(rng: random.Random) -> str:
    while True:
        a = rng.randint(1, 223)
        b = rng.randint(0, 255)
        if a in (10, 127, 0) or (a == 172 and 16 <= b <= 31) or (a == 192 and b == 168) \
                or (a == 169 and b == 254) or (a == 100 and 64 <= b <= 127) or (a == 198 and b in (18, 19)):
            continue
        return f"{a}.{b}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"


_V6_PREFIXES = (  # (first 32 bits, weight): documentation prefix plus typical ISP / mobile allocations
    (0x20010db8, 3), (0x2a028108, 2), (0x2a010e0a, 2), (0x26001700, 2), (0x200300e2, 2),
    (0x2a0104f8, 1), (0x24053000, 1), (0x2a00a040, 1), (0x26079800, 1), (0x2a0d5600, 1),
)


def _ipv6(rng: random.Random, network48: int | None = None) -> str:
    if network48 is None:
        prefix = rng.choices([p for p, _ in _V6_PREFIXES], [w for _, w in _V6_PREFIXES])[0]
        network48 = (prefix << 16) | rng.getrandbits(16)
    subnet = rng.choice((0, 0, 1, rng.getrandbits(16)))
    style = rng.random()
    if style < 0.45:      # SLAAC privacy address: random interface id
        iid = rng.getrandbits(64)
    elif style < 0.75:    # small static interface id -> "...::1", "...::2a"
        iid = rng.choice((1, 2, 0x10, 0x2a, 0x100, rng.getrandbits(12) + 1))
    else:                 # EUI-64 (ff:fe in the middle)
        mac = rng.getrandbits(48)
        iid = ((mac >> 24) << 40) | (0xfffe << 24) | (mac & 0xffffff)
        iid ^= 0x02 << 56
    return ipaddress.IPv6Address((network48 << 80) | (subnet << 64) | iid).compressed


def _chrome_like(v: int, platform: str, mobile: bool = False) -> str:
    return (f"Mozilla/5.0 ({platform}) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{v}.0.0.0 "
            f"{'Mobile ' if mobile else ''}Safari/537.36")


# nginx escapes '"' in header values as \x22: a (rare) UA that contained quotes.
AVAST_UA = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
            "Chrome/131.0.0.0 Safari/537.36 \\x22Avast Secure Browser\\x22")


def _human_user_agents(rng: random.Random) -> Table:
    ua: list[tuple[str, float]] = []
    for v, w in ((131, 5), (130, 3), (129, 1), (128, 0.5), (109, 0.2)):
        ua.append((_chrome_like(v, "Windows NT 10.0; Win64; x64"), 9 * w))
        ua.append((_chrome_like(v, "Macintosh; Intel Mac OS X 10_15_7"), 3 * w))
        ua.append((_chrome_like(v, "X11; Linux x86_64"), 0.8 * w))
        ua.append((_chrome_like(v, "Linux; Android 10; K", mobile=True), 8 * w))
        ua.append((_chrome_like(v, "Windows NT 10.0; Win64; x64") + f" Edg/{v}.0.0.0", 2.5 * w))
    for v, w in ((133, 3), (132, 2), (128, 1), (115, 0.3)):  # Firefox (incl. ESR)
        ua.append((f"Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:{v}.0) Gecko/20100101 Firefox/{v}.0", 2 * w))
        ua.append((f"Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:{v}.0) Gecko/20100101 Firefox/{v}.0", 0.8 * w))
        ua.append((f"Mozilla/5.0 (Macintosh; Intel Mac OS X 10.15; rv:{v}.0) Gecko/20100101 Firefox/{v}.0", 0.5 * w))
        ua.append((f"Mozilla/5.0 (Android 14; Mobile; rv:{v}.0) Gecko/{v}.0 Firefox/{v}.0", 0.4 * w))
    for ios, w in (("18_1", 5), ("18_0_1", 3), ("17_6_1", 2), ("16_7_10", 0.5)):
        ver = ios.replace("_", ".").rsplit(".", 1)[0] if ios.count("_") == 2 else ios.replace("_", ".")
        ua.append((f"Mozilla/5.0 (iPhone; CPU iPhone OS {ios} like Mac OS X) AppleWebKit/605.1.15 "
                   f"(KHTML, like Gecko) Version/{ver} Mobile/15E148 Safari/604.1", 6 * w))
        ua.append((f"Mozilla/5.0 (iPad; CPU OS {ios} like Mac OS X) AppleWebKit/605.1.15 "
                   f"(KHTML, like Gecko) Version/{ver} Mobile/15E148 Safari/604.1", 1.2 * w))
        ua.append((f"Mozilla/5.0 (iPhone; CPU iPhone OS {ios} like Mac OS X) AppleWebKit/605.1.15 "
                   f"(KHTML, like Gecko) CriOS/131.0.6778.73 Mobile/15E148 Safari/604.1", 0.8 * w))
    for v, w in (("18.1", 3), ("18.0", 1.5), ("17.6", 1)):
        ua.append((f"Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
                   f"Version/{v} Safari/605.1.15", 3 * w))
    ua.append(("Mozilla/5.0 (Linux; Android 14; SAMSUNG SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) "
               "SamsungBrowser/26.0 Chrome/122.0.0.0 Mobile Safari/537.36", 3))
    ua.append(("Mozilla/5.0 (Linux; Android 13; SM-X200) AppleWebKit/537.36 (KHTML, like Gecko) "
               "Chrome/131.0.0.0 Safari/537.36", 1))  # Android tablet
    ua.append(("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
               "Chrome/131.0.0.0 Safari/537.36 OPR/114.0.0.0", 0.8))
    ua.append((AVAST_UA, 0.1))
    return Table(ua)


GOOGLEBOT_UAS = (
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "Mozilla/5.0 (Linux; Android 6.0.1; Nexus 5X Build/MMB29P) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.6778.69 Mobile Safari/537.36 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "Googlebot-Image/1.0",
)
BINGBOT_UAS = (
    "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
    "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm) "
    "Chrome/116.0.1938.76 Safari/537.36",
)
SCANNER_UAS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/91.0.4472.124 Safari/537.36",
    "Mozilla/5.0 zgrab/0.x",
    "Go-http-client/1.1",
    "python-requests/2.25.1",
    "Mozilla/5.0 (compatible; CensysInspect/1.1; +https://about.censys.io/)",
    "-",
    "() { :; }; echo; /bin/bash -c \\x22cat /etc/passwd\\x22",            # shellshock, quotes escaped
    "Mozilla/5.0 (X11; Linux x86_64) \\x22><script>alert(1)</script>",
    "Mozilla/5.0 (Windows NT 6.1; WOW64) Gecko/20100101 Firefox/3.6 \\x5C..\\x5C..\\x5Cwindows",
)
SCANNER_UA_WEIGHTS = (20, 15, 15, 8, 10, 10, 1, 1, 1)    # the quote/backslash-escaped ones are rare
API_UAS = ("curl/8.5.0", "curl/7.81.0", "curl/8.11.0", "python-requests/2.32.3", "python-requests/2.31.0",
           "okhttp/4.12.0", "axios/1.7.7", "Go-http-client/2.0")
MONITOR_UAS = ("Blackbox Exporter/0.25.0", "Mozilla/5.0+(compatible; UptimeRobot/2.0; http://www.uptimerobot.com/)")


class Site:
    """Everything that is a property of the web site, not of one day's traffic."""

    def __init__(self, seed: int, n_ips: int):
        rng = random.Random(f"accesslog-site:{seed}")
        self.rng = rng
        human_uas = _human_user_agents(rng)

        # -- pages, assets, API ------------------------------------------------------------
        self.slugs = [f"{w1}-{w2}-{i}" for i, (w1, w2) in enumerate(
            (rng.choice(("nginx", "privacy", "parquet", "duckdb", "beam", "logs", "gdpr", "coffee", "winter")),
             rng.choice(("tips", "guide", "notes", "release", "howto", "deep-dive", "faq"))) for _ in range(40))]
        self.slugs.append("caf%C3%A9-na%C3%AFve-unicode")      # percent-encoded UTF-8 path
        self.products = list(range(1001, 1001 + 240))
        self.categories = ["shoes", "jackets", "bags", "hats", "gloves", "scarves", "sale", "new"]
        self.search_terms = ["winter+jacket", "gloves", "red%20shoes", "gift", "bag", "caf%C3%A9", "size+42"]
        css = [f"/static/css/main.{_hex(rng, 8)}.css", f"/static/css/vendor.{_hex(rng, 8)}.css"]
        js = [f"/static/js/app.{_hex(rng, 8)}.js", f"/static/js/vendor.{_hex(rng, 8)}.js",
              f"/static/js/analytics.{_hex(rng, 6)}.js"]
        self.page_assets = css + js + ["/static/fonts/inter-var.woff2", "/images/logo.svg"]
        self.other_assets = ["/favicon.ico", "/images/hero-winter.png", "/images/banner-sale.png",
                             "/apple-touch-icon.png", "/site.webmanifest"]
        self.emails = ["jane@example.org", "john.doe@example.com", "m.mueller@example.de", "kim+shop@example.net"]
        self.tokens = [_b64(rng, 32) for _ in range(50)]
        self.sessions = [_hex(rng, 32) for _ in range(50)]
        self.api_keys = ["sk_live_" + _b64(rng, 24) for _ in range(6)]
        self.gclids = [_b64(rng, 20) for _ in range(64)]
        self.oauth_codes = ["4%2F0A" + _b64(rng, 24) for _ in range(64)]
        self.states = [_hex(rng, 16) for _ in range(64)]

        # -- clients -------------------------------------------------------------------------
        n_clients = max(6, int(n_ips * 1.03))
        clients: list[tuple] = []          # (ip, user_agent, kind, remote_user); protocol, xff added below
        networks4: list[str] = []
        networks6: list[int] = []

        def new_ip(v6_share: float = 0.10) -> str:
            if rng.random() < v6_share:
                if networks6 and rng.random() < 0.15:                # same /48 as another client
                    return _ipv6(rng, rng.choice(networks6))
                ip = _ipv6(rng)
                networks6.append(int(ipaddress.IPv6Address(ip)) >> 80)
                return ip
            if networks4 and rng.random() < 0.12:                    # same /24 as another client
                return f"{rng.choice(networks4)}.{rng.randint(1, 254)}"
            ip = _public_ipv4(rng)
            networks4.append(ip.rsplit(".", 1)[0])
            return ip

        # Heavy hitters first: they get the top popularity ranks.
        clients.append(("::1", MONITOR_UAS[0], MONITOR, "-"))
        clients.append(("127.0.0.1", "curl/8.5.0", MONITOR, "-"))
        clients.append((f"{rng.choice(('69.162.124', '63.143.42', '216.144.250'))}.{rng.randint(224, 253)}",
                        MONITOR_UAS[1], MONITOR, "-"))
        for i in range(max(1, n_clients // 400)):
            clients.append((f"66.249.{rng.randint(64, 79)}.{rng.randint(1, 254)}",
                            GOOGLEBOT_UAS[i % len(GOOGLEBOT_UAS)], GOOGLEBOT, "-"))
        for i in range(max(1, n_clients // 1000)):
            net = rng.choice(("157.55.39", "207.46.13", "40.77.167", "52.167.144"))
            clients.append((f"{net}.{rng.randint(1, 254)}", BINGBOT_UAS[i % len(BINGBOT_UAS)], BINGBOT, "-"))
        top = len(clients)
        rest: list[tuple] = []
        if n_clients >= 20:
            rest.append(("2001:db8:85a3::8a2e:370:7334", human_uas.pick(rng.random), HUMAN, "-"))
            rest.append((f"::ffff:{_public_ipv4(rng)}", human_uas.pick(rng.random), HUMAN, "-"))
            rest.append((new_ip(0.0), AVAST_UA, HUMAN, "-"))     # guarantees one \x22 UA in small files
        for user in ("alice", "bob", "deploy", "j.doe")[: max(1, min(4, n_clients // 40))]:
            rest.append((new_ip(0.2), human_uas.pick(rng.random), ADMIN, user))
        for _ in range(max(1, n_clients * 3 // 100)):
            rest.append((new_ip(0.05), rng.choices(SCANNER_UAS, SCANNER_UA_WEIGHTS)[0], SCANNER, "-"))
        for _ in range(max(1, n_clients * 3 // 100)):
            rest.append((new_ip(0.15), rng.choice(API_UAS), APICLIENT, "-"))
        while len(rest) + top < n_clients:
            if rest and rng.random() < 0.03:     # a second device behind the same IP (NAT, household)
                ip = rng.choice(rest)[0]
            else:
                ip = new_ip(0.11)
            rest.append((ip, human_uas.pick(rng.random), HUMAN, "-"))
        rng.shuffle(rest)
        # Per client: the HTTP version it speaks and the X-Forwarded-For header it arrives with
        # (a corporate proxy or CDN in front of some clients; ``main`` format only).
        xff_sources = [c[0] for c in rest[:200]] or ["203.0.113.7"]
        full = []
        for ip, ua, kind, user in clients + rest:
            x = rng.random()
            if kind in (HUMAN, ADMIN):
                proto = "HTTP/2.0" if x < 0.62 else "HTTP/1.1"
            elif kind == SCANNER:
                proto = "HTTP/1.0" if x < 0.3 else "HTTP/1.1"
            else:
                proto = "HTTP/1.0" if x < 0.03 else "HTTP/1.1"
            xff = "-"
            if kind in (HUMAN, ADMIN, APICLIENT) and rng.random() < 0.12:
                xff = rng.choice(xff_sources)
                if rng.random() < 0.3:
                    xff = f"{xff}, 10.0.{rng.randint(0, 3)}.{rng.randint(2, 250)}"
            full.append((ip, ua, kind, user, proto, xff))
        self.clients = full
        # Zipf-ish popularity of clients (visits per client ~ 1/rank^0.9).
        acc = 0.0
        self.cum_weights = []
        for rank in range(len(self.clients)):
            acc += 1.0 / (rank + 1) ** 0.9
            self.cum_weights.append(acc)


# ----------------------------------------------------------------------------- request models
# Each returns (method, target, status, bytes, request_time, upstream_time); method None: the
# request line is `target` verbatim (garbage, empty); upstream None -> "-" (served by nginx itself).
# The hot kinds are drawn from pools of pre-rendered requests (see Traffic.pool).

def _fmt_t(t: float) -> str:
    return f"{t:.3f}"


class Traffic:
    def __init__(self, site: Site, rng: random.Random):
        self.site = site
        self.rng = rng
        r = rng.random
        self.r = r
        # rng.choice/randint are pure-Python and ~5x slower than one rng.random() and an index
        self.ch = lambda seq: seq[int(r() * len(seq))]
        self.randint = lambda a, b: a + int(r() * (b - a + 1))
        self.page_table = Table([
            ("home", 20), ("product", 30), ("category", 12), ("blog", 10), ("bloglist", 3), ("search", 5),
            ("static_page", 5), ("cart", 5), ("account", 3), ("login", 3), ("reset", 0.6),
            ("profile", 0.8), ("unsubscribe", 0.3), ("campaign", 2), ("oauth", 0.4), ("blog_noslash", 0.5),
        ])
        self.status_page = Table([(200, 960), (304, 8), (404, 12), (499, 6), (500, 3), (502, 4), (503, 3),
                                  (504, 2), (400, 1), (403, 1)])
        self.status_api = Table([(200, 880), (201, 20), (204, 15), (400, 20), (401, 25), (403, 8), (404, 15),
                                 (429, 2), (499, 4), (500, 5), (502, 3), (503, 2), (504, 1)])
        self.referrer_table = Table([
            ("-", 45), ("internal", 30), ("https://www.google.com/", 14), ("https://www.bing.com/", 2),
            ("https://duckduckgo.com/", 2), ("https://www.google.de/", 2), ("https://t.co/", 1),
            ("https://www.facebook.com/", 1), ("android-app://com.google.android.gm/", 0.5),
            ("secret", 0.8), ("https://www.ecosia.org/search?q=winter+jacket", 0.5),
        ])

    def pool(self, make, size: int, tail_kind: int, *args) -> list[tuple]:
        """``size`` pre-rendered requests from ``make(*args)``: (request-without-protocol, needs protocol,
        '" status bytes "', request_time, timing tail, page URL if 200). Rendering ~5 us per request
        once instead of per line is what makes 1M lines take seconds."""
        out = []
        for _ in range(size):
            out.append(self.render(make(*args), tail_kind))
        return out

    @staticmethod
    def render(req: tuple, tail_kind: int) -> tuple:
        method, target, status, nbytes, rt, up = req
        tail = f" {rt:.3f} {up if up is not None else '-'}" if tail_kind == 2 else ""
        if method is None:
            return (target, False, f'" {status} {nbytes} "', rt, tail, None)
        return (f"{method} {target} ", True, f'" {status} {nbytes} "', rt, tail,
                SITE + target if status == 200 else None)

    # -- pieces ------------------------------------------------------------------------------
    def body_bytes(self, status: int, base: int, method: str) -> int:
        if method == "HEAD" or status in (304, 204, 499):
            return 0
        if status == 301:
            return 169
        if status == 302:
            return 145
        if status in (400, 502):
            return 157 if status == 400 else 157
        if status == 401:
            return 179
        if status == 403:
            return 153
        if status == 404:
            return 153 if self.r() < 0.5 else 5120 + int(self.r() * 600)
        if status in (500, 503, 504):
            return {500: 177, 503: 197, 504: 167}[status]
        return max(1, int(base * math.exp((self.r() - 0.5) * 0.6)))

    def times(self, status: int, proxied: bool, base: float) -> tuple[float, str | None]:
        r = self.r
        if not proxied:
            rt = 0.0 if r() < 0.6 else r() * 0.004
            if status == 499:
                rt = 0.2 + r() * 8
            return rt, None
        if status == 504:
            return 60.0 + r() * 0.004, "60.00%d" % int(r() * 3)
        if status == 499:
            rt = 1.0 + r() * 25
            return rt, _fmt_t(rt - 0.001)
        up = base * math.exp((r() - 0.3) * 1.6)
        if status == 502:
            up = r() * 0.003
        rt = up + r() * 0.004
        x = r()
        if x < 0.004:        # next_upstream retry: two servers tried
            first = r() * 0.003
            return rt + first, f"{_fmt_t(first)}, {_fmt_t(up)}"
        if x < 0.007:        # internal redirect (X-Accel-Redirect / error_page): upstream groups
            a, b = r() * 0.002, r() * 0.004
            return rt + a + b, f"{_fmt_t(a)}, {_fmt_t(b)} : {_fmt_t(up)}"
        return rt, _fmt_t(up)

    def referrer(self, kind: str | None = None, last_page: str | None = None) -> str:
        if kind is None:
            kind = self.referrer_table.pick(self.r)
        if kind == "internal":
            return last_page or SITE + "/"
        if kind == "secret":
            s = self.site
            return self.ch((
                f"{SITE}/reset-password?token={self.ch(s.tokens)}&email=john.doe%40example.com",
                f"https://mail.example.net/mail/?session={self.ch(s.sessions)}&folder=inbox",
                f"{SITE}/account?access_token={self.ch(s.tokens)}",
            ))
        return kind

    # -- request kinds -----------------------------------------------------------------------
    def page(self, kind: int = HUMAN) -> tuple:
        s, r = self.site, self.r
        p = self.page_table.pick(r)
        method = "GET"
        status = None
        base = 24000
        if p == "home":
            target = "/"
            base = 31000
        elif p == "product":
            target = f"/products/{s.products[int(r() ** 1.6 * len(s.products))]}"
            if r() < 0.05:
                target += "?utm_source=newsletter&utm_medium=email&utm_campaign=black-friday"
            base = 42000
        elif p == "category":
            target = f"/category/{self.ch(s.categories)}"
            if r() < 0.3:
                target += f"?page={self.randint(2, 9)}&sort={self.ch(('price', 'new', 'popular'))}"
        elif p == "blog":
            target = f"/blog/{s.slugs[int(r() ** 1.4 * len(s.slugs))]}"
            base = 18000
        elif p == "bloglist":
            target = "/blog/"
        elif p == "blog_noslash":
            target, status = "/blog", 301
        elif p == "search":
            target = f"/search?q={self.ch(s.search_terms)}"
        elif p == "static_page":
            target = self.ch(("/about", "/contact", "/pricing", "/faq", "/imprint", "/privacy"))
            base = 9000
        elif p == "cart":
            target = "/cart"
            if r() < 0.25:
                method, target, status = "POST", "/cart/add", 302
        elif p == "account":
            target = "/account"
            if r() < 0.4:
                status = 302        # not logged in -> /login
        elif p == "login":
            x = r()
            if x < 0.5:
                target = "/login?next=%2Faccount"
            elif x < 0.9:
                method, target, status = "POST", "/login", 302
            else:       # credentials in the query string (a bad form, but real)
                method, target = "POST", f"/login?username={self.ch(('bob', 'jane', 'admin'))}&password=hunter2"
                status = 302
        elif p == "reset":
            target = f"/reset-password?token={self.ch(s.tokens)}&email=john.doe%40example.com"
        elif p == "profile":
            target = f"/users/{self.ch(s.emails)}/profile"
        elif p == "unsubscribe":
            email = self.ch(s.emails).replace("@", "%40")
            target = f"/newsletter/unsubscribe?email={email}&session={self.ch(s.sessions)}"
        elif p == "campaign":
            target = f"/?utm_source=google&utm_medium=cpc&gclid={self.ch(s.gclids)}"
        else:  # oauth
            target = f"/oauth/callback?code={self.ch(s.oauth_codes)}&state={self.ch(s.states)}"
        if status is None:
            status = self.status_page.pick(r)
        if kind in (GOOGLEBOT, BINGBOT) and status == 304 and r() < 0.5:
            status = 200
        rt, up = self.times(status, True, 0.045 if p != "search" else 0.18)
        return method, target, status, self.body_bytes(status, base, method), rt, up

    def asset(self, first: bool) -> tuple:
        s, r = self.site, self.r
        if first and r() < 0.8:
            target = self.ch(s.page_assets)
        elif r() < 0.6:
            target = f"/images/products/{self.ch(s.products)}-{self.ch((400, 800))}.png"
        else:
            target = self.ch(s.other_assets)
        x = r()
        if target == "/apple-touch-icon.png":
            status = 404
        elif not first and x < 0.5:
            status = 304
        elif x < 0.06:
            status = 304
        elif x < 0.062:
            status = 499
        else:
            status = 200
        base = 60000 if target.endswith(".js") else 32000 if target.endswith(".css") else \
            1150 if target.endswith(".ico") else 48000 if target.endswith(".woff2") else 25000
        rt, _ = self.times(status, False, 0.0)
        return "GET", target, status, self.body_bytes(status, base, "GET"), rt, None

    def crawl(self, kind: int) -> tuple:
        r = self.r
        x = r()
        if x < 0.04:
            target = "/robots.txt"
            rt, up = self.times(200, False, 0)
            return "GET", target, 200, 212, rt, up
        if x < 0.06:
            rt, up = self.times(200, False, 0)
            return "GET", "/sitemap.xml", 200, 48211, rt, up
        if x < 0.1 and kind == GOOGLEBOT:
            return self.asset(False)
        return self.page(kind)

    PROBES = (
        ("GET", "/wp-login.php", 404), ("POST", "/wp-login.php", 404), ("GET", "/wp-admin/", 404),
        ("POST", "/xmlrpc.php", 404), ("GET", "/.env", 403), ("GET", "/.git/config", 403),
        ("GET", "/phpmyadmin/index.php", 404), ("GET", "/admin/config.php", 404),
        ("POST", "/vendor/phpunit/phpunit/src/Util/PHP/eval-stdin.php", 404),
        ("GET", "/cgi-bin/luci/;stok=/locale?form=country&operation=write&country=$(id)", 404),
        ("POST", "/boaform/admin/formLogin", 404), ("GET", "/HNAP1/", 404), ("GET", "/owa/auth/logon.aspx", 404),
        ("GET", "/index.php?s=/Index/\\x5Cthink\\x5Capp/invokefunction&function=call_user_func_array", 404),
        ("GET", "/login.php?user=admin&password=admin", 404), ("GET", "/wp-content/plugins/wp-file-manager/", 404),
        ("GET", "/.aws/credentials", 403), ("GET", "/server-status", 403), ("GET", "/", 200),
        ("GET", "/api/v1/users?api_key=test", 401),
    ) * 4 + (("PROPFIND", "/", 405),)

    def probe(self) -> tuple:
        r = self.r
        x = r()
        if x < 0.05:   # TLS ClientHello sent to the plain-HTTP port
            req = "\\x16\\x03\\x01\\x00\\xF5\\x01\\x00\\x00\\xF1\\x03\\x03" if r() < 0.7 else \
                "\\x16\\x03\\x01\\x02\\x00\\x01\\x00\\x01\\xFC\\x03\\x03\\xD3"
            return None, req, 400, 157, r() * 0.2, None
        if x < 0.08:   # connection opened and closed (or timed out) without a request line
            return None, "", 400, 0, r() * 0.002, None
        if x < 0.09:
            return None, "CONNECT www.google.com:443 HTTP/1.1", 400, 157, 0.0, None
        if x < 0.095:
            return None, "PRI * HTTP/2.0", 400, 157, 0.0, None
        method, target, status = self.ch(self.PROBES)
        proxied = target.endswith(".php") or "index.php" in target or target.startswith("/api/")
        rt, up = self.times(status, proxied, 0.01)
        return method, target, status, self.body_bytes(status, 9000, method), rt, up

    def api(self) -> tuple:
        s, r = self.site, self.r
        x = r()
        pid = self.ch(s.products)
        if x < 0.35:
            method, target = "GET", f"/api/v1/products?page={self.randint(1, 12)}&per_page=20"
        elif x < 0.5:
            method, target = "GET", f"/api/v1/products/{pid}"
        elif x < 0.6:
            method, target = "POST", "/api/v1/cart/items"
        elif x < 0.66:
            method, target = "PUT", f"/api/v1/cart/items/{pid}"
        elif x < 0.71:
            method, target = "DELETE", f"/api/v1/cart/items/{pid}"
        elif x < 0.76:
            method, target = "OPTIONS", "/api/v1/cart/items"
        elif x < 0.82:
            method, target = "GET", f"/api/v1/users/{self.randint(1, 5000)}?api_key={self.ch(s.api_keys)}"
        elif x < 0.87:
            method, target = "GET", f"/api/v2/me?access_token={self.ch(s.tokens)}"
        elif x < 0.91:
            method, target = "POST", f"/api/v1/events?session={self.ch(s.sessions)}"
        elif x < 0.94:
            method, target = "POST", "/api/v1/auth/token"
        elif x < 0.96:
            method, target = "GET", f"/api/v1/orders?email={self.ch(s.emails).replace('@', '%40')}"
        else:
            method, target = "GET", "/api/v1/health"
        status = self.status_api.pick(r)
        if method == "OPTIONS":
            status = 204                       # CORS preflight
        elif status in (201, 204) and method in ("GET", "HEAD"):
            status = 200
        elif method == "POST" and status == 200 and r() < 0.5:
            status = 201
        elif method == "DELETE" and status == 200:
            status = 204
        rt, up = self.times(status, True, 0.02)
        return method, target, status, self.body_bytes(status, 1800, method), rt, up

    def admin(self, first: bool) -> tuple:
        target = self.ch(("/admin/", "/admin/orders", "/admin/orders?status=open", "/admin/users",
                             f"/admin/users/{self.ch(self.site.emails)}", "/admin/reports/daily"))
        status = 401 if first and self.r() < 0.3 else 200
        rt, up = self.times(status, True, 0.08)
        return "GET", target, status, self.body_bytes(status, 16000, "GET"), rt, up

    def monitor(self) -> tuple:
        target = "/" if self.r() < 0.7 else "/healthz"
        method = "HEAD" if target == "/" and self.r() < 0.6 else "GET"
        rt, up = self.times(200, True, 0.004)
        return method, target, 200, self.body_bytes(200, 31000 if target == "/" else 2, method), rt, up


# ----------------------------------------------------------------------------- time
def _parse_start(start) -> datetime:
    if isinstance(start, datetime):
        dt = start
    else:
        dt = datetime.fromisoformat(str(start).replace("Z", "+00:00"))
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt


def _tz_seconds(tz: str) -> int:
    sign = -1 if tz[0] == "-" else 1
    return sign * (int(tz[1:3]) * 3600 + int(tz[3:5]) * 60)


def tz_schedule(t0: float, span: float, zones: tuple[str, ...]) -> tuple[list[float], list[str]]:
    """UTC offsets over the span: zones[0] at both ends, the others in consecutive stretches in the middle."""
    if len(zones) <= 1:
        return [], [zones[0] if zones else "+0000"]
    others = list(zones[1:])
    stretch = span * 0.08
    begin = t0 + span * 0.45
    bounds, names = [], [zones[0]]
    for i, z in enumerate(others):
        bounds.append(begin + i * stretch)
        names.append(z)
    bounds.append(begin + len(others) * stretch)
    names.append(zones[0])
    return bounds, names


def _diurnal_ok(rnd, t: float, offset: int) -> bool:
    hour = ((t + offset) % 86400) / 3600.0
    # low around 04:00 local, high in the afternoon/evening
    level = 0.55 + 0.45 * math.sin((hour - 10.0) / 24.0 * 2 * math.pi)
    return rnd() < level


# ----------------------------------------------------------------------------- malformed lines
_RANDOM_TEXT = (
    "Connection reset by peer",
    '{"level":"info","msg":"configuration reloaded","pid":1}',
    "<html><body>502 Bad Gateway</body></html>",
    "GET / HTTP/1.1",
    "nginx: [warn] the \"ssl\" directive is deprecated",
    "   ",
)


def _malformed(rng: random.Random, sample_line: str) -> str:
    x = rng.random()
    if x < 0.5 and sample_line:
        # cut before the request's closing quote: the line can never match the format
        q = sample_line.find('] "')
        end = sample_line.find('" ', q + 3) if q >= 0 else -1
        if end > 1:
            return sample_line[: rng.randint(1, end)]
    if x < 0.75:
        if rng.random() < 0.5:
            return rng.choice(_RANDOM_TEXT)
        alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .:/-_=+[]{}()"
        return "".join(rng.choice(alphabet) for _ in range(rng.randint(10, 120))).strip() or "x"
    return ""


# What a busy server's log holds after crashes, disk trouble and scanner traffic (--dirty). Lines are
# str; bytes that are not UTF-8 are carried as surrogate escapes and written back as the raw bytes.
DIRTY_KINDS = ("truncated", "garbage", "carriage_return", "nul_run", "invalid_utf8", "binary",
               "tls_handshake", "http09")


class Damaged(str):
    """A line generate() made malformed (write() can leave them out of a clean copy)."""


def _stamp(sample_line: str) -> tuple[str, str]:
    """(client, [time] text) of a sample line, for lines a server writes itself."""
    lb, rb = sample_line.find(" ["), sample_line.find("] ")
    if lb < 0 or rb < lb:
        return "192.0.2.1", "[01/Dec/2026:00:00:00 +0000]"
    return sample_line.split(" ", 1)[0], sample_line[lb + 1:rb + 1]


def _dirty(rng: random.Random, sample_line: str, tail_kind: int) -> tuple[str, str]:
    """One damaged or odd line -> (kind, line). Truncated writes and garbage are as in _malformed;
    a CR inside the line or before its newline (CRLF), a run of NULs where a crash left the
    preallocated end of the file, invalid UTF-8 in the user agent, raw binary, a TLS ClientHello on the
    plain-HTTP port and an HTTP/0.9 request as nginx logs them (status 009, no protocol)."""
    kind = DIRTY_KINDS[rng.randrange(len(DIRTY_KINDS))]
    line = sample_line or '192.0.2.1 - - [01/Dec/2026:00:00:00 +0000] "GET / HTTP/1.1" 200 1 "-" "x"'
    client, stamp = _stamp(line)
    tail = ("", ' "-"', " 0.000 -")[tail_kind]
    if kind == "truncated":
        return kind, line[:rng.randint(1, max(1, len(line) - 1))]
    if kind == "garbage":
        return kind, _malformed(rng, "") or "garbage"
    if kind == "carriage_return":
        if rng.random() < 0.5:
            return kind, line + "\r"
        at = rng.randint(1, len(line) - 1)
        return kind, line[:at] + "\r" + line[at:]
    if kind == "nul_run":
        return kind, "\x00" * rng.randint(1, 4096) + (line if rng.random() < 0.5 else "")
    if kind == "invalid_utf8":
        at = line.rfind('"', 0, len(line) - 1) if rng.random() < 0.7 else rng.randint(1, len(line) - 1)
        bad = "".join(chr(0xDC80 + rng.randrange(0x80)) for _ in range(rng.randint(1, 4)))
        return kind, line[:at] + bad + line[at:]
    if kind == "binary":
        return kind, "".join(chr(0xDC80 + b - 0x80) if b >= 0x80 else chr(b)
                             for b in (rng.randrange(256) for _ in range(rng.randint(8, 300))) if b != 10)
    if kind == "tls_handshake":
        hello = "".join(f"\\x{b:02X}" for b in (0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xFC, 0x03, 0x03))
        return kind, f'{client} - - {stamp} "{hello}" 400 157 "-" "-"{tail}'
    return kind, f'{client} - - {stamp} "GET /{rng.choice(("", "index.html", "robots.txt"))}" 009 {rng.randint(100, 9000)} "-" "-"{tail}'


# ----------------------------------------------------------------------------- the generator
def generate(lines: int, fmt: str = "timed_combined", seed: int = 42, start=DEFAULT_START,
             days: float = DEFAULT_DAYS, malformed_ratio: float = DEFAULT_MALFORMED_RATIO,
             min_malformed: int = 0, timezones: tuple[str, ...] = DEFAULT_TIMEZONES,
             stats: dict | None = None, dirty: bool = False) -> Iterator[str]:
    """Yield exactly ``lines`` log lines (without trailing newline) in ``fmt``.

    ``stats``, if given, is filled when the iterator is exhausted: ``lines``, ``malformed``,
    ``well_formed``, ``distinct_ips``, ``first``/``last`` (UTC ISO of the logged times).

    ``dirty``: the malformed lines are the realistic damage of ``_dirty`` (CR, NUL runs, invalid
    UTF-8, binary, truncated writes, TLS handshakes, HTTP/0.9) instead of ``_malformed``'s; ``stats``
    then also counts them per kind (``dirty_kinds``). Some of them (CRLF endings, TLS, HTTP/0.9) are
    lines a tolerant parser keeps: "malformed" counts what was injected, not what must be rejected.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if lines < 0:
        raise ValueError("lines must be >= 0")
    t0 = _parse_start(start).timestamp()
    span = max(1.0, float(days) * 86400.0)
    n_bad = min(lines, max(int(min_malformed), int(round(lines * float(malformed_ratio)))))
    n_good = lines - n_bad

    site = Site(seed, target_distinct_ips(lines))
    rng = random.Random(f"accesslog-traffic:{seed}:{t0}:{lines}:{fmt}")
    rnd = rng.random
    traffic = Traffic(site, rng)
    clients = site.clients
    bounds, zone_names = tz_schedule(t0, span, tuple(timezones))
    main_offset = _tz_seconds(zone_names[0])

    # -- phase 1: visit shapes (client, number of lines) until n_good lines --------------------
    n_clients = len(clients)
    visits: list[tuple[int, int]] = []
    total = 0
    order = list(range(n_clients))
    rng.shuffle(order)                       # every client shows up at least once...
    pending = iter(order)
    batch: list[int] = []
    while total < n_good:
        c = next(pending, None)
        if c is None:                        # ...then Zipf-ish popularity
            if not batch:
                batch = rng.choices(range(n_clients), cum_weights=site.cum_weights, k=4096)
            c = batch.pop()
        kind = clients[c][2]
        if kind == HUMAN:
            n = 1 + int(rng.expovariate(1 / 2.2)) if rnd() < 0.85 else 1
            n += int(rnd() * 6) if rnd() < 0.8 else 0          # first page's assets
            n += int(rng.expovariate(1 / 2.5)) if n > 2 else 0  # later pages' assets
        elif kind in (GOOGLEBOT, BINGBOT):
            n = 1 + int(rng.expovariate(1 / 6.0))
        elif kind == SCANNER:
            n = 1 + int(rng.expovariate(1 / 7.0))
        elif kind == APICLIENT:
            n = 1 + int(rng.expovariate(1 / 4.0))
        elif kind == ADMIN:
            n = 1 + int(rng.expovariate(1 / 3.0))
        else:
            n = 1
        n = min(n, 60, n_good - total)
        visits.append((c, n))
        total += n

    # -- phase 2: visit start times (humans follow the day) ------------------------------------
    timed: list[tuple[float, int, int]] = []
    visit_span = span * 0.995
    for c, n in visits:
        kind = clients[c][2]
        while True:
            t = t0 + rnd() * visit_span
            if kind not in (HUMAN, ADMIN) or _diurnal_ok(rnd, t, main_offset):
                break
        timed.append((t, c, n))
    timed.sort(key=itemgetter(0))
    del visits

    # -- phase 3: expand visits into requests, bucket by response-end time, emit in order ------
    tail_kind = 0 if fmt == "combined" else 1 if fmt == "main" else 2
    window = 60.0
    buckets: dict[int, list] = {}
    bad_positions = sorted(rng.sample(range(lines), n_bad)) if n_bad else []
    state = {"out": 0, "bad_i": 0, "last_sec": None, "ts": "", "zone_i": 0, "distinct": set(),
             "first": None, "last": None, "last_line": "", "next_w": 0}

    # Per client, the constant parts of its lines.
    cview = []
    for ip, ua, kind, user, proto, xff in clients:
        ua_tail = f'" "{ua}"' + (f' "{xff}"' if tail_kind == 1 else "")
        cview.append((f"{ip} - {user} [", proto, ua_tail, kind, ip, f"{ip} - - ["))
    pool_size = max(64, min(16384, n_good))
    pools: dict = {}

    def pool(name: str, make, *args) -> tuple[list, int]:
        if name not in pools:
            p = traffic.pool(make, pool_size, tail_kind, *args)
            pools[name] = (p, len(p))
        return pools[name]

    zone_offsets = [_tz_seconds(z) for z in zone_names]
    bad_positions.append(lines + 1)           # sentinel
    kinds: dict[str, int] = {}

    def bad_line(sample: str) -> str:
        if not dirty:
            return Damaged(_malformed(rng, sample))
        kind, text = _dirty(rng, sample, tail_kind)
        kinds[kind] = kinds.get(kind, 0) + 1
        return Damaged(text)

    def flush_until(limit: int | None) -> list[str]:
        """Lines of every bucket with index < limit (None: all), in time order (malformed lines mixed in)."""
        out: list[str] = []
        append = out.append
        last_sec, ts, zi = state["last_sec"], state["ts"], state["zone_i"]
        n_out, bad_i = state["out"], state["bad_i"]
        next_bad = bad_positions[bad_i]
        line = state["last_line"]
        windows = range(state["next_w"], limit) if limit is not None else sorted(buckets)
        for w in windows:
            bucket = buckets.pop(w, None)
            if bucket is None:
                continue
            bucket.sort(key=itemgetter(0))
            for end, head, body in bucket:
                sec = int(end)
                if sec != last_sec:
                    while zi < len(bounds) and sec >= bounds[zi]:
                        zi += 1
                    tm = time.gmtime(sec + zone_offsets[zi])
                    ts = (f"{tm.tm_mday:02d}/{MONTHS[tm.tm_mon]}/{tm.tm_year}:"
                          f"{tm.tm_hour:02d}:{tm.tm_min:02d}:{tm.tm_sec:02d} {zone_names[zi]}")
                    if last_sec is None:
                        state["first"] = sec
                    last_sec = sec
                new = head + ts + body
                while n_out == next_bad:
                    append(bad_line(line or new))
                    n_out += 1
                    bad_i += 1
                    next_bad = bad_positions[bad_i]
                line = new
                append(line)
                n_out += 1
        if limit is not None:
            state["next_w"] = limit
        state.update(last_sec=last_sec, ts=ts, zone_i=zi, out=n_out, bad_i=bad_i, last_line=line, last=last_sec)
        return out

    distinct = state["distinct"]
    last_page: dict[int, str] = {}           # client -> last page URL (referrer of the next page)
    ref_items, ref_n = traffic.referrer_table.items, traffic.referrer_table.n
    home = SITE + "/"
    for start_t, c, n in timed:
        w_now = int((start_t - t0) // window)
        if w_now > state["next_w"]:
            yield from flush_until(w_now)
        head, proto, ua_tail, kind, ip, head_anon = cview[c]
        distinct.add(ip)
        t = start_t
        events = []
        append = events.append
        if kind == HUMAN:
            pages, npages = pool("page", traffic.page)
            made = 0
            first = True
            while made < n:
                pre, needs_proto, post, rt, tail, url = pages[int(rnd() * npages)]
                end = t + rt
                ref = ref_items[int(rnd() * ref_n)]
                if ref == "internal":
                    ref = last_page.get(c, home)
                elif ref == "secret":
                    ref = traffic.referrer("secret")
                append((end, head, f'] "{pre}{proto}{post}{ref}{ua_tail}{tail}'))
                made += 1
                if url is not None:
                    last_page[c] = url
                    n_assets = int(rnd() * 6) if first else (int(rnd() * 3) if rnd() < 0.5 else 0)
                    if n_assets:
                        assets, nassets = pool("asset_first" if first else "asset", traffic.asset, first)
                        for _ in range(min(n_assets, n - made)):
                            pre, _, post, rt, tail, _ = assets[int(rnd() * nassets)]
                            append((end + 0.01 + rnd() * 0.25 + rt, head, f'] "{pre}{proto}{post}{url}{ua_tail}{tail}'))
                            made += 1
                first = False
                t = end + min(600.0, 2.0 + rng.expovariate(1 / 35.0))
        else:
            if kind == GOOGLEBOT:
                reqs, nreqs = pool("googlebot", traffic.crawl, GOOGLEBOT)
            elif kind == BINGBOT:
                reqs, nreqs = pool("bingbot", traffic.crawl, BINGBOT)
            elif kind == SCANNER:
                reqs, nreqs = pool("probe", traffic.probe)
            elif kind == APICLIENT:
                reqs, nreqs = pool("api", traffic.api)
            elif kind == MONITOR:
                reqs, nreqs = pool("monitor", traffic.monitor)
            ref = "-"
            for i in range(n):
                who = head
                if kind == ADMIN:     # dynamic: the first request may lack credentials (401)
                    pre, needs_proto, post, rt, tail, url = traffic.render(traffic.admin(i == 0), tail_kind)
                    if post.startswith('" 401 '):
                        who = head_anon
                    gap = 3 + rng.expovariate(1 / 40.0)
                else:
                    pre, needs_proto, post, rt, tail, url = reqs[int(rnd() * nreqs)]
                    gap = (0.5 + rnd() * 12 if kind in (GOOGLEBOT, BINGBOT) else
                           0.05 + rnd() * 1.5 if kind == SCANNER else
                           0.1 + rng.expovariate(1 / 8.0) if kind == APICLIENT else 30.0)
                end = t + rt
                append((end, who, f'] "{pre}{proto if needs_proto else ""}{post}{ref}{ua_tail}{tail}'))
                if kind == ADMIN and url is not None:
                    ref = SITE + "/admin/"
                t = end + gap
        for ev in events:
            w = int((ev[0] - t0) // window)
            bucket = buckets.get(w)
            if bucket is None:
                buckets[w] = [ev]
            else:
                bucket.append(ev)
    yield from flush_until(None)
    while state["bad_i"] < n_bad:            # malformed lines placed after the last good line
        yield bad_line(state["last_line"])
        state["bad_i"] += 1
        state["out"] += 1

    if stats is not None:
        stats.update(
            lines=state["out"], malformed=n_bad, well_formed=state["out"] - n_bad,
            distinct_ips=len(distinct), format=fmt, seed=seed,
            first=datetime.fromtimestamp(state["first"], timezone.utc).isoformat() if state["first"] else None,
            last=datetime.fromtimestamp(state["last"], timezone.utc).isoformat() if state["last"] else None,
        )
        if dirty:
            stats["dirty_kinds"] = dict(sorted(kinds.items()))


def write(path: str | Path, lines: int, fmt: str = "timed_combined", seed: int = 42, clean_copy: str | Path | None = None,
          **kwargs) -> dict:
    """Write ``generate(...)`` to ``path`` (gzip if it ends in .gz, deterministic bytes); return stats.
    ``clean_copy``: also write the same lines without the malformed ones there (plain text)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    stats: dict = {}
    tmp = path.with_name(path.name + ".tmp")
    clean_tmp = Path(str(clean_copy) + ".tmp") if clean_copy else None
    with open(tmp, "wb") as raw, (open(clean_tmp, "wb") if clean_tmp else open(os.devnull, "wb")) as clean:
        out = gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=6) \
            if path.name.endswith(".gz") else raw

        def flush(buf: list[str]) -> None:
            out.write(("\n".join(buf) + "\n").encode("utf-8", "surrogateescape"))
            if clean_tmp:
                good = [x for x in buf if not isinstance(x, Damaged)]
                if good:
                    clean.write(("\n".join(good) + "\n").encode("utf-8"))

        buf: list[str] = []
        for line in generate(lines, fmt, seed, stats=stats, **kwargs):
            buf.append(line)
            if len(buf) >= 20000:
                flush(buf)
                buf = []
        if buf:
            flush(buf)
        if out is not raw:
            out.close()
    tmp.replace(path)
    if clean_tmp:
        clean_tmp.replace(clean_copy)
    return stats


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lines", type=int, required=True, help="number of lines, malformed ones included")
    ap.add_argument("--format", dest="fmt", choices=sorted(FORMATS), default="timed_combined")
    ap.add_argument("--out", required=True, help="output file ('-' for stdout); .gz -> gzip")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--start", default=DEFAULT_START, help="ISO time of the first visit (default %(default)s)")
    ap.add_argument("--days", type=float, default=DEFAULT_DAYS, help="time span (default %(default)s)")
    ap.add_argument("--malformed-ratio", type=float, default=DEFAULT_MALFORMED_RATIO)
    ap.add_argument("--min-malformed", type=int, default=0, help="at least this many malformed lines")
    ap.add_argument("--dirty", action="store_true",
                    help="malformed lines are realistic damage (CR, NUL, invalid UTF-8, binary, truncated, TLS, "
                         "HTTP/0.9); pair with --malformed-ratio 0.001")
    ap.add_argument("--timezones", default=",".join(DEFAULT_TIMEZONES),
                    help="server UTC offsets over time, first one dominant (default %(default)s)")
    args = ap.parse_args(argv)
    zones = tuple(z.strip() for z in args.timezones.split(",") if z.strip())
    for z in zones:
        if len(z) != 5 or z[0] not in "+-" or not z[1:].isdigit():
            ap.error(f"bad time zone {z!r}: use +HHMM / -HHMM")
    kwargs = dict(start=args.start, days=args.days, malformed_ratio=args.malformed_ratio,
                  min_malformed=args.min_malformed, timezones=zones, dirty=args.dirty)
    t = time.perf_counter()
    if args.out == "-":
        stats: dict = {}
        for line in generate(args.lines, args.fmt, args.seed, stats=stats, **kwargs):
            sys.stdout.buffer.write((line + "\n").encode("utf-8", "surrogateescape"))
    else:
        stats = write(args.out, args.lines, args.fmt, args.seed, **kwargs)
    dt = time.perf_counter() - t
    print(f"wrote {stats['lines']} lines ({stats['well_formed']} well-formed, {stats['malformed']} malformed, "
          f"{stats['distinct_ips']} distinct IPs, {stats['first']} .. {stats['last']}) to {args.out} "
          f"in {dt:.2f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

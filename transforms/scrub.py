"""ScrubUrls: secrets out of URLs, referrers and user agents (policy 4.2).

* values of secret query parameters become ``REDACTED`` (names are matched
  case-insensitively, percent-decoded, PHP-array style ``user[password]`` and with
  suffixes such as ``refresh_token`` / ``client_secret``);
* e-mail addresses anywhere (also percent-encoded ``%40``) become ``REDACTED``;
* user:password@ in URLs and IP address literals become ``REDACTED``.

Rows are screened with one vectorized RE2 match; only candidate rows, once per
distinct value, go through the Python scrubber.
"""
from __future__ import annotations

import dataclasses
import ipaddress
import re
from urllib.parse import quote, unquote

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from transforms.fields import known_user_names, on_uniques
from transforms.parse import RecordChunk

REDACTED = "REDACTED"
DEFAULT_SECRET_PARAMS = (
    "password", "passwd", "pwd", "pass", "token", "access_token", "refresh_token", "id_token",
    "api_key", "apikey", "key", "secret", "client_secret", "session", "sessionid", "session_id",
    "sid", "phpsessid", "jsessionid", "code", "auth", "authorization", "signature", "sig",
    "email", "mail", "otp", "pin", "ssn",
    # user names travel in URLs too (?user=alice): they are personal data like $remote_user
    "user", "username", "login", "userid", "user_id", "uname",
)
# Matched only as whole names: as suffixes they would hit country_code, sort_key, ...
EXACT_ONLY = frozenset({"key", "code", "sid", "sig", "pin", "user", "login", "uname"})
_EMAIL = re.compile(r"[A-Za-z0-9._%+\-]+(?:@|%40)(?:[A-Za-z0-9\-]+\.)+[A-Za-z]{2,}", re.IGNORECASE)
_USERINFO = re.compile(r"(?<=://)[^/?#@\s]+@")
_IPV4 = re.compile(r"(?<![0-9.])(?:[0-9]{1,3}\.){3}[0-9]{1,3}(?![0-9])")
_IPV6 = re.compile(r"(?<![0-9A-Za-z:])\[?[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7}(?:%[0-9A-Za-z]+)?\]?"
                   r"(?<=[0-9A-Fa-f:\]])")
_CREDENTIALS = re.compile(r"(?i)\b(Bearer|Basic|Digest|Negotiate|Token)\s+[A-Za-z0-9._~+/=,:\"-]{6,}")
_PAIR = re.compile(r"([^&;=\s\"?/#,]*)=([^&;\s\"#]*)")


def parse_secret_params(spec: str | None) -> tuple[str, ...]:
    """'a,b' replaces the default list; '+a,b' adds to it."""
    if not spec:
        return DEFAULT_SECRET_PARAMS
    extra = spec.startswith("+")
    names = tuple(n.strip().lower() for n in spec.lstrip("+").split(",") if n.strip())
    return DEFAULT_SECRET_PARAMS + names if extra else names


def _replace_ips(text: str, ipv4: bool = True) -> str:
    def sub(m: re.Match) -> str:
        candidate = m.group(0).strip("[]").split("%", 1)[0]
        try:
            ipaddress.ip_address(candidate)
        except ValueError:
            return m.group(0)
        return REDACTED
    return _IPV6.sub(sub, _IPV4.sub(sub, text) if ipv4 else text)


class Scrubber:
    """Redacts secrets in URL-ish strings. Picklable; compiled once per worker."""

    def __init__(self, secret_params: tuple[str, ...] = DEFAULT_SECRET_PARAMS):
        self.secret_params = tuple(secret_params)
        self._names = frozenset(self.secret_params)
        self._suffixes = tuple(n for n in self._names if n not in EXACT_ONLY)
        self._secret_cache: dict[str, bool] = {}
        alternation = "|".join(re.escape(n) for n in sorted(self._names, key=len, reverse=True))
        # RE2 screen: any row that might need scrubbing. False positives only cost time.
        self.screen_secrets = rf"(?i)({alternation})(\]|%5d)?(=|%3d)|@|%40|bearer |basic |digest |token "
        ipv6 = r"|[0-9a-f]:[0-9a-f]{0,4}:|::"
        self.screen = self.screen_secrets + r"|[0-9]\.[0-9]{1,3}\.[0-9]" + ipv6
        self.screen_no_ipv4 = self.screen_secrets + ipv6

    def is_secret(self, name: str) -> bool:
        """Is a query parameter name secret? Cached: a site has few distinct names."""
        known = self._secret_cache.get(name)
        if known is None:
            norm = unquote(name).lower().rstrip("[]")
            if "[" in norm:
                norm = norm.rsplit("[", 1)[1].rstrip("]")
            norm = norm.replace("-", "_")
            known = norm in self._names or any(norm.endswith("_" + n) for n in self._suffixes)
            if len(self._secret_cache) < 100_000:
                self._secret_cache[name] = known
        return known

    def _pairs(self, text: str, all_pairs: bool = False) -> str:
        def sub(m: re.Match) -> str:
            name, value = m.group(1), m.group(2)
            if value and (all_pairs or self.is_secret(name)):
                return f"{name}={REDACTED}"
            if "=" in value:  # a URL inside a value: ?next=/account?token=...
                return f"{name}={self._pairs(value)}"
            if "%3d" in value.lower():  # the same, percent-encoded: ?next=%2Fa%3Ftoken%3Dabc
                decoded = unquote(value)
                scrubbed = self._pairs(decoded)
                if scrubbed != decoded:
                    return f"{name}={quote(scrubbed, safe='/:')}"
            return m.group(0)
        return _PAIR.sub(sub, text)

    def scrub(self, text: str, ips: bool = True, all_pairs: bool = False) -> str:
        """Scrub a URL, path, query string, referrer, user agent or raw log line.

        `ips=False` keeps dotted numbers, as user agents carry versions like 120.0.0.0 (IPv6
        addresses, which no version looks like, are still redacted).
        `all_pairs` redacts every name=value value (raw lines that may hold cookies).
        """
        # user:password@host -> REDACTED@host; the placeholder keeps the e-mail pattern off the host.
        text = _USERINFO.sub("\0@", text)
        text = _EMAIL.sub(REDACTED, text).replace("\0@", REDACTED + "@")
        text = _CREDENTIALS.sub(lambda m: m.group(1) + " " + REDACTED, text)
        if "=" in text:
            text = self._pairs(text, all_pairs)
        return _replace_ips(text, ipv4=ips)

    def scrub_column(self, values: pa.Array, ips: bool = True) -> pa.Array:
        """Vectorized: screen the distinct values with RE2, scrub the candidates in Python."""
        if len(values) == 0 or values.null_count == len(values):
            return values
        screen = self.screen if ips else self.screen_no_ipv4

        def scrub_uniques(uniques: pa.Array) -> pa.Array:
            candidates = pc.fill_null(pc.match_substring_regex(uniques, screen), False)
            if not pc.any(candidates).as_py():
                return uniques
            scrubbed = [self.scrub(v, ips) for v in uniques.filter(candidates).to_pylist()]
            return pc.replace_with_mask(uniques, candidates, pa.array(scrubbed, pa.string()))
        return on_uniques(values, scrub_uniques)


# column -> whether IP literals are redacted in it (not in user agents: versions look like IPs)
URL_COLUMNS = {"url_path": True, "url_query": True, "referrer": True, "host": True, "user_agent": False,
               "upstream_addr": True,
               "request_id": True}   # JSON logs take it from X-Request-Id, which the client sets
# Variables that carry credentials or session ids: PseudonymizeClients redacts the first and
# replaces cookie values with keyed pseudonyms; rejected lines that log them are redacted strictly.
CREDENTIAL_HEADERS = ("http_authorization", "http_proxy_authorization")
COOKIE_HEADERS = ("http_cookie", "sent_http_set_cookie")   # and each $cookie_<name>


def carries_credentials(var: str) -> bool:
    return var in CREDENTIAL_HEADERS or var in COOKIE_HEADERS or var.startswith("cookie_")


# Extras whose values PseudonymizeClients already replaced.
_PSEUDONYMIZED_EXTRAS = tuple("_x_" + v for v in CREDENTIAL_HEADERS + COOKIE_HEADERS + ("cookie_",))


def redacted_column(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    """Every non-null value -> REDACTED."""
    return pc.if_else(pc.is_null(values), pa.scalar(None, pa.string()), pa.scalar(REDACTED))


def pack_extra(table: pa.Table) -> pa.Table:
    """In-memory `_x_<variable>` columns -> one `extra` map column {variable: value}."""
    names = [c for c in table.column_names if c.startswith("_x_")]
    if not names:
        return table
    n, k = table.num_rows, len(names)
    values = pa.concat_arrays([table[c].combine_chunks().cast(pa.string()) for c in names])
    order = (np.arange(n)[:, None] + np.arange(k)[None, :] * n).ravel()
    extra = pa.MapArray.from_arrays(pa.array(np.arange(0, n * k + 1, k, dtype=np.int32)),
                                    pa.array([c[3:] for c in names] * n, pa.string()), values.take(pa.array(order)))
    return table.drop_columns(names).append_column("extra", extra)


def redact_names(text: str, names) -> str:
    """`names` (user names) -> REDACTED wherever `text` shows them as whole words; names shorter
    than 3 characters are left alone (they would hit ordinary words)."""
    names = sorted({n for n in names if n and len(n) >= 3}, key=len, reverse=True)
    if not names:
        return text
    pattern = "|".join(re.escape(n) for n in names)
    return re.sub(rf"(?<![A-Za-z0-9])(?:{pattern})(?![A-Za-z0-9])", REDACTED, text)


def _known_names(table: pa.Table) -> str | None:
    """RE2 pattern for the chunk's $remote_user values as whole words (fields.known_user_names)."""
    names = known_user_names(table)
    if not names:
        return None
    return r"(^|[^A-Za-z0-9])(" + "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True)) + \
        r")($|[^A-Za-z0-9])"


def scrub_records(table: pa.Table, scrubber: Scrubber) -> pa.Table:
    """Secrets out of URL columns and `_x_` extras (cookie and credential extras are left to
    PseudonymizeClients); the chunk's own user names redacted wherever they appear."""
    names = _known_names(table)
    for name, ips in URL_COLUMNS.items():
        if name in table.column_names:
            i = table.column_names.index(name)
            values = scrubber.scrub_column(table.column(name), ips)
            if names:
                values = on_uniques(values, lambda u: pc.replace_substring_regex(u, names, rf"\1{REDACTED}\3"))
            table = table.set_column(i, name, values)
    for name in table.column_names:
        if name.startswith("_x_") and not name.startswith(_PSEUDONYMIZED_EXTRAS):
            if scrubber.is_secret(name[3:]):   # $http_x_api_key, a JSON "password" key, ...
                values = redacted_column(table[name])
            else:
                values = scrubber.scrub_column(table[name], "user_agent" not in name)
                if names:
                    values = on_uniques(values, lambda u: pc.replace_substring_regex(u, names, rf"\1{REDACTED}\3"))
            table = table.set_column(table.column_names.index(name), name, values)
    return table


@beam.typehints.with_output_types(RecordChunk)
class _ScrubChunk(beam.DoFn):
    def __init__(self, scrubber: Scrubber):
        self.scrubber = scrubber

    def process(self, chunk):
        if chunk.records.num_rows:
            chunk = dataclasses.replace(chunk, records=scrub_records(chunk.records, self.scrubber))
        yield chunk


class ScrubUrls(beam.PTransform):
    """RecordChunk -> RecordChunk with secrets in URL columns replaced by REDACTED."""

    def __init__(self, scrubber: Scrubber):
        super().__init__()
        self.scrubber = scrubber

    def expand(self, chunks):
        return chunks | "Scrub" >> beam.ParDo(_ScrubChunk(self.scrubber))

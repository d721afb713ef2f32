"""ScrubUrls: secrets out of URLs, referrers and user agents (policy 4.2).

* values of secret query parameters become ``REDACTED`` (names are matched
  case-insensitively, percent-decoded, PHP-array style ``user[password]`` and with
  suffixes such as ``refresh_token`` / ``client_secret``);
* e-mail addresses anywhere (also percent-encoded ``%40``) become ``REDACTED``;
* user:password@ in URLs, ``Bearer``/``Basic``/... credentials, JSON web tokens
  (``eyJ...``) and card numbers (13-19 digits, groups separated by one space or dash,
  Luhn-valid) become ``REDACTED``;
* IP address literals become ``REDACTED``, percent-encoded ones too (``192%2E0%2E2%2E1``,
  ``2001%3Adb8%3A%3A1``); in user agents a dotted number right after a product name
  (``Chrome/120.0.0.0``) is a version and stays;
* path segments that name a user: an Apache mod_userdir directory (``/~alice/`` ->
  ``/~REDACTED/``) and the segment right after each prefix the operator lists in
  ``user_paths`` (``/users/alice`` -> ``/users/REDACTED``), where a path starts (the start of the
  value, after a URL's host, after ``=``, a space or a quote), also percent-encoded.

Each value is scrubbed on its own: the result depends only on the value (and the settings), never
on the other values of its chunk, so a line gives the same record whichever chunk or file it is in.
A user name elsewhere in a URL (``/solr/admin/``) is not recognized as one.

Rows are screened with one vectorized RE2 match; only candidate rows, once per
distinct value, go through the Python scrubber.

Every regex here runs on text a client chose, so each is linear in the length of the text
(a long line must not cost quadratic time): a match can only start where a run of its first
characters starts (a lookbehind), so a failed attempt is not retried at every character of
the run; a repetition inside a repetition is possessive (``++``, ``*+``), so it never gives
characters back; the rest is bounded. tests/test_scrub_hardening.py checks these rules.
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

from schemas.errors import SettingError
from transforms.fields import on_uniques
from transforms.parse import RecordChunk

REDACTED = "REDACTED"
DEFAULT_SECRET_PARAMS = (
    "password", "passwd", "pwd", "pass", "token", "access_token", "refresh_token", "id_token", "jwt",
    "api_key", "apikey", "key", "secret", "client_secret", "session", "sessionid", "session_id",
    "sid", "phpsessid", "jsessionid", "code", "auth", "authorization", "signature", "sig",
    "email", "mail", "email_address", "otp", "pin", "ssn", "cvv", "cvc",
    # user names travel in URLs too (?user=alice): they are personal data like $remote_user
    "user", "username", "user_name", "login", "login_name", "loginname", "userid", "user_id", "uid", "uname",
    "screen_name", "nickname",
)
# Matched only as whole names: as suffixes they would hit country_code, sort_key, ...
EXACT_ONLY = frozenset({"key", "code", "sid", "sig", "pin", "user", "login", "uname", "uid"})

_LOCAL_PART = r"A-Za-z0-9._%+\-"
_EMAIL = re.compile(rf"(?<![{_LOCAL_PART}])[{_LOCAL_PART}]+(?:@|%40)(?:[A-Za-z0-9\-]++\.)+[A-Za-z]{{2,}}",
                    re.IGNORECASE)
_USERINFO = re.compile(r"(?<=://)[^/?#@\s]++@")
# Where a token may start: not inside a run of its own characters, or right after a percent-escape
# (a nested URL: ?next=%2Fcb%3Fjwt%3DeyJ...).
_AFTER_ESCAPE = r"(?<=%[0-9A-Fa-f]{2})"
# Addresses, also with percent-encoded dots (%2E) and colons (%3A), decoded before they are checked.
# Each starts with a lookahead for its first character: the same matches, but a position that cannot
# start one (most of a line, all of a run of NULs) is passed over at once (2-6x faster).
_IPV4 = re.compile(r"(?=[0-9])(?<![0-9.])(?<!%2[Ee])(?:[0-9]{1,3}(?:\.|%2[Ee])){3}[0-9]{1,3}(?![0-9])")
_IPV6 = re.compile(rf"(?=[\[0-9A-Fa-f:%])(?:(?<![0-9A-Za-z:])|{_AFTER_ESCAPE})"
                   r"\[?[0-9A-Fa-f]{0,4}(?:(?::|%3[Aa])[0-9A-Fa-f]{0,4}){2,7}(?:%[0-9A-Za-z]{1,32})?\]?"
                   r"(?<=[0-9A-Fa-f:\]])")
_ENCODED_SEPARATOR = re.compile(r"%2[Ee]|%3[Aa]")
_CREDENTIALS = re.compile(r"(?i)\b(Bearer|Basic|Digest|Negotiate|Token)\s++[A-Za-z0-9._~+/=,:\"-]{6,}+")
# A JSON web token (a JWS has three base64url segments, a JWE five): the header is JSON, so "eyJ".
_JWT = re.compile(rf"(?:(?<![A-Za-z0-9_-])|{_AFTER_ESCAPE})eyJ[A-Za-z0-9_-]*+(?:\.[A-Za-z0-9_-]*+){{2,4}}")
_PAIR = re.compile(r"(?<![^&;=\s\"?/#,])([^&;=\s\"?/#,]*+)=([^&;\s\"#]*+)")
_MAX_NESTING = 4   # URLs inside parameter values, inside ...: deeper ones are redacted whole
# Digits in groups separated by one space or dash ('+' or %20 in a URL): where card numbers hide.
_DIGIT_GROUPS = re.compile(r"(?<![0-9])(?=(?:[0-9]|[ +-]|%20){13})[0-9]++(?:(?:[ +-]|%20)[0-9]++)*+")
_CARD_DIGITS = (13, 19)
_CARD_GROUP_DIGITS = (3, 6)   # 4111 1111 1111 1111, 3782 822463 10005, 6011 0000 0000 0000 004
_DOUBLED = np.array([0, 2, 4, 6, 8, 1, 3, 5, 7, 9], np.int64)   # Luhn: 2d, its digits summed
_LUHN_DOUBLED = str.maketrans("0123456789", "0246813579")


# Path segments that name a user. A slash, or a percent-encoded one (a URL inside a parameter).
_SLASH = r"(?:/|%2[Ff])"
_USERDIR = r"(?:~|%7[Ee])"   # Apache mod_userdir: /~alice/
# One path segment: up to the next '/', '?', '#', ';', '&', space, quote or backslash, also
# percent-encoded. Possessive: the name is never given back.
_SEGMENT = r"(?:[^/?#;&%\s\"'<>\\]|%(?!2[Ff]|3[Ff]|23|3[Bb]|26|20|22|27|5[Cc]))++"
_PREFIX_SEGMENT = re.compile(r"[^\s/?#%\"'<>\\]++")
# Where a path may start besides the start of a value and a URL's host: after one of these (a
# request line's space, a quoted field, a parameter value), or after a percent-encoded '=' or quote.
_PATH_OPENERS = frozenset(" \t\r\n\v\f\"'=(<[{,;:|>")
_ENCODED_OPENERS = ("%3d", "%20", "%22", "%27")
_MAX_AUTHORITY = 320   # how far back a URL's '//' may be (a host name has at most 253 characters)


def parse_user_paths(spec: str | None) -> tuple[str, ...]:
    """'/users/,/u/' -> ('/users/', '/u/'): path prefixes whose next segment is a user name.
    Each names one or more whole segments; slashes around them are optional."""
    prefixes = []
    for item in (spec or "").split(","):
        if not item.strip():
            continue
        segments = [s for s in item.strip().split("/") if s]
        if not segments or not all(_PREFIX_SEGMENT.fullmatch(s) for s in segments):
            raise SettingError("{} {item!r} is not a path prefix: give whole path segments like /users/ or "
                               "/api/v1/u/ (no '?', '#', '%', quotes or spaces), comma-separated", "user_paths",
                               item=item.strip())
        prefixes.append("/" + "/".join(segments) + "/")
    return tuple(dict.fromkeys(prefixes))


def _re2_literal(text: str) -> str:
    return "".join(c if c.isalnum() or c == "_" else "\\" + c for c in text)


def _opens_path(text: str, at: int) -> bool:
    """May a path, or a URL, start at `at` (the start, or after a space, quote, '=', ...)?"""
    return at == 0 or text[at - 1] in _PATH_OPENERS or text[max(0, at - 3):at].lower() in _ENCODED_OPENERS


def _path_starts_at(text: str, at: int) -> bool:
    """Does a path start at `at`: where a path may start, or right after a URL's host
    (`scheme://host` or `//host`, also percent-encoded)? Looks back a bounded stretch only."""
    if _opens_path(text, at):
        return True
    base = max(0, at - _MAX_AUTHORITY)
    window = text[base:at]
    plain, encoded = window.rfind("//"), max(window.rfind(s) for s in ("%2f%2f", "%2F%2F", "%2f%2F", "%2F%2f"))
    if plain < 0 and encoded < 0:
        return False
    slashes, host = (plain, window[plain + 2:]) if plain > encoded else (encoded, window[encoded + 6:])
    if any(c in host for c in "/?#\\ \t\"'<>") or "%2f" in host.lower():
        return False
    start = base + slashes
    return _opens_path(text, start) or text[start - 1:start] == ":" or text[max(0, start - 3):start].lower() == "%3a"


def parse_secret_params(spec: str | None) -> tuple[str, ...]:
    """'a,b' replaces the default list; '+a,b' adds to it."""
    if not spec:
        return DEFAULT_SECRET_PARAMS
    extra = spec.startswith("+")
    names = tuple(n.strip().lower() for n in spec.lstrip("+").split(",") if n.strip())
    return DEFAULT_SECRET_PARAMS + names if extra else names


def _is_version(text: str, start: int) -> bool:
    """Is the dotted number at `start` a version (`Chrome/120.0.0.0`, `v1.2.3.4`), not an address?"""
    before = text[max(0, start - 2):start]
    return (before[-1:].isalpha() or
            (len(before) == 2 and before[1] == "/" and (before[0].isalnum() or before[0] in "_.+-")))


def decode_ip_separators(token: str) -> str:
    """'192%2E0%2E2%2E1' -> '192.0.2.1', '2001%3Adb8%3A%3A1' -> '2001:db8::1' (other escapes stay)."""
    return _ENCODED_SEPARATOR.sub(lambda m: "." if m.group(0)[1] == "2" else ":", token)


def _replace_ips(text: str, ipv4: bool = True, versions: bool = False) -> str:
    def sub(m: re.Match) -> str:
        if versions and m.re is _IPV4 and _is_version(text, m.start()):
            return m.group(0)
        try:
            ipaddress.ip_address(decode_ip_separators(m.group(0)).strip("[]").split("%", 1)[0])
        except ValueError:
            return m.group(0)
        return REDACTED
    if ipv4:
        text = _IPV4.sub(sub, text)
    return _IPV6.sub(sub, text)


def _luhn_card(digits: str) -> bool:
    """13-19 digits, starting with 2-6 (the payment-card industries; ms timestamps start with 1),
    passing the Luhn check."""
    if not (_CARD_DIGITS[0] <= len(digits) <= _CARD_DIGITS[1] and digits[0] in "23456"):
        return False
    reverse = digits[::-1]
    return (sum(map(int, reverse[0::2])) + sum(map(int, reverse[1::2].translate(_LUHN_DOUBLED)))) % 10 == 0


def _card_spans(run: str) -> list[tuple[int, int]]:
    """Character spans of card numbers in `run` (digit groups with one separator between them): a
    whole group, or consecutive groups of 3-6 digits each, that _luhn_card accepts. Vectorized over
    every window of groups, so a long run costs linear time."""
    if run.isdigit():
        return [(0, len(run))] if _luhn_card(run) else []
    chars = np.frombuffer(run.replace("%20", "   ").encode("ascii"), np.uint8)   # %20: same width
    is_digit = np.concatenate([[False], (chars >= 48) & (chars <= 57), [False]])
    starts = np.flatnonzero(is_digit[1:-1] & ~is_digit[:-2])
    ends = np.flatnonzero(is_digit[1:-1] & ~is_digit[2:]) + 1
    lengths = ends - starts
    digits = chars[is_digit[1:-1]].astype(np.int64) - 48
    at = np.concatenate([[0], np.cumsum(lengths)])      # offset of each group in `digits`
    # Luhn doubles every second digit from the right: digit t of a window ending before e is
    # doubled iff t and e have the same parity. Prefix sums per parity give any window's sum.
    parity = np.arange(len(digits)) % 2
    plain = [np.concatenate([[0], np.cumsum(np.where(parity == p, digits, 0))]) for p in (0, 1)]
    doubled = [np.concatenate([[0], np.cumsum(np.where(parity == p, _DOUBLED[digits], 0))]) for p in (0, 1)]
    bad = np.concatenate([[0], np.cumsum((lengths < _CARD_GROUP_DIGITS[0]) | (lengths > _CARD_GROUP_DIGITS[1]))])
    cover = np.zeros(len(starts) + 1, np.int64)
    for extra in range(_CARD_DIGITS[1] // _CARD_GROUP_DIGITS[0] + 1):   # windows of groups i .. i + extra
        i = np.arange(len(starts) - extra)
        s, e = at[i], at[i + extra + 1]
        ok = (e - s >= _CARD_DIGITS[0]) & (e - s <= _CARD_DIGITS[1]) & (digits[s] >= 2) & (digits[s] <= 6)
        if extra:
            ok &= bad[i + extra + 1] == bad[i]
        i, s, e = i[ok], s[ok], e[ok]
        luhn = np.where(e % 2 == 0, doubled[0][e] - doubled[0][s] + plain[1][e] - plain[1][s],
                        doubled[1][e] - doubled[1][s] + plain[0][e] - plain[0][s])
        valid = i[luhn % 10 == 0]
        np.add.at(cover, valid, 1)
        np.add.at(cover, valid + extra + 1, -1)
    covered = np.concatenate([[False], np.cumsum(cover[:-1]) > 0, [False]])   # overlapping windows: one span
    first = np.flatnonzero(covered[1:-1] & ~covered[:-2])
    last = np.flatnonzero(covered[1:-1] & ~covered[2:])
    return list(zip(starts[first].tolist(), ends[last].tolist()))


def redact_card_numbers(text: str) -> str:
    """Card numbers (see _card_spans) -> REDACTED; other numbers stay."""
    def sub(m: re.Match) -> str:
        run = m.group(0)
        parts, done = [], 0
        for start, end in _card_spans(run):
            parts += [run[done:start], REDACTED]
            done = end
        return "".join(parts) + run[done:]
    return _DIGIT_GROUPS.sub(sub, text)


class Scrubber:
    """Redacts secrets in URL-ish strings. Picklable; compiled once per worker."""

    def __init__(self, secret_params: tuple[str, ...] = DEFAULT_SECRET_PARAMS, user_paths: tuple[str, ...] = ()):
        """`user_paths`: prefixes (see parse_user_paths) whose next path segment is a user name."""
        self.secret_params = tuple(secret_params)
        self.user_paths = parse_user_paths(user_paths if isinstance(user_paths, str) else ",".join(user_paths))
        self._names = frozenset(self.secret_params)
        self._suffixes = tuple(n for n in self._names if n not in EXACT_ONLY)
        self._secret_cache: dict[str, bool] = {}
        alternation = "|".join(re.escape(n) for n in sorted(self._names, key=len, reverse=True))
        # A user's directory (/~alice) or the segment after a listed prefix (/users/alice): group 2.
        # Prefixes are matched case-insensitively, the longest first.
        segments = [p.strip("/").split("/") for p in sorted(self.user_paths, key=len, reverse=True)]
        prefixes = [f"(?i:{_SLASH.join(re.escape(s) for s in p)}){_SLASH}" for p in segments]
        self.user_path_re = re.compile(rf"({_SLASH}(?:{'|'.join([_USERDIR, *prefixes])}))({_SEGMENT})")
        screen_paths = "".join(rf"|(/|%2f){'(/|%2f)'.join(_re2_literal(s) for s in p)}(/|%2f)" for p in segments)
        # RE2 screens: any value that might need scrubbing. False positives only cost time.
        self.screen_secrets = (
            rf"(?i)({alternation})(\]|%5d)?(=|%3d)|@|%40|bearer |basic |digest |token "
            r"|%[0-9a-f]{2}[^&;=\s/?#]*(=|%3d)"             # a percent-encoded name: pass%77ord=
            r"|eyj[a-z0-9_-]*(\.|%2e)"                        # a JSON web token
            r"|[0-9]((?:[ +-]|%20)?[0-9]){12}"                # 13 digits: a card number?
            r"|(/|%2f)(~|%7e)" + screen_paths)               # a user's directory, a listed user path
        ipv6 = r"|[0-9a-f](:|%3a)[0-9a-f]{0,4}(:|%3a)|::|%3a%3a"
        ipv4 = r"[0-9]{1,3}(\.|%2e)[0-9]{1,3}(\.|%2e)[0-9]"
        self.screen = self.screen_secrets + "|" + ipv4 + ipv6
        self.screen_no_ipv4 = self.screen_secrets + ipv6
        # user agents: addresses not after a product name (Chrome/120.0.0.0) or in a URL (//)
        self.screen_agent = self.screen_no_ipv4 + rf"|(^|[^a-z0-9_.+/-]|//){ipv4}"

    def is_secret(self, name: str) -> bool:
        """Is a query parameter name secret? Cached: a site has few distinct names."""
        known = self._secret_cache.get(name)
        if known is None:
            norm = unquote(name).lower().rstrip("[]")
            if "[" in norm:
                norm = norm.rsplit("[", 1)[1].rstrip("]")
            norm = norm.replace("-", "_")
            known = norm in self._names or any(norm.endswith("_" + n) for n in self._suffixes)
            if len(self._secret_cache) < 100_000 and len(name) <= 256:   # bounded memory
                self._secret_cache[name] = known
        return known

    def redact_user_paths(self, text: str) -> str:
        """/~alice/x -> /~REDACTED/x, and /users/alice -> /users/REDACTED for each prefix of
        `user_paths`, where a path starts (see _path_starts_at): in a path, a URL, a query value."""
        if "/" not in text and "%2" not in text:
            return text
        return self.user_path_re.sub(
            lambda m: m.group(1) + REDACTED if _path_starts_at(text, m.start()) else m.group(0), text)

    def _pairs(self, text: str, all_pairs: bool = False, depth: int = 0) -> str:
        def sub(m: re.Match) -> str:
            name, value = m.group(1), m.group(2)
            if value and (all_pairs or self.is_secret(name)):
                return f"{name}={REDACTED}"
            nested = "=" in value or "%3d" in value.lower()
            if nested and depth >= _MAX_NESTING:   # no real URL nests this deep; scanning costs time
                return f"{name}={REDACTED}"
            if "=" in value:  # a URL inside a value: ?next=/account?token=...
                return f"{name}={self._pairs(value, depth=depth + 1)}"
            if nested:  # the same, percent-encoded: ?next=%2Fa%3Ftoken%3Dabc
                decoded = unquote(value)
                scrubbed = self._pairs(decoded, depth=depth + 1)
                if scrubbed != decoded:
                    return f"{name}={quote(scrubbed, safe='/:')}"
            return m.group(0)
        return _PAIR.sub(sub, text)

    def scrub(self, text: str, ips: bool = True, all_pairs: bool = False, versions: bool = False) -> str:
        """Scrub a URL, path, query string, referrer, user agent or raw log line.

        `ips=False` keeps dotted numbers (IPv6 addresses, which no version looks like, are still
        redacted); `versions` (user agents) keeps only those right after a product name, like
        Chrome/120.0.0.0. `all_pairs` redacts every name=value value (raw lines that may hold cookies).
        """
        # user:password@host -> REDACTED@host; the placeholder keeps the e-mail pattern off the host.
        text = _USERINFO.sub("\0@", text)
        text = _EMAIL.sub(REDACTED, text).replace("\0@", REDACTED + "@")
        text = _CREDENTIALS.sub(lambda m: m.group(1) + " " + REDACTED, text)
        text = _JWT.sub(REDACTED, text)
        text = self.redact_user_paths(text)
        if "=" in text:
            text = self._pairs(text, all_pairs)
        text = redact_card_numbers(text)
        return _replace_ips(text, ipv4=ips, versions=versions)

    def scrub_column(self, values: pa.Array, ips: bool = True, versions: bool = False,
                     all_pairs: bool = False) -> pa.Array:
        """Vectorized: screen the distinct values with RE2, scrub the candidates in Python.
        `all_pairs`: text of unknown meaning, every name=value value is redacted (see `scrub`)."""
        if len(values) == 0 or values.null_count == len(values):
            return values
        screen = self.screen_agent if versions else self.screen if ips else self.screen_no_ipv4
        if all_pairs:
            screen += "|="

        def scrub_uniques(uniques: pa.Array) -> pa.Array:
            candidates = pc.fill_null(pc.match_substring_regex(uniques, screen), False)
            if not pc.any(candidates).as_py():
                return uniques
            options = {"versions": True} if versions else {"all_pairs": True} if all_pairs else {}
            scrubbed = [self.scrub(v, ips, **options) for v in uniques.filter(candidates).to_pylist()]
            return pc.replace_with_mask(uniques, candidates, pa.array(scrubbed, pa.string()))
        return on_uniques(values, scrub_uniques)


# Columns scrubbed like URLs.
URL_COLUMNS = ("url_path", "url_query", "referrer", "host", "upstream_addr",
               "request_id")   # JSON logs take it from X-Request-Id, which the client sets
# The user agent and what Enrich read from it (ua-parser copies an unknown bot's "version" as it
# is: a card number in a user agent came out there). Dotted numbers after a product name are versions.
AGENT_COLUMNS = ("user_agent", "browser", "browser_version", "os")


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
    """In-memory `_x_<variable>` columns -> one `extra` map column {variable: value}, holding the
    variables a row has a value for (a row with none has an empty map)."""
    names = [c for c in table.column_names if c.startswith("_x_")]
    if not names:
        return table
    n, k = table.num_rows, len(names)
    columns = [table[c].combine_chunks().cast(pa.string()) for c in names]
    valid = np.stack([c.is_valid().to_numpy(zero_copy_only=False) for c in columns], axis=1)   # n x k
    offsets = np.zeros(n + 1, np.int32)
    np.cumsum(valid.sum(axis=1), out=offsets[1:])
    position = (np.arange(n)[:, None] + np.arange(k)[None, :] * n)[valid]   # row-major: rows in order
    key_index = np.broadcast_to(np.arange(k, dtype=np.int32), (n, k))[valid]
    keys = pa.array([c[3:] for c in names], pa.string()).take(pa.array(key_index))
    extra = pa.MapArray.from_arrays(pa.array(offsets), keys, pa.concat_arrays(columns).take(pa.array(position)))
    return table.drop_columns(names).append_column("extra", extra)


# User names a line itself shows (its user field, an authentication message) are redacted wherever
# else that line shows them: shorter ones would hit ordinary words, longer ones are no one's name
# (and would make the pattern as long as a line).
_NAME_CHARS = (3, 256)


def _searchable(names) -> list[str]:
    return sorted({n for n in names if n and _NAME_CHARS[0] <= len(n) <= _NAME_CHARS[1]}, key=len, reverse=True)


def redact_names(text: str, names) -> str:
    """`names` (user names) -> REDACTED wherever `text` shows them as whole words (see _NAME_CHARS)."""
    names = _searchable(names)
    if not names:
        return text
    pattern = "|".join(re.escape(n) for n in names)
    return re.sub(rf"(?<![A-Za-z0-9])(?:{pattern})(?![A-Za-z0-9])", REDACTED, text)


def scrub_records(table: pa.Table, scrubber: Scrubber) -> pa.Table:
    """Secrets out of URL columns and `_x_` extras (cookie and credential extras are left to
    PseudonymizeClients). Value by value: a row's result never depends on the other rows."""
    for name in URL_COLUMNS + AGENT_COLUMNS:
        if name in table.column_names:
            i = table.column_names.index(name)
            table = table.set_column(i, name, scrubber.scrub_column(table.column(name),
                                                                   versions=name in AGENT_COLUMNS))
    for name in table.column_names:
        if name.startswith("_x_") and not name.startswith(_PSEUDONYMIZED_EXTRAS):
            if scrubber.is_secret(name[3:]):   # $http_x_api_key, a JSON "password" key, ...
                values = redacted_column(table[name])
            elif name == "_x_trailing":   # fields the format does not name: cookies as likely as not
                values = scrubber.scrub_column(table[name], all_pairs=True)
            else:
                values = scrubber.scrub_column(table[name], versions="user_agent" in name)
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

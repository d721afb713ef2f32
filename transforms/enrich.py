"""Enrich: GeoIP and user-agent columns, computed once per distinct IP / user agent.

GeoIP (policy 6.3 keeps only derived values): MaxMind-format databases (GeoLite2 / GeoIP2
Country, City, ASN; DB-IP lite, which uses the same record layout) looked up with the raw
`_client_ip` before PseudonymizeClients drops it. Fills `country` (ISO 3166-1 alpha-2), `asn`,
`as_org` and, with detail "city", `region` (ISO 3166-2 such as "DE-BY") and `city`.

User agents (policy 1.3): `ua-parser` (uap-core rules; the Rust resolver of `ua-parser-rs`
when installed: `pip install 'accesslog[fast]'`) plus a crawler list for the tools it misses.
Fills `browser`, `browser_version` (major), `os`, `device` (desktop/mobile/tablet/bot/other)
and `is_bot`.

Both caches (distinct IP / user agent -> result, `ResultCache`) are bounded and live as long as
the worker, so a chunk mostly pays only for values no earlier chunk had. IPs stay in memory (the
cache included) and are never logged: lookup errors, whose messages quote the address, are
swallowed.
"""
from __future__ import annotations

import dataclasses
import os
from concurrent.futures import ThreadPoolExecutor

import apache_beam as beam
import maxminddb
import pyarrow as pa
import pyarrow.compute as pc

from schemas import GEO_DETAILS
from schemas.errors import AccesslogError, SettingError
from transforms.fields import encoded
from transforms.parse import RecordChunk

GEO_TYPES = {"country": pa.string(), "asn": pa.int64(), "as_org": pa.string(), "region": pa.string(),
             "city": pa.string()}
UA_TYPES = {"browser": pa.string(), "browser_version": pa.string(), "os": pa.string(), "device": pa.string(),
            "is_bot": pa.bool_()}

# Crawlers, HTTP libraries, scanners and monitors that uap-core does not mark as "Spider".
# Case-insensitive RE2 fragments of one regex, run over the new distinct user agents of a chunk
# at once (Python's `re` took ~150 us per user agent on this alternation; RE2 ~4 us).
CRAWLER_PATTERNS = (
    # words crawler authors put in names (Cubot is a phone brand); a URL is how bots sign
    r"(?:^|[^u])bot", r"crawl", r"spider", r"slurp", r"scrap(?:er|y|ing)", r"archiver", r"indexer", r"harvest",
    r"\+?https?://", r"^mozilla/\d\.\d$",
    # HTTP clients and libraries
    r"curl", r"wget", r"python-requests", r"python-urllib", r"python-httpx", r"python/\d", r"aiohttp", r"httpx",
    r"urllib3", r"go-http-client", r"go http package", r"java/", r"apache-httpclient", r"jakarta commons",
    r"okhttp", r"libwww-perl", r"lwp-", r"mechanize", r"guzzlehttp", r"\bruby\b", r"faraday", r"axios/",
    r"node-fetch", r"undici", r"postmanruntime", r"insomnia", r"httpie", r"restsharp", r"winhttp",
    r"powershell", r"reqwest", r"\bhyper/", r"http\.rb/", r"nutch", r"heritrix", r"scrapy",
    # headless browsers, automation, performance tools
    r"headless", r"lighthouse", r"pagespeed", r"gtmetrix", r"\bptst/", r"phantomjs", r"selenium",
    r"puppeteer", r"playwright", r"webdriver",
    # link previews and social networks
    r"facebookexternalhit", r"facebot", r"meta-external", r"whatsapp/", r"skypeuripreview", r"embedly",
    r"iframely", r"vkshare", r"applebot", r"mastodon/", r"pleroma", r"akkoma", r"google web preview",
    # AI and search crawlers whose names lack "bot"
    r"chatgpt-user", r"claude-web", r"claude-user", r"anthropic-ai", r"ccbot", r"bytespider", r"perplexity",
    r"cohere-ai", r"diffbot", r"google-extended", r"google-inspectiontool", r"googleother",
    r"google-read-aloud", r"feedfetcher", r"mediapartners-google", r"adsbot-google", r"apis-google",
    r"yandex(?:images|metrika|favicons|video|media|renderresources)", r"sogou", r"ia_archiver", r"seokicks",
    r"seekport", r"barkrowler", r"megaindex", r"screaming frog", r"netcraft", r"censys", r"expanse",
    r"internetmeasurement",
    # scanners
    r"zgrab", r"masscan", r"nmap", r"nuclei", r"sqlmap", r"nikto", r"nessus", r"openvas", r"wpscan",
    r"dirbuster", r"gobuster", r"fuzz faster", r"l9explore", r"l9tcpid",
    # uptime monitors, health checks, load generators
    r"uptime", r"pingdom", r"statuscake", r"site24x7", r"monitor", r"datadog", r"newrelicpinger", r"checkly",
    r"zabbix", r"nagios", r"check_http", r"icinga", r"prometheus", r"blackbox", r"kube-probe",
    r"health.?check", r"googlehc", r"cloudflare-(?:healthchecks|traffic-manager|alwaysonline)", r"freshping",
    r"hetrixtools", r"updown\.io", r"nodeping", r"apachebench", r"jmeter", r"locust", r"\bk6/", r"gatling",
    r"\bsiege/",
    # feed readers (automated fetches, no one is looking at the page)
    r"feedly", r"inoreader", r"newsblur", r"tiny tiny rss", r"freshrss", r"miniflux", r"feedparser",
    r"feedbin",
)
# Screens over the user agent (RE2, case-insensitive), each one vectorized call per batch.
_SCREENS = {
    "bot": "|".join(CRAWLER_PATTERNS),
    # TVs, consoles, set-top boxes, wearables: neither desktop nor handheld
    "other": r"smart-?tv|smarttv|\btv\b|googletv|appletv|android ?tv|hbbtv|netcast|web0s|bravia|\baft[a-z]{1,4}\b|"
             r"crkey|roku|playstation|xbox|nintendo|\bwatch\b|wear ?os",
    # "Tablet PC" is a Windows desktop token of old IE
    "tablet": r"ipad|tablet(?:[^ ]| [^p]|$)|kindle|\bsilk/|playbook|\bnexus (?:7|9|10)\b",
    "mobile": r"mobi|iphone|ipod|phone|opera mini|blackberry|symbian|kaios",
}
_MOBILE_OS = frozenset({"iOS", "Android", "Windows Phone", "Windows Mobile", "BlackBerry OS", "Symbian OS",
                        "KaiOS", "Firefox OS", "HarmonyOS", "Sailfish", "Ubuntu Touch", "webOS", "Tizen"})
_DESKTOP_OS = frozenset({"Mac OS X", "macOS", "Mac OS", "Chrome OS", "ChromeOS", "Linux", "Ubuntu", "Debian",
                         "Fedora", "Red Hat", "CentOS", "SUSE", "openSUSE", "Mint", "Linux Mint", "Arch Linux",
                         "Gentoo", "Kubuntu", "Xubuntu", "Slackware", "Mandriva", "elementary OS", "FreeBSD",
                         "OpenBSD", "NetBSD", "Solaris", "SunOS", "Haiku", "BeOS", "OS/2"})
# Parsing cost grows with length and real user agents are < 500 characters; longer ones
# (padding attacks) are parsed on their head only.
_MAX_PARSED_CHARS = 1024


class ResultCache:
    """Columns of a chunk from a function of each distinct value, memoized across chunks.

    A value (IP, user agent) maps to a small int naming its result tuple; results repeat far
    more than values (thousands of user agents, a few hundred (browser, version, os, device)
    tuples), so each result is stored once and a chunk's columns are `take`s from arrays over
    the results. Bounded by two generations, an LRU without per-hit bookkeeping: a value
    unused for a whole generation (size / 2 new values) is forgotten and computed again.
    """

    def __init__(self, types: dict[str, pa.DataType], size: int):
        self.types, self.size = types, max(2, size)
        self._reset()

    def _reset(self) -> None:
        self.young: dict = {}
        self.old: dict = {}
        self.results: list[tuple] = [(None,) * len(self.types)]   # id 0: nothing known
        self.result_ids: dict[tuple, int] = {self.results[0]: 0}
        self._arrays: dict[str, tuple] = {}
        self._codes: dict[str, dict] = {}   # per string column: value -> dictionary index
        self._arrays_for = 0

    def _put(self, value, rid: int) -> None:
        self.young[value] = rid
        if len(self.young) >= self.size // 2:
            self.old, self.young = self.young, {}

    def _intern(self, result: tuple) -> int:
        result = tuple(result[:len(self.types)])
        rid = self.result_ids.get(result)
        if rid is None:
            rid = self.result_ids[result] = len(self.results)
            self.results.append(result)
        return rid

    def _result_arrays(self) -> dict[str, tuple]:
        """Per column: (result id -> dictionary index, dictionary) for strings, (values, None) for
        others; extended by the results added since the last call (never rebuilt: cities x ASNs
        can be many)."""
        tail = self.results[self._arrays_for:]
        if not tail:
            return self._arrays
        for i, (name, type_) in enumerate(self.types.items()):
            values = [r[i] for r in tail]
            if not pa.types.is_string(type_):
                known = self._arrays.get(name, (pa.array([], type_), None))[0]
                self._arrays[name] = (pa.concat_arrays([known, pa.array(values, type_)]), None)
                continue
            codes = self._codes.setdefault(name, {})
            indices, added = [], []
            for v in values:
                code = None if v is None else codes.get(v)
                if code is None and v is not None:
                    code = codes[v] = len(codes)
                    added.append(v)
                indices.append(code)
            known_indices, known_dictionary = self._arrays.get(name, (pa.array([], pa.int32()), pa.array([], type_)))
            self._arrays[name] = (pa.concat_arrays([known_indices, pa.array(indices, pa.int32())]),
                                  pa.concat_arrays([known_dictionary, pa.array(added, type_)]))
        self._arrays_for = len(self.results)
        return self._arrays

    def columns(self, values: pa.Array | pa.ChunkedArray, describe_many) -> dict[str, pa.Array]:
        """`values` -> the `types` columns; describe_many(list of new values) -> list of result
        tuples is called once, with the distinct non-null values no earlier chunk had."""
        if len(self.results) > 4 * self.size:   # results of forgotten values pile up: start over
            self._reset()
        enc = encoded(values)
        uniques = enc.dictionary.to_pylist()
        ids = list(map(self.young.get, uniques))   # the common case, at C speed
        missing = {}
        for i in [i for i, rid in enumerate(ids) if rid is None]:
            value = uniques[i]
            if value is None:
                ids[i] = 0
            elif (rid := self.old.get(value)) is not None:
                ids[i] = rid
                self._put(value, rid)   # used again: survives the next generation
            else:
                missing.setdefault(value, []).append(i)
        if missing:
            for (value, positions), result in zip(missing.items(), describe_many(list(missing))):
                rid = self._intern(result)
                self._put(value, rid)
                for i in positions:
                    ids[i] = rid
        rows = pa.array(ids, pa.int32()).take(enc.indices)   # null rows stay null
        columns = {}
        for name, (per_result, dictionary) in self._result_arrays().items():
            taken = per_result.take(rows)
            columns[name] = taken if dictionary is None else pa.DictionaryArray.from_arrays(taken, dictionary)
        return columns


# ---------------------------------------------------------------------------------------------- GeoIP

_NO_GEO = (None,) * 5


def _name(entity: dict | None) -> str | None:
    names = (entity or {}).get("names") or {}
    return names.get("en") or next(iter(names.values()), None)


def _geo_fields(record: dict, city: bool) -> tuple:
    """One database record -> (country, asn, as_org, region, city); None where it has nothing."""
    country = (record.get("country") or {}).get("iso_code")
    registered = (record.get("registered_country") or {}).get("iso_code")
    traits = record.get("traits") or {}   # GeoIP2 Enterprise / ISP keep the AS there
    asn = record.get("autonomous_system_number") or traits.get("autonomous_system_number")
    as_org = record.get("autonomous_system_organization") or traits.get("autonomous_system_organization")
    region = city_name = None
    if city:
        subdivisions = record.get("subdivisions") or [{}]
        # [0] is the largest subdivision (state, Land, England). DB-IP lite has no codes, only names.
        code = subdivisions[0].get("iso_code")
        region = f"{country}-{code}" if code and country else _name(subdivisions[0])
        city_name = _name(record.get("city"))
    return country or registered, asn, as_org, region, city_name


def _reason(path: str, exc: Exception) -> str:
    if isinstance(exc, FileNotFoundError):
        return "no such file"
    if isinstance(exc, IsADirectoryError) or os.path.isdir(path):
        return "is a directory, not a database file"
    if isinstance(exc, PermissionError):
        return "not readable (permission denied)"
    return "not a valid MaxMind DB (.mmdb) file"


class GeoLookup:
    """IP text -> (country, asn, as_org, region, city) from one or more MaxMind-format databases.

    `paths` may mix Country, City and ASN databases (GeoLite2, GeoIP2, DB-IP lite); for each
    field the first database (in the order given) that has a value wins. `detail` "country"
    leaves region and city null. Readers hold open files (memory-mapped): not picklable, so
    Beam DoFns open them in `setup`.
    """

    def __init__(self, paths: list[str], detail: str = "country", cache_size: int = 1 << 18):
        if detail not in GEO_DETAILS:
            raise SettingError("{} must be 'country' or 'city', not {detail!r}", "geo_detail", detail=detail)
        self.paths, self.detail = list(paths), detail
        self._readers: list[tuple[maxminddb.Reader, bool]] = []
        for path in self.paths:
            try:
                reader = maxminddb.open_database(path, maxminddb.MODE_AUTO)
            except (OSError, ValueError, maxminddb.InvalidDatabaseError) as exc:
                self.close()
                raise SettingError("GeoIP database {path}: {reason}; give {} a MaxMind-format .mmdb file "
                                   "(GeoLite2/GeoIP2 Country, City or ASN, or DB-IP lite)", "geoip_db", path=path,
                                   reason=_reason(path, exc)) from None
            self._readers.append((reader, reader.metadata().ip_version == 6))
        names = list(GEO_TYPES) if detail == "city" else ["country", "asn", "as_org"]
        self.cache = ResultCache({name: GEO_TYPES[name] for name in names}, cache_size)

    def lookup(self, ip: str) -> tuple:
        """One IP (canonical text, or `name:<host>`) -> (country, asn, as_org, region, city), uncached."""
        found = None
        if ip.startswith("name:"):   # a client logged by host name: nothing to look up
            return _NO_GEO
        city = self.detail == "city"
        for reader, has_v6 in self._readers:
            if ":" in ip and not has_v6:
                continue
            try:
                record = reader.get(ip)
            except ValueError:   # the message quotes the IP: never log or re-raise it
                continue
            if isinstance(record, dict):
                fields = _geo_fields(record, city)
                found = fields if found is None else tuple(old if old is not None else new
                                                           for old, new in zip(found, fields))
        return found or _NO_GEO

    def close(self) -> None:
        for reader, _ in self._readers:
            reader.close()
        self._readers = []

    def __enter__(self) -> GeoLookup:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def columns(self, client_ip: pa.Array | pa.ChunkedArray) -> dict[str, pa.Array]:
        """`_client_ip` column -> {country, asn, as_org[, region, city]} columns (nulls where unknown)."""
        return self.cache.columns(client_ip, lambda ips: [self.lookup(ip) for ip in ips])


# ---------------------------------------------------------------------------------------- user agents

def _ua_parser_resolver(kind: str):
    """(ua_parser.Parser, name) for `kind`: auto (fastest installed), rust, re2 or python."""
    import ua_parser
    available = {"rust": ua_parser.RegexResolver, "re2": ua_parser.Re2Resolver, "python": ua_parser.BasicResolver}
    if kind == "auto":
        kind = next(k for k, resolver in available.items() if resolver)
    if kind not in available:
        raise AccesslogError(f"unknown user-agent resolver {kind!r}: use auto, rust, re2 or python")
    if not available[kind]:
        package = "ua-parser-rs (pip install 'accesslog[fast]')" if kind == "rust" else "google-re2"
        raise AccesslogError(f"the {kind} user-agent resolver needs {package}")
    # The Rust and re2 resolvers compile the rules themselves: lazy matchers skip Python's compile.
    matchers = ua_parser.load_builtins() if kind == "python" else ua_parser.load_lazy_builtins()
    return ua_parser.Parser(available[kind](matchers)), kind


def screen_user_agents(uas: list[str]) -> list[dict[str, bool]]:
    """User agents -> per agent, which of the RE2 screens (bot, other, tablet, mobile) match."""
    values = pa.array(uas, pa.string())
    flags = {name: pc.match_substring_regex(values, pattern, ignore_case=True).to_pylist()
             for name, pattern in _SCREENS.items()}
    return [dict(zip(flags, matched)) for matched in zip(*flags.values())]


def describe_user_agent(ua: str, result, screens: dict[str, bool]) -> tuple:
    """A user agent, its ua-parser Result and its screens -> (browser, browser_version, os, device, is_bot)."""
    agent, os_, device = result.user_agent, result.os, result.device
    browser = agent.family if agent and agent.family != "Other" else None
    version = agent.major if browser else None
    os_family = os_.family if os_ and os_.family != "Other" else None
    is_bot = (device is not None and device.family == "Spider") or screens["bot"]
    return browser, version, os_family, "bot" if is_bot else _device(ua, os_family, device, screens), is_bot


def _device(ua: str, os_family: str | None, device, screens: dict[str, bool]) -> str:
    # ua-parser's device names add what the string alone does not say ("Generic_Android_Tablet", "Kindle")
    names = " ".join(filter(None, (device.family, device.brand, device.model))).lower() if device else ""
    if screens["other"]:
        return "other"
    if screens["tablet"] or "tablet" in names or "kindle" in names or "ipad" in names \
            or (os_family == "Android" and "mobi" not in ua.lower()):
        return "tablet"   # Android phones say "Mobile"; tablets don't (Chrome's documented convention)
    if screens["mobile"] or "phone" in names or os_family in _MOBILE_OS:
        return "mobile"
    desktop_os = os_family is not None and (os_family in _DESKTOP_OS or os_family.startswith("Windows"))
    if desktop_os or "X11" in ua or (device is not None and device.family == "Mac"):
        return "desktop"
    return "other"


class UserAgentParser:
    """User agent -> (browser, browser_version, os, device, is_bot), cached per distinct value.

    `resolver`: "auto" picks the fastest installed ua-parser resolver (ua-parser-rs, then
    google-re2, then pure Python). `parse` replaces ua-parser (str -> Result-like with
    user_agent/os/device), for tests. `columns` memoizes per distinct user agent across
    chunks (ResultCache of the derived tuples; ua-parser's own cache would only duplicate it).
    """

    def __init__(self, resolver: str = "auto", cache_size: int = 1 << 16, parse=None):
        if parse is None:
            parser, self.resolver = _ua_parser_resolver(resolver)
            parse = parser.parse
        else:
            self.resolver = "custom"
        self._parse = parse
        self.cache = ResultCache(UA_TYPES, cache_size)

    def describe(self, ua: str) -> tuple:
        """One user agent -> (browser, browser_version, os, device, is_bot), uncached."""
        return self.describe_many([ua])[0]

    def describe_many(self, uas: list[str]) -> list[tuple]:
        """User agents -> their tuples, uncached; the RE2 screens run once over the batch."""
        screened = screen_user_agents(uas) if uas else []
        return [(None,) * 5 if ua in ("", "-") else describe_user_agent(ua, self._parse(ua[:_MAX_PARSED_CHARS]), flags)
                for ua, flags in zip(uas, screened)]

    def columns(self, user_agent: pa.Array | pa.ChunkedArray) -> dict[str, pa.Array]:
        """`user_agent` column -> {browser, browser_version, os, device, is_bot} columns.

        A missing user agent says nothing about the client: all five are null (so
        `is_bot IS NOT TRUE` keeps those rows and `NOT is_bot` drops them)."""
        return self.cache.columns(user_agent, self.describe_many)


# ------------------------------------------------------------------------------------------ the stage

def _put(table: pa.Table, name: str, values: pa.Array) -> pa.Table:
    if name in table.column_names:
        return table.set_column(table.column_names.index(name), name, values)
    return table.append_column(name, values)


def enrich_records(table: pa.Table, geo: GeoLookup | None, ua: UserAgentParser | None) -> pa.Table:
    """Add (or replace) the GeoIP columns from `_client_ip` and the user-agent columns from
    `user_agent`. Work is per distinct value; a table without `user_agent` gets null UA columns."""
    columns: dict[str, pa.Array] = {}
    if geo is not None:
        if "_client_ip" not in table.column_names:
            raise ValueError("enrich_records needs the in-memory _client_ip column: run Enrich before "
                             "PseudonymizeClients")
        columns.update(geo.columns(table["_client_ip"]))
    if ua is not None:
        if "user_agent" in table.column_names:
            columns.update(ua.columns(table["user_agent"]))
        else:
            columns.update({name: pa.nulls(table.num_rows, type_) for name, type_ in UA_TYPES.items()})
    for name, values in columns.items():
        table = _put(table, name, values)
    return table


@beam.typehints.with_output_types(RecordChunk)
class _EnrichChunk(beam.DoFn):
    def __init__(self, geoip_paths: list[str], geo_detail: str, user_agents: bool):
        self.geoip_paths, self.geo_detail, self.user_agents = geoip_paths, geo_detail, user_agents

    def setup(self):
        # Opened here, once per worker: readers and the Rust parser are not picklable. The
        # parser compiles its rules (~0.1 s) in a thread while the first chunk is read and parsed.
        self.geo = GeoLookup(self.geoip_paths, self.geo_detail) if self.geoip_paths else None
        self.ua = None
        self._ua_future = ThreadPoolExecutor(1).submit(UserAgentParser) if self.user_agents else None

    def process(self, chunk):
        if self._ua_future is not None:
            self.ua, self._ua_future = self._ua_future.result(), None
        if chunk.records.num_rows and chunk.table == "access" and (self.geo or self.ua):
            chunk = dataclasses.replace(chunk, records=enrich_records(chunk.records, self.geo, self.ua))
        yield chunk

    def teardown(self):
        if self.geo is not None:
            self.geo.close()


class Enrich(beam.PTransform):
    """RecordChunk with raw `_client_ip` -> RecordChunk with GeoIP and user-agent columns.

    Runs before PseudonymizeClients, fused with it (no shuffle in between). The databases are
    opened once here to fail early with a clear error, then again on each worker.
    """

    def __init__(self, geoip_paths: list[str] | None = None, geo_detail: str = "country", user_agents: bool = True):
        super().__init__()
        self.geoip_paths, self.geo_detail, self.user_agents = list(geoip_paths or []), geo_detail, user_agents
        GeoLookup(self.geoip_paths, geo_detail).close()

    def expand(self, chunks):
        return chunks | "Enrich" >> beam.ParDo(_EnrichChunk(self.geoip_paths, self.geo_detail, self.user_agents))

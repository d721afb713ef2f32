"""Enrich: GeoIP columns from MaxMind-format databases built here with mmdb_writer (no downloads),
user-agent columns from ua-parser plus the crawler list, both cached per distinct value."""
import logging
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import apache_beam as beam
import pyarrow as pa
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from apache_beam.testing.util import assert_that, equal_to
from mmdb_writer import MMDBWriter
from netaddr import IPSet

from pipelines.entry import flag_name
from schemas.errors import AccesslogError, SettingError
from transforms.enrich import Enrich, GeoLookup, UserAgentParser, enrich_records
from transforms.parse import RecordChunk

ROOT = str(Path(__file__).resolve().parent.parent)

UK = {"iso_code": "GB", "names": {"en": "United Kingdom", "de": "Vereinigtes Königreich"}}
GERMANY = {"iso_code": "DE", "names": {"en": "Germany", "de": "Deutschland"}}


def write_mmdb(path, database_type, networks, ip_version=6):
    writer = MMDBWriter(ip_version=ip_version, ipv4_compatible=ip_version == 6, database_type=database_type,
                        languages=["en"], description="accesslog test database")
    for network, record in networks.items():
        writer.insert_network(IPSet([network]), record)
    writer.to_db_file(str(path))
    return str(path)


@pytest.fixture(scope="module")
def dbs(tmp_path_factory):
    """Country-, City- and ASN-like databases (GeoLite2 layouts; one DB-IP lite City record)."""
    d = tmp_path_factory.mktemp("geoip")
    return {
        "country": write_mmdb(d / "country.mmdb", "GeoLite2-Country", {
            "192.0.2.0/24": {"country": UK, "registered_country": UK},
            "2001:db8:1::/48": {"country": GERMANY, "registered_country": GERMANY},
            # anycast / satellite networks: only the registration country is known
            "198.51.100.0/24": {"registered_country": {"iso_code": "US"}},
        }),
        "city": write_mmdb(d / "city.mmdb", "GeoLite2-City", {
            "192.0.2.0/24": {"country": UK, "city": {"names": {"en": "London", "de": "London"}},
                             "subdivisions": [{"iso_code": "ENG", "names": {"en": "England"}},
                                              {"iso_code": "WSM", "names": {"en": "Westminster"}}]},
            "2001:db8:1::/48": {"country": GERMANY, "city": {"names": {"en": "Munich", "de": "München"}},
                                "subdivisions": [{"iso_code": "BY", "names": {"en": "Bavaria"}}]},
            # DB-IP lite City: subdivisions carry names only
            "203.0.113.0/24": {"country": {"iso_code": "FR", "names": {"en": "France"}},
                               "city": {"names": {"en": "Paris"}}, "subdivisions": [{"names": {"en": "Île-de-France"}}]},
        }),
        "asn": write_mmdb(d / "asn.mmdb", "GeoLite2-ASN", {
            "192.0.2.0/24": {"autonomous_system_number": 64500, "autonomous_system_organization": "Example Net"},
            "2001:db8::/32": {"autonomous_system_number": 64501, "autonomous_system_organization": "Example Six"},
        }),
        "asn_v4_only": write_mmdb(d / "asn4.mmdb", "DBIP-ASN-Lite (compat=GeoLite2-ASN)", {
            "203.0.113.0/24": {"autonomous_system_number": 64502, "autonomous_system_organization": "Doc Net"},
        }, ip_version=4),
    }


NULLS = (None, None, None, None, None)


def test_country_lookup_ipv4_and_ipv6(dbs):
    with GeoLookup([dbs["country"]]) as geo:
        assert geo.lookup("192.0.2.7") == ("GB", None, None, None, None)
        assert geo.lookup("2001:db8:1:2::99") == ("DE", None, None, None, None)
        assert geo.lookup("198.51.100.1")[0] == "US"        # registered_country when country is absent


@pytest.mark.parametrize("client", ["10.1.2.3", "3fff::1", "name:crawler.example.net", "name:unix:"])
def test_unknown_ips_and_named_clients_give_nulls(dbs, client):
    with GeoLookup([dbs["country"], dbs["city"], dbs["asn"]], "city") as geo:
        assert geo.lookup(client) == NULLS


def test_city_detail_fills_region_and_city(dbs):
    with GeoLookup([dbs["city"]], "city") as geo:
        assert geo.lookup("192.0.2.7") == ("GB", None, None, "GB-ENG", "London")   # largest subdivision
        assert geo.lookup("2001:db8:1::1") == ("DE", None, None, "DE-BY", "Munich")  # English names
        assert geo.lookup("203.0.113.9") == ("FR", None, None, "Île-de-France", "Paris")  # DB-IP: name only


def test_country_detail_leaves_region_and_city_out(dbs):
    with GeoLookup([dbs["city"]]) as geo:
        assert geo.lookup("192.0.2.7") == ("GB", None, None, None, None)
        table = enrich_records(pa.table({"_client_ip": ["192.0.2.7"]}), geo, None)
    assert "region" not in table.column_names and "city" not in table.column_names
    assert table["country"].to_pylist() == ["GB"]


def test_databases_are_combined_first_value_wins(dbs):
    with GeoLookup([dbs["city"], dbs["asn"], dbs["asn_v4_only"], dbs["country"]], "city") as geo:
        assert geo.lookup("192.0.2.7") == ("GB", 64500, "Example Net", "GB-ENG", "London")
        assert geo.lookup("2001:db8:1::1") == ("DE", 64501, "Example Six", "DE-BY", "Munich")
        # IPv6 in an IPv4-only database: skipped, not an error
        assert geo.lookup("2001:db8:2::1") == (None, 64501, "Example Six", None, None)
        assert geo.lookup("203.0.113.9") == ("FR", 64502, "Doc Net", "Île-de-France", "Paris")
        assert geo.lookup("198.51.100.1") == ("US", None, None, None, None)   # from the last database


def test_enrich_records_geo_columns(dbs):
    ips = pa.array(["192.0.2.7", None, "2001:db8:1::1", "name:host.example", "192.0.2.7", "10.0.0.1"])
    table = pa.table({"_client_ip": ips.dictionary_encode(), "status": pa.array([200] * 6, pa.int16())})
    with GeoLookup([dbs["city"], dbs["asn"]], "city") as geo:
        out = enrich_records(table, geo, None)
    assert out["country"].to_pylist() == ["GB", None, "DE", None, "GB", None]
    assert out["asn"].type == pa.int64()
    assert out["asn"].to_pylist() == [64500, None, 64501, None, 64500, None]
    assert out["as_org"].to_pylist() == ["Example Net", None, "Example Six", None, "Example Net", None]
    assert out["region"].to_pylist() == ["GB-ENG", None, "DE-BY", None, "GB-ENG", None]
    assert out["city"].to_pylist() == ["London", None, "Munich", None, "London", None]
    assert out["_client_ip"].to_pylist() == ips.to_pylist()   # PseudonymizeClients drops it later


def test_existing_columns_are_replaced(dbs):
    table = pa.table({"_client_ip": ["192.0.2.7"], "country": pa.nulls(1, pa.string()), "user_agent": ["curl/8.5.0"],
                      "is_bot": pa.array([None], pa.bool_())})
    with GeoLookup([dbs["country"]]) as geo:
        out = enrich_records(table, geo, UserAgentParser())
    assert out.column_names.count("country") == 1 and out.column_names.count("is_bot") == 1
    assert out["country"].to_pylist() == ["GB"] and out["is_bot"].to_pylist() == [True]


def test_ip_lookups_are_cached_across_chunks(dbs):
    with GeoLookup([dbs["country"]]) as geo:
        looked_up, lookup = [], geo.lookup
        geo.lookup = lambda ip: looked_up.append(ip) or lookup(ip)
        first = geo.columns(pa.array(["192.0.2.1", "192.0.2.2", "192.0.2.1", None]))
        second = geo.columns(pa.array(["192.0.2.2", "2001:db8:1::1"]).dictionary_encode())
    assert sorted(looked_up) == ["192.0.2.1", "192.0.2.2", "2001:db8:1::1"]
    assert first["country"].to_pylist() == ["GB", "GB", "GB", None]
    assert second["country"].to_pylist() == ["GB", "DE"]
    assert first["country"].type == pa.dictionary(pa.int32(), pa.string())


def test_lookups_never_log_or_print_ips(dbs, caplog, capsys):
    caplog.set_level(logging.DEBUG)
    with GeoLookup([dbs["asn_v4_only"], dbs["country"]]) as geo:
        geo.columns(pa.array(["2001:db8:1::77", "198.51.100.77", "10.9.9.77"]))
    printed = capsys.readouterr()
    assert "77" not in caplog.text + printed.out + printed.err


@pytest.mark.parametrize("content", [None, b"", b"not a database\n" * 100])
def test_invalid_database_is_a_user_error(tmp_path, content, dbs):
    path = tmp_path / "GeoLite2-City.mmdb"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(AccesslogError) as err:
        GeoLookup([dbs["country"], str(path)])
    message = str(err.value)
    assert str(path) in message and "\n" not in message and ".mmdb" in message
    with pytest.raises(AccesslogError):
        Enrich([str(path)])   # fails when the pipeline is built, not on a worker


def test_directory_and_bad_detail_are_user_errors(tmp_path, dbs):
    with pytest.raises(AccesslogError, match="directory"):
        GeoLookup([str(tmp_path)])
    with pytest.raises(SettingError) as err:   # the CLI names the flag: --geo-detail
        GeoLookup([dbs["country"]], "street")
    assert err.value.settings == ("geo_detail",) and "--geo-detail" in err.value.render(flag_name)


def test_enrich_records_needs_the_raw_ip(dbs):
    with GeoLookup([dbs["country"]]) as geo, pytest.raises(ValueError, match="before PseudonymizeClients"):
        enrich_records(pa.table({"client_id": ["ab"]}), geo, None)


# ----------------------------------------------------------------------------------------- user agents

CHROME_WIN = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
              "Chrome/120.0.0.0 Safari/537.36")
IPHONE = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
          "Version/17.2 Mobile/15E148 Safari/604.1")
GOOGLEBOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"

# (user agent, browser, browser_version, os, device, is_bot)
USER_AGENTS = [
    (CHROME_WIN, "Chrome", "120", "Windows", "desktop", False),
    ("Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0",
     "Firefox", "121", "Linux", "desktop", False),
    ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.2 "
     "Safari/605.1.15", "Safari", "17", "Mac OS X", "desktop", False),
    (IPHONE, "Mobile Safari", "17", "iOS", "mobile", False),
    ("Mozilla/5.0 (iPad; CPU OS 16_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/16.6 "
     "Mobile/15E148 Safari/604.1", "Mobile Safari", "16", "iOS", "tablet", False),
    ("Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Mobile "
     "Safari/537.36", "Chrome Mobile", "120", "Android", "mobile", False),
    ("Mozilla/5.0 (Linux; Android 13; SM-X700) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 "
     "Safari/537.36", "Chrome", "120", "Android", "tablet", False),
    ("Mozilla/5.0 (Android 14; Tablet; rv:121.0) Gecko/121.0 Firefox/121.0",
     "Firefox Mobile", "121", "Android", "tablet", False),
    ("Mozilla/5.0 (Linux; Android 13; SAMSUNG SM-S911B) AppleWebKit/537.36 (KHTML, like Gecko) "
     "SamsungBrowser/23.0 Chrome/115.0.0.0 Mobile Safari/537.36", "Samsung Internet", "23", "Android", "mobile", False),
    (CHROME_WIN + " Edg/120.0.2210.91", "Edge", "120", "Windows", "desktop", False),
    ("Mozilla/5.0 (Linux; Android 9; CUBOT P30) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Mobile "
     "Safari/537.36", "Chrome Mobile", "120", "Android", "mobile", False),   # "bot" inside a phone brand
    ("Mozilla/5.0 (SMART-TV; Linux; Tizen 6.0) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/4.0 "
     "Chrome/76.0.3809.146 TV Safari/537.36", "Samsung Internet", "4", "Tizen", "other", False),
    (GOOGLEBOT, "Googlebot", "2", None, "bot", True),
    ("Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)", "bingbot", "2", None, "bot", True),
    ("curl/8.5.0", "curl", "8", None, "bot", True),
    ("python-requests/2.31.0", "Python Requests", "2", None, "bot", True),
    ("Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; GPTBot/1.2; +https://openai.com/gptbot)",
     "GPTBot", "1", None, "bot", True),
    ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/120.0.6099.109 "
     "Safari/537.36", "HeadlessChrome", "120", "Linux", "bot", True),
    ("Mozilla/5.0 (compatible; ClaudeBot/1.0; +claudebot@anthropic.com)", "ClaudeBot", "1", None, "bot", True),
    ("Mozilla/5.0 zgrab/0.x", None, None, None, "bot", True),
    ("Blackbox Exporter/0.25.0", None, None, None, "bot", True),
    ("", None, None, None, None, None),
    (None, None, None, None, None, None),
]
RESOLVERS = ["auto", "python"]


@pytest.fixture(scope="module", params=RESOLVERS)
def ua_parser(request):
    return UserAgentParser(request.param)


@pytest.mark.parametrize("case", USER_AGENTS, ids=lambda c: (c[0] or repr(c[0]))[:40])
def test_user_agent_columns(ua_parser, case):
    ua, *expected = case
    out = enrich_records(pa.table({"user_agent": pa.array([ua], pa.string())}), None, ua_parser)
    got = [out[name].to_pylist()[0] for name in ("browser", "browser_version", "os", "device", "is_bot")]
    assert got == expected, ua_parser.resolver


# Tools and crawlers, some of which uap-core does not know: the crawler list alone must catch them.
CRAWLERS = [
    GOOGLEBOT, "curl/8.5.0", "Wget/1.21.4", "python-requests/2.31.0", "Python-urllib/3.11", "Go-http-client/2.0",
    "Java/17.0.2", "okhttp/4.12.0", "libwww-perl/6.72", "Apache-HttpClient/4.5.14 (Java/17.0.9)", "axios/1.7.7",
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/120.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Linux; Android 11; moto g power (2022)) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/119.0.0.0 Mobile Safari/537.36 Chrome-Lighthouse",
    "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/13.1.1 "
    "Safari/605.1.15 (Applebot/0.1; +http://www.apple.com/go/applebot)",
    "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; GPTBot/1.2; +https://openai.com/gptbot)",
    "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; ClaudeBot/1.0; +claudebot@anthropic.com)",
    "CCBot/2.0 (https://commoncrawl.org/faq/)",
    "Mozilla/5.0 (Linux; Android 5.0) AppleWebKit/537.36 (KHTML, like Gecko) Mobile Safari/537.36 "
    "(compatible; Bytespider; spider-feedback@bytedance.com)",
    "Mozilla/5.0 (compatible; AhrefsBot/7.0; +http://ahrefs.com/robot/)",
    "Mozilla/5.0 (compatible; SemrushBot/7~bl; +http://www.semrush.com/bot.html)",
    "Mozilla/5.0 (compatible; MJ12bot/v1.4.8; http://mj12bot.com/)",
    "Mozilla/5.0 (compatible; DotBot/1.2; +https://opensiteexplorer.org/dotbot; help@moz.com)",
    "Mozilla/5.0 (Linux; Android 7.0;) AppleWebKit/537.36 (KHTML, like Gecko) Mobile Safari/537.36 "
    "(compatible; PetalBot;+https://webmaster.petalsearch.com/site/petalbot)",
    "Mozilla/5.0 (compatible; YandexBot/3.0; +http://yandex.com/bots)",
    "Mozilla/5.0 (compatible; Baiduspider/2.0; +http://www.baidu.com/search/spider.html)",
    "Mozilla/5.0+(compatible; UptimeRobot/2.0; http://www.uptimerobot.com/)",
    "Pingdom.com_bot_version_1.4_(http://www.pingdom.com/)", "kube-probe/1.29", "ELB-HealthChecker/2.0",
    "Mozilla/5.0 zgrab/0.x", "masscan/1.3 (https://github.com/robertdavidgraham/masscan)",
    "Mozilla/5.0 (compatible; Nmap Scripting Engine; https://nmap.org/book/nse.html)",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/74.0.3729.169 "
    "Safari/537.36 Nuclei - Open-source project (github.com/projectdiscovery/nuclei)",
    "Mozilla/5.0 (compatible; CensysInspect/1.1; +https://about.censys.io/)", "Mozilla/5.0",
]


def unparsed(ua):
    return SimpleNamespace(user_agent=None, os=None, device=None)


@pytest.mark.parametrize("ua", CRAWLERS, ids=lambda ua: ua[:40])
def test_crawler_list_catches_tools(ua):
    assert UserAgentParser(parse=unparsed).describe(ua)[3:] == ("bot", True)


@pytest.mark.parametrize("ua", [case[0] for case in USER_AGENTS if case[-1] is False], ids=lambda ua: ua[:40])
def test_crawler_list_spares_browsers(ua):
    assert UserAgentParser(parse=unparsed).describe(ua)[4] is False


def test_fastest_resolver_is_picked():
    pytest.importorskip("ua_parser_rs")
    assert UserAgentParser().resolver == "rust"


def test_falls_back_to_pure_python_without_the_accelerator():
    script = ("import sys; sys.modules['ua_parser_rs'] = None\n"   # as if ua-parser-rs were not installed
              "from transforms.enrich import UserAgentParser\n"
              f"p = UserAgentParser(); print(p.resolver, p.describe({CHROME_WIN!r}))")
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "python ('Chrome', '120', 'Windows', 'desktop', False)"


def test_user_agent_columns_are_vectorized_and_typed():
    table = pa.table({"user_agent": pa.array([CHROME_WIN, None, GOOGLEBOT, CHROME_WIN, IPHONE]).dictionary_encode()})
    out = enrich_records(table, None, UserAgentParser())
    assert out["is_bot"].type == pa.bool_()
    assert out["device"].to_pylist() == ["desktop", None, "bot", "desktop", "mobile"]
    assert out["browser"].to_pylist() == ["Chrome", None, "Googlebot", "Chrome", "Mobile Safari"]
    assert out["is_bot"].to_pylist() == [False, None, True, False, False]


def test_table_without_user_agent_gets_null_columns():
    out = enrich_records(pa.table({"status": pa.array([200, 404], pa.int16())}), None, UserAgentParser())
    assert out["is_bot"].to_pylist() == [None, None] and out["device"].type == pa.string()


def test_user_agents_are_parsed_once_across_chunks():
    import ua_parser
    calls = []

    def counting_parse(ua):
        calls.append(ua)
        return ua_parser.parse(ua)

    parser = UserAgentParser(parse=counting_parse)
    first = pa.table({"user_agent": [CHROME_WIN, IPHONE, CHROME_WIN, None, GOOGLEBOT]})
    second = pa.table({"user_agent": [IPHONE, GOOGLEBOT, "curl/8.5.0", IPHONE]})
    enrich_records(first, None, parser)
    out = enrich_records(second, None, parser)
    assert sorted(calls) == sorted([CHROME_WIN, IPHONE, GOOGLEBOT, "curl/8.5.0"])
    assert out["device"].to_pylist() == ["mobile", "bot", "bot", "mobile"]


def test_caches_are_bounded():
    calls = []
    parser = UserAgentParser(parse=lambda ua: calls.append(ua) or unparsed(ua), cache_size=4)
    for i in range(100):
        parser.columns(pa.array([f"tool{i}/1", "hot/1"]))
    assert calls.count("hot/1") == 1 and len(calls) == 101   # used in every chunk: never forgotten
    cache = parser.cache
    assert len(cache.young) + len(cache.old) <= 4 and len(cache.results) <= 4 * 4 + 1
    parser.columns(pa.array(["tool0/1"]))
    assert calls[-1] == "tool0/1"   # forgotten long ago: parsed again


def test_results_stay_right_when_the_cache_starts_over():
    own_family = lambda ua: SimpleNamespace(user_agent=SimpleNamespace(family=ua, major="1"), os=None, device=None)
    parser = UserAgentParser(parse=own_family, cache_size=2)   # every agent its own result: many resets
    for i in range(40):
        uas = [f"a{i}", None, f"a{i - 1}", f"a{i}", "b"]
        assert parser.columns(pa.array(uas))["browser"].to_pylist() == uas
    assert len(parser.cache.results) <= 4 * 2 + 1


# ------------------------------------------------------------------------------------------------ Beam

def records(ips, uas):
    return pa.table({"_client_ip": pa.array(ips, pa.string()), "user_agent": pa.array(uas, pa.string()),
                     "source_line": pa.array(range(1, len(ips) + 1), pa.int64())})


def test_enrich_transform_on_record_chunks(dbs):
    chunks = [
        RecordChunk("access.log", "feedfacecafebeef", 1, 3, records(["192.0.2.7", "2001:db8:1::1", "10.0.0.1"],
                                                                    [CHROME_WIN, IPHONE, "curl/8.5.0"])),
        RecordChunk("access.log", "feedfacecafebeef", 4, 2, records([], [])),   # everything rejected
    ]
    columns = ["source_line", "country", "asn", "region", "city", "browser", "device", "is_bot"]

    def rows(chunk):
        return [tuple(r[c] for c in columns) for r in chunk.records.select(columns).to_pylist()] \
            if chunk.records.num_rows else [("empty", chunk.records.column_names)]

    with BeamTestPipeline(options=PipelineOptions(["--runner=FnApiRunner"])) as p:
        out = (p | beam.Create(chunks) | Enrich([dbs["city"], dbs["asn"]], geo_detail="city")
               | beam.FlatMap(rows))
        assert_that(out, equal_to([
            (1, "GB", 64500, "GB-ENG", "London", "Chrome", "desktop", False),
            (2, "DE", 64501, "DE-BY", "Munich", "Mobile Safari", "mobile", False),
            (3, None, None, None, None, "curl", "bot", True),
            ("empty", ["_client_ip", "user_agent", "source_line"]),
        ]))


def test_enrich_without_geoip_fills_user_agent_columns_only():
    chunk = RecordChunk("access.log", "feedfacecafebeef", 1, 1, records(["192.0.2.7"], [GOOGLEBOT]))
    with BeamTestPipeline(options=PipelineOptions(["--runner=FnApiRunner"])) as p:
        out = (p | beam.Create([chunk]) | Enrich(None)
               | beam.Map(lambda c: ("country" in c.records.column_names, c.records["is_bot"].to_pylist())))
        assert_that(out, equal_to([(False, [True])]))

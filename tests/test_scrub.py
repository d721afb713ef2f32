"""Scrubber: secret query parameters, e-mail addresses, userinfo and IP literals -> REDACTED."""
import pyarrow as pa
import pytest

from transforms.scrub import DEFAULT_SECRET_PARAMS, REDACTED, Scrubber, parse_secret_params, scrub_records

SECRET_NAMES = ["password", "passwd", "pwd", "token", "access_token", "api_key", "apikey", "key", "secret",
                "session", "sid", "code", "auth", "email"]


@pytest.fixture(scope="module")
def scrubber():
    return Scrubber()


@pytest.mark.parametrize("name", SECRET_NAMES)
def test_default_secret_param_is_redacted_and_others_kept(scrubber, name):
    assert name in DEFAULT_SECRET_PARAMS
    query = f"page=2&{name}=s3cr3tValue&lang=en"
    assert scrubber.scrub(query) == f"page=2&{name}={REDACTED}&lang=en"


@pytest.mark.parametrize("name", ["PASSWORD", "Api_Key", "ToKeN", "EMAIL"])
def test_names_are_case_insensitive(scrubber, name):
    assert scrubber.scrub(f"{name}=hunter2") == f"{name}={REDACTED}"


@pytest.mark.parametrize("name", ["refresh_token", "client_secret", "oauth_token", "x-api-key", "user_password"])
def test_suffix_names(scrubber, name):
    assert scrubber.scrub(f"a=1&{name}=hunter2") == f"a=1&{name}={REDACTED}"


@pytest.mark.parametrize("query", ["q=passwordless", "keyword=beam", "monkey=1", "tokens_left=3", "a=1&b=2"])
def test_innocent_params_untouched(scrubber, query):
    assert scrubber.scrub(query) == query


def test_empty_secret_value_left_as_is(scrubber):
    assert scrubber.scrub("token=&a=1") == "token=&a=1"


def test_value_with_equals_signs_is_redacted_whole(scrubber):
    assert scrubber.scrub("token=YWJj==&a=1") == f"token={REDACTED}&a=1"


def test_semicolon_separated_params(scrubber):
    assert scrubber.scrub("/shop;jsessionid=ABC123;x=1") == f"/shop;jsessionid={REDACTED};x=1"


# -- PHP arrays and percent-encoding ---------------------------------------------------------


@pytest.mark.parametrize("name", ["user[password]", "user%5Bpassword%5D", "user%5bpassword%5d",
                                  "login[auth][token]", "pass%77ord"])
def test_array_and_percent_encoded_names(scrubber, name):
    assert scrubber.scrub(f"{name}=hunter2&id=7") == f"{name}={REDACTED}&id=7"


# -- full URLs: referrers and raw lines ----------------------------------------------------


@pytest.mark.parametrize("url, expected", [
    ("https://example.com/reset?token=abc123", f"https://example.com/reset?token={REDACTED}"),
    ("https://example.com/cb?code=xyz&state=1", f"https://example.com/cb?code={REDACTED}&state=1"),
    ("https://example.com/#access_token=abc", f"https://example.com/#access_token={REDACTED}"),
    ('GET /login?password=hunter2 HTTP/1.1', f'GET /login?password={REDACTED} HTTP/1.1'),
])
def test_first_parameter_of_a_full_url(scrubber, url, expected):
    assert scrubber.scrub(url) == expected


@pytest.mark.parametrize("query, expected", [
    ("next=/account?token=abc", f"next=/account?token={REDACTED}"),
    ("return=https://example.com/cb?code=xyz&state=1", f"return=https://example.com/cb?code={REDACTED}&state=1"),
])
def test_url_inside_a_parameter_value(scrubber, query, expected):
    assert scrubber.scrub(query) == expected


# -- e-mail addresses --------------------------------------------------------------------------


@pytest.mark.parametrize("text, expected", [
    ("/users/jane.doe@example.org/profile", f"/users/{REDACTED}/profile"),
    ("/users/jane.doe%40example.org/profile", f"/users/{REDACTED}/profile"),
    ("/users/JANE%40EXAMPLE.ORG", f"/users/{REDACTED}"),
    ("q=max.mustermann@example.net&x=1", f"q={REDACTED}&x=1"),
    ("/to/jane+news@example.org", f"/to/{REDACTED}"),             # plus addressing is one address
    ("https://example.com/unsubscribe?u=jane.doe%40example.org&list=4",
     f"https://example.com/unsubscribe?u={REDACTED}&list=4"),
])
def test_email_addresses_anywhere(scrubber, text, expected):
    assert scrubber.scrub(text) == expected


def test_userinfo_in_referrer_keeps_host(scrubber):
    assert scrubber.scrub("https://bob:hunter2@intranet.example.com/wiki") == \
        f"https://{REDACTED}@intranet.example.com/wiki"
    assert scrubber.scrub("ftp://anonymous@ftp.example.com/") == f"ftp://{REDACTED}@ftp.example.com/"


# -- IP literals -----------------------------------------------------------------------------


@pytest.mark.parametrize("text, expected", [
    ("http://192.168.1.10/admin", f"http://{REDACTED}/admin"),
    ("http://10.0.0.5:8080/x", f"http://{REDACTED}:8080/x"),
    ("http://[2001:db8::1]/a", f"http://{REDACTED}/a"),
    ("/lookup/2001:db8:abcd:12::7", f"/lookup/{REDACTED}"),
    ("/at/13:55:36", "/at/13:55:36"),          # a time, not an address
    ("/v/999.1.1.1", "/v/999.1.1.1"),          # not a valid IPv4
])
def test_ip_literals(scrubber, text, expected):
    assert scrubber.scrub(text) == expected


def test_ips_false_keeps_dotted_versions(scrubber):
    agent = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/120.0.0.0 Safari/537.36"
    assert scrubber.scrub(agent, ips=False) == agent
    assert scrubber.scrub(agent) != agent   # with ips=True the version would be taken for an IP


def test_ips_false_still_redacts_ipv6(scrubber):
    agent = "Mozilla/5.0 (from 203.0.113.77; 2001:db8:85a3::8a2e:370:7334) Chrome/120.0.0.0"
    assert scrubber.scrub(agent, ips=False) == f"Mozilla/5.0 (from 203.0.113.77; {REDACTED}) Chrome/120.0.0.0"
    assert Scrubber().scrub_column(pa.array([agent]), ips=False).to_pylist() == [
        f"Mozilla/5.0 (from 203.0.113.77; {REDACTED}) Chrome/120.0.0.0"]


# -- scrub_records ---------------------------------------------------------------------------


def test_scrub_records_columns():
    agent = "Mozilla/5.0 (Windows NT 10.0) Chrome/120.0.0.0 Safari/537.36"
    table = pa.table({
        "url_path": ["/users/jane.doe@example.org", "/status/192.0.2.44", "/"],
        "url_query": ["a=1&password=x", None, "api_key=k"],
        "referrer": ["https://u:p@example.com/?code=c", "http://198.51.100.1/", None],
        "host": ["example.com", "203.0.113.9", None],
        "user_agent": [agent, "bot (+mailto:crawler@example.net)", None],
        "request_id": ["victim.person@example.org", "3f9c2a7d51b04e0c", None],   # JSON: from X-Request-Id
        "status": pa.array([200, 200, 404], pa.int16()),
    })
    out = scrub_records(table, Scrubber()).to_pydict()
    assert out["url_path"] == [f"/users/{REDACTED}", f"/status/{REDACTED}", "/"]
    assert out["url_query"] == [f"a=1&password={REDACTED}", None, f"api_key={REDACTED}"]
    assert out["referrer"] == [f"https://{REDACTED}@example.com/?code={REDACTED}", f"http://{REDACTED}/", None]
    assert out["host"] == ["example.com", REDACTED, None]
    assert out["user_agent"] == [agent, f"bot (+mailto:{REDACTED})", None]
    assert out["request_id"] == [REDACTED, "3f9c2a7d51b04e0c", None]
    assert out["status"] == [200, 200, 404]


def test_scrub_records_ignores_missing_columns():
    table = pa.table({"url_query": ["token=t"]})
    assert scrub_records(table, Scrubber()).to_pydict() == {"url_query": [f"token={REDACTED}"]}


# -- secret parameter list ---------------------------------------------------------------------


def test_parse_secret_params_default():
    assert parse_secret_params(None) == DEFAULT_SECRET_PARAMS
    assert parse_secret_params("") == DEFAULT_SECRET_PARAMS


def test_parse_secret_params_replaces():
    assert parse_secret_params("Foo, bar") == ("foo", "bar")
    scrubber = Scrubber(parse_secret_params("foo,bar"))
    assert scrubber.scrub("password=x&foo=1&bar=2&baz=3") == f"password=x&foo={REDACTED}&bar={REDACTED}&baz=3"


def test_parse_secret_params_extends():
    names = parse_secret_params("+foo,bar")
    assert names == DEFAULT_SECRET_PARAMS + ("foo", "bar")
    scrubber = Scrubber(names)
    assert scrubber.scrub("password=x&foo=1&baz=3") == f"password={REDACTED}&foo={REDACTED}&baz=3"


# -- scrub_column ----------------------------------------------------------------------------


class CountingScrubber(Scrubber):
    def __init__(self):
        super().__init__()
        self.seen = []

    def scrub(self, text, ips=True):
        self.seen.append(text)
        return super().scrub(text, ips)


def test_scrub_column_only_touches_candidates_once_each_and_keeps_nulls():
    scrubber = CountingScrubber()
    values = pa.array(["/plain", None, "/x?token=1", "/about", "/x?token=1", None, "/u/a@example.org"])
    out = scrubber.scrub_column(values)
    assert out.to_pylist() == ["/plain", None, f"/x?token={REDACTED}", "/about", f"/x?token={REDACTED}", None,
                               f"/u/{REDACTED}"]
    assert sorted(scrubber.seen) == ["/u/a@example.org", "/x?token=1"]


def test_scrub_column_without_candidates_returns_input():
    scrubber = CountingScrubber()
    values = pa.array(["/a", "/b", None])
    assert scrubber.scrub_column(values).to_pylist() == ["/a", "/b", None]
    assert scrubber.seen == []


def test_scrub_column_all_null_and_empty():
    scrubber = Scrubber()
    assert scrubber.scrub_column(pa.nulls(3, pa.string())).to_pylist() == [None, None, None]
    assert scrubber.scrub_column(pa.array([], pa.string())).to_pylist() == []


def test_scrub_column_chunked():
    values = pa.chunked_array([["/a?sid=1"], [None, "/b"]])
    assert Scrubber().scrub_column(values).to_pylist() == [f"/a?sid={REDACTED}", None, "/b"]


def test_scrub_column_ips_false_keeps_versions():
    values = pa.array(["Chrome/120.0.0.0", "bot admin@example.com"])
    assert Scrubber().scrub_column(values, ips=False).to_pylist() == ["Chrome/120.0.0.0", f"bot {REDACTED}"]


@pytest.mark.parametrize("query, leaked", [
    ("next=%2Faccount%3Ftoken%3Dabc123&a=1", "abc123"),
    ("redirect_uri=https%3A%2F%2Fapp.example%2Fcb%3Fcode%3Dsecret123", "secret123"),
])
def test_percent_encoded_nested_url_secrets_are_redacted(query, leaked):
    scrubbed = Scrubber().scrub(query)
    assert leaked not in scrubbed and "REDACTED" in scrubbed
    assert pa.array([query]).to_pylist() != Scrubber().scrub_column(pa.array([query])).to_pylist()


def test_short_names_match_only_whole_names():
    out = Scrubber().scrub("country_code=DE&zip_code=10115&sort_key=date&code=abc&key=k&x_api_key=s")
    assert "country_code=DE" in out and "zip_code=10115" in out and "sort_key=date" in out
    assert "code=REDACTED" in out and "&key=REDACTED" in out and "x_api_key=REDACTED" in out


# -- user paths: /~name and the segments after --user-paths prefixes --------------------------------


def test_parse_user_paths():
    from schemas.errors import SettingError
    from transforms.scrub import parse_user_paths
    assert parse_user_paths(None) == parse_user_paths("") == ()
    assert parse_user_paths("/users/, u ,/api/v1/Members,/users") == ("/users/", "/u/", "/api/v1/Members/")
    for bad in ("/", "/a?b/", "/a#b", "/a b/", "/%7Eu/", '/"/'):
        with pytest.raises(SettingError, match="user_paths"):
            parse_user_paths(bad)


@pytest.mark.parametrize("text, expected", [
    ("/~alice/cv.pdf", "/~REDACTED/cv.pdf"),
    ("/%7ealice/", "/%7eREDACTED/"),
    ("/~alice", "/~REDACTED"),
    ("https://example.com:8443/~alice/?x=1", "https://example.com:8443/~REDACTED/?x=1"),
    ("//cdn.example.com/users/alice", "//cdn.example.com/users/REDACTED"),
    ("/Users/alice.smith;v=1", "/Users/REDACTED;v=1"),          # prefixes: case-insensitive
    ("/api/v1/members/bob/avatar.png", "/api/v1/members/REDACTED/avatar.png"),
    ("next=/users/alice&tab=2", "next=/users/REDACTED&tab=2"),
    ("next=%2Fusers%2Falice%3Ftab%3D2", "next=%2Fusers%2FREDACTED%3Ftab%3D2"),
    ("next=https%3A%2F%2Fexample.com%2F~alice%2F", "next=https%3A%2F%2Fexample.com%2F~REDACTED%2F"),
    ('GET /~alice/ HTTP/1.1" 200 "https://example.com/users/bob"', 'GET /~REDACTED/ HTTP/1.1" 200 "https://example.com/users/REDACTED"'),
    # not where a path starts, not a listed prefix, nothing after it: kept
    ("/docs/~draft/", None), ("/static/users/list", None), ("https://example.com/a/users/bob", None),
    ("/users/", None), ("/~/", None), ("/solr/admin/info/system", None), ("/admin.php", None), ("~alice", None),
    ("/userslist/bob", None),
])
def test_user_paths(text, expected):
    scrubber = Scrubber(user_paths=("/users/", "/api/v1/members/"))
    assert scrubber.scrub(text) == (expected or text)
    assert scrubber.scrub_column(pa.array([text])).to_pylist() == [expected or text]   # the RE2 screen lets it by


def test_user_path_prefixes_are_only_the_listed_ones():
    assert Scrubber().scrub("/users/alice") == "/users/alice"
    assert Scrubber().scrub("/~alice/") == f"/~{REDACTED}/"   # a user directory always is one


def test_a_scrubber_with_user_paths_survives_pickling():
    import pickle
    scrubber = pickle.loads(pickle.dumps(Scrubber(parse_secret_params("+foo"), ("/u/",))))
    assert scrubber.user_paths == ("/u/",) and scrubber.scrub("/u/bob?foo=1") == f"/u/{REDACTED}?foo={REDACTED}"


def test_user_paths_flow_from_every_spelling(tmp_path, capsys):
    """The CLI flag, Beam's option and the Settings field reach the scrubber alike."""
    from accesslog.cli import main
    from pipelines.options import AccessLogOptions
    from pipelines.prepare import make_scrubber
    from pipelines.settings import Settings
    for args in (["--user-paths", "/users/,/u/"], ["--user_paths", "/users/,/u/"]):
        options = AccessLogOptions(args).view_as(AccessLogOptions)
        assert make_scrubber(Settings.from_namespace(options)).user_paths == ("/users/", "/u/")
    assert make_scrubber(Settings(user_paths="/users/,/u/")).user_paths == ("/users/", "/u/")
    log = tmp_path / "access.log"
    log.write_text('192.0.2.1 - - [20/Nov/2026:10:00:00 +0000] "GET /u/carol HTTP/1.1" 200 5 "-" "curl/8"\n')
    assert main(["parse", str(log), "--user-paths", "/u/"]) == 0
    assert '"/u/REDACTED"' in capsys.readouterr().out
    assert main(["run", str(log), "--warehouse", str(tmp_path / "wh"), "--user-paths", "/u?x/"]) == 2
    assert "--user-paths '/u?x/' is not a path prefix" in capsys.readouterr().err
    assert not (tmp_path / "wh").exists()

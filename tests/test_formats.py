"""compile_format / resolve_format: nginx log_format bodies -> CSV token plan + line regex."""
import pytest

from schemas.errors import AccesslogError
from transforms.formats import FORMATS, Column, compile_format, resolve_format

COMBINED_LINE = ('203.0.113.7 - alice [10/Oct/2000:13:55:36 -0700] "GET /a?b=1 HTTP/1.1" 200 2326 '
                 '"https://example.com/" "Mozilla/5.0 (X11)"')
COMBINED_FIELDS = {
    "remote_addr": "203.0.113.7", "remote_user": "alice", "time_local": "10/Oct/2000:13:55:36 -0700",
    "request": "GET /a?b=1 HTTP/1.1", "status": "200", "body_bytes_sent": "2326",
    "http_referer": "https://example.com/", "http_user_agent": "Mozilla/5.0 (X11)",
}
CUSTOM = '$remote_addr [$time_local] "$request" $status rt=$request_time "$http_user_agent" $host'


def regex_fields(fmt, line):
    fields = fmt.match_line(line)
    assert fields is not None, line
    return {var: value for var, value in fields.items() if var != "ident" or value != "-"}


# -- presets --------------------------------------------------------------------------------


def test_combined_is_nginx_builtin_format():
    assert FORMATS["combined"] == ('$remote_addr - $remote_user [$time_local] "$request" $status '
                                   '$body_bytes_sent "$http_referer" "$http_user_agent"')


def test_combined_token_plan():
    fmt = resolve_format("combined")
    assert fmt.name == "combined"
    assert fmt.columns == (
        Column(var="remote_addr"),
        Column(var="ident"),   # identd's answer: '-' from nginx, any token from other servers
        Column(var="remote_user"),
        Column(var="time_local", prefix="[", suffix="]", width=2),   # "[10/Oct/2000:13:55:36" "-0700]"
        Column(var="request"),
        Column(var="status"),
        Column(var="body_bytes_sent"),
        Column(var="http_referer"),
        Column(var="http_user_agent"),
    )
    assert fmt.csv_width == 10


def test_combined_line_regex_captures_every_variable():
    fmt = resolve_format("combined")
    assert regex_fields(fmt, COMBINED_LINE) == COMBINED_FIELDS


def test_main_adds_forwarded_for():
    fmt = resolve_format("main")
    assert fmt.name == "main"
    assert fmt.variables[-1] == "http_x_forwarded_for"
    assert fmt.columns[-1] == Column(var="http_x_forwarded_for")
    assert fmt.csv_width == 11
    fields = regex_fields(fmt, COMBINED_LINE + ' "198.51.100.1, 10.0.0.1"')
    assert fields == {**COMBINED_FIELDS, "http_x_forwarded_for": "198.51.100.1, 10.0.0.1"}


def test_timed_combined_adds_timings():
    fmt = resolve_format("timed_combined")
    assert fmt.variables[-2:] == ("request_time", "upstream_response_time")
    assert fmt.columns[-2:] == (Column(var="request_time"), Column(var="upstream_response_time"))
    assert fmt.csv_width == 12
    fields = regex_fields(fmt, COMBINED_LINE + " 0.123 0.100")
    assert fields == {**COMBINED_FIELDS, "request_time": "0.123", "upstream_response_time": "0.100"}


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_preset_name_and_body_compile_to_the_same_plan(name):
    by_name, by_body = compile_format(name), compile_format(FORMATS[name])
    assert by_name.columns == by_body.columns
    assert by_name.line_regex.pattern == by_body.line_regex.pattern
    assert by_body.name == "custom"


def test_regex_rejects_a_line_of_another_shape():
    assert resolve_format("combined").line_regex.match("this is not a log line") is None


# -- custom formats -------------------------------------------------------------------------


def test_custom_format_compiles_to_a_token_plan():
    fmt = resolve_format(CUSTOM)
    assert fmt.name == "custom"
    assert fmt.variables == ("remote_addr", "time_local", "request", "status", "request_time",
                             "http_user_agent", "host")
    assert fmt.columns == (
        Column(var="remote_addr"),
        Column(var="time_local", prefix="[", suffix="]", width=2),
        Column(var="request"),
        Column(var="status"),
        Column(var="request_time", prefix="rt="),
        Column(var="http_user_agent"),
        Column(var="host"),
    )


def test_custom_format_line_regex():
    fmt = resolve_format(CUSTOM)
    line = '2001:db8::1 [10/Oct/2000:13:55:36 +0000] "GET / HTTP/2.0" 304 rt=0.004 "curl/8.5.0" example.org'
    assert regex_fields(fmt, line) == {
        "remote_addr": "2001:db8::1", "time_local": "10/Oct/2000:13:55:36 +0000",
        "request": "GET / HTTP/2.0", "status": "304", "request_time": "0.004",
        "http_user_agent": "curl/8.5.0", "host": "example.org",
    }


def test_braced_variables():
    fmt = compile_format('${remote_addr} [${time_local}] "${request}" ${status} ${request_time}s')
    assert fmt.variables == ("remote_addr", "time_local", "request", "status", "request_time")
    # `${request_time}s`: the braces end the name, the `s` is a literal suffix.
    assert fmt.columns[-1] == Column(var="request_time", suffix="s")
    fields = regex_fields(fmt, '192.0.2.1 [10/Oct/2000:13:55:36 +0000] "GET / HTTP/1.1" 200 0.010s')
    assert fields["request_time"] == "0.010"
    assert fields["status"] == "200"


def test_token_with_two_variables_gets_a_regex_column():
    fmt = compile_format('$remote_addr [$time_local] "$request" $status $request_time/$upstream_response_time')
    col = fmt.columns[-1]
    assert col.group_vars == ("request_time", "upstream_response_time")
    assert col.regex is not None and col.var is None


def test_quotes_inside_a_bare_token_become_prefix_and_suffix():
    # The CSV tokenizer keeps quotes in the middle of an unquoted field as characters,
    # so `ua="$http_user_agent"` is a column with prefix 'ua="' and suffix '"'.
    fmt = compile_format('$remote_addr [$time_local] "$request" $status ua="$http_user_agent"')
    assert fmt.columns is not None
    assert fmt.columns[-1].var == "http_user_agent"
    assert (fmt.columns[-1].prefix, fmt.columns[-1].suffix) == ('ua="', '"')
    line = '192.0.2.1 [10/Oct/2000:13:55:36 +0000] "GET / HTTP/1.1" 200 ua="Mozilla/5.0 (X11)"'
    assert regex_fields(fmt, line)["http_user_agent"] == "Mozilla/5.0 (X11)"


def test_token_starting_with_a_quote_but_not_quoted_whole_is_regex_only():
    fmt = compile_format('$remote_addr [$time_local] "$request"-$status')
    assert fmt.columns is None


def test_escape_parameter_is_read_and_removed_from_body():
    fmt = compile_format('escape=json $remote_addr [$time_local] "$request" $status')
    assert fmt.escape == "json"
    assert fmt.body.startswith("$remote_addr")
    assert compile_format('$remote_addr [$time_local] $status').escape == "default"


def test_other_time_variables_are_accepted():
    assert "time_iso8601" in compile_format("$remote_addr $time_iso8601 $status").variables
    assert "msec" in compile_format("$remote_addr $msec $status").variables


# -- errors ---------------------------------------------------------------------------------


def test_unknown_preset_name():
    with pytest.raises(AccesslogError, match="unknown log format 'combinedd'") as e:
        resolve_format("combinedd")
    assert "combined" in str(e.value)   # the message lists the presets


def test_format_without_variables():
    with pytest.raises(AccesslogError, match="no \\$variables"):
        compile_format("GET / HTTP/1.1 200")


def test_format_without_time_variable():
    with pytest.raises(AccesslogError, match="no time variable"):
        resolve_format('$remote_addr "$request" $status')


def test_format_without_status():
    with pytest.raises(AccesslogError, match="no \\$status"):
        resolve_format('$remote_addr [$time_local] "$request" $body_bytes_sent')

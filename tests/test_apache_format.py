"""compile_apache: Apache httpd LogFormat strings -> segments with canonical field names.

httpd facts the expectations rely on (mod_log_config "Custom Log Formats", mod_log_config.c):
* %t is written *with* its brackets: [10/Oct/2000:13:55:36 -0700];
* %{format}t is strftime; begin: (default) is the time the request was received, end: the time
  the log entry is written; sec/msec/usec are epoch numbers, msec_frac/usec_frac are 3/6 digits;
* modifiers follow the '%': a status list (optionally negated with '!'), then '<' or '>';
* the format may carry \\" \\\\ \\n \\t escapes as written in httpd.conf.
"""
from datetime import datetime

import pytest

from schemas.errors import AccesslogError
from transforms.apache_format import APACHE_PRESETS, ApacheFormat, compile_apache, looks_like_apache


def variables(fmt: str) -> list[str]:
    return [text for kind, text in compile_apache(fmt).segments if kind == "var"]


def only_var(fmt: str) -> str:
    (name,) = variables(fmt)
    return name


def error(fmt: str) -> str:
    with pytest.raises(AccesslogError) as exc:
        compile_apache(fmt)
    return str(exc.value)


# -- presets --------------------------------------------------------------------------------


def test_presets_are_the_stock_httpd_formats():
    assert APACHE_PRESETS["common"] == '%h %l %u %t "%r" %>s %b'
    assert APACHE_PRESETS["combined"] == '%h %l %u %t "%r" %>s %b "%{Referer}i" "%{User-Agent}i"'
    assert APACHE_PRESETS["combinedio"] == APACHE_PRESETS["combined"] + " %I %O"
    assert APACHE_PRESETS["vhost_combined"] == '%v:%p %h %l %u %t "%r" %>s %O "%{Referer}i" "%{User-Agent}i"'
    assert APACHE_PRESETS["referer"] == "%{Referer}i -> %U"
    assert APACHE_PRESETS["agent"] == "%{User-agent}i"


def test_combined_segments():
    fmt = compile_apache("combined")
    assert fmt == ApacheFormat(segments=[
        ("var", "remote_addr"), ("lit", " "), ("var", "ident"), ("lit", " "), ("var", "remote_user"),
        ("lit", " ["), ("var", "time_received"), ("lit", '] "'), ("var", "request"), ("lit", '" '),
        ("var", "status"), ("lit", " "), ("var", "body_bytes_clf"), ("lit", ' "'), ("var", "http_referer"),
        ("lit", '" "'), ("var", "http_user_agent"), ("lit", '"'),
    ], time_format=None, time_role="received", escape="apache")


def test_preset_name_and_its_text_compile_the_same():
    for name, text in APACHE_PRESETS.items():
        assert compile_apache(name) == compile_apache(text), name


def test_vhost_combined_variables():
    assert variables("vhost_combined") == [
        "server_name", "server_port", "remote_addr", "ident", "remote_user", "time_received", "request",
        "status", "bytes_sent", "http_referer", "http_user_agent"]
    assert variables("combinedio")[-2:] == ["request_length", "bytes_sent"]
    assert compile_apache("referer").segments == [("var", "http_referer"), ("lit", " -> "), ("var", "uri")]


# -- the httpd.conf form --------------------------------------------------------------------


def test_escaped_quotes_as_written_in_httpd_conf():
    conf = r'%h %l %u %t \"%r\" %>s %b \"%{Referer}i\" \"%{User-Agent}i\"'
    assert compile_apache(conf) == compile_apache("combined")


def test_whole_quoted_httpd_conf_argument():
    conf = r'"%h %l %u %t \"%r\" %>s %b \"%{Referer}i\" \"%{User-Agent}i\""'
    assert compile_apache(conf) == compile_apache("combined")


def test_plain_quoted_format_keeps_its_quotes():
    assert compile_apache('"%r"').segments == [("lit", '"'), ("var", "request"), ("lit", '"')]


def test_backslash_escapes_in_literals():
    assert compile_apache(r"%h\t%u\n%s \\ \x").segments == [
        ("var", "remote_addr"), ("lit", "\t"), ("var", "remote_user"), ("lit", "\n"), ("var", "status"),
        ("lit", " \\ \\x")]   # an unknown escape is kept verbatim, as httpd does


def test_percent_percent_is_a_literal():
    assert compile_apache("%%%h 100%%").segments == [("lit", "%"), ("var", "remote_addr"), ("lit", " 100%")]


# -- every directive ------------------------------------------------------------------------


@pytest.mark.parametrize("directive, name", [
    ("%h", "remote_addr"), ("%a", "remote_addr"), ("%{c}a", "realip_remote_addr"), ("%{c}h", "realip_remote_addr"),
    ("%A", "server_addr"), ("%l", "ident"), ("%u", "remote_user"),
    ("%r", "request"), ("%m", "request_method"), ("%U", "uri"), ("%q", "query_string_apache"),
    ("%H", "server_protocol"),
    ("%s", "status"), ("%>s", "status"), ("%<s", "original_status"),
    ("%b", "body_bytes_clf"), ("%B", "body_bytes_sent"), ("%O", "bytes_sent"), ("%I", "request_length"),
    ("%S", "bytes_transferred"),
    ("%D", "request_time_us"), ("%T", "request_time_s"), ("%{ms}T", "request_time_ms"),
    ("%{us}T", "request_time_us"), ("%{s}T", "request_time_s"), ("%{MS}T", "request_time_ms"),
    ("%v", "server_name"), ("%V", "host"),
    ("%p", "server_port"), ("%{canonical}p", "server_port"), ("%{local}p", "server_port"),
    ("%{remote}p", "remote_port"),
    ("%P", "pid"), ("%{pid}P", "pid"), ("%{tid}P", "tid"), ("%{hextid}P", "tid"),
    ("%L", "request_id"), ("%{c}L", "connection_log_id"), ("%X", "connection_status"),
    ("%k", "keepalive_requests"), ("%f", "request_filename"), ("%R", "handler"),
    ("%t", "time_received"), ("%{sec}t", "time_received_sec"), ("%{msec}t", "time_received_msec"),
    ("%{usec}t", "time_received_usec"), ("%{begin:msec}t", "time_received_msec"),
])
def test_directive_names(directive, name):
    assert only_var(directive) == name


@pytest.mark.parametrize("directive, name", [
    ("%{Referer}i", "http_referer"), ("%{User-Agent}i", "http_user_agent"), ("%{User-agent}i", "http_user_agent"),
    ("%{X-Forwarded-For}i", "http_x_forwarded_for"), ("%{Accept-Language}i", "http_accept_language"),
    ("%{Content-Type}o", "sent_http_content_type"), ("%{Set-Cookie}o", "sent_http_set_cookie"),
    ("%{SessionID}C", "cookie_sessionid"), ("%{UNIQUE_ID}e", "env_unique_id"),
    ("%{SSL_PROTOCOL}e", "env_ssl_protocol"), ("%{deflate-ratio}n", "note_deflate_ratio"),
    ("%{Grpc-Status}^ti", "trailer_in_grpc_status"), ("%{Grpc-Status}^to", "trailer_out_grpc_status"),
])
def test_named_directives(directive, name):
    assert only_var(directive) == name


def test_status_conditions_and_redirect_modifiers():
    # Conditions go straight after the '%'; the field is the same, the value may be '-'.
    assert only_var("%400,501{User-agent}i") == "http_user_agent"
    assert only_var("%!200,304,302{Referer}i") == "http_referer"
    assert only_var("%!200>s") == "status"
    assert only_var("%<u") == "remote_user"
    # With %>s present, a plain %s is the original request's status (mod_log_config docs).
    assert variables("%<s %>s %s") == ["original_status", "status", "original_status"]
    assert variables("%h %s") == ["remote_addr", "status"]


def test_trailer_directive_followed_by_text():
    assert compile_apache("%{X}^ti|%{Y}^to").segments == [
        ("var", "trailer_in_x"), ("lit", "|"), ("var", "trailer_out_y")]


# -- time -----------------------------------------------------------------------------------


def test_clf_time_keeps_its_brackets_outside_the_value():
    fmt = compile_apache("%h %t %>s")
    assert fmt.segments == [("var", "remote_addr"), ("lit", " ["), ("var", "time_received"), ("lit", "] "),
                            ("var", "status")]
    assert (fmt.time_format, fmt.time_role) == (None, "received")


@pytest.mark.parametrize("spec", ["%{begin}t", "%{}t"])
def test_begin_alone_is_clf(spec):
    fmt = compile_apache(spec)
    assert fmt.segments == [("lit", "["), ("var", "time_received"), ("lit", "]")]
    assert fmt.time_format is None


def test_merged_msec_frac_time():
    fmt = compile_apache('%h [%{%d/%b/%Y:%H:%M:%S}t.%{msec_frac}t %{%z}t] "%r"')
    assert fmt.segments == [("var", "remote_addr"), ("lit", " ["), ("var", "time_received"), ("lit", '] "'),
                            ("var", "request"), ("lit", '"')]
    assert fmt.time_format == "%d/%b/%Y:%H:%M:%S.%f %z"
    parsed = datetime.strptime("10/Oct/2000:13:55:36.042 -0700", fmt.time_format)
    assert parsed.microsecond == 42000


def test_documented_millisecond_example_with_T_and_usec_frac():
    assert compile_apache("%{%d/%b/%Y %T}t.%{msec_frac}t %{%z}t").time_format == "%d/%b/%Y %H:%M:%S.%f %z"
    assert compile_apache("%{%Y-%m-%dT%T}t.%{usec_frac}t").time_format == "%Y-%m-%dT%H:%M:%S.%f"


def test_literal_text_at_the_edges_of_a_time_format_becomes_literal_segments():
    fmt = compile_apache("%{[%d/%b/%Y:%H:%M:%S %z]}t %>s")
    assert fmt.segments == [("lit", "["), ("var", "time_received"), ("lit", "] "), ("var", "status")]
    assert fmt.time_format == "%d/%b/%Y:%H:%M:%S %z"


@pytest.mark.parametrize("strftime, strptime", [
    ("%e/%b/%Y", "%d/%b/%Y"), ("%D %R", "%m/%d/%y %H:%M"), ("%F %T", "%Y-%m-%d %H:%M:%S"),
    ("%a, %d %h %Y %k:%M", "%a, %d %b %Y %H:%M"), ("%r", "%I:%M:%S %p"), ("%-d/%m/%Y %Z", "%d/%m/%Y %Z"),
    ("%Ey %Od %j %%", "%y %d %j"),
])
def test_strftime_becomes_strptime(strftime, strptime):
    # A trailing literal ('%%' above) is outside the value.
    fmt = compile_apache("%{" + strftime + "}t")
    assert fmt.time_format == strptime


def test_space_padded_day_parses():
    fmt = compile_apache("%{%e/%b/%Y}t")
    assert datetime.strptime(" 5/Oct/2000", fmt.time_format).day == 5


def test_time_format_without_conversions_is_literal_text():
    assert compile_apache("%h %{-}t %{%%}t").segments == [("var", "remote_addr"), ("lit", " - %")]


def test_sec_with_fraction_is_one_seconds_value():
    assert compile_apache("%{sec}t.%{msec_frac}t %>s").segments == [
        ("var", "time_received_sec"), ("lit", " "), ("var", "status")]


def test_fraction_on_its_own():
    assert variables("%t %{msec_frac}t") == ["time_received", "time_received_msec_frac"]
    assert variables("%{sec}t %{usec_frac}t") == ["time_received_sec", "time_received_usec_frac"]


def test_end_prefix_is_the_response_time():
    fmt = compile_apache("%h [%{end:%d/%b/%Y:%H:%M:%S}t.%{end:msec_frac}t %{end:%z}t] %>s")
    assert fmt.time_role == "responded"
    assert fmt.time_format == "%d/%b/%Y:%H:%M:%S.%f %z"
    assert variables("%{end:sec}t") == ["time_received_sec"]
    assert compile_apache("%{end:sec}t").time_role == "responded"
    assert compile_apache("%{end}t").segments == [("lit", "["), ("var", "time_received"), ("lit", "]")]


def test_begin_prefix_and_both_times():
    assert compile_apache("%{begin:%Y-%m-%d %T}t").time_format == "%Y-%m-%d %H:%M:%S"
    fmt = compile_apache("%t %{end:msec}t")
    assert fmt.time_role == "received"
    assert variables("%t %{end:msec}t") == ["time_received", "time_responded_msec"]


def test_quotes_stop_a_time_merge():
    fmt = compile_apache('"%{%Y-%m-%d}t" "%{%Y-%m-%d}t"')
    assert variables('"%{%Y-%m-%d}t" "%{%Y-%m-%d}t"') == ["time_received", "time_received"]
    assert fmt.time_format == "%Y-%m-%d"


# -- errors ---------------------------------------------------------------------------------


def test_unknown_directive_names_position_and_points_at_it():
    message = error("%h %l %u %t %Z")
    assert "unknown % directive '%Z' at position 13 (1-based)" in message
    assert len(message.splitlines()) == 1   # the CLI prints errors as one line
    assert message.endswith(": %h %l %u %t ^%Z")


def test_unknown_directive_with_modifiers():
    assert "'%Z' at position 4 (1-based)" in error("%h %!200<Z")


def test_unbalanced_quote_points_at_the_unpaired_one():
    message = error('%h "%r" "%{Referer}i %>s')
    assert "unbalanced '\"' at position 9 (1-based)" in message
    assert message.endswith(': %h "%r" ^"%{Referer}i %>s')


def test_unbalanced_escaped_quote_in_conf_form():
    assert "position 5 (1-based)" in error(r'%h \"%r %>s')


def test_trailing_percent():
    message = error("%h %>s %")
    assert "lone '%' at position 8 (1-based)" in message and "'%%'" in message


@pytest.mark.parametrize("fmt, fragment", [
    ("%h %i", "needs a name"), ("%{}C", "needs a name"), ("%e", "needs a name"), ("%^ti", "needs a name"),
    ("%{Referer", "unterminated '{'"), ("%!200", "has no letter"), ("%{bogus}T", "takes one of s, ms, us"),
    ("%{bogus}p", "canonical, local, remote"), ("%{bogus}P", "pid, tid, hextid"), ("%^tx", "'%^'"),
    ("50% off", "'% '"), ("%{%s}t", "%{sec}t"), ("%{%C}t", "'%C'"),
    ("%{%Y}t %h %{%m}t", "request time twice"), ("%t %{%Y-%m-%d}t", "request time twice"),
    ("%{%d}t.%{msec_frac}t%{usec_frac}t", "cannot be read back"),
])
def test_errors(fmt, fragment):
    assert fragment in error(fmt)


def test_error_positions_count_the_outer_quotes():
    assert "position 2 (1-based)" in error(r'"%Z \"%r\""')


# -- looks_like_apache ----------------------------------------------------------------------


@pytest.mark.parametrize("fmt, expected", [
    (APACHE_PRESETS["combined"], True), ("%{User-agent}i", True), ("%>s", True), ("%{X}^ti", True),
    ('$remote_addr [$time_local] "$request" $status', False),
    ('$remote_addr %h', False), ("combined", False), ("100%%", False), ("", False),
])
def test_looks_like_apache(fmt, expected):
    assert looks_like_apache(fmt) is expected

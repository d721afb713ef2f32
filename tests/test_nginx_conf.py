r"""read_log_format: log_format bodies from a real-looking nginx config tree.

nginx facts the expectations rely on (ngx_conf_file.c, ngx_http_log_module docs):
* the pieces of a log_format are concatenated with nothing in between;
* inside and outside quotes, \" \' \\ \n \r \t are unescaped, other backslashes kept;
* '#' starts a comment only where a new token could start, never inside quotes;
* include paths are relative to the main config's directory; a glob matching nothing is fine;
* `combined` is built in.
"""
import os
import textwrap

import pytest

from schemas.errors import AccesslogError
from transforms.formats import FORMATS
from transforms.nginx_conf import NGINX_COMBINED, read_log_format

NGINX_CONF = r"""
user www-data;
worker_processes auto;
pid /run/nginx.pid;
include modules-enabled/*.conf;   # no such directory here: a glob may match nothing

events {
    worker_connections 768;   # don't "quote" me
}

http {
    sendfile on;
    include mime.types;             # missing on this machine: skipped
    default_type application/octet-stream;

    # log_format main 'commented out, with a "quote" and an apostrophe: it's';
    log_format main '$remote_addr - $remote_user [$time_local] "$request" '
                    '$status $body_bytes_sent "$http_referer" '
                    '"$http_user_agent" "$http_x_forwarded_for"';

    log_format json_combined escape=json
      '{'
        '"time_local":"$time_local",'
        '"remote_addr":"$remote_addr",'
        '"request":"$request",'
        '"status": "$status",'
        '"request_time":"$request_time"'
      '}';

    log_format escaped "$remote_addr \"$request\" it\'s a \\ \t$status #not-a-comment";
    log_format bare $remote_addr|$status|${request_time}ms;
    log_format raw escape=none '$remote_addr $request_body';

    map $http_upgrade $connection_upgrade {
        default upgrade;
        ''      close;
    }

    map $status $loggable {
        ~^[23]  1;
        default 0;
    }

    include conf.d/*.conf;

    server {
        listen 80 default_server;
        server_name example.com;
        access_log /var/log/nginx/access.log main if=$loggable;
        location / {
            return 200 "ok; {not a block} # not a comment";
        }
    }
}

stream {
    log_format main '$remote_addr [$time_local] $protocol $status';
}
"""

TIMING_CONF = """
# conf.d/timing.conf
log_format timed '$remote_addr - $remote_user [$time_local] "$request" $status '
                 '$body_bytes_sent "$http_referer" "$http_user_agent" '
                 'rt=$request_time uct="$upstream_connect_time"';
include snippets/*.conf;    # relative to the main config's directory, not conf.d
"""

SNIPPET_CONF = """
log_format upstream '$remote_addr $upstream_addr $upstream_status';
include conf.d/*.conf;      # a cycle back to conf.d: read once
include nginx.conf;
"""


@pytest.fixture
def conf(tmp_path):
    write(tmp_path / "nginx.conf", NGINX_CONF)
    write(tmp_path / "conf.d" / "timing.conf", TIMING_CONF)
    write(tmp_path / "conf.d" / "notes.txt", "log_format not_included '$remote_addr';")
    write(tmp_path / "snippets" / "upstream.conf", SNIPPET_CONF)
    return str(tmp_path / "nginx.conf")


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))


def error(conf_path, name):
    with pytest.raises(AccesslogError) as exc:
        read_log_format(conf_path, name)
    message = str(exc.value)
    assert "\n" not in message
    return message


# -- bodies ---------------------------------------------------------------------------------


def test_multi_line_single_quoted_pieces_are_concatenated(conf):
    assert read_log_format(conf, "main") == ("default", FORMATS["main"])


def test_escape_json(conf):
    assert read_log_format(conf, "json_combined") == ("json", (
        '{"time_local":"$time_local","remote_addr":"$remote_addr","request":"$request",'
        '"status": "$status","request_time":"$request_time"}'))


def test_double_quotes_with_escapes(conf):
    assert read_log_format(conf, "escaped") == (
        "default", '$remote_addr "$request" it\'s a \\ \t$status #not-a-comment')


def test_bare_words_and_braced_variables(conf):
    assert read_log_format(conf, "bare") == ("default", "$remote_addr|$status|${request_time}ms")


def test_escape_none(conf):
    assert read_log_format(conf, "raw") == ("none", "$remote_addr $request_body")


def test_include_glob(conf):
    assert read_log_format(conf, "timed") == ("default", (
        '$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent '
        '"$http_referer" "$http_user_agent" rt=$request_time uct="$upstream_connect_time"'))


def test_nested_include_relative_to_main_directory_and_cycle_safe(conf):
    assert read_log_format(conf, "upstream") == ("default", "$remote_addr $upstream_addr $upstream_status")


def test_http_log_format_wins_over_stream(tmp_path):
    write(tmp_path / "nginx.conf", "stream { log_format main '$remote_addr'; }\n"
                                   "http { log_format main '$remote_addr $status'; }\n")
    assert read_log_format(str(tmp_path / "nginx.conf"), "main") == ("default", "$remote_addr $status")


def test_combined_is_built_in(conf):
    assert read_log_format(conf, "combined") == ("default", NGINX_COMBINED)
    assert NGINX_COMBINED == FORMATS["combined"]


def test_combined_defined_in_the_file_wins(tmp_path):
    write(tmp_path / "nginx.conf", "http { log_format combined '$remote_addr $status'; }")
    assert read_log_format(str(tmp_path / "nginx.conf"), "combined") == ("default", "$remote_addr $status")


def test_relative_conf_path(conf, monkeypatch):
    monkeypatch.chdir(os.path.dirname(conf))
    assert read_log_format("nginx.conf", "timed")[0] == "default"


def test_absolute_include(tmp_path):
    write(tmp_path / "elsewhere" / "formats.conf", "log_format abs '$msec $status';")
    write(tmp_path / "etc" / "nginx.conf", f"http {{ include {tmp_path}/elsewhere/formats.conf; }}")
    assert read_log_format(str(tmp_path / "etc" / "nginx.conf"), "abs") == ("default", "$msec $status")


def test_include_inside_a_stream_block_is_stream(tmp_path):
    write(tmp_path / "stream.conf", "log_format tcp '$remote_addr';")
    write(tmp_path / "nginx.conf", "stream { include stream.conf; }")
    assert "'tcp' is not defined" in error(str(tmp_path / "nginx.conf"), "tcp")


def test_crlf_line_endings(tmp_path):
    (tmp_path / "nginx.conf").write_bytes(b"http {\r\n  log_format w '$remote_addr '\r\n  '$status';\r\n}\r\n")
    assert read_log_format(str(tmp_path / "nginx.conf"), "w") == ("default", "$remote_addr $status")


# -- errors ---------------------------------------------------------------------------------


def test_unknown_name_lists_the_defined_ones(conf):
    message = error(conf, "mian")
    assert "'mian' is not defined" in message
    assert "bare, escaped, json_combined, main, raw, timed, upstream" in message
    assert "mime.types" in message      # the include that could not be read


def test_unreadable_file(tmp_path):
    assert "cannot read nginx config" in error(str(tmp_path / "missing.conf"), "main")


def test_unterminated_quote_has_file_and_line(tmp_path):
    path = tmp_path / "nginx.conf"
    write(path, "http {\n    log_format main '$remote_addr\n        \"$request\" $status;\n}\n")
    message = error(str(path), "main")
    assert f"unterminated ' quote starting at {path}:2" in message


def test_unterminated_quote_in_an_include(tmp_path):
    write(tmp_path / "conf.d" / "bad.conf", 'log_format x "$remote_addr;\n')
    write(tmp_path / "nginx.conf", "http { include conf.d/*.conf; }")
    assert f"{tmp_path}/conf.d/bad.conf:1" in error(str(tmp_path / "nginx.conf"), "x")


@pytest.mark.parametrize("text, fragment", [
    ("log_format x escape=xml '$status';", "escape=xml"),
    ("log_format x escape=json;", "has no format string"),
    ("http { log_format x '$status' }", "has no ending ';' before the '}'"),
    ("log_format x '$status'", "has no ending ';': add it"),
    ("http { log_format x '$status'; ", "ends inside the 'http' block"),
    ("log_format x '$status'; }", "unexpected '}'"),
    ("log_format x '$status''$request';", "after a quoted string"),
])
def test_syntax_errors(tmp_path, text, fragment):
    write(tmp_path / "nginx.conf", text)
    assert fragment in error(str(tmp_path / "nginx.conf"), "x")

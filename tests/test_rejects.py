"""RedactRejects helpers: rejected raw lines are personal data too; what gets stored is redacted."""
import hashlib
import hmac
import ipaddress
from datetime import date, datetime, timezone

import pytest

from schemas import REJECTS
from storage.keystore import Keystore
from transforms.formats import compile_format, resolve_format
from transforms.parse import RejectChunk
from transforms.rejects import redact_line, redaction_plan, rejects_table, sensitive_field_regexes
from transforms.scrub import REDACTED, Scrubber

SECRET = bytes(range(32))


def pseudonym(secret, ip):
    return hmac.new(secret, ipaddress.ip_address(ip).packed, hashlib.sha256).digest()[:16].hex()


@pytest.mark.parametrize("body", [
    "combined",
    "timed_combined",
    '${remote_addr} - ${remote_user} [$time_local] "$request" $status',
    '$remote_addr $remote_user [$time_local] "$request" $status',
])
def test_user_name_is_redacted(body):
    fmt = resolve_format(body)
    dash = " - " if " - " in fmt.body else " "
    line = f'198.51.100.23{dash}bob smith [10/Oct/2000:13:55:36 +0000] "GET / HTTP/1.1" 2x0 0 "-" "-"'
    out = redact_line(line, SECRET, Scrubber(), sensitive_field_regexes(fmt))
    assert "bob" not in out and "smith" not in out
    assert out == f"ip:{pseudonym(SECRET, '198.51.100.23')}{dash}{REDACTED} [10/Oct/2000:13:55:36 +0000]" \
                  ' "GET / HTTP/1.1" 2x0 0 "-" "-"'


def test_dash_user_is_left_alone():
    fmt = resolve_format("combined")
    line = '192.0.2.1 - - [10/Oct/2000:13:55:36 +0000] "GET / HTTP/1.1" 2x0 0 "-" "-"'
    assert redact_line(line, SECRET, Scrubber(), sensitive_field_regexes(fmt)).startswith(
        f"ip:{pseudonym(SECRET, '192.0.2.1')} - - [")


def test_format_without_user_has_no_user_regex():
    assert sensitive_field_regexes(compile_format('$remote_addr [$time_local] "$request" $status')) == []


def test_apache_user_and_cookie_fields_are_redacted():
    fmt = resolve_format('%h %l %u %t "%r" %>s %b "%{Cookie}i"')
    line = '192.0.2.1 - carol [10/Oct/2000:13:55:36 +0000] "GET / HTTP/1.1" 2x0 0 "sid=abc123; theme=dark"'
    out = redact_line(line, SECRET, Scrubber(), sensitive_field_regexes(fmt), strict=True)
    assert "carol" not in out and "abc123" not in out and "dark" not in out


def test_strict_mode_redacts_every_pair_when_the_line_is_too_broken():
    out = redact_line("garbage sid=abc123; theme=dark", SECRET, Scrubber(), [], strict=True)
    assert "abc123" not in out and "dark" not in out


def test_secrets_emails_and_all_ips_in_a_garbage_line():
    line = "garbage 2001:db8::7 and 203.0.113.9 GET /x?password=hunter2 from jane.doe@example.org"
    out = redact_line(line, SECRET, Scrubber(), [])
    assert out == (f"garbage ip:{pseudonym(SECRET, '2001:db8::7')} and ip:{pseudonym(SECRET, '203.0.113.9')}"
                   f" GET /x?password={REDACTED} from {REDACTED}")


def test_rejects_table(tmp_path):
    keystore = Keystore(tmp_path / "keys.json")
    now = datetime(2030, 1, 1, 9, 30, tzinfo=timezone.utc)
    chunk = RejectChunk("access.log", "id", 1, source_lines=[2, 5], reasons=["invalid $status", "empty line"],
                        lines=['192.0.2.1 - eve [20/Nov/2026:08:00:00 +0000] "GET / HTTP/1.1" 2x0 0 "-" "-"', ""])
    table = rejects_table(chunk, keystore, Scrubber(), redaction_plan(resolve_format("combined")), now=now)
    _, secret = keystore.key_for_day(date(2030, 1, 1))    # the key of the day the lines were read
    assert table.select(REJECTS.names).schema == REJECTS
    assert table["source_line"].to_pylist() == [2, 5]
    assert table["reason"].to_pylist() == ["invalid $status", "empty line"]
    assert table["line"][0].as_py().startswith(f"ip:{pseudonym(secret, '192.0.2.1')} - {REDACTED} [")
    assert table["line"][1].as_py() == ""
    assert table["_date_us"].to_pylist() == [int(now.timestamp() * 1_000_000)] * 2
    assert [k["label"] for k in keystore.list()] == ["2030-01-01"]   # no key for 2026-11-20


@pytest.mark.parametrize("line", [
    'Nov 20 web1 nginx: 203.0.113.77 - jdoe42 [20/Nov/2026:10:00:00 +0000] "GET / HTTP/1.1" 2x0 0 "-" "-"',
    # the name found in its field is redacted in the path too
    'Nov 20 web1 nginx: 203.0.113.77 - jdoe42 [20/Nov/2026:10:00:00 +0000] "GET /users/jdoe42/ HTTP/1.1" 2x0',
    "203.0.113.77 - jdoe42",                                   # cut right after the user
    '203.0.113.77 - jdoe42 [20/Nov/2026:10:00:00 +0000] "GET /broken',
])
def test_user_name_is_found_in_prefixed_and_cut_lines(line):
    out = redact_line(line, SECRET, Scrubber(), sensitive_field_regexes(resolve_format("combined")))
    assert "jdoe42" not in out and REDACTED in out and "203.0.113.77" not in out


def test_only_the_lines_own_user_name_is_redacted_elsewhere_in_it():
    """The name in a line's user field is redacted wherever else that line shows it, as a whole
    word; nothing from other lines is (a line is redacted the same in any chunk)."""
    fields = sensitive_field_regexes(resolve_format("combined"))
    line = '203.0.113.77 - admin [20/Nov/2026:10:00:00 +0000] "GET /solr/admin/info/system?u=administrator HTTP/1.1" 2x0'
    out = redact_line(line, SECRET, Scrubber(), fields)
    assert "admin " not in out and f"/solr/{REDACTED}/info/system?u=administrator" in out
    other = '203.0.113.78 - - [20/Nov/2026:10:00:00 +0000] "GET /solr/admin/info/system HTTP/1.1" 2x0'
    assert "/solr/admin/info/system" in redact_line(other, SECRET, Scrubber(), fields)


def test_user_paths_are_redacted_in_rejected_lines():
    line = ('garbage about /users/alice.smith/profile, "GET /~bob/index.html HTTP/1.1" and '
            '"https://example.com/u/carol?x=1" /static/users/kept')
    out = redact_line(line, SECRET, Scrubber(user_paths=("/users/", "/u/")), [])
    assert out == (f'garbage about /users/{REDACTED}/profile, "GET /~{REDACTED}/index.html HTTP/1.1" and '
                   f'"https://example.com/u/{REDACTED}?x=1" /static/users/kept')
    assert "alice.smith" in redact_line(line, SECRET, Scrubber(), [])   # /users/ is no user path unless listed


def test_json_rejects_redact_personal_and_secret_values():
    line = ('{"ts":"bad","remote_user":"jdoe42","user_id":"alice.smith","login_name":"jdoe42",'
            '"password":"Hunter2Pass","session_token":"TokTok123","email":"victim@example.org",'
            '"request":{"headers":{"Cookie":["session=AccTok456"],"Authorization":["Bearer eyJSECRET"],'
            '"X-Request-Id":["victim.person@example.org"]}},"who":"carol99","note":"client 192.0.2.199",'
            '"status":200,"path":"/ok","user.name":{"first":"Zed"},"remote_user_obj":1,"ctx":{"user":"Yves"}}')
    plan = redaction_plan(resolve_format("json", field_map="who=remote_user"))
    out = redact_line(line, SECRET, Scrubber(), plan.field_res, plan.strict, plan.json_keys)
    for secret in ("jdoe42", "alice.smith", "Hunter2Pass", "TokTok123", "victim", "AccTok456", "eyJSECRET",
                   "carol99", "192.0.2.199", "Zed", "Yves"):
        assert secret not in out, secret
    assert '"status":200' in out and '"path":"/ok"' in out      # the rest stays readable
    broken = '{"remote_user":"jdoe42","password":"Hunter2Pass","ts":'   # not even valid JSON
    out = redact_line(broken, SECRET, Scrubber(), plan.field_res, plan.strict, plan.json_keys)
    assert "jdoe42" not in out and "Hunter2Pass" not in out


def test_a_rejected_line_is_redacted_the_same_whatever_its_chunk_holds(tmp_path):
    from transforms.chunks import LogChunk
    from transforms.parse import parse_chunk

    good = '192.0.2.1 - alice.smith [20/Nov/2026:10:00:00 +0000] "GET / HTTP/1.1" 200 5 "-" "curl/8"'
    bad = ('192.0.2.1 - - [20/Nov/2026:10:00:00 +0000] "GET /users/alice.smith/ HTTP/1.1" 2x0 5 '
           '"https://example.com/~alice.smith/" "curl/8"')
    fmt = resolve_format("combined")
    scrubber = Scrubber(user_paths=("/users/",))

    def stored(*lines):
        _, rejects = parse_chunk(fmt, LogChunk("a.log", "id", 1, ("\n".join(lines) + "\n").encode()))
        table = rejects_table(rejects, Keystore(tmp_path / "keys.json"), scrubber, redaction_plan(fmt),
                              now=datetime(2026, 11, 21, tzinfo=timezone.utc))
        return table["line"].to_pylist()
    assert stored(good, bad) == stored(bad) == stored(bad, good.replace("alice.smith", "bob"))
    [line] = stored(bad)
    assert "alice.smith" not in line and "192.0.2.1" not in line
    assert f"/users/{REDACTED}/" in line and f"/~{REDACTED}/" in line

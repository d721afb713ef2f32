"""Hardening, points 2 and 7: secrets that got through the scrubber, and redaction whose time
grew with the square of a line's length.

Each kind of secret is planted in `combined` access lines (one that parses, a rejected copy and
a copy rejected for its length) and in an nginx error log, which go through `accesslog run`
and `accesslog parse`; the planted bytes may appear in no file of the warehouse and in nothing
printed. Linearity is checked without a clock: every regex that runs on input text is checked
for the shapes that backtrack, and redacting a megabyte of adversarial text has to finish (a
quadratic regex would take hours on it).
"""
from __future__ import annotations

import contextlib
import io
import re

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from accesslog.cli import main
from storage.keystore import Keystore
from tests.test_leak_guard import scan_tree
from transforms import error_entries, pseudonymize, rejects, scrub
from transforms.error_entries import redact_auth_users
from transforms.formats import resolve_format
from transforms.lines import MAX_LINE_BYTES
from transforms.parse import RejectChunk
from transforms.pseudonymize import cookie_header_pseudonyms, pseudonymize_ip_tokens
from transforms.rejects import redact_line, redaction_plan, rejects_table, sensitive_field_regexes
from transforms.scrub import REDACTED, Scrubber, redact_card_numbers, redact_names, scrub_records

SECRET = bytes(range(32))
JWT_PATH = ("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIn0"
            ".SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c")
JWT_PARAM = "eyJhbGciOiJub25lIn0.eyJ1c2VyIjoiY2FybG90dGE3NyJ9.c2lnbmF0dXJlLXZhbHVl"

# kind -> (what the access line carries: target, referrer, user agent; the bytes that must not come out)
PLANTED = {
    "IPv4 address in a user agent": (
        "/", "-", "Mozilla/5.0 (X11; Linux x86_64; via 203.0.113.77) Chrome/120.0.0.0 Safari/537.36",
        ["203.0.113.77"]),
    "percent-encoded dots in an IPv4 address": (
        "/ip/192%2E0%2E2%2E49/info?next=192%2e0%2e2%2e50", "https://example.com/?from=198%2E51%2E100%2E61", "curl/8.5.0",
        ["192%2E0%2E2%2E49", "192.0.2.49", "192%2e0%2e2%2e50", "192.0.2.50", "198%2E51%2E100%2E61", "198.51.100.61"]),
    "percent-encoded colons in an IPv6 address": (
        "/geo?ip=2001%3Adb8%3A%3A4a", "-", "curl/8.5.0", ["2001%3Adb8%3A%3A4a", "2001:db8::4a"]),
    "percent-encoded parameter names": (
        "/login?pass%77ord=Hunter2Encoded&%70assword=Tr0ub4dorEncoded&lang=en", "-", "curl/8.5.0",
        ["Hunter2Encoded", "Tr0ub4dorEncoded"]),
    "JWT in the path": (
        f"/verify/{JWT_PATH}/done", "-", "curl/8.5.0", JWT_PATH.split(".")),
    "JWT in ?jwt=": (
        f"/app?jwt={JWT_PARAM}&x=1", f"https://example.com/sso#{JWT_PARAM}", "curl/8.5.0", JWT_PARAM.split(".")),
    "card numbers": (
        "/pay?card=4111111111111111&alt=5500-0000-0000-0004&amex=3782%20822463%2010005",
        "https://shop.example/checkout?cc=6011+0009+9013+9424&step=2", "PayBot/1.0 (card 3530 1113 3330 0000)",
        ["4111111111111111", "5500-0000-0000-0004", "3782%20822463%2010005", "6011+0009+9013+9424",
         "3530 1113 3330 0000"]),
    "card number as a bot's version (browser_version comes from the user agent)": (
        "/", "-", "CardBot/4012888888881881 (+https://bot.example/)", ["4012888888881881"]),
    "user name in a referrer's query": (
        "/", "https://example.com/profile?uid=carlotta77&user_name=carlotta77&tab=1", "curl/8.5.0", ["carlotta77"]),
    "user directory (mod_userdir) in the path, a referrer, a nested URL and a user agent": (
        "/~dorothea88/index.html?next=%2F~dorothea88%2Fa", "https://example.com/%7Edorothea88/",
        "Bot/1.0 (+http://example.edu/~dorothea88/bot.html)", ["dorothea88"]),
}
# What the scrubber must keep: a browser version, a millisecond timestamp, an id that fails Luhn.
KEPT = {"target": "/feed?since=1700000000123&order=4111111111111112", "agent": "Chrome/120.0.0.0"}

ERROR_LOG = (
    f'2026/11/20 10:00:01 [error] 7#7: *5 open() "/srv/www/192%2E0%2E2%2E49/{JWT_PATH}" failed (2: No such file or '
    'directory) for card 4111 1111 1111 1111 via 2001%3Adb8%3A%3A4a, client: 198.51.100.7, server: example.com, '
    f'request: "GET /login?pass%77ord=Hunter2Encoded&jwt={JWT_PARAM}&c=5500-0000-0000-0004 HTTP/1.1", '
    'host: "example.com", referrer: "https://example.com/profile?uid=carlotta77&ip=198%2E51%2E100%2E61"\n'
    '2026/11/20 10:00:02 [warn] 7#7: *6 client sent invalid header line: "User-Agent: bot (via 203.0.113.77)" '
    'while reading client request headers, client: 198.51.100.7, server: example.com\n')
ERROR_SECRETS = ["192%2E0%2E2%2E49", "192.0.2.49", *JWT_PATH.split("."), "4111 1111 1111 1111", "2001%3Adb8%3A%3A4a",
                 "2001:db8::4a", "Hunter2Encoded", *JWT_PARAM.split("."), "5500-0000-0000-0004", "carlotta77",
                 "198%2E51%2E100%2E61", "198.51.100.61", "203.0.113.77"]


def access_line(target: str, referrer: str, agent: str, status: str = "200", second: int = 0) -> str:
    return (f'198.51.100.7 - - [20/Nov/2026:10:00:{second:02d} +0000] "GET {target} HTTP/1.1" {status} 512 '
            f'"{referrer}" "{agent}"')


def access_log() -> list[str]:
    lines = []
    for i, (target, referrer, agent, _) in enumerate(PLANTED.values()):
        lines.append(access_line(target, referrer, agent, second=i))
        lines.append(access_line(target, referrer, agent, status="2x0", second=i))   # rejected: invalid $status
        # rejected by its length, the secrets at its start
        lines.append(access_line(target + "&pad=" + "x" * MAX_LINE_BYTES, referrer, agent, second=i))
    lines.append(access_line(KEPT["target"], "-", KEPT["agent"], second=59))
    return lines


@pytest.fixture(scope="module")
def outputs(tmp_path_factory) -> dict[str, str]:
    """Every text `accesslog run` wrote and `accesslog run`/`accesslog parse` printed, for the
    access log (`combined`) and the error log."""
    root = tmp_path_factory.mktemp("hardening")
    access, errors = root / "access.log", root / "error.log"
    access.write_text("\n".join(access_log()) + "\n")
    errors.write_text(ERROR_LOG)
    keys, warehouse = str(root / "keys" / "keys.json"), root / "warehouse"
    common = ["--keys", keys, "--now", "2026-11-21T00:00:00Z"]
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed), contextlib.redirect_stderr(printed):
        codes = [main(["run", str(access), "--log-format", "combined", "--warehouse", str(warehouse),
                       "--max-reject-ratio", "1", *common]),
                 main(["run", str(errors), "--log-format", "nginx_error", "--warehouse", str(warehouse), *common]),
                 main(["parse", str(access), "--log-format", "combined", "--keys", keys]),
                 main(["parse", str(errors), "--log-format", "nginx_error", "--keys", keys])]
    assert codes == [0, 0, 0, 0], printed.getvalue()[-2000:]
    return {"printed": printed.getvalue(), **scan_tree(warehouse)}


def test_the_pipeline_wrote_every_table(outputs):
    """The scan is not vacuous: access rows, rejects and errors are there, secrets REDACTED."""
    decoded = {table: "".join(t for where, t in outputs.items() if f"/{table}/" in where and "decoded" in where)
               for table in ("access", "rejects", "errors")}
    assert all(decoded.values()), [t for t, text in decoded.items() if not text]
    assert REDACTED in decoded["access"] and REDACTED in decoded["rejects"] and REDACTED in decoded["errors"]
    assert "[truncated " in decoded["rejects"] and "[truncated " in outputs["printed"]


@pytest.mark.parametrize("kind", PLANTED)
def test_planted_secret_reaches_no_output(outputs, kind):
    for secret in PLANTED[kind][3]:
        for where, text in outputs.items():
            assert secret not in text, f"{kind}: {secret!r} leaked into {where}"


@pytest.mark.parametrize("secret", ERROR_SECRETS)
def test_secret_in_an_error_log_reaches_no_output(outputs, secret):
    for where, text in outputs.items():
        assert secret not in text, f"{secret!r} leaked into {where}"


def test_what_is_no_secret_stays(outputs):
    access = "".join(t for where, t in outputs.items() if "/access/" in where and "decoded" in where)
    for kept in ("since=1700000000123", "order=4111111111111112", "Chrome/120.0.0.0"):
        assert kept in access


# -- the scrubber, value by value ---------------------------------------------------------------


@pytest.mark.parametrize("text, expected", [
    ("4111111111111111", REDACTED),
    ("4111-1111-1111-1111", REDACTED),
    ("4111 1111 1111 1111", REDACTED),
    ("c=4111+1111+1111+1111&x=1", f"c={REDACTED}&x=1"),
    ("/pay/4111%201111%201111%201111/ok", f"/pay/{REDACTED}/ok"),
    ("3782 822463 10005", REDACTED),                                  # Amex: 4-6-5
    ("6011000990139424", REDACTED),
    ("2026-11-20 4111-1111-1111-1111", f"2026-11-20 {REDACTED}"),     # a date before it stays
    ("12 4111 1111 1111 1111 99", f"12 {REDACTED} 99"),
    ("6011 0009 9013 9424 and 4111111111111111", f"{REDACTED} and {REDACTED}"),
])
def test_card_numbers(text, expected):
    assert redact_card_numbers(text) == expected
    assert Scrubber().scrub_column(pa.array([text])).to_pylist() == [expected]


@pytest.mark.parametrize("text", [
    "4111111111111112",              # fails Luhn
    "1700000000000",                 # a millisecond timestamp (13 digits, Luhn-valid: industry 1 is no card)
    "17000000000000000000123",       # too long
    "411111111111",                  # too short
    "12345678-1234-1234-1234-123456789012",
    "+49 30 1234 5678 90",
    "4 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1",   # groups of one digit are not how cards are written
])
def test_numbers_that_are_no_card_numbers_stay(text):
    assert redact_card_numbers(text) == text


@pytest.mark.parametrize("text, expected", [
    (f"/verify/{JWT_PATH}/done", f"/verify/{REDACTED}/done"),
    (f"jwt={JWT_PARAM}", f"jwt={REDACTED}"),
    (f"next=%2Fcb%3Fstate%3D{JWT_PARAM}", f"next=%2Fcb%3Fstate%3D{REDACTED}"),   # inside a percent-encoded URL
    ("eyJhbGciOiJub25lIn0.eyJzdWIiOiIxIn0.", REDACTED),                          # alg none: no signature
])
def test_json_web_tokens(text, expected):
    assert Scrubber().scrub(text) == expected


@pytest.mark.parametrize("text, expected", [
    ("/ip/192%2E0%2E2%2E49/x", f"/ip/{REDACTED}/x"),
    ("a=192%2e0%2e2%2e49&b=1", f"a={REDACTED}&b=1"),
    ("a=2001%3Adb8%3A%3A4a", f"a={REDACTED}"),
    ("next=%2Fgeo%3Fip%3D2001%3Adb8%3A%3A4a", f"next=%2Fgeo%3Fip%3D{REDACTED}"),
    ("https%3A%2F%2Fexample.com%2F", "https%3A%2F%2Fexample.com%2F"),              # no address
])
def test_percent_encoded_addresses(text, expected):
    assert Scrubber().scrub(text) == expected


def test_percent_encoded_addresses_in_raw_lines_become_the_same_pseudonym():
    out = pseudonymize_ip_tokens("from 192%2E0%2E2%2E49 and 192.0.2.49, 2001%3Adb8%3A%3A4a and 2001:db8::4a", SECRET)
    pseudonyms = re.findall(r"ip:[0-9a-f]{32}", out)
    assert len(pseudonyms) == 4 and pseudonyms[0] == pseudonyms[1] and pseudonyms[2] == pseudonyms[3]


@pytest.mark.parametrize("agent, expected", [
    ("Mozilla/5.0 (X11; via 203.0.113.77) Chrome/120.0.0.0", f"Mozilla/5.0 (X11; via {REDACTED}) Chrome/120.0.0.0"),
    ("bot/2.1 (+http://198.51.100.2/bot.html)", f"bot/2.1 (+http://{REDACTED}/bot.html)"),
    ("X-Forwarded-For:203.0.113.77 OPR/105.0.0.0", f"X-Forwarded-For:{REDACTED} OPR/105.0.0.0"),
    ("Mozilla/5.0 (Windows NT 10.0) Chrome/120.0.0.0 Edg/120.0.0.0", None),   # versions only
])
def test_addresses_in_user_agents_but_not_versions(agent, expected):
    table = scrub_records(pa.table({"user_agent": [agent], "_x_http_user_agent": [agent]}), Scrubber())
    assert table.to_pydict() == {"user_agent": [expected or agent], "_x_http_user_agent": [expected or agent]}


@pytest.mark.parametrize("name", ["user", "username", "user_name", "login", "login_name", "email", "uid", "userid",
                                  "user_id", "nickname", "screen_name", "pass%77ord", "%70assword", "us%65r"])
def test_names_in_a_referrers_query(name):
    referrer = f"https://example.com/profile?tab=1&{name}=carlotta77"
    assert Scrubber().scrub_column(pa.array([referrer])).to_pylist() == [
        f"https://example.com/profile?tab=1&{name}={REDACTED}"]


def test_redaction_of_a_value_does_not_depend_on_its_chunk():
    planted = [access for *access, _ in PLANTED.values()]
    alone = [scrub_records(pa.table({"url_path": [t], "referrer": [r], "user_agent": [a]}), Scrubber()).to_pylist()
             for t, r, a in planted]
    together = scrub_records(pa.table({"url_path": [t for t, _, _ in planted], "referrer": [r for _, r, _ in planted],
                                       "user_agent": [a for _, _, a in planted]}), Scrubber()).to_pylist()
    assert [row for [row] in alone] == together
    lines = [access_line(t, r, a, status="2x0") for t, r, a in planted]
    plan = redaction_plan(resolve_format("combined"))
    assert [redact_line(line, SECRET, Scrubber(), plan.field_res) for line in lines] == \
        [redact_line(line, SECRET, Scrubber(), plan.field_res) for line in reversed(lines)][::-1]


def test_rejected_lines_that_are_too_long_are_cut_before_redaction(tmp_path):
    plan = redaction_plan(resolve_format("combined"))
    head = access_line("/pay?card=4111111111111111&pad=", "-", "-")
    # an e-mail address across the limit: no part of it may stay
    line = head + "x" * (MAX_LINE_BYTES - len(head) - 10) + " jane.doe@example.org " + "y" * 100_000
    out = redact_line(line, SECRET, Scrubber(), plan.field_res)
    kept = MAX_LINE_BYTES - 9   # up to the space before the address
    assert out.endswith(f"…[truncated {len(line) - kept} bytes]")
    assert "4111111111111111" not in out and "jane" not in out and "198.51.100.7" not in out
    assert len(out) < MAX_LINE_BYTES + 100
    chunk = RejectChunk("a.log", "id", 1, source_lines=[1], reasons=["too long"], lines=[line])
    table = rejects_table(chunk, Keystore(tmp_path / "keys.json"), Scrubber(), plan, None)
    assert table["line"][0].as_py().endswith(f"…[truncated {len(line) - kept} bytes]")


def test_screen_lets_every_planted_kind_through():
    """The RE2 screen picks the values the Python scrubber sees: each kind must pass it."""
    scrubber = Scrubber()
    for target, referrer, agent, _ in PLANTED.values():
        for value, agent_column in ((target, False), (referrer, False), (agent, True)):
            screen = scrubber.screen_agent if agent_column else scrubber.screen
            if scrubber.scrub(value, versions=agent_column) != value:   # something to redact
                assert pc.match_substring_regex(pa.array([value]), screen)[0].as_py(), value


# -- linearity ------------------------------------------------------------------------------------

USER_PATHS = [(), ("/users/", "/u/"), ("/api/v1/members/", "~staff", "/a.b/c+d/")]
FORMATS = ["combined", "timed_combined", '%h %l %u %t "%r" %>s %b "%{Referer}i" "%{User-agent}i" "%{Cookie}i"',
           '$remote_addr $host $remote_user [$time_local] "$request" $status "$http_cookie" "$http_authorization"',
           'escape=json $remote_addr - $remote_user [$time_local] "$request" $status "$http_cookie"']


def input_regexes() -> dict[str, re.Pattern]:
    """Every regex that runs on input text in the scrubbing and redaction modules (module constants
    and the field locators built for a few formats)."""
    found = {f"{module.__name__}.{name}": value for module in (scrub, pseudonymize, rejects, error_entries)
             for name, value in vars(module).items() if isinstance(value, re.Pattern)}
    for paths in USER_PATHS:   # built from the settings
        found[f"user paths {paths}"] = Scrubber(user_paths=paths).user_path_re
    for spec in FORMATS:
        for i, locator in enumerate(sensitive_field_regexes(resolve_format(spec))):
            found[f"{spec!r} field {i}"] = locator.located
            if locator.cut_short:
                found[f"{spec!r} field {i} cut short"] = locator.cut_short
    return found


def _items(parsed) -> list:
    return list(parsed.data) if hasattr(parsed, "data") else list(parsed)


def _nested_unbounded(items, inside: bool) -> list[str]:
    """Unbounded repetitions that may backtrack, inside another one (a*)* : the shape of
    exponential and polynomial backtracking. Possessive repetitions and atomic groups are never
    re-entered, so they start afresh."""
    from re._constants import ATOMIC_GROUP, BRANCH, MAX_REPEAT, MAXREPEAT, MIN_REPEAT, POSSESSIVE_REPEAT
    problems = []
    for op, av in items:
        if op in (MAX_REPEAT, MIN_REPEAT):
            unbounded = av[1] == MAXREPEAT
            if unbounded and inside:
                problems.append(str(op))
            problems += _nested_unbounded(_items(av[2]), inside or unbounded)
        elif op is POSSESSIVE_REPEAT:
            problems += _nested_unbounded(_items(av[2]), False)
        elif op is ATOMIC_GROUP:
            problems += _nested_unbounded(_items(av), False)
        elif op is BRANCH:
            for branch in av[1]:
                problems += _nested_unbounded(_items(branch), inside)
        elif isinstance(av, tuple) and av and hasattr(av[-1], "data"):   # groups, lookarounds
            problems += _nested_unbounded(_items(av[-1]), inside)
    return problems


def _starts_with_a_run(items) -> bool:
    """Can a match start with an unbounded repetition followed by more? A search then scans the
    rest of the run again from each of its characters when the match fails after it."""
    from re._constants import BRANCH, MAX_REPEAT, MAXREPEAT, MIN_REPEAT, POSSESSIVE_REPEAT, SUBPATTERN
    if not items:
        return False
    op, av = items[0]
    if op is SUBPATTERN:
        return _starts_with_a_run(_items(av[3]) + items[1:])
    if op is BRANCH:
        return any(_starts_with_a_run(_items(branch) + items[1:]) for branch in av[1])
    return op in (MAX_REPEAT, MIN_REPEAT, POSSESSIVE_REPEAT) and av[1] == MAXREPEAT and len(items) > 1


@pytest.mark.parametrize("name", sorted(input_regexes()))
def test_no_regex_on_input_backtracks(name):
    from re import _parser
    pattern = input_regexes()[name]
    parsed = _items(_parser.parse(pattern.pattern, pattern.flags))
    assert _nested_unbounded(parsed, False) == [], f"{name}: nested unbounded repetition in {pattern.pattern}"
    if " field " not in name:   # field locators are only matched at a few places, never searched
        assert not _starts_with_a_run(parsed), f"{name}: a search would rescan runs: {pattern.pattern}"


def test_the_structural_checks_catch_what_they_should():
    from re import _parser

    def parsed(p):
        return _items(_parser.parse(p))
    assert _nested_unbounded(parsed(r"(a+)+b"), False) and _nested_unbounded(parsed(r"(?:x|(?:ab*)*)c"), False)
    assert not _nested_unbounded(parsed(r"(?:[a-z]++\.)+[a-z]{2,}"), False)
    assert _starts_with_a_run(parsed(r"[a-z]+@")) and _starts_with_a_run(parsed(r"(?:x|[a-z]*=)"))
    assert not _starts_with_a_run(parsed(r"(?<![a-z])[a-z]+@")) and not _starts_with_a_run(parsed(r"[^\"]++"))


# Runs of what made the old regexes rescan: letters, '@', '=', '%', digits, dots, separators, quotes.
ADVERSARIAL_RUNS = ["a", "a@", "=", "a=", "%", "%40", "a%3D", "1", "41 ", "4111-", "1.", "1%2E", "a:", ":", "a.",
                    "eyJa.", '"', 'a\\"', "a - ", 'user "a\\"', "Bearer ", "a;", "/~a", "//a", "/u/a/", " /u/",
                    "%2Fu%2F", "/~"]


def adversarial_text(size: int) -> str:
    each = size // len(ADVERSARIAL_RUNS)
    return "".join((run * (each // len(run) + 1))[:each] for run in ADVERSARIAL_RUNS)


def test_a_megabyte_of_adversarial_text_is_scrubbed():
    """Not timed; each run is 48 KiB: a regex that rescans would take minutes on it."""
    text, scrubber = adversarial_text(1 << 20), Scrubber(user_paths=("/u/", "/users/a/"))
    for out in (scrubber.scrub(text), scrubber.scrub(text, versions=True), scrubber.scrub(text, all_pairs=True),
                scrubber.redact_user_paths(text), scrubber.redact_user_paths("x//" + "a" * (1 << 20) + "/~b" * 50_000),
                scrubber.scrub(text, ips=False), pseudonymize_ip_tokens(text, SECRET),
                cookie_header_pseudonyms(SECRET, text), redact_auth_users(text),
                redact_names(text, ["alice.smith", "bob"])):
        assert out


@pytest.mark.parametrize("spec", FORMATS + ["json"])
def test_adversarial_rejected_lines_are_redacted(spec):
    fmt = resolve_format(spec, field_map="who=remote_user") if spec == "json" else resolve_format(spec)
    plan, scrubber = redaction_plan(fmt), Scrubber(user_paths=("/u/",))
    lines = [(run * (MAX_LINE_BYTES // len(run)))[:MAX_LINE_BYTES] for run in ADVERSARIAL_RUNS]
    lines += ['192.0.2.1 - bob [' + run * 4096 for run in ADVERSARIAL_RUNS] + ['{"who":"' + adversarial_text(1 << 20)]
    for line in lines:
        out = redact_line(line, SECRET, scrubber, plan.field_res, plan.strict, plan.json_keys)
        assert out and "192.0.2.1" not in out

"""PseudonymizeClients: raw IP / user name -> keyed HMAC pseudonyms; raw columns dropped."""
import base64
import hashlib
import hmac
import ipaddress
import json
from datetime import datetime, timezone

import pyarrow as pa
import pytest

from storage.keystore import Keystore
from transforms.chunks import LogChunk
from transforms.formats import resolve_format
from transforms.parse import parse_chunk
from transforms.pseudonymize import pseudonymize_ip_tokens, pseudonymize_records

UTC = timezone.utc
DAY1 = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
DAY1_LATE = datetime(2026, 11, 20, 23, 59, 59, tzinfo=UTC)
DAY2 = datetime(2026, 11, 21, 0, 0, 1, tzinfo=UTC)


@pytest.fixture
def keystore(tmp_path):
    return Keystore(tmp_path / "keys" / "keys.json")


def stored_key(keystore, label):
    """(key_id, secret) read straight from the keystore file, not through Keystore."""
    entry = json.loads(keystore.path.read_text())["keys"][label]
    return entry["id"], base64.b64decode(entry["secret"])


def expected_client_id(secret: bytes, ip: str) -> str:
    return hmac.new(secret, ipaddress.ip_address(ip).packed, hashlib.sha256).digest()[:16].hex()


def expected_user_id(secret: bytes, name: str) -> str:
    return hmac.new(secret, b"user:" + name.encode(), hashlib.sha256).digest()[:16].hex()


def records(rows):
    """rows: (received_at, ip, user) -> table shaped like ParseAccessLogs output."""
    return pa.table({
        "received_at": pa.array([r[0] for r in rows], pa.timestamp("us", tz="UTC")),
        "status": pa.array([200] * len(rows), pa.int16()),
        "_client_ip": pa.array([r[1] for r in rows], pa.string()),
        "_remote_user": pa.array([r[2] for r in rows], pa.string()),
    })


def test_client_id_is_truncated_hmac_of_packed_ip(keystore):
    out = pseudonymize_records(records([(DAY1, "203.0.113.7", None), (DAY1, "2001:db8::1", None)]), keystore)
    key_id, secret = stored_key(keystore, "2026-11-20")
    assert out["client_id"].to_pylist() == [expected_client_id(secret, "203.0.113.7"),
                                            expected_client_id(secret, "2001:db8::1")]
    assert all(len(c) == 32 for c in out["client_id"].to_pylist())   # 128 bits, hex
    assert out["key_id"].to_pylist() == [key_id, key_id]
    assert key_id.startswith("2026-11-20:")


def test_same_ip_same_day_same_id(keystore):
    out = pseudonymize_records(records([(DAY1, "198.51.100.23", None), (DAY1_LATE, "198.51.100.23", None),
                                        (DAY1, "198.51.100.24", None)]), keystore)
    ids = out["client_id"].to_pylist()
    assert ids[0] == ids[1] != ids[2]


def test_other_day_other_id_and_key(keystore):
    out = pseudonymize_records(records([(DAY1_LATE, "198.51.100.23", None), (DAY2, "198.51.100.23", None)]),
                               keystore)
    ids, key_ids = out["client_id"].to_pylist(), out["key_id"].to_pylist()
    assert ids[0] != ids[1]
    assert key_ids[0] != key_ids[1]
    _, secret2 = stored_key(keystore, "2026-11-21")
    assert ids[1] == expected_client_id(secret2, "198.51.100.23")
    assert key_ids[1] == stored_key(keystore, "2026-11-21")[0]


def test_same_id_across_chunks_and_calls(keystore):
    first = pseudonymize_records(records([(DAY1, "192.0.2.1", None)]), keystore)
    second = pseudonymize_records(records([(DAY1_LATE, "192.0.2.9", None), (DAY1, "192.0.2.1", None)]), keystore)
    assert first["client_id"][0].as_py() == second["client_id"][1].as_py()


def test_client_network(keystore):
    ips = ["203.0.113.77", "2001:db8:abcd:12::7", "192.0.2.1"]
    out = pseudonymize_records(records([(DAY1, ip, None) for ip in ips]), keystore)
    expected = [str(ipaddress.ip_network(f"{ip}/{24 if ':' not in ip else 48}", strict=False)) for ip in ips]
    assert out["client_network"].to_pylist() == expected == ["203.0.113.0/24", "2001:db8:abcd::/48",
                                                             "192.0.2.0/24"]


def test_user_id(keystore):
    out = pseudonymize_records(records([(DAY1, "192.0.2.1", "alice"), (DAY1, "192.0.2.1", None),
                                        (DAY1, "192.0.2.2", "alice"), (DAY2, "192.0.2.1", "alice")]), keystore)
    _, secret1 = stored_key(keystore, "2026-11-20")
    _, secret2 = stored_key(keystore, "2026-11-21")
    assert out["user_id"].to_pylist() == [expected_user_id(secret1, "alice"), None,
                                          expected_user_id(secret1, "alice"), expected_user_id(secret2, "alice")]
    # Domain-separated: a user called like an IP's text gets no IP's pseudonym.
    assert out["user_id"][0].as_py() != out["client_id"][0].as_py()


def test_all_null_users(keystore):
    out = pseudonymize_records(records([(DAY1, "192.0.2.1", None), (DAY1, "192.0.2.2", None)]), keystore)
    assert out["user_id"].to_pylist() == [None, None]


def test_raw_columns_removed_and_values_gone(keystore):
    out = pseudonymize_records(records([(DAY1, "203.0.113.7", "alice.smith")]), keystore)
    assert "_client_ip" not in out.column_names and "_remote_user" not in out.column_names
    values = [v for col in out.columns for v in col.to_pylist()]
    assert "203.0.113.7" not in values and "alice.smith" not in values
    assert out["status"].to_pylist() == [200]     # other columns untouched


def test_empty_table(keystore):
    out = pseudonymize_records(records([]), keystore)
    assert out.num_rows == 0
    assert "_client_ip" not in out.column_names


def test_parsed_line_end_to_end(keystore):
    fmt = resolve_format("combined")
    lines = (b'::ffff:192.0.2.1 - - [20/Nov/2026:11:00:00 +0100] "GET / HTTP/1.1" 200 1 "-" "-"\n'
             b'192.0.2.1 - carol [20/Nov/2026:10:00:00 +0000] "GET / HTTP/1.1" 200 1 "-" "-"\n')
    parsed, _ = parse_chunk(fmt, LogChunk("a.log", "x", 1, lines))
    out = pseudonymize_records(parsed.records, keystore).sort_by("source_line")
    _, secret = stored_key(keystore, "2026-11-20")
    # The IPv4-mapped address was folded to IPv4: both lines are one client.
    assert out["client_id"].to_pylist() == [expected_client_id(secret, "192.0.2.1")] * 2
    assert out["user_id"].to_pylist() == [None, expected_user_id(secret, "carol")]


def test_pseudonymize_ip_tokens_in_raw_lines(keystore):
    _, secret = keystore.key("2026-11-20")
    line = "203.0.113.7 - - [junk] from [2001:db8::1]:443 via ::ffff:203.0.113.7 v1.2.3"
    out = pseudonymize_ip_tokens(line, secret)
    v4, v6 = expected_client_id(secret, "203.0.113.7"), expected_client_id(secret, "2001:db8::1")
    assert out.startswith(f"ip:{v4} - - [junk] from ")
    assert f"ip:{v6}" in out
    assert out.count(f"ip:{v4}") == 2          # the mapped form is the same client
    assert "203.0.113.7" not in out and "2001:db8::1" not in out
    assert out.endswith(" v1.2.3")            # not an IP

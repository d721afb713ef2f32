"""--ip-mode hmac|truncate|cryptopan in pseudonymize_records / PseudonymizeClients."""
import base64
import hashlib
import hmac
import ipaddress
import json
import re
import socket
from datetime import datetime, timezone

import apache_beam as beam
import pyarrow as pa
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from apache_beam.testing.util import assert_that, equal_to

from schemas.errors import AccesslogError
from storage.keystore import Keystore
from transforms import cryptopan, pseudonymize
from transforms.chunks import LogChunk
from transforms.cryptopan import CryptoPAn, derive_key
from transforms.formats import resolve_format
from transforms.parse import ParseAccessLogs
from transforms.pseudonymize import IP_MODES, PseudonymizeClients, pseudonymize_records

UTC = timezone.utc
DAY1 = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
DAY2 = datetime(2026, 11, 21, 9, 0, tzinfo=UTC)
MODES = ["hmac", "truncate", "cryptopan"]

# _client_ip as ParseAccessLogs leaves it (canonical IPs, `name:` clients, nulls).
ROWS = [
    (DAY1, "203.0.113.7", "alice"),
    (DAY1, "203.0.113.99", None),           # same /24 as the first
    (DAY1, "2001:db8:abcd:12::7", None),
    (DAY1, "2001:db8:abcd:ffff::1", None),  # same /48 as the previous
    (DAY1, "name:example.org", None),
    (DAY1, "name:unix:", None),
    (DAY1, None, "bob"),
    (DAY1, "203.0.113.7", None),            # repeated
    (DAY2, "203.0.113.7", "alice"),         # next day
    (DAY2, "2001:db8:abcd:12::7", None),
]
RAW_IPS = ["203.0.113.7", "203.0.113.99", "2001:db8:abcd:12::7", "2001:db8:abcd:ffff::1"]


@pytest.fixture
def keystore(tmp_path):
    return Keystore(tmp_path / "keys" / "keys.json")


def records(rows=ROWS):
    return pa.table({
        "received_at": pa.array([r[0] for r in rows], pa.timestamp("us", tz="UTC")),
        "status": pa.array([200] * len(rows), pa.int16()),
        "_client_ip": pa.array([r[1] for r in rows], pa.string()),
        "_remote_user": pa.array([r[2] for r in rows], pa.string()),
    })


def secret(keystore, label):
    entry = json.loads(keystore.path.read_text())["keys"][label]
    return entry["id"], base64.b64decode(entry["secret"])


def hmac_id(secret_, ip):
    data = b"host:" + ip[5:].encode() if ip.startswith("name:") else ipaddress.ip_address(ip).packed
    return hmac.new(secret_, data, hashlib.sha256).digest()[:16].hex()


def network(ip):
    return str(ipaddress.ip_network(f"{ip}/{24 if ':' not in ip else 48}", strict=False))


def common(out, keystore):
    """What every mode shares: raw columns gone, user_id and key_id as in hmac mode."""
    assert "_client_ip" not in out.column_names and "_remote_user" not in out.column_names
    assert out.column_names[-4:] == ["client_id", "client_network", "user_id", "key_id"]
    (id1, s1), (id2, s2) = secret(keystore, "2026-11-20"), secret(keystore, "2026-11-21")
    assert out["key_id"].to_pylist() == [id1] * 8 + [id2] * 2
    users = out["user_id"].to_pylist()
    assert users[0] == hmac.new(s1, b"user:alice", hashlib.sha256).digest()[:16].hex() and users[1] is None
    assert users[8] == hmac.new(s2, b"user:alice", hashlib.sha256).digest()[:16].hex()


def test_hmac_mode_is_the_default(keystore):
    default = pseudonymize_records(records(), keystore)
    out = pseudonymize_records(records(), keystore, ip_mode="hmac")
    assert out.equals(default)
    common(out, keystore)
    _, s1 = secret(keystore, "2026-11-20")
    _, s2 = secret(keystore, "2026-11-21")
    assert out["client_id"].to_pylist() == [hmac_id(s1, ip) if ip else None for _, ip, _ in ROWS[:8]] + \
        [hmac_id(s2, "203.0.113.7"), hmac_id(s2, "2001:db8:abcd:12::7")]
    assert out["client_network"].to_pylist() == [
        "203.0.113.0/24", "203.0.113.0/24", "2001:db8:abcd::/48", "2001:db8:abcd::/48", None, None, None,
        "203.0.113.0/24", "203.0.113.0/24", "2001:db8:abcd::/48"]


def test_truncate_mode_keeps_only_the_network(keystore):
    out = pseudonymize_records(records(), keystore, ip_mode="truncate")
    common(out, keystore)
    assert out["client_id"].null_count == out.num_rows
    assert out.schema.field("client_id").type == pa.string()
    assert out["client_network"].to_pylist() == pseudonymize_records(records(), keystore)["client_network"].to_pylist()
    # Same network both days: truncation is not keyed.
    assert out["client_network"][0].as_py() == out["client_network"][8].as_py() == "203.0.113.0/24"


def test_cryptopan_mode(keystore):
    out = pseudonymize_records(records(), keystore, ip_mode="cryptopan")
    common(out, keystore)
    _, s1 = secret(keystore, "2026-11-20")
    _, s2 = secret(keystore, "2026-11-21")
    cp1, cp2 = CryptoPAn(derive_key(s1)), CryptoPAn(derive_key(s2))
    ids, nets = out["client_id"].to_pylist(), out["client_network"].to_pylist()
    assert ids == [cp1.anonymize("203.0.113.7"), cp1.anonymize("203.0.113.99"),
                   cp1.anonymize("2001:db8:abcd:12::7"), cp1.anonymize("2001:db8:abcd:ffff::1"),
                   hmac_id(s1, "name:example.org"), hmac_id(s1, "name:unix:"), None,
                   cp1.anonymize("203.0.113.7"),
                   cp2.anonymize("203.0.113.7"), cp2.anonymize("2001:db8:abcd:12::7")]
    # Valid addresses of the same family.
    for i in (0, 1, 7, 8):
        socket.inet_pton(socket.AF_INET, ids[i])
    for i in (2, 3, 9):
        assert ipaddress.ip_address(ids[i]).version == 6
    # client_network = the anonymized address's /24 (/48); prefix preservation keeps it one network.
    assert nets == [network(ip) for ip in ids[:4]] + [None, None, None] + [network(ip) for ip in ids[7:]]
    assert nets[0] == nets[1] != "203.0.113.0/24"
    assert nets[2] == nets[3] != "2001:db8:abcd::/48"


@pytest.mark.parametrize("mode", ["hmac", "cryptopan"])
def test_day_rotation_changes_client_ids(keystore, mode):
    out = pseudonymize_records(records(), keystore, ip_mode=mode)
    ids, nets = out["client_id"].to_pylist(), out["client_network"].to_pylist()
    assert ids[0] == ids[7]                   # same IP, same day
    assert ids[0] != ids[8]                   # same IP, next day
    assert ids[2] != ids[9]
    if mode == "cryptopan":
        assert nets[0] != nets[8] and nets[2] != nets[9]   # keyed networks rotate too


@pytest.mark.parametrize("mode", MODES)
def test_no_raw_ip_in_any_output_column(mode):
    # A fixed master key: outputs are deterministic, so substring checks cannot flake.
    keystore = Keystore(None, master="m" * 40)
    out = pseudonymize_records(records(), keystore, ip_mode=mode)
    text = "\n".join(str(v) for column in out.columns for v in column.to_pylist())
    for ip in RAW_IPS + ["example.org"]:
        assert not re.search(rf"(?<![\w:.]){re.escape(ip)}(?![\w:.])", text), (mode, ip)
    if mode != "hmac":
        assert not any(v for v in out["client_network"].to_pylist() if v and "/" not in v)


@pytest.mark.parametrize("mode", MODES)
def test_empty_and_all_null_tables(keystore, mode):
    assert pseudonymize_records(records([]), keystore, ip_mode=mode).num_rows == 0
    out = pseudonymize_records(records([(DAY1, None, None), (DAY1, None, None)]), keystore, ip_mode=mode)
    assert out["client_id"].to_pylist() == [None, None]
    assert out["client_network"].to_pylist() == [None, None]


def test_cryptopan_runs_once_per_distinct_ip_and_day(keystore, monkeypatch):
    calls = []
    real = cryptopan.for_secret

    class Spy:
        def __init__(self, cp):
            self.cp = cp

        def anonymize_many(self, ips):
            calls.append(sorted(ip for ip in ips if ip))
            return self.cp.anonymize_many(ips)

    monkeypatch.setattr(cryptopan, "for_secret", lambda s: Spy(real(s)))
    rows = [(DAY1, "192.0.2.1", None)] * 50 + [(DAY1, "192.0.2.2", None)] * 50 + [(DAY2, "192.0.2.1", None)] * 10
    out = pseudonymize_records(records(rows), keystore, ip_mode="cryptopan")
    assert calls == [["192.0.2.1", "192.0.2.2"], ["192.0.2.1"]]
    assert len(set(out["client_id"].to_pylist())) == 3


def test_unknown_mode_is_refused(keystore):
    for bad in ("", "HMAC", "anonymize", None):
        with pytest.raises(AccesslogError, match="hmac, truncate, cryptopan"):
            pseudonymize_records(records(), keystore, ip_mode=bad)
        with pytest.raises(AccesslogError, match="hmac, truncate, cryptopan"):
            PseudonymizeClients(keystore, ip_mode=bad)
    assert IP_MODES == ("hmac", "truncate", "cryptopan")
    assert pseudonymize.check_ip_mode("truncate") == "truncate"


def nginx(ip, day):
    return f'{ip} - - [{day}/Nov/2026:12:00:00 +0000] "GET / HTTP/1.1" 200 10 "-" "agent"'


@pytest.mark.parametrize("mode", MODES)
def test_beam_transform_per_mode(tmp_path, mode):
    keystore = Keystore(tmp_path / "keys.json")
    _, s20 = keystore.key("2026-11-20")
    lines = "\n".join([nginx("192.0.2.1", 20), nginx("2001:db8::1", 20)]) + "\n"
    chunks = [LogChunk("access.log", "feedfacecafebeef", 1, lines.encode())]
    cp = CryptoPAn(derive_key(s20))
    expected = {
        "hmac": [(1, hmac_id(s20, "192.0.2.1"), "192.0.2.0/24"), (2, hmac_id(s20, "2001:db8::1"), "2001:db8::/48")],
        "truncate": [(1, None, "192.0.2.0/24"), (2, None, "2001:db8::/48")],
        "cryptopan": [(1, cp.anonymize("192.0.2.1"), network(cp.anonymize("192.0.2.1"))),
                      (2, cp.anonymize("2001:db8::1"), network(cp.anonymize("2001:db8::1")))],
    }[mode]
    with BeamTestPipeline(options=PipelineOptions(["--runner=FnApiRunner"])) as p:
        out = (p | beam.Create(chunks) | ParseAccessLogs(resolve_format("combined"))).records \
            | PseudonymizeClients(keystore, ip_mode=mode)
        assert_that(out | beam.FlatMap(lambda c: list(zip(c.records["source_line"].to_pylist(),
                                                          c.records["client_id"].to_pylist(),
                                                          c.records["client_network"].to_pylist()))),
                    equal_to(expected))

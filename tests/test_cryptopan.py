"""Crypto-PAn (transforms/cryptopan.py): published vectors, prefix preservation, batching."""
import hashlib
import hmac
import ipaddress
import pickle
import random
import socket

import pytest

from transforms import cryptopan
from transforms.cryptopan import CryptoPAn, anonymize_bitwise, derive_key, for_secret, ip_text

# The key of the sample in the original Crypto-PAn distribution (Xu, Fan, Ammar, Moon; Georgia Tech).
REFERENCE_KEY = bytes([21, 34, 23, 141, 51, 164, 207, 128, 19, 10, 91, 22, 73, 144, 125, 16,
                       216, 152, 143, 131, 121, 121, 101, 39, 98, 87, 76, 45, 42, 132, 34, 2])

# Every distinct (raw, sanitized) address pair of sample_trace_raw.dat / sample_trace_sanitized.dat
# of that distribution (100 lines, 70 distinct addresses), as reproduced in the test suites of the
# Go (Yawning/cryptopan) and Node (noinkling/node-cryptopan) implementations.
REFERENCE_IPV4 = [
    ("128.11.68.132", "135.242.180.132"), ("129.118.74.4", "134.136.186.123"),
    ("130.132.252.244", "133.68.164.234"), ("141.223.7.43", "141.167.8.160"),
    ("141.233.145.108", "141.129.237.235"), ("152.163.225.39", "151.140.114.167"),
    ("156.29.3.236", "147.225.12.42"), ("165.247.96.84", "162.9.99.234"),
    ("166.107.77.190", "160.132.178.185"), ("192.102.249.13", "252.138.62.131"),
    ("192.215.32.125", "252.43.47.189"), ("192.233.80.103", "252.25.108.8"),
    ("192.41.57.43", "252.222.221.184"), ("193.150.244.223", "253.169.52.216"),
    ("195.205.63.100", "255.186.223.5"), ("198.200.171.101", "249.199.68.213"),
    ("198.26.132.101", "249.36.123.202"), ("198.36.213.5", "249.7.21.132"),
    ("198.51.77.238", "249.18.186.254"), ("199.217.79.101", "248.38.184.213"),
    ("202.49.198.20", "245.206.7.234"), ("203.12.160.252", "244.248.163.4"),
    ("204.184.162.189", "243.192.77.90"), ("204.202.136.230", "243.178.4.198"),
    ("204.29.20.4", "243.33.20.123"), ("205.178.38.67", "242.108.198.51"),
    ("205.188.147.153", "242.96.16.101"), ("205.188.248.25", "242.96.88.27"),
    ("205.245.121.43", "242.21.121.163"), ("207.105.49.5", "241.118.205.138"),
    ("207.135.65.238", "241.202.129.222"), ("207.155.9.214", "241.220.250.22"),
    ("207.188.7.45", "241.255.249.220"), ("207.25.71.27", "241.33.119.156"),
    ("207.33.151.131", "241.1.233.131"), ("208.147.89.59", "227.237.98.191"),
    ("208.234.120.210", "227.154.67.17"), ("208.28.185.184", "227.39.94.90"),
    ("208.52.56.122", "227.8.63.165"), ("209.12.231.7", "226.243.167.8"),
    ("209.238.72.3", "226.6.119.243"), ("209.246.74.109", "226.22.124.76"),
    ("209.68.60.238", "226.184.220.233"), ("209.85.249.6", "226.170.70.6"),
    ("212.120.124.31", "228.135.163.231"), ("212.146.8.236", "228.19.4.234"),
    ("212.186.227.154", "228.59.98.98"), ("212.204.172.118", "228.71.195.169"),
    ("212.206.130.201", "228.69.242.193"), ("216.148.237.145", "235.84.194.111"),
    ("216.157.30.252", "235.89.31.26"), ("216.184.159.48", "235.96.225.78"),
    ("216.227.10.221", "235.28.253.36"), ("216.254.18.172", "235.7.16.162"),
    ("216.32.132.250", "235.192.139.38"), ("216.35.217.178", "235.195.157.81"),
    ("24.0.250.221", "100.15.198.226"), ("24.13.62.231", "100.2.192.247"),
    ("24.14.213.138", "100.1.42.141"), ("24.5.0.80", "100.9.15.210"),
    ("24.7.198.88", "100.10.6.25"), ("24.94.26.44", "100.88.228.35"),
    ("38.15.67.68", "64.3.66.187"), ("4.3.88.225", "124.60.155.63"),
    ("63.14.55.111", "95.9.215.7"), ("63.195.241.44", "95.179.238.44"),
    ("63.97.7.140", "95.97.9.123"), ("64.14.118.196", "0.255.183.58"),
    ("64.34.154.117", "0.221.154.117"), ("64.39.15.238", "0.219.7.41"),
]

# Further vectors under the reference key: C# (Sappan.CryptoPAn), Perl (IP::Anonymous),
# and IPv6 from the Go and C# implementations.
REFERENCE_EXTRA = [
    ("129.69.205.36", "134.182.53.212"), ("129.69.215.37", "134.182.41.43"),
    ("127.0.0.1", "33.0.243.129"), ("0.0.0.0", "120.255.240.1"), ("10.0.1.128", "117.15.1.129"),
    ("169.254.100.50", "169.251.68.45"), ("255.255.255.255", "206.120.97.255"),
    ("::1", "78ff:f001:9fc0:20df:8380:b1f1:704:ed"), ("::2", "78ff:f001:9fc0:20df:8380:b1f1:704:ef"),
    ("::ffff", "78ff:f001:9fc0:20df:8380:b1f1:704:f838"),
    ("2001:db8::1", "4401:2bc:603f:d91d:27f:ff8e:e6f1:dc1e"),
    ("2001:db8::2", "4401:2bc:603f:d91d:27f:ff8e:e6f1:dc1c"),
]

# Other keys, from other independent implementations (IPv6 mostly).
OTHER_KEYS = [
    # libanon (C), key from passphrase "testing".
    (bytes.fromhex("d1c056a983786a38ca76a05cda240c7b86d7713693544000a0e6c4dd5b3dabdd"), [
        ("1.2.3.4", "236.157.211.10"), ("1.2.3.3", "236.157.211.12"), ("0.0.0.0", "237.113.211.225"),
        ("255.255.255.254", "0.0.127.6"), ("255.255.255.255", "0.0.127.7"),
        ("220.201.45.30", "61.17.221.254"),
        ("31d6:1be5:41bd:663c:3e9e:1005:1eec:6f01", "cc29:fb1a:b9fd:613c:e68:a03b:1efd:961f"),
        ("5dc9:b9a:5699:45e4:3c33:2f50:a4d:2fca", "a3cf:3bda:5768:b87b:ac8c:cc56:a43:5235"),
        ("fffe:638:709:861::3", "1:ce05:ee9:971:7f1f:1f8:ec7:c05b"),
        ("ffff:638:709:861::1", "0:e9f8:3928:f76e:3f:3fc6:135:ffa6"),
        ("2001:638:709:861::1", "d0f1:f603:8e9:98c:3f5f:1f9:ffcf:bf9f"),
        ("2001:638:709:861::4", "d0f1:f603:8e9:98c:3f5f:1f9:ffcf:bf98"),
        ("2001:638:709:4::1", "d0f1:f603:8e9:6cb:803f:3e39:f134:3fbe"),
        ("2001:638:709:4::4", "d0f1:f603:8e9:6cb:803f:3e39:f134:3fbb"),
    ]),
    # yacryptopan (Python) example, key bytes 0..31.
    (bytes(range(32)), [("192.0.2.1", "2.90.93.17"),
                        ("2001:db8::1", "dd92:2c44:3fc0:ff1e:7ff9:c7f0:8180:7e00")]),
    # yacryptopan contrib tests.
    (bytes.fromhex("8009ab3a605435bea0c385bea18485d8b0a1103d6590bdf48c968be5de53836e"), [
        ("8.8.8.8", "55.21.62.136"), ("131.159.1.42", "162.112.255.43"),
        ("2a02:db8:85a3::8a2e:370:7344", "1482:f447:75b3:f1f9:fbdf:622e:34f:ff7b"),
        ("fc00::", "f33c:8ca3:ef0f:e019:e7ff:f1e3:f91f:f800"),
    ]),
]


def packed(ip: str) -> bytes:
    return ipaddress.ip_address(ip).packed


def test_every_reference_trace_pair():
    cp = CryptoPAn(REFERENCE_KEY)
    assert len(REFERENCE_IPV4) == 70 and len({raw for raw, _ in REFERENCE_IPV4}) == 70
    assert cp.anonymize_many([raw for raw, _ in REFERENCE_IPV4]) == [anon for _, anon in REFERENCE_IPV4]
    for raw, anon in REFERENCE_IPV4:           # one at a time too (no batch effects)
        assert CryptoPAn(REFERENCE_KEY).anonymize(raw) == anon


def test_reference_trace_with_the_bitwise_loop():
    for raw, anon in REFERENCE_IPV4:
        assert ip_text(anonymize_bitwise(REFERENCE_KEY, packed(raw))) == anon


@pytest.mark.parametrize("key,pairs", [(REFERENCE_KEY, REFERENCE_EXTRA)] + OTHER_KEYS)
def test_other_published_vectors(key, pairs):
    cp = CryptoPAn(key)
    assert cp.anonymize_many([raw for raw, _ in pairs]) == [anon for _, anon in pairs]
    for raw, anon in pairs:
        assert anonymize_bitwise(key, packed(raw)) == packed(anon)


def test_vectorized_equals_bitwise_loop_on_random_addresses():
    rng = random.Random(7)
    key = bytes(rng.randrange(256) for _ in range(32))
    addrs = [rng.randbytes(4) for _ in range(300)] + [rng.randbytes(16) for _ in range(100)]
    assert CryptoPAn(key).anonymize_packed_many(addrs) == [anonymize_bitwise(key, a) for a in addrs]


def shared_prefix(a: bytes, b: bytes) -> int:
    x = int.from_bytes(a, "big") ^ int.from_bytes(b, "big")
    return len(a) * 8 - x.bit_length()


@pytest.mark.parametrize("width", [4, 16])
def test_prefix_preservation_is_exact(width):
    """Inputs sharing exactly k leading bits -> outputs sharing exactly k leading bits, every k."""
    rng = random.Random(width)
    cp = CryptoPAn(rng.randbytes(32))
    nbits = width * 8
    pairs = []
    for k in range(nbits):
        for _ in range(8):
            a = rng.getrandbits(nbits)
            b = (a ^ (1 << (nbits - 1 - k))) & ~((1 << (nbits - 1 - k)) - 1) | rng.getrandbits(nbits - 1 - k) \
                if k < nbits - 1 else a ^ 1
            pairs.append((k, a.to_bytes(width, "big"), b.to_bytes(width, "big")))
    inputs = [p for _, a, b in pairs for p in (a, b)]
    outputs = dict(zip(inputs, cp.anonymize_packed_many(inputs)))
    for k, a, b in pairs:
        assert shared_prefix(a, b) == k
        assert shared_prefix(outputs[a], outputs[b]) == k, (k, a.hex(), b.hex())


@pytest.mark.parametrize("width", [4, 16])
def test_prefix_preservation_across_a_random_sample(width):
    rng = random.Random(100 + width)
    cp = CryptoPAn(rng.randbytes(32))
    # Clustered addresses (a few bases, random tails of every length): long shared prefixes are common.
    bases = [rng.randbytes(width) for _ in range(4)]
    addrs = sorted({b[:width - j] + rng.randbytes(j) for b in bases for j in range(1, width + 1) for _ in range(3)})
    anon = dict(zip(addrs, cp.anonymize_packed_many(addrs)))
    assert len(set(anon.values())) == len(addrs)         # one-to-one
    for a in addrs:
        for b in addrs:
            assert shared_prefix(anon[a], anon[b]) == shared_prefix(a, b)


def test_families_and_text_forms():
    cp = CryptoPAn(REFERENCE_KEY)
    out = cp.anonymize_many(["128.11.68.132", "[2001:db8::1]:443", "::ffff:128.11.68.132", "2001:DB8:0::1",
                             "name:example.org", "not an ip", None])
    assert out == ["135.242.180.132", "4401:2bc:603f:d91d:27f:ff8e:e6f1:dc1e",
                   "135.242.180.132",        # IPv4-mapped folds to IPv4, as everywhere in accesslog
                   "4401:2bc:603f:d91d:27f:ff8e:e6f1:dc1e", None, None, None]
    socket.inet_pton(socket.AF_INET6, out[1])


def test_batches_larger_than_one_aes_call(monkeypatch):
    monkeypatch.setattr(cryptopan, "_BATCH", 7)
    rng = random.Random(3)
    addrs = [rng.randbytes(4) for _ in range(30)] + [rng.randbytes(16) for _ in range(20)]
    key = rng.randbytes(32)
    assert CryptoPAn(key).anonymize_packed_many(addrs) == [anonymize_bitwise(key, a) for a in addrs]


def test_cache_is_bounded_and_consistent(monkeypatch):
    monkeypatch.setattr(cryptopan, "_CACHE_MAX", 10)
    cp = CryptoPAn(REFERENCE_KEY)
    raws = [raw for raw, _ in REFERENCE_IPV4]
    for i in range(0, 70, 5):
        assert cp.anonymize_many(raws[i:i + 5]) == [anon for _, anon in REFERENCE_IPV4[i:i + 5]]
        assert len(cp._cache) <= 10


def test_derived_key_and_for_secret():
    secret = bytes(range(32))
    assert derive_key(secret) == hmac.new(secret, b"cryptopan", hashlib.sha256).digest()
    assert for_secret(secret) is for_secret(secret)
    assert for_secret(secret).anonymize("192.0.2.1") == CryptoPAn(derive_key(secret)).anonymize("192.0.2.1")
    assert for_secret(secret).anonymize("192.0.2.1") != for_secret(bytes(32)).anonymize("192.0.2.1")


def test_bad_keys_and_no_pickling():
    for key in (b"short", bytes(33), "x" * 32):
        with pytest.raises(ValueError):
            CryptoPAn(key)
    with pytest.raises(ValueError):
        CryptoPAn(REFERENCE_KEY).anonymize_packed(b"\x01\x02\x03")
    with pytest.raises(ValueError):
        CryptoPAn(REFERENCE_KEY).anonymize_packed_many([bytes(4), bytes(5)])
    with pytest.raises(TypeError):
        pickle.dumps(CryptoPAn(REFERENCE_KEY))

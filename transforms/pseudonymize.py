"""PseudonymizeClients: raw IP and user name -> keyed pseudonyms; the raw values are dropped.

client_id = HMAC-SHA256(period key, packed IP bytes) truncated to 128 bits (hex),
computed once per distinct (IP, period) pair of a chunk and `take`n back.
user_id   = the same over b"user:" + name (domain-separated from IPs).
client_network = /24 (IPv4) or /48 (IPv6), from the raw IP in memory.
The key period is the UTC day (or week/month) of `received_at`; key_id names it.

`ip_mode` chooses what becomes of the client IP (user ids and cookies are keyed the same in
every mode, so key_id is always set):
  hmac      client_id as above; client_network from the raw IP (default).
  truncate  client_id is null; only client_network is kept.
  cryptopan client_id = Crypto-PAn(period key, IP) as IP text, same family (prefix-preserving,
            see transforms/cryptopan.py); client_network = that address's /24 or /48, so it
            is the anonymized network, not the real one. Clients logged by name (`name:`)
            have no address to anonymize: they keep the HMAC client_id, and no network.
"""

from __future__ import annotations

import dataclasses
import functools
import hmac
import re
import socket
from datetime import timedelta

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from schemas import IP_MODES
from schemas.errors import SettingError
from storage.keystore import Keystore
from transforms import cryptopan
from transforms.fields import encoded, map_unique, normalize_ip, pack_ip, with_dictionary
from transforms.parse import RecordChunk
from transforms.scrub import COOKIE_HEADERS, CREDENTIAL_HEADERS, decode_ip_separators, pack_extra, redacted_column
from transforms.timeparse import EPOCH, US_PER_DAY

IN_MEMORY_COLUMNS = ("_client_ip", "_remote_user")


def check_ip_mode(ip_mode: str) -> str:
    if ip_mode not in IP_MODES:
        raise SettingError("unknown {} {mode!r}: use one of {modes}", "ip_mode", mode=ip_mode,
                           modes=", ".join(IP_MODES))
    return ip_mode


@functools.lru_cache(maxsize=1 << 18)
def ip_pseudonym(secret: bytes, ip_text: str) -> str:
    """HMAC-SHA256(secret, packed IP) truncated to 128 bits, hex.

    `ip_text` is a canonical IP, or `name:<host>` for clients logged by name (the
    HMAC then covers b"host:" + name, so names and addresses never collide)."""
    if ip_text.startswith("name:"):
        return hmac.digest(secret, b"host:" + ip_text[5:].encode("utf-8"), "sha256")[:16].hex()
    return hmac.digest(secret, pack_ip(ip_text), "sha256")[:16].hex()


def user_pseudonym(secret: bytes, name: str) -> str:
    return hmac.digest(secret, b"user:" + name.encode("utf-8"), "sha256")[:16].hex()


def cookie_pseudonym(secret: bytes, value: str) -> str:
    return hmac.digest(secret, b"cookie:" + value.encode("utf-8"), "sha256")[:16].hex()


def cryptopan_pseudonyms(secret: bytes, ip_texts: list[str]) -> list[str | None]:
    """Crypto-PAn under the period's derived key, for the distinct clients of one period;
    `name:` clients (no address) get their HMAC pseudonym, as in hmac mode."""
    anon = cryptopan.for_secret(secret).anonymize_many([None if t.startswith("name:") else t for t in ip_texts])
    return [ip_pseudonym(secret, t) if t.startswith("name:") else a for t, a in zip(ip_texts, anon)]


# A pair starts only where a name can start (linear in the header's length: no retry inside a name).
_COOKIE_PAIR = re.compile(r"(?<![^=;\s])([^=;\s]++)=([^;]*+)")


def cookie_header_pseudonyms(secret: bytes, header: str) -> str:
    """'a=1; b=2' (Cookie / Set-Cookie) -> 'a=<pseudonym>; b=<pseudonym>': names stay, values don't."""
    def sub(m: re.Match) -> str:
        name, value = m.group(1), m.group(2).strip()
        if name.lower() in _SET_COOKIE_ATTRIBUTES or not value:
            return m.group(0)
        return f"{name}={cookie_pseudonym(secret, value)}"
    return _COOKIE_PAIR.sub(sub, header)


_SET_COOKIE_ATTRIBUTES = {"path", "domain", "expires", "max-age", "samesite", "priority"}
_AUTHORIZATION = {"_x_" + v for v in CREDENTIAL_HEADERS}
_COOKIE_HEADERS = {"_x_" + v for v in COOKIE_HEADERS}


def _extras(table: pa.Table, days: np.ndarray, keystore: Keystore) -> pa.Table:
    """Cookie values -> keyed pseudonyms; Authorization headers -> REDACTED (in `_x_` columns)."""
    for name in [c for c in table.column_names if c.startswith("_x_")]:
        values = table[name]
        if name in _AUTHORIZATION:
            new = redacted_column(values)
        elif name.startswith("_x_cookie_"):
            new = _keyed(values, days, keystore, cookie_pseudonym)
        elif name in _COOKIE_HEADERS:
            new = _keyed(values, days, keystore, cookie_header_pseudonyms)
        else:
            continue
        table = table.set_column(table.column_names.index(name), name, new)
    return table


@functools.lru_cache(maxsize=1 << 16)
def network_of(ip_text: str) -> str | None:
    """'203.0.113.7' -> '203.0.113.0/24'; IPv6 -> its /48; None if not an IP."""
    packed = pack_ip(ip_text)
    if packed is None:
        return None
    if len(packed) == 4:
        return socket.inet_ntop(socket.AF_INET, packed[:3] + b"\0") + "/24"
    return socket.inet_ntop(socket.AF_INET6, packed[:6] + b"\0" * 10) + "/48"


def _days(received_at: pa.Array) -> np.ndarray:
    us = pc.cast(received_at, pa.int64()).to_numpy(zero_copy_only=False)
    return us // US_PER_DAY


def _keyed(values: pa.Array, days: np.ndarray, keystore: Keystore, fn) -> pa.Array:
    """fn(secret, value) once per distinct (value, day) pair; nulls stay null."""
    return _keyed_batches(values, days, keystore, lambda secret, vs: [fn(secret, v) for v in vs])


def _keyed_batches(values: pa.Array, days: np.ndarray, keystore: Keystore, batch_fn) -> pa.Array:
    """batch_fn(secret, [distinct values of one key period]) -> results, one call per period."""
    if values.null_count == len(values):
        return pa.nulls(len(values), pa.string())
    enc = encoded(values)
    uniques = enc.dictionary.to_pylist()
    valid = np.asarray(enc.is_valid().to_numpy(zero_copy_only=False), dtype=bool)
    idx = enc.indices.fill_null(0).to_numpy().astype(np.int64)
    width = len(uniques)
    # Invalid rows get a pair below every real one (sorted first), never hashed; days before 1970
    # are negative, so real pairs can be too (floor divmod below recovers day and value).
    invalid = np.iinfo(np.int64).min
    pair = np.where(valid, days.astype(np.int64) * width + idx, invalid)
    pairs, inverse = np.unique(pair, return_inverse=True)
    out: list[str | None] = [None] if pairs[0] == invalid else []
    real = pairs[pairs != invalid]
    pair_days, pair_values = np.divmod(real, width)
    for day in np.unique(pair_days).tolist():
        _, secret = keystore.key_for_day(EPOCH + timedelta(days=day))
        out += batch_fn(secret, [uniques[i] for i in pair_values[pair_days == day].tolist()])
    return with_dictionary(pa.array(inverse.reshape(-1), pa.int32()), pa.array(out, pa.string()))


def _client_columns(ips: pa.Array, days: np.ndarray, keystore: Keystore, ip_mode: str) -> tuple[pa.Array, pa.Array]:
    """(client_id, client_network) of the `_client_ip` column under `ip_mode`."""
    if ip_mode == "truncate":
        return pa.nulls(len(ips), pa.string()), map_unique(ips, network_of)
    if ip_mode == "cryptopan":
        client_id = _keyed_batches(ips, days, keystore, cryptopan_pseudonyms)
        # Prefix preservation: the anonymized address's /24 (/48) is the anonymized network.
        return client_id, map_unique(client_id, network_of)
    return _keyed(ips, days, keystore, ip_pseudonym), map_unique(ips, network_of)


def pseudonymize_records(table: pa.Table, keystore: Keystore, ip_mode: str = "hmac") -> pa.Table:
    """Replace `_client_ip`/`_remote_user` with client_id, client_network, user_id, key_id;
    cookie extras become pseudonyms and all `_x_` extras are packed into the `extra` map.
    Runs after ScrubUrls."""
    check_ip_mode(ip_mode)
    if table.num_rows == 0:
        return pack_extra(table.drop_columns([c for c in IN_MEMORY_COLUMNS if c in table.column_names]))
    days = _days(table["received_at"])
    ips = encoded(table["_client_ip"])
    labels = {int(d): keystore.key_for_day(EPOCH + timedelta(days=int(d)))[0] for d in np.unique(days)}
    unique_days, day_idx = np.unique(days, return_inverse=True)
    key_id = pa.array([labels[int(d)] for d in unique_days], pa.string()).take(pa.array(day_idx.reshape(-1)))
    client_id, client_network = _client_columns(ips, days, keystore, ip_mode)
    columns = {
        "client_id": client_id,
        "client_network": client_network,
        "user_id": _keyed(table["_remote_user"], days, keystore, user_pseudonym),
        "key_id": key_id,
    }
    table = _extras(table.drop_columns(list(IN_MEMORY_COLUMNS)), days, keystore)
    for name, values in columns.items():
        table = table.append_column(name, values)
    return pack_extra(table)


# IP-looking tokens, also with percent-encoded dots and colons (192%2E0%2E2%2E1, 2001%3Adb8%3A%3A1).
# Bounded repetitions only: linear in the length of the line. The lookahead for a first character
# passes over a position that cannot start a token at once (7x faster over a run of NULs).
_IP_TOKEN = re.compile(r"(?=[\[0-9A-Fa-f:%])(?:\[?(?:[0-9]{1,3}(?:\.|%2[Ee])){3}[0-9]{1,3}\]?"
                       r"|\[?[0-9A-Fa-f]{0,4}(?:(?::|%3[Aa])[0-9A-Fa-f]{0,4}){2,7}(?:\.[0-9]{1,3}){0,3}(?:%\w{1,32})?\]?)")


def pseudonymize_ip_tokens(text: str, secret: bytes) -> str:
    """Every IP-looking token of a raw line -> 'ip:<pseudonym>' (for rejects and error messages)."""
    def sub(m: re.Match) -> str:
        ip = normalize_ip(decode_ip_separators(m.group(0)))
        return m.group(0) if ip is None else "ip:" + ip_pseudonym(secret, ip)
    return _IP_TOKEN.sub(sub, text)


@beam.typehints.with_output_types(RecordChunk)
class _PseudonymizeChunk(beam.DoFn):
    def __init__(self, keystore: Keystore, ip_mode: str = "hmac"):
        self.keystore = keystore
        self.ip_mode = check_ip_mode(ip_mode)

    def process(self, chunk):
        yield dataclasses.replace(chunk, records=pseudonymize_records(chunk.records, self.keystore, self.ip_mode))


class PseudonymizeClients(beam.PTransform):
    """RecordChunk with raw `_client_ip`/`_remote_user` -> RecordChunk with pseudonyms only.

    Must be fused with ParseAccessLogs (no shuffle in between) so raw IPs never
    leave the worker's memory.
    """

    def __init__(self, keystore: Keystore, ip_mode: str = "hmac"):
        super().__init__()
        self.keystore = keystore
        self.ip_mode = check_ip_mode(ip_mode)

    def expand(self, chunks):
        return chunks | "Pseudonymize" >> beam.ParDo(_PseudonymizeChunk(self.keystore, self.ip_mode))

"""Crypto-PAn: keyed, prefix-preserving IP anonymization (Xu, Fan, Ammar, Moon, ICNP 2002).

Two addresses that share their first k bits map to two addresses that share exactly their
first k bits; the mapping is one-to-one within a family and needs the 32-byte key to compute
or invert. Output bit i = input bit i XOR the top bit of AES_K(first i input bits, followed by
the pad's remaining bits), where K = key[:16] and pad = AES_K(key[16:]). IPv4 uses 32 bit
positions, IPv6 the same construction over 128 (as the reference code, yacryptopan and the
Go/C#/libanon IPv6 extensions do), so results match the published vectors of those.

Speed: the blocks for all bit positions of all addresses of a batch are built with numpy and
encrypted in one AES-ECB call (each block is independent, so ECB is exactly "one AES per
bit"); Python work per address is then only packing and formatting.
"""
from __future__ import annotations

import functools
import hmac
from collections.abc import Iterable, Sequence

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from transforms.fields import ip_text, pack_ip

KEY_BYTES = 32
_BATCH = 4096        # addresses per AES call: <= 4096 * 128 * 16 B = 8 MiB of blocks
_CACHE_MAX = 1 << 16   # distinct IPs memoized per key (for_secret keeps 4 keys: <= 2^18, as HMAC)
_MISSING = object()

# _PREFIX_MASKS[i] = a 128-bit mask of the first i bits, as 16 bytes (row 0: all zero).
_PREFIX_MASKS = np.packbits(np.arange(128)[None, :] < np.arange(128)[:, None], axis=1)


def derive_key(period_secret: bytes) -> bytes:
    """The Crypto-PAn key of a pseudonymization period: HMAC-SHA256(period secret, b"cryptopan").

    Derived (not stored), so shredding the period key also makes that period's anonymized
    addresses unlinkable, and it is domain-separated from the HMAC pseudonyms."""
    return hmac.digest(period_secret, b"cryptopan", "sha256")


class CryptoPAn:
    """One Crypto-PAn key. Not picklable on purpose: make it where it is used (`for_secret`)."""

    def __init__(self, key: bytes):
        if not isinstance(key, (bytes, bytearray)) or len(key) != KEY_BYTES:
            raise ValueError(f"a Crypto-PAn key is {KEY_BYTES} bytes")
        self._aes = algorithms.AES(bytes(key[:16]))
        pad = self._ecb(bytes(key[16:]))
        # Block for bit position i = (address & mask_i) | (pad & ~mask_i); precompute the pad half.
        self._pad_part = np.frombuffer(pad, np.uint8)[None, :] & ~_PREFIX_MASKS
        self._cache: dict[str, str | None] = {}   # IP text -> anonymized IP text

    def __reduce__(self):
        raise TypeError("CryptoPAn holds key material and is not picklable; derive it on the worker")

    def _ecb(self, data: bytes) -> bytes:
        # A fresh context per call: contexts are not meant to be shared between threads.
        enc = Cipher(self._aes, modes.ECB()).encryptor()
        return enc.update(data) + enc.finalize()

    # -- core ----------------------------------------------------------------------------
    def _flip_bits(self, addrs: np.ndarray, nbits: int) -> np.ndarray:
        """addrs: (n, 16) uint8, address in the leading bytes -> (n, nbits/8) XOR masks."""
        blocks = (addrs[:, None, :] & _PREFIX_MASKS[None, :nbits, :]) | self._pad_part[None, :nbits, :]
        out = np.frombuffer(self._ecb(blocks.tobytes()), np.uint8).reshape(len(addrs), nbits, 16)
        return np.packbits(out[:, :, 0] >> 7, axis=1)

    def _anonymize_family(self, packed: Sequence[bytes], width: int) -> list[bytes]:
        """Same-width packed addresses (4 or 16 bytes) -> anonymized packed addresses."""
        result: list[bytes] = []
        for start in range(0, len(packed), _BATCH):
            part = packed[start:start + _BATCH]
            raw = np.frombuffer(b"".join(part), np.uint8).reshape(len(part), width)
            addrs = np.zeros((len(part), 16), np.uint8)
            addrs[:, :width] = raw
            anon = raw ^ self._flip_bits(addrs, width * 8)
            result += [row.tobytes() for row in anon]
        return result

    # -- API -----------------------------------------------------------------------------
    def anonymize_packed_many(self, packed: Iterable[bytes]) -> list[bytes]:
        """4- or 16-byte packed addresses (mixed) -> anonymized packed addresses, same order."""
        packed = list(packed)
        if any(len(p) not in (4, 16) for p in packed):
            raise ValueError("packed addresses are 4 or 16 bytes")
        result: list[bytes] = [b""] * len(packed)
        for width in (4, 16):
            where = [i for i, p in enumerate(packed) if len(p) == width]
            if where:
                for i, anon in zip(where, self._anonymize_family([packed[i] for i in where], width)):
                    result[i] = anon
        return result

    def anonymize_packed(self, packed: bytes) -> bytes:
        return self.anonymize_packed_many([packed])[0]

    def anonymize_many(self, ips: Iterable[str | None]) -> list[str | None]:
        """IP texts (anything `fields.pack_ip` accepts) -> anonymized canonical IP texts.

        An IPv4-mapped IPv6 address counts as IPv4 (as everywhere in accesslog); anything
        that is not an IP, and None, gives None. Memoized per text (bounded, like the HMAC
        path's cache), so later chunks of the same period only encrypt new addresses."""
        ips = list(ips)
        cache = self._cache
        # One read per distinct text, into a local dict: another thread clearing the cache
        # meanwhile (Beam runs DoFns in threads) cannot make a row lose its value.
        found: dict[str, str | None] = {}
        missing = []
        for ip in set(ips):
            if ip is not None:
                value = cache.get(ip, _MISSING)
                if value is _MISSING:
                    missing.append(ip)
                else:
                    found[ip] = value
        if missing:
            packed = [pack_ip(ip) for ip in missing]
            valid = [i for i, p in enumerate(packed) if p is not None]
            fresh = dict.fromkeys(missing)
            for i, anon in zip(valid, self.anonymize_packed_many([packed[i] for i in valid])):
                fresh[missing[i]] = ip_text(anon)
            if len(cache) + len(fresh) > _CACHE_MAX:
                cache.clear()
            cache.update(fresh)
            found.update(fresh)
        return [None if ip is None else found[ip] for ip in ips]

    def anonymize(self, ip: str) -> str | None:
        return self.anonymize_many([ip])[0]


@functools.lru_cache(maxsize=4)
def for_secret(period_secret: bytes) -> CryptoPAn:
    """The (memoized) CryptoPAn of a period secret: a few periods per run, one per worker."""
    return CryptoPAn(derive_key(period_secret))


def anonymize_bitwise(key: bytes, packed: bytes) -> bytes:
    """The textbook per-bit loop (one AES call per bit, precomputed pad). Slow; a second,
    independent implementation for tests of the vectorized one."""
    cipher = Cipher(algorithms.AES(key[:16]), modes.ECB())

    def prf(block: bytes) -> bytes:
        enc = cipher.encryptor()
        return enc.update(block) + enc.finalize()

    nbits = len(packed) * 8
    pad = int.from_bytes(prf(key[16:]), "big")
    addr = int.from_bytes(packed, "big") << (128 - nbits)
    flips = 0
    for i in range(nbits):
        keep = ((1 << i) - 1) << (128 - i)          # first i bits
        block = (addr & keep) | (pad & ~keep & ((1 << 128) - 1))
        flips = (flips << 1) | (prf(block.to_bytes(16, "big"))[0] >> 7)
    return (int.from_bytes(packed, "big") ^ flips).to_bytes(len(packed), "big")

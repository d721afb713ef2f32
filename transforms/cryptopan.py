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
import socket
from collections.abc import Iterable, Sequence

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from transforms.fields import pack_ip

KEY_BYTES = 32
_BATCH = 4096        # addresses per AES call: <= 4096 * 128 * 16 B = 8 MiB of blocks
_CACHE_MAX = 1 << 18

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
        self._pad = pad
        # Block for bit position i = (address & mask_i) | (pad & ~mask_i); precompute the pad half.
        self._pad_part = np.frombuffer(pad, np.uint8)[None, :] & ~_PREFIX_MASKS
        self._cache: dict[bytes, bytes] = {}

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
        """4- or 16-byte packed addresses (mixed) -> anonymized packed addresses, same order.

        Memoized per address (bounded), so repeated batches only encrypt new addresses."""
        packed = list(packed)
        missing = {p for p in packed if p not in self._cache}
        if missing:
            if len(self._cache) + len(missing) > _CACHE_MAX:
                self._cache.clear()
            for width in (4, 16):
                todo = [p for p in missing if len(p) == width]
                if todo:
                    self._cache.update(zip(todo, self._anonymize_family(todo, width)))
            bad = [p for p in missing if len(p) not in (4, 16)]
            if bad:
                raise ValueError(f"packed addresses are 4 or 16 bytes, not {len(bad[0])}")
        return [self._cache[p] for p in packed]

    def anonymize_packed(self, packed: bytes) -> bytes:
        return self.anonymize_packed_many([packed])[0]

    def anonymize_many(self, ips: Iterable[str | None]) -> list[str | None]:
        """IP texts (anything `fields.pack_ip` accepts) -> anonymized canonical IP texts.

        An IPv4-mapped IPv6 address counts as IPv4 (as everywhere in accesslog); anything
        that is not an IP, and None, gives None."""
        ips = list(ips)
        packed = [None if ip is None else pack_ip(ip) for ip in ips]
        anon = iter(self.anonymize_packed_many([p for p in packed if p is not None]))
        return [None if p is None else ip_text(next(anon)) for p in packed]

    def anonymize(self, ip: str) -> str | None:
        return self.anonymize_many([ip])[0]


def ip_text(packed: bytes) -> str:
    return socket.inet_ntop(socket.AF_INET if len(packed) == 4 else socket.AF_INET6, packed)


@functools.lru_cache(maxsize=16)
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

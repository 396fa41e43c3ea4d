"""A compact set of row identities: 16-byte digests in one bytearray, for duplicate detection over huge files.

A Python `set` of 32-character identities costs ~100 bytes an entry (a million rows: ~100 MB); `DigestSet`
keeps the 16-byte BLAKE2b digest of each identity in an open-addressing table kept at most half full, ~32 bytes
an entry (a million rows: 32 MB). Two identities share a digest with probability ~n²/2¹²⁹: never, in practice.
"""
from __future__ import annotations

import hashlib

__all__ = ["DigestSet"]

_WIDTH = 16
_EMPTY = bytes(_WIDTH)


class DigestSet:
    def __init__(self, capacity: int = 1 << 12) -> None:
        slots = 1
        while slots < capacity:
            slots <<= 1
        self._slots = slots
        self._table = bytearray(_WIDTH * slots)
        self._count = 0

    def __len__(self) -> int:
        return self._count

    @staticmethod
    def digest(identity: str) -> bytes:
        d = hashlib.blake2b(identity.encode("utf-8"), digest_size=_WIDTH).digest()
        return d if d != _EMPTY else b"\x01" + d[1:]  # all-zero marks an empty slot

    def __contains__(self, identity: object) -> bool:
        return isinstance(identity, str) and self._find(self.digest(identity)) < 0

    def add(self, identity: str) -> bool:
        """Add `identity`; False if it was already there."""
        digest = self.digest(identity)
        slot = self._find(digest)
        if slot < 0:
            return False
        self._table[slot:slot + _WIDTH] = digest
        self._count += 1
        if self._count * 2 > self._slots:
            self._grow()
        return True

    def _find(self, digest: bytes) -> int:
        """The byte offset of the empty slot where `digest` would go, or -1 if it is present."""
        table, mask = self._table, self._slots - 1
        index = int.from_bytes(digest[:8], "little") & mask
        while True:
            offset = index * _WIDTH
            current = table[offset:offset + _WIDTH]
            if current == digest:
                return -1
            if current == _EMPTY:
                return offset
            index = (index + 1) & mask

    def _grow(self) -> None:
        old = self._table
        self._slots *= 2
        self._table = bytearray(_WIDTH * self._slots)
        for offset in range(0, len(old), _WIDTH):
            digest = bytes(old[offset:offset + _WIDTH])
            if digest != _EMPTY:
                slot = self._find(digest)
                self._table[slot:slot + _WIDTH] = digest

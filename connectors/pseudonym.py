"""Pseudonymisation: the normalised 18-character ID number -> `person_key` (HMAC-SHA256, hex).

The key is a secret held inside the private network (settings: POVWATCH_PSEUDONYM_KEY_FILE, or
POVWATCH_PSEUDONYM_KEY). The same number and key always give the same person_key, so departments' events join on
it without the number travelling. Every event carries the `key_id` of the key that made its person_key: a short
fingerprint (8 hex digits of HMAC-SHA256(key, "povwatch key id")) that names the key without revealing it.

During a key rotation (docs/operations.md, "Roll the pseudonymisation key") the retiring keys are `previous`:
the roster load also publishes every person under them (`aliases`), so events still in flight under an old key
join their household while new ones use the new key.
"""
from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence

from plumbing.settings import Settings

__all__ = ["Pseudonymiser", "key_id_of", "pseudonymiser_of"]

_KEY_ID_LABEL = b"povwatch key id"


def key_id_of(key: bytes) -> str:
    """The key's public id: 8 hex digits of an HMAC of a constant under it (the key cannot be derived from it)."""
    return hmac.new(key, _KEY_ID_LABEL, hashlib.sha256).hexdigest()[:8]


class Pseudonymiser:
    def __init__(self, key: bytes, previous: Sequence[bytes] = ()) -> None:
        if len(key) < 16 or any(len(k) < 16 for k in previous):
            raise ValueError("pseudonymisation key must be at least 16 bytes")
        self._key = key
        self.key_id = key_id_of(key)
        self._previous = [(key_id_of(k), k) for k in previous if k != key]

    def __repr__(self) -> str:  # never the key
        return f"Pseudonymiser(key_id={self.key_id})"

    @property
    def previous_key_ids(self) -> tuple[str, ...]:
        return tuple(kid for kid, _ in self._previous)

    def person_key(self, id18: str) -> str:
        if len(id18) != 18:
            raise ValueError("person_key needs a normalised 18-character ID number")
        return hmac.new(self._key, id18.encode("ascii"), hashlib.sha256).hexdigest()

    def aliases(self, id18: str) -> list[tuple[str, str]]:
        """(key_id, person_key) of the number under each retiring key: empty outside a rotation."""
        if len(id18) != 18:
            raise ValueError("person_key needs a normalised 18-character ID number")
        return [(kid, hmac.new(k, id18.encode("ascii"), hashlib.sha256).hexdigest()) for kid, k in self._previous]


def pseudonymiser_of(settings: Settings) -> Pseudonymiser:
    """The pseudonymiser of a process's settings: its key, and during a rotation the retiring key."""
    return Pseudonymiser(settings.checked_key(), settings.previous_keys())

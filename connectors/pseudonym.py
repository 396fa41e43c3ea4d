"""Pseudonymisation: the normalised 18-character ID number -> `person_key` (HMAC-SHA256, hex).

The key is a secret held inside the private network (settings: POVWATCH_PSEUDONYM_KEY). The same number and
key always give the same person_key, so departments' events join on it without the number travelling.
"""
from __future__ import annotations

import hashlib
import hmac

__all__ = ["Pseudonymiser"]


class Pseudonymiser:
    def __init__(self, key: bytes) -> None:
        if len(key) < 16:
            raise ValueError("pseudonymisation key must be at least 16 bytes")
        self._key = key

    def person_key(self, id18: str) -> str:
        if len(id18) != 18:
            raise ValueError("person_key needs a normalised 18-character ID number")
        return hmac.new(self._key, id18.encode("ascii"), hashlib.sha256).hexdigest()

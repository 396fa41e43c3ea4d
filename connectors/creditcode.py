"""Unified social credit codes (统一社会信用代码, GB 32100-2015): check character and a field parser.

The code has 18 characters drawn from 0-9 and the capital letters without I, O, Z, S and V (31 characters):
position 1 the registration authority, 2 the entity type, 3-8 the registering authority's region code (digits),
9-17 the organisation code, 18 the check character. The check character is computed over the first 17: each
character's value (0-9, then A=10 ... Y=30 in the order of `ALPHABET`) times its weight 3^(i) mod 31, summed;
the check value is 31 - (sum mod 31), where 31 means 0.

Pure functions. `normalise_credit_code` returns the canonical form (NFKC, upper case, spaces removed) or raises
`InvalidCreditCode` with a reason; `CreditCode` is the connector parser (connectors.fields.Parser).
"""
from __future__ import annotations

import datetime as dt
import unicodedata
from dataclasses import dataclass

from connectors.fields import FieldError

__all__ = ["ALPHABET", "InvalidCreditCode", "credit_check_character", "normalise_credit_code", "CreditCode"]

ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"  # GB 32100-2015 table 2: no I, O, Z, S, V
_VALUE = {c: i for i, c in enumerate(ALPHABET)}
_WEIGHTS = tuple(pow(3, i, 31) for i in range(17))  # 1 3 9 27 19 26 16 17 20 29 25 13 8 24 10 30 28
_UNUSED = set("IOZSV")


class InvalidCreditCode(ValueError):
    """The text is not a valid unified social credit code; str() is the reason."""


def credit_check_character(first17: str) -> str:
    """The check character (position 18) for the first 17 characters of a code."""
    if len(first17) != 17 or any(c not in _VALUE for c in first17):
        raise InvalidCreditCode("need 17 characters of the code's alphabet to compute a check character")
    total = sum(_VALUE[c] * w for c, w in zip(first17, _WEIGHTS))
    return ALPHABET[(31 - total % 31) % 31]


def normalise_credit_code(raw: str) -> str:
    """Canonical 18-character code, or InvalidCreditCode naming what is wrong (full-width characters, lower case
    and spaces are accepted and normalised)."""
    text = unicodedata.normalize("NFKC", raw).strip().replace(" ", "").upper()
    if len(text) != 18:
        raise InvalidCreditCode(f"must be 18 characters, got {len(text)}")
    unused = sorted({c for c in text if c in _UNUSED})
    if unused:
        raise InvalidCreditCode(f"contains {', '.join(unused)} (the letters I, O, Z, S and V are not used)")
    illegal = sorted({c for c in text if c not in _VALUE})
    if illegal:
        raise InvalidCreditCode(f"contains {', '.join(repr(c) for c in illegal)} (only digits and capital letters)")
    if not text[2:8].isdigit():
        raise InvalidCreditCode("characters 3-8 must be the 6-digit region code")
    expected = credit_check_character(text[:17])
    if text[17] != expected:
        raise InvalidCreditCode(f"check character is {text[17]}, expected {expected}")
    return text


@dataclass(frozen=True)
class CreditCode:
    """统一社会信用代码: 18 characters, GB 32100-2015 check character verified."""

    def parse(self, text: str, today: dt.date) -> str:
        try:
            return normalise_credit_code(text)
        except InvalidCreditCode as exc:
            raise FieldError(f"invalid unified social credit code: {exc}") from None

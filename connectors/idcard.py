"""Resident ID numbers (居民身份证号码, GB 11643-1999): check character, 15->18 upgrade, birth date.

Pure functions. `normalise_id` is the only way a raw number enters the system; it returns the canonical
18-character form or raises `InvalidId` with a reason that never repeats the number itself.
"""
from __future__ import annotations

import datetime as dt
import unicodedata

__all__ = ["InvalidId", "check_character", "normalise_id", "birth_date", "sex_from_id", "upgrade_15"]

_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CHECK = "10X98765432"


class InvalidId(ValueError):
    """The text is not a valid resident ID number; str() is the reason (without the number)."""


def check_character(first17: str) -> str:
    """ISO 7064 MOD 11-2 check character for the first 17 digits."""
    if len(first17) != 17 or not first17.isdigit():
        raise InvalidId("need 17 digits to compute a check character")
    total = sum(int(d) * w for d, w in zip(first17, _WEIGHTS))
    return _CHECK[total % 11]


def _parse_birth(yyyymmdd: str) -> dt.date:
    try:
        return dt.date(int(yyyymmdd[:4]), int(yyyymmdd[4:6]), int(yyyymmdd[6:8]))
    except ValueError:
        raise InvalidId("birth date inside the number is not a real date") from None


def upgrade_15(number15: str) -> str:
    """Legacy 15-digit number -> 18 characters (insert '19' before the 2-digit year, add check)."""
    if len(number15) != 15 or not number15.isdigit():
        raise InvalidId("a 15-digit number must be all digits")
    first17 = number15[:6] + "19" + number15[6:]
    return first17 + check_character(first17)


def normalise_id(raw: str) -> str:
    """Canonical 18-character ID number, or InvalidId.

    Accepts surrounding spaces, full-width characters, lower-case `x`, and 15-digit legacy numbers.
    """
    text = unicodedata.normalize("NFKC", raw).strip().replace(" ", "").upper()
    if not text:
        raise InvalidId("missing")
    if len(text) == 15:
        number = upgrade_15(text)
    elif len(text) == 18:
        if not text[:17].isdigit() or not (text[17].isdigit() or text[17] == "X"):
            raise InvalidId("must be 17 digits followed by a digit or X")
        expected = check_character(text[:17])
        if text[17] != expected:
            raise InvalidId(f"check character is {text[17]}, expected {expected}")
        number = text
    else:
        raise InvalidId(f"has {len(text)} characters, expected 18 (or legacy 15)")
    born = _parse_birth(number[6:14])
    if born.year < 1900:
        raise InvalidId("birth year before 1900")
    return number


def birth_date(number18: str) -> dt.date:
    """Birth date encoded in a normalised 18-character number."""
    return _parse_birth(number18[6:14])


def sex_from_id(number18: str) -> str:
    """'M' or 'F' from the 17th character (odd = male)."""
    return "M" if int(number18[16]) % 2 else "F"

"""Field parsers: department text -> typed value, or `FieldError` with a short reason.

Pure functions of the cell text (and `today` for dates). Each parser is a small frozen object so a feed
declares its columns as data (see connectors.departments). Reasons never repeat ID numbers or names.
"""
from __future__ import annotations

import datetime as dt
import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any, Protocol

from connectors.idcard import InvalidId, normalise_id

__all__ = [
    "FieldError",
    "Parser",
    "Text",
    "IdNumber",
    "Date",
    "Amount",
    "Count",
    "Choice",
    "MultiChoice",
    "Year",
    "Sex",
    "RegionCode",
    "clean",
    "parse_date",
    "parse_amount",
    "mask_id_like",
    "mask_free_text",
]


class FieldError(ValueError):
    """The cell cannot be used; str() is the reason."""


def clean(text: str) -> str:
    """NFKC (full-width digits, letters, spaces and punctuation -> ASCII) and trimmed."""
    return unicodedata.normalize("NFKC", text).strip()


def _quoted(value: str, limit: int = 60) -> str:
    """A cell quoted in a reason: ID-like numbers masked first, then cut to `limit` characters."""
    masked = mask_id_like(value)
    return repr(masked if len(masked) <= limit else masked[:limit] + "…")


class Parser(Protocol):
    def parse(self, text: str, today: dt.date) -> Any: ...


@dataclass(frozen=True)
class Text:
    max_length: int = 200

    def parse(self, text: str, today: dt.date) -> str:
        value = clean(text)
        if len(value) > self.max_length:
            raise FieldError(f"longer than {self.max_length} characters")
        return value


@dataclass(frozen=True)
class IdNumber:
    """18-character resident ID number (15-digit legacy numbers upgraded)."""

    def parse(self, text: str, today: dt.date) -> str:
        try:
            return normalise_id(text)
        except InvalidId as exc:
            raise FieldError(f"invalid ID number: {exc}") from None


_DATE_PATTERNS = (
    re.compile(r"^(\d{4})-(\d{1,2})-(\d{1,2})(?:[ T]00:00(?::00)?)?$"),
    re.compile(r"^(\d{4})/(\d{1,2})/(\d{1,2})$"),
    re.compile(r"^(\d{4})\.(\d{1,2})\.(\d{1,2})$"),
    re.compile(r"^(\d{4})(\d{2})(\d{2})$"),
    re.compile(r"^(\d{4})年(\d{1,2})月(\d{1,2})日?$"),
)


def parse_date(text: str, today: dt.date) -> dt.date:
    value = clean(text).replace(" ", "") if "年" in text else clean(text)
    for pattern in _DATE_PATTERNS:
        m = pattern.match(value)
        if m:
            try:
                day = dt.date(int(m[1]), int(m[2]), int(m[3]))
            except ValueError:
                raise FieldError(f"not a real date: {value}") from None
            if day.year < 1900:
                raise FieldError(f"date before 1900: {value}")
            if day > today:
                raise FieldError(f"date in the future: {value}")
            return day
    raise FieldError(f"not a date: {_quoted(value)} (expected e.g. 2024-03-05, 2024/3/5, 20240305, 2024年3月5日)")


@dataclass(frozen=True)
class Date:
    def parse(self, text: str, today: dt.date) -> dt.date:
        return parse_date(text, today)


_CENT = Decimal("0.01")


def parse_amount(text: str) -> Decimal:
    value = clean(text).replace(",", "").replace("元", "").replace("¥", "").replace(" ", "")
    if "e" in value.lower() and value.lower() not in ("nan", "inf", "infinity"):
        # Excel shows a long number as 1.2E+05: the digits it dropped are not in the file
        raise FieldError(f"not an amount: {_quoted(value)} (scientific notation; write the amount in full)")
    try:
        amount = Decimal(value)
    except InvalidOperation:
        raise FieldError(f"not an amount: {_quoted(value)}") from None
    if not amount.is_finite():
        raise FieldError(f"not an amount: {_quoted(value)}")
    if amount < 0:
        raise FieldError("negative amount")
    if amount >= Decimal("1e12"):
        raise FieldError("amount too large")
    if amount == 0:
        amount = Decimal(0)  # "-0" is zero, not a negative zero with another event id
    return amount.quantize(_CENT, rounding=ROUND_HALF_UP)


@dataclass(frozen=True)
class Amount:
    """CNY: `1234.5`, `1,234.50`, full-width digits; negative is invalid."""

    def parse(self, text: str, today: dt.date) -> Decimal:
        return parse_amount(text)


@dataclass(frozen=True)
class Count:
    """A non-negative whole number (people, days)."""

    maximum: int = 100_000

    def parse(self, text: str, today: dt.date) -> int:
        value = clean(text)
        if value.endswith(".0"):
            value = value[:-2]
        if not re.fullmatch(r"-?\d+", value):
            raise FieldError(f"not a whole number: {_quoted(value)}")
        if len(value.lstrip("-").lstrip("0")) > 18:  # int() refuses very long digit strings
            raise FieldError("negative number" if value.startswith("-") else f"larger than {self.maximum}")
        number = int(value)
        if number < 0:
            raise FieldError("negative number")
        if number > self.maximum:
            raise FieldError(f"larger than {self.maximum}")
        return number


@dataclass(frozen=True)
class Choice:
    """A closed set: department labels (Chinese) mapped to schema symbols; symbols accepted as aliases."""

    labels: Mapping[str, str] = field(default_factory=dict)

    def parse(self, text: str, today: dt.date) -> str:
        value = clean(text)
        if value in self.labels:
            return self.labels[value]
        if value.upper() in self.labels.values():
            return value.upper()
        raise FieldError(f"unknown value {_quoted(value)} (expected one of {' / '.join(self.labels)})")


@dataclass(frozen=True)
class MultiChoice:
    """Several values of a closed set joined by `、` (also `,`, `，`, `;`, `；`, `/`): the schema symbols, in the
    set's order, each once; any unknown value rejects the cell with the allowed ones."""

    labels: Mapping[str, str] = field(default_factory=dict)

    def parse(self, text: str, today: dt.date) -> list[str]:
        single = Choice(self.labels)
        parts = [p for p in re.split(r"[、,，;；/]", clean(text)) if p.strip()]
        if not parts:
            raise FieldError(f"no value (expected one or more of {' / '.join(self.labels)}, joined by 、)")
        chosen = {single.parse(part, today) for part in parts}
        return [symbol for symbol in dict.fromkeys(self.labels.values()) if symbol in chosen]


@dataclass(frozen=True)
class Year:
    """A calendar year (年度): four digits, from `minimum` to the current year."""

    minimum: int = 2000

    def parse(self, text: str, today: dt.date) -> int:
        value = clean(text).removesuffix("年").removesuffix("年度").strip()
        if value.endswith(".0"):
            value = value[:-2]
        if not (value.isascii() and value.isdigit() and len(value) == 4):
            raise FieldError(f"not a year: {_quoted(value)}")
        year = int(value)
        if not self.minimum <= year <= today.year:
            raise FieldError(f"year {year} outside {self.minimum}-{today.year}")
        return year


@dataclass(frozen=True)
class Sex:
    def parse(self, text: str, today: dt.date) -> str:
        value = clean(text).upper()
        if value in ("男", "M", "1"):
            return "M"
        if value in ("女", "F", "2"):
            return "F"
        raise FieldError(f"unknown sex {_quoted(value)} (expected 男/女, M/F, 1/2)")


@dataclass(frozen=True)
class RegionCode:
    """Statistical division code: 12 digits (village) or 6 (county-level feeds)."""

    digits: int = 12

    def parse(self, text: str, today: dt.date) -> str:
        value = clean(text)
        if not (value.isascii() and value.isdigit() and len(value) == self.digits):
            raise FieldError(f"region code must be {self.digits} digits, got {len(value)} characters")
        return value


# Digits as a department writes them: ASCII or full-width. Groups of digits joined by one to three separators
# (spaces, full-width spaces, hyphens and dashes, dots) are read as one number when they add up to an ID number
# or a mobile number: `652701 19800101 0029`, `652701-19800101-0029`, `138.0013.8000`, `１３８ ００１３ ８０００`.
_DIGIT = "0-9\uff10-\uff19"
_X = "Xx\uff38\uff58"
_SEPARATOR = "[ \t\u00a0\u3000\\-\u2010-\u2015\u2212\uff0d.\uff0e\u00b7\u30fb]{1,3}"
_DIGIT_RUN = re.compile(f"[{_DIGIT}]+[{_X}]?(?:{_SEPARATOR}[{_DIGIT}]+[{_X}]?)*(?:{_SEPARATOR}[{_X}])?")
_GROUP = re.compile(f"[{_DIGIT}]+[{_X}]?|[{_X}]")
_ASCII = str.maketrans("\uff10\uff11\uff12\uff13\uff14\uff15\uff16\uff17\uff18\uff19\uff38\uff58",
                       "0123456789XX")
_MOBILE = re.compile(r"1[3-9]\d{9}")
ID_MASK = "<id-redacted>"
PHONE_MASK = "<phone-redacted>"
NAME_MASK = "<name-redacted>"


def _plausible_birth(digits: str) -> bool:
    try:
        born = dt.date(int(digits[:4]), int(digits[4:6]), int(digits[6:8]))
    except ValueError:
        return False
    return 1900 <= born.year <= 2099


def _kind(groups: list[str]) -> str | None:
    """What the digit groups (joined) are: "id", "phone" or None."""
    number = "".join(groups).translate(_ASCII).upper()
    body, last = number[:-1], number[-1:]
    if "X" in body:
        return None
    if len(groups) == 1:  # one unbroken run: any run of 15 or more is taken for an ID number (or part of one)
        if len(number) >= 15:
            return "id"
        if last == "X":
            return None
        if _MOBILE.fullmatch(number) or (len(number) == 13 and number.startswith("86") and
                                         _MOBILE.fullmatch(number[2:])):
            return "phone"
        return None
    # several groups: only an exact, plausible shape, so that dates and amounts in a remark stay readable: groups
    # of three or more characters (the last may be shorter: `... 002 X`), an ID number's birth date a real date
    if any(len(group) < 3 for group in groups[:-1]):
        return None
    if last == "X" and len(number) in (16, 19):  # a number followed by a letter x: `... 0029x`
        number, last = body, body[-1:]
    if len(number) == 18 and _plausible_birth(number[6:14]):
        return "id"
    if len(number) == 15 and last != "X" and _plausible_birth("19" + number[6:12]):
        return "id"
    if len(number) == 11 and _MOBILE.fullmatch(number):
        return "phone"
    return None


def _mask_run(run: str) -> str:
    spans = [(m.start(), m.end(), m.group()) for m in _GROUP.finditer(run)]
    out: list[str] = []
    done = 0  # characters of `run` already copied or masked
    i = 0
    while i < len(spans):
        found: tuple[int, str] | None = None
        total = 0
        for j in range(i, len(spans)):
            total += len(spans[j][2])
            if j > i and total > 18:
                break
            kind = _kind([g for _, _, g in spans[i:j + 1]])
            if kind == "id" or (kind == "phone" and found is None):
                found = (j, kind)
        if found is None:
            i += 1
            continue
        j, kind = found
        out.append(run[done:spans[i][0]])
        out.append(ID_MASK if kind == "id" else PHONE_MASK)
        done = spans[j][1]
        i = j + 1
    out.append(run[done:])
    return "".join(out)


def mask_id_like(text: str) -> str:
    """Free text may quote an ID number or a mobile number, in any spacing: mask them.

    Masked: any unbroken run of 15 or more digits (an ID number, with or without its `X`); digit groups joined by
    spaces, hyphens or dots that make an 18-character ID number or a 15-digit legacy one with a plausible birth
    date; an 11-digit mainland mobile number `1[3-9]xxxxxxxxx` (also `86` in front, also in groups). ASCII and
    full-width digits alike. Dates, amounts, region codes and household numbers are left as they are."""
    return _DIGIT_RUN.sub(lambda m: _mask_run(m.group()), text)


def mask_free_text(text: str, names: Iterable[str] = ()) -> str:
    """Free text (a remark, a description, a reason quoting a cell): ID and mobile numbers masked
    (`mask_id_like`), and each of the given names (the row's or the reporter's) replaced by a placeholder."""
    text = mask_id_like(text)
    for name in names:
        if name:
            text = text.replace(name, NAME_MASK)
    return text

"""统一社会信用代码 (GB 32100-2015): the check character, the parser, and the loan due-date parser
(connectors.creditcode, connectors.duedates)."""
from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connectors.creditcode import (
    ALPHABET,
    CreditCode,
    InvalidCreditCode,
    credit_check_character,
    normalise_credit_code,
)
from connectors.duedates import DueDate
from connectors.fields import FieldError

TODAY = dt.date(2024, 7, 1)

# Codes as their holders publish them (business licences, annual reports)
PUBLISHED = [
    "91350100M000100Y43",
    "91110108551385082Q",
    "9144030071526726XG",  # Tencent (Shenzhen)
    "914403001922038216",  # Huawei (Shenzhen)
]


def test_the_weights_are_those_of_the_standard() -> None:
    # GB 32100-2015 table 3: W_i = 3^(i-1) mod 31
    from connectors.creditcode import _WEIGHTS

    assert _WEIGHTS == (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)
    assert len(ALPHABET) == 31 and not set("IOZSV") & set(ALPHABET)


def test_worked_check_character_by_hand() -> None:
    # 91350100M000100Y4: values 9 1 3 5 0 1 0 0 21 0 0 0 1 0 0 30 4, weighted sum
    # 9+3+27+135+0+26+0+0+420+0+0+0+8+0+0+900+112 = 1640; 1640 mod 31 = 28; 31 - 28 = 3 -> "3"
    assert credit_check_character("91350100M000100Y4") == "3"


@pytest.mark.parametrize("code", PUBLISHED)
def test_published_codes_are_valid(code: str) -> None:
    assert credit_check_character(code[:17]) == code[17]
    assert normalise_credit_code(code) == code
    assert CreditCode().parse(code, TODAY) == code


def test_lower_case_full_width_and_spaces_are_normalised() -> None:
    assert normalise_credit_code(" 91110108551385082q ") == "91110108551385082Q"
    full_width = "".join(chr(ord(c) + 0xFEE0) for c in "91350100M000100Y43")
    assert normalise_credit_code(full_width) == "91350100M000100Y43"
    assert normalise_credit_code("9135 0100 M000 100Y 43") == "91350100M000100Y43"


@pytest.mark.parametrize(("text", "reason"), [
    ("91350100M000100Y4", "must be 18 characters, got 17"),
    ("91350100M000100Y433", "must be 18 characters, got 19"),
    ("", "must be 18 characters, got 0"),
    ("91350100M000100Y44", "check character is 4, expected 3"),
    ("91110108551385082R", "check character is R, expected Q"),
    ("91350100M00010OY43", "contains O (the letters I, O, Z, S and V are not used)"),
    ("9I350100M000100Y43", "contains I (the letters I, O, Z, S and V are not used)"),
    ("91350100Z000100S43", "contains S, Z (the letters I, O, Z, S and V are not used)"),
    ("91350100V000100Y43", "contains V (the letters I, O, Z, S and V are not used)"),
    ("91350100M000100-43", "contains '-' (only digits and capital letters)"),
    ("91350100M000100统43", "contains '统' (only digits and capital letters)"),
    ("91A50100M000100Y43", "characters 3-8 must be the 6-digit region code"),
])
def test_invalid_codes_say_why(text: str, reason: str) -> None:
    with pytest.raises(InvalidCreditCode) as caught:
        normalise_credit_code(text)
    assert str(caught.value) == reason
    with pytest.raises(FieldError, match="^invalid unified social credit code: "):
        CreditCode().parse(text, TODAY)


def test_every_single_character_change_is_caught() -> None:
    # MOD 31 with weights coprime to 31: any one changed character changes the check character
    code = PUBLISHED[0]
    for position in range(17):
        for replacement in ALPHABET:
            if replacement == code[position]:
                continue
            changed = code[:position] + replacement + code[position + 1:]
            assert credit_check_character(changed[:17]) != code[17], changed


@given(st.text(max_size=40))
def test_any_text_is_a_code_or_a_reason(text: str) -> None:
    try:
        code = CreditCode().parse(text, TODAY)
    except FieldError as exc:
        assert str(exc).startswith("invalid unified social credit code: ")
    else:
        assert len(code) == 18 and set(code) <= set(ALPHABET)
        assert credit_check_character(code[:17]) == code[17]


@given(st.text(alphabet=ALPHABET, min_size=17, max_size=17))
def test_a_computed_check_character_always_validates(first17: str) -> None:
    code = first17 + credit_check_character(first17)
    if first17[2:8].isdigit():
        assert normalise_credit_code(code) == code
    else:
        with pytest.raises(InvalidCreditCode, match="region code"):
            normalise_credit_code(code)


# --- due dates (贷款到期日期) ----------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "day"), [
    ("2026-04-09", dt.date(2026, 4, 9)),
    ("2026/4/9", dt.date(2026, 4, 9)),
    ("20260409", dt.date(2026, 4, 9)),
    ("2026年4月9日", dt.date(2026, 4, 9)),
    ("2023-04-10", dt.date(2023, 4, 10)),  # a loan already due is a date as well
    ("2074-12-31", dt.date(2074, 12, 31)),  # the last day within the horizon
])
def test_due_dates_may_lie_ahead(text: str, day: dt.date) -> None:
    assert DueDate().parse(text, TODAY) == day


@pytest.mark.parametrize(("text", "reason"), [
    ("2075-01-01", "more than 50 years ahead: 2075-01-01"),
    ("1899-12-31", "date before 1900: 1899-12-31"),
    ("2026-02-30", "not a real date: 2026-02-30"),
    ("明年", "not a date"),
])
def test_due_dates_out_of_range_or_unreadable_are_refused(text: str, reason: str) -> None:
    with pytest.raises(FieldError) as caught:
        DueDate().parse(text, TODAY)
    assert str(caught.value).startswith(reason)


@given(st.text(max_size=40))
def test_any_text_is_a_due_date_or_a_reason(text: str) -> None:
    try:
        day = DueDate().parse(text, TODAY)
    except FieldError as exc:
        assert str(exc)
    else:
        assert dt.date(1900, 1, 1) <= day <= dt.date(2074, 12, 31)

"""Resident ID numbers (GB 11643-1999): check character, normalisation, 15->18 upgrade, birth date, sex."""
from __future__ import annotations

import datetime as dt

import pytest

from connectors.idcard import InvalidId, birth_date, check_character, normalise_id, sex_from_id, upgrade_15

# Hand-worked, GB 11643-1999 / ISO 7064 MOD 11-2, for 11010519491231002X:
#   digits   1  1  0  1  0  5  1  9  4  9  1  2  3  1  0  0  2
#   weights  7  9 10  5  8  4  2  1  6  3  7  9 10  5  8  4  2
#   products 7  9  0  5  0 20  2  9 24 27  7 18 30  5  0  0  4   -> sum 167
#   167 mod 11 = 2; "10X98765432"[2] = "X"
KNOWN = "11010519491231002X"
# Another by hand, a check digit that is a digit: 652701198001011232
#   6*7 + 5*9 + 2*10 + 7*5 + 0*8 + 1*4 + 1*2 + 9*1 + 8*6 + 0*3 + 0*7 + 1*9 + 0*10 + 1*5 + 1*8 + 2*4 + 3*2
#   = 42+45+20+35+0+4+2+9+48+0+0+9+0+5+8+8+6 = 241; 241 mod 11 = 10; "10X98765432"[10] = "2"
KNOWN_DIGIT = "652701198001011232"


def with_check(first17: str) -> str:
    return first17 + check_character(first17)


def test_check_character_matches_hand_worked_examples() -> None:
    assert check_character(KNOWN[:17]) == "X"
    assert check_character(KNOWN_DIGIT[:17]) == "2"


def test_check_character_covers_every_remainder() -> None:
    # varying the last digit (weight 2) walks the sum through residues; every check character shows up
    seen = {check_character(f"6527011980010112{d}") for d in range(10)}
    seen |= {check_character(f"652701198001011{d}0") for d in range(10)}
    assert seen == set("10X98765432")


@pytest.mark.parametrize("bad", ["1101051949123100", "1101051949123100XX", "1101051949123100a"])
def test_check_character_needs_17_digits(bad: str) -> None:
    with pytest.raises(InvalidId, match="need 17 digits"):
        check_character(bad)


@pytest.mark.parametrize("raw", [KNOWN, KNOWN.lower(), KNOWN_DIGIT, f"  {KNOWN}  ", f"\u3000{KNOWN_DIGIT}\t"])
def test_known_good_numbers(raw: str) -> None:
    assert normalise_id(raw) == raw.strip().upper()


def test_full_width_digits_and_spaces_are_accepted() -> None:
    full_width = "".join(chr(ord(c) + 0xFEE0) for c in KNOWN.lower())  # １１０…２ｘ
    assert normalise_id(f"\u3000 {full_width} \u3000") == KNOWN


def test_numbers_computed_with_check_character_are_accepted() -> None:
    for first17 in ("65272219550101044", "65270120120915042", "65270119700811022"):
        number = with_check(first17)
        assert normalise_id(number) == number


def test_wrong_check_character_names_the_expected_one_but_not_the_number() -> None:
    wrong = KNOWN_DIGIT[:17] + "5"
    with pytest.raises(InvalidId) as info:
        normalise_id(wrong)
    reason = str(info.value)
    assert reason == "check character is 5, expected 2"
    assert KNOWN_DIGIT[:17] not in reason and wrong not in reason


@pytest.mark.parametrize("raw, reason", [
    ("", "missing"),
    ("   ", "missing"),
    ("1101051949123100", "has 16 characters, expected 18 (or legacy 15)"),
    ("11010519491231002X1", "has 19 characters, expected 18 (or legacy 15)"),
    ("11010519491231002A", "must be 17 digits followed by a digit or X"),
    ("1101051949123100X2", "must be 17 digits followed by a digit or X"),
    ("11010519491231O02X", "must be 17 digits followed by a digit or X"),  # letter O for zero
    ("11010549123100X", "a 15-digit number must be all digits"),
])
def test_malformed_numbers_are_rejected_without_echo(raw: str, reason: str) -> None:
    with pytest.raises(InvalidId) as info:
        normalise_id(raw)
    assert str(info.value) == reason
    if raw.strip():
        assert raw.strip() not in str(info.value)


def test_fifteen_digit_legacy_number_is_upgraded() -> None:
    assert upgrade_15("110105491231002") == KNOWN
    assert normalise_id(" 110105491231002 ") == KNOWN
    assert birth_date(normalise_id("110105491231002")) == dt.date(1949, 12, 31)


def test_impossible_birth_date_is_rejected() -> None:
    feb30 = with_check("11010519900230002")
    with pytest.raises(InvalidId, match="birth date inside the number is not a real date"):
        normalise_id(feb30)
    with pytest.raises(InvalidId, match="not a real date"):
        normalise_id("110105900230002")  # the legacy form of the same
    with pytest.raises(InvalidId, match="not a real date"):
        normalise_id(with_check("11010519991301002"))  # month 13


def test_leap_day_is_a_real_birth_date() -> None:
    leap = with_check("11010520000229002")
    assert birth_date(normalise_id(leap)) == dt.date(2000, 2, 29)
    with pytest.raises(InvalidId, match="not a real date"):
        normalise_id(with_check("11010519000229002"))  # 1900 was not a leap year


def test_birth_year_before_1900_is_rejected() -> None:
    with pytest.raises(InvalidId, match="birth year before 1900"):
        normalise_id(with_check("11010518991231002"))
    assert normalise_id(with_check("11010519000101002")).startswith("11010519000101")


def test_birth_date_and_sex() -> None:
    assert birth_date(KNOWN) == dt.date(1949, 12, 31)
    assert birth_date(KNOWN_DIGIT) == dt.date(1980, 1, 1)
    assert sex_from_id(KNOWN) == "F"  # 17th character 2: even
    assert sex_from_id(KNOWN_DIGIT) == "M"  # 17th character 3: odd
    assert sex_from_id(with_check("65270119800101120")) == "F"
    assert sex_from_id(with_check("65270119800101129")) == "M"

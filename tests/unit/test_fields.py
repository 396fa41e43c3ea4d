"""Field parsers: department cell text -> typed value, or FieldError with a short reason."""
from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from connectors.catalog import get_feed
from connectors.fields import (
    Amount,
    Choice,
    Count,
    Date,
    FieldError,
    IdNumber,
    RegionCode,
    Sex,
    Text,
    clean,
    mask_id_like,
    parse_amount,
    parse_date,
)

TODAY = dt.date(2024, 7, 1)
MARCH_5 = dt.date(2024, 3, 5)


def full_width(text: str) -> str:
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in text)


# --- dates -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", [
    "2024-03-05",
    "2024/3/5",
    "2024/03/05",
    "2024-3-5",
    "20240305",
    "2024年3月5日",
    "2024年03月05日",
    "2024 年 3 月 5 日",
    "2024.3.5",
    full_width("2024-03-05"),
    "２０２４年３月５日",
    "2024-03-05 00:00:00",  # what Excel writes for a date cell exported as text
    "2024-03-05T00:00",
    "  2024/3/5\u3000",
])
def test_every_date_format(text: str) -> None:
    assert parse_date(text, TODAY) == MARCH_5
    assert Date().parse(text, TODAY) == MARCH_5


def test_today_is_accepted_tomorrow_is_in_the_future() -> None:
    assert parse_date("2024-07-01", TODAY) == TODAY
    with pytest.raises(FieldError, match="^date in the future: 2024-07-02$"):
        parse_date("2024-07-02", TODAY)
    with pytest.raises(FieldError, match="date in the future"):
        parse_date("2099年1月1日", TODAY)


def test_before_1900_is_rejected() -> None:
    assert parse_date("1900-01-01", TODAY) == dt.date(1900, 1, 1)
    with pytest.raises(FieldError, match="^date before 1900: 1899-12-31$"):
        parse_date("1899-12-31", TODAY)


@pytest.mark.parametrize("text", ["2023-02-29", "2024-02-30", "2024/13/1", "20240431", "2024年4月31日"])
def test_impossible_dates_are_rejected(text: str) -> None:
    with pytest.raises(FieldError, match="^not a real date: "):
        parse_date(text, TODAY)


def test_leap_day_is_real() -> None:
    assert parse_date("2024-02-29", TODAY) == dt.date(2024, 2, 29)


@pytest.mark.parametrize("text", ["next week", "03/05/2024", "2024-03", "240305", "2024-03-05 08:30:00", "2024年"])
def test_garbage_dates_are_rejected_with_the_expected_formats(text: str) -> None:
    with pytest.raises(FieldError) as info:
        parse_date(text, TODAY)
    assert str(info.value).startswith("not a date: ")
    assert "2024年3月5日" in str(info.value)


# --- amounts ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text, expected", [
    ("1234.5", "1234.50"),
    ("1,234.50", "1234.50"),
    ("１２３４．５", "1234.50"),
    ("１，２３４．５０", "1234.50"),
    ("14500元", "14500.00"),
    ("¥1,000", "1000.00"),
    (" 38,200.00 ", "38200.00"),
    ("0", "0.00"),
    ("0.005", "0.01"),  # half-up to the cent
    ("0.004", "0.00"),
    ("999999999999.99", "999999999999.99"),
])
def test_amounts(text: str, expected: str) -> None:
    value = parse_amount(text)
    assert value == Decimal(expected)
    assert str(value) == expected
    assert Amount().parse(text, TODAY) == Decimal(expected)


@pytest.mark.parametrize("text", ["-30", "-0.01", "－３０", "-1,000元"])
def test_negative_amount_is_rejected(text: str) -> None:
    with pytest.raises(FieldError) as info:
        parse_amount(text)
    assert str(info.value) == "negative amount"


@pytest.mark.parametrize("text", ["abc", "十二元", "12.3.4", "NaN", "Infinity", "", "1 234,5€"])
def test_garbage_amount_is_rejected(text: str) -> None:
    with pytest.raises(FieldError, match="^not an amount: "):
        parse_amount(text)


def test_amount_beyond_the_schema_precision_is_rejected() -> None:
    with pytest.raises(FieldError, match="amount too large"):
        parse_amount("1000000000000")


# --- counts ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text, expected", [("12", 12), ("0", 0), ("１２", 12), ("12.0", 12), (" 7 ", 7)])
def test_counts(text: str, expected: int) -> None:
    assert Count().parse(text, TODAY) == expected


@pytest.mark.parametrize("text, reason", [
    ("-1", "negative number"),
    ("1.5", "not a whole number: '1.5'"),
    ("五", "not a whole number: '五'"),
    ("", "not a whole number: ''"),
    ("51", "larger than 50"),
])
def test_bad_counts(text: str, reason: str) -> None:
    with pytest.raises(FieldError) as info:
        Count(maximum=50).parse(text, TODAY)
    assert str(info.value) == reason
    assert Count(maximum=50).parse("50", TODAY) == 50


# --- choices, sex, region codes, text, ID numbers --------------------------------------------------------------

CHANGE_TYPE = next(c.parser for c in get_feed("public-security", "registration-change").columns
                   if c.field == "change_type")


def test_choice_maps_labels_and_accepts_symbols() -> None:
    assert isinstance(CHANGE_TYPE, Choice)
    assert CHANGE_TYPE.parse("死亡", TODAY) == "DEATH"
    assert CHANGE_TYPE.parse(" 注销\u3000", TODAY) == "CANCELLED"
    assert CHANGE_TYPE.parse("MOVE_OUT", TODAY) == "MOVE_OUT"
    assert CHANGE_TYPE.parse("marry_in", TODAY) == "MARRY_IN"


def test_choice_unknown_value_lists_the_expected_labels() -> None:
    with pytest.raises(FieldError) as info:
        CHANGE_TYPE.parse("失踪", TODAY)
    assert str(info.value) == "unknown value '失踪' (expected one of 死亡 / 迁出 / 出生 / 嫁入 / 嫁出 / 注销)"


@pytest.mark.parametrize("text, expected", [("男", "M"), ("女", "F"), ("M", "M"), ("F", "F"), ("m", "M"),
                                            ("f", "F"), ("1", "M"), ("2", "F"), ("Ｍ", "M"), (" 女 ", "F")])
def test_sex(text: str, expected: str) -> None:
    assert Sex().parse(text, TODAY) == expected


@pytest.mark.parametrize("text", ["未知", "0", "3", "X", "男性"])
def test_unknown_sex(text: str) -> None:
    with pytest.raises(FieldError, match=r"^unknown sex .* \(expected 男/女, M/F, 1/2\)$"):
        Sex().parse(text, TODAY)


def test_region_codes() -> None:
    assert RegionCode().parse("652701100201", TODAY) == "652701100201"
    assert RegionCode().parse(full_width("652701100201"), TODAY) == "652701100201"
    assert RegionCode(6).parse("652701", TODAY) == "652701"
    for bad, digits in [("65270110020", 12), ("6527011002011", 12), ("65270110020A", 12), ("652701100201", 6),
                        ("65270", 6)]:
        with pytest.raises(FieldError, match=f"region code must be {digits} digits, got {len(bad)} characters"):
            RegionCode(digits).parse(bad, TODAY)


def test_text_is_cleaned_and_bounded() -> None:
    assert Text().parse("\u3000脑梗死 ", TODAY) == "脑梗死"
    assert Text(max_length=3).parse("ＡＢＣ", TODAY) == "ABC"
    with pytest.raises(FieldError, match="longer than 3 characters"):
        Text(max_length=3).parse("八年级一班", TODAY)
    assert clean("（元）") == "(元)"


def test_id_number_field_wraps_the_reason() -> None:
    assert IdNumber().parse("11010519491231002x", TODAY) == "11010519491231002X"
    with pytest.raises(FieldError) as info:
        IdNumber().parse("110105194912310021", TODAY)
    assert str(info.value) == "invalid ID number: check character is 1, expected X"


# --- masking ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text, masked", [
    ("本人身份证652701198001011232已核实", "本人身份证<id-redacted>已核实"),
    ("旧证110105491231002", "旧证<id-redacted>"),
    ("11010519491231002X与11010519491231002x", "<id-redacted>与<id-redacted>"),
    ("电话13899999999, 2024-03-05 迁出", "电话<phone-redacted>, 2024-03-05 迁出"),
    ("户编号65270110020100", "户编号65270110020100"),  # 14 digits: left alone
])
def test_mask_id_like(text: str, masked: str) -> None:
    assert mask_id_like(text) == masked

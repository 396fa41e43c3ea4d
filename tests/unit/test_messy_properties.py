"""Property-based tests of every field parser and of the readers: whatever a department's file holds (arbitrary
bytes and encodings, huge cells, control characters, formula-like cells, exponents, dates out of range), the
answer is a correct value or a clear rejection (FieldError, a row rejected with reasons, InputFileError for a
file that cannot be read at all), never another exception."""
from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
import re
import tempfile
from decimal import Decimal
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from connectors.catalog import EVENT_FEEDS, ROSTER, get_feed
from connectors.fields import (
    Amount,
    Choice,
    Count,
    Date,
    FieldError,
    IdNumber,
    Parser,
    RegionCode,
    Sex,
    Text,
    mask_id_like,
    parse_amount,
    parse_date,
)
from connectors.framework import (
    EventHandler,
    FeedSpec,
    RawRow,
    Rejection,
    ValidRecord,
    redacted_fields,
    run_file,
    validate,
)
from connectors.idcard import check_character
from connectors.pseudonym import Pseudonymiser
from connectors.readers import MAX_CELL_CHARS, MAX_RECORD_LINES, read_table
from schemas.codec import default_codec
from schemas.errors import InputFileError
from tests.unit.doubles import TEST_KEY, MemoryPublisher, fixed_clock, make_id

TODAY = dt.date(2024, 7, 1)
CODEC = default_codec()
REG = get_feed("public-security", "registration-change")
FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

NASTY = ["=cmd|' /C calc'!A0", "+SUM(A1:A9)", "-2+3", "@HYPERLINK(\"x\")", "1e5", "1E+05", "-1e-5", "NaN", "inf",
         "\x00", "\x07\x1b[31m", "\u202e", "\ufeff", "9" * 5000, "1" * 20_000, "２０２４年１３月１日", "0000-00-00",
         "9999-12-31", "1899-12-31", "2024-02-30", "\r\n", "\"", "'", "\u3000", "٢٠٢٤-٠٣-٠٥", "١٢", "①②", "²"]
CELLS = st.one_of(st.text(max_size=60), st.sampled_from(NASTY),
                  st.text(alphabet=st.characters(codec="utf-8"), max_size=20))
PARSERS: list[Parser] = [Text(), Text(max_length=3), IdNumber(), Date(), Amount(), Count(), Count(maximum=3660),
                         Sex(), RegionCode(), RegionCode(6),
                         Choice({"死亡": "DEATH", "迁出": "MOVE_OUT", "出生": "BIRTH"})]


@FAST
@given(text=CELLS, parser=st.sampled_from(PARSERS))
def test_every_parser_returns_a_value_or_a_field_error(text: str, parser: Parser) -> None:
    try:
        value = parser.parse(text, TODAY)
    except FieldError as exc:
        reason = str(exc)
        assert reason and "\n" not in reason.replace("\\n", "") and len(reason) < 300
        return
    if isinstance(parser, Text):
        assert isinstance(value, str) and len(value) <= parser.max_length
    elif isinstance(parser, IdNumber):
        assert re.fullmatch(r"\d{17}[\dX]", value) and value[17] == check_character(value[:17])
    elif isinstance(parser, Date):
        assert dt.date(1900, 1, 1) <= value <= TODAY
    elif isinstance(parser, Amount):
        assert isinstance(value, Decimal) and Decimal(0) <= value < Decimal("1e12")
        assert value == value.quantize(Decimal("0.01")) and not value.is_signed()
    elif isinstance(parser, Count):
        assert isinstance(value, int) and 0 <= value <= parser.maximum
    elif isinstance(parser, Sex):
        assert value in ("M", "F")
    elif isinstance(parser, RegionCode):
        assert value.isascii() and value.isdigit() and len(value) == parser.digits
    elif isinstance(parser, Choice):
        assert value in parser.labels.values()


@FAST
@given(day=st.dates(min_value=dt.date(1, 1, 1), max_value=dt.date(9999, 12, 31)),
       form=st.sampled_from(["{y:04d}-{m:02d}-{d:02d}", "{y:04d}/{m}/{d}", "{y:04d}{m:02d}{d:02d}",
                             "{y:04d}年{m}月{d}日", "{y:04d}.{m}.{d}"]),
       today=st.dates(min_value=dt.date(1950, 1, 1), max_value=dt.date(2100, 1, 1)))
def test_dates_in_every_format_are_read_or_out_of_range(day: dt.date, form: str, today: dt.date) -> None:
    text = form.format(y=day.year, m=day.month, d=day.day)
    if day.year < 1000:
        try:
            parse_date(text, today)
        except FieldError:
            return
        raise AssertionError(f"{text} accepted")
    if day.year < 1900:
        expected = "date before 1900"
    elif day > today:
        expected = "date in the future"
    else:
        assert parse_date(text, today) == day
        return
    try:
        parse_date(text, today)
    except FieldError as exc:
        assert str(exc).startswith(expected)
    else:
        raise AssertionError(f"{text} accepted")


@FAST
@given(cents=st.integers(min_value=0, max_value=10**14 - 1), grouped=st.booleans(), full_width=st.booleans())
def test_amounts_written_in_full_are_read_exactly(cents: int, grouped: bool, full_width: bool) -> None:
    text = f"{cents // 100:,}" if grouped else str(cents // 100)
    text += f".{cents % 100:02d}"
    if full_width:
        text = "".join(chr(ord(c) + 0xFEE0) for c in text)
    assert parse_amount(text) == Decimal(cents) / 100


@FAST
@given(mantissa=st.integers(min_value=-999, max_value=999), exponent=st.integers(min_value=-400, max_value=400),
       letter=st.sampled_from(["e", "E", "ｅ"]))
def test_exponents_are_refused_in_amounts(mantissa: int, exponent: int, letter: str) -> None:
    try:
        parse_amount(f"{mantissa}{letter}{exponent:+d}")
    except FieldError as exc:
        assert "not an amount" in str(exc) or str(exc) == "negative amount"
    else:
        raise AssertionError("exponent accepted")


# --- masking ---------------------------------------------------------------------------------------------------

FILLER = st.text(alphabet=st.characters(exclude_categories=["Nd", "No"], exclude_characters="Xx\uff38\uff58"),
                 max_size=12)
SEPARATORS = st.sampled_from([" ", "-", ".", "\u3000", "－", "．", "  ", " - "])


def _write(digits: str, cuts: list[int], separator: str, full_width: bool) -> str:
    """The number in groups (of three or more digits, the last one may be shorter: how people write numbers)."""
    pieces, last = [], 0
    for cut in sorted(set(c for c in cuts if 0 < c < len(digits))):
        if cut - last < 3:
            continue
        pieces.append(digits[last:cut])
        last = cut
    pieces.append(digits[last:])
    text = separator.join(pieces)
    if full_width:
        text = "".join(chr(ord(c) + 0xFEE0) if c.isdigit() or c == "X" else c for c in text)
    return text


@FAST
@given(born=st.dates(min_value=dt.date(1900, 1, 1), max_value=dt.date(2099, 12, 31)),
       serial=st.integers(min_value=0, max_value=999), county=st.integers(min_value=110000, max_value=659999),
       cuts=st.lists(st.integers(min_value=1, max_value=17), max_size=4), separator=SEPARATORS,
       full_width=st.booleans(), before=FILLER, after=FILLER)
@example(born=dt.date(1980, 1, 1), serial=2, county=652701, cuts=[6, 14], separator=" ", full_width=False,
         before="身份证", after="")
def test_an_id_number_in_any_spacing_is_masked(born: dt.date, serial: int, county: int, cuts: list[int],
                                               separator: str, full_width: bool, before: str, after: str) -> None:
    number = make_id(str(county), born.strftime("%Y%m%d"), serial)
    masked = mask_id_like(before + _write(number, cuts, separator, full_width) + after)
    assert "<id-redacted>" in masked
    assert not re.search(r"[0-9\uff10-\uff19]", masked), masked  # no digit of the number is left


@FAST
@given(rest=st.integers(min_value=0, max_value=10**9 - 1), second=st.sampled_from("3456789"),
       cuts=st.lists(st.integers(min_value=1, max_value=10), max_size=3), separator=SEPARATORS,
       full_width=st.booleans(), before=FILLER, after=FILLER)
def test_a_mobile_number_in_any_spacing_is_masked(rest: int, second: str, cuts: list[int], separator: str,
                                                  full_width: bool, before: str, after: str) -> None:
    number = f"1{second}{rest:09d}"
    masked = mask_id_like(before + _write(number, cuts, separator, full_width) + after)
    assert "<phone-redacted>" in masked
    assert not re.search(r"[0-9\uff10-\uff19]", masked), masked


@FAST
@given(days=st.lists(st.dates(min_value=dt.date(1900, 1, 1), max_value=dt.date(2099, 12, 31)), min_size=1,
                     max_size=4), separator=st.sampled_from([" ", "，", "、", " 至 "]))
def test_dates_and_amounts_in_a_remark_stay_readable(days: list[dt.date], separator: str) -> None:
    text = separator.join(d.isoformat() for d in days) + " 金额1,234.50元 户编号65270110020100"
    assert mask_id_like(text) == text


@FAST
@given(text=st.text(max_size=300))
def test_masking_never_fails_and_is_idempotent(text: str) -> None:
    once = mask_id_like(text)
    assert mask_id_like(once) == once


# --- readers ---------------------------------------------------------------------------------------------------


def _read(data: bytes, suffix: str = ".csv") -> tuple[list[str], list[tuple[int, list[str]]], dict[int, list[str]]]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"f{suffix}"
        path.write_bytes(data)
        table = read_table(path)
        return table.headers, list(table.rows), table.problems


@FAST
@given(data=st.binary(max_size=400))
@example(data=b"a,b\r\n1,\"x\r\n2,y\r\n")
@example(data=b"\xef\xbb\xbf")
@example(data=b"a\x00b,c\r\n\x00,\"\x00\r\n")
def test_arbitrary_bytes_are_rows_or_one_clear_line(data: bytes) -> None:
    try:
        headers, rows, problems = _read(data)
    except InputFileError as exc:
        assert str(exc) and "\n" not in str(exc)
        return
    numbers = [n for n, _ in rows]
    assert numbers == list(range(2, len(rows) + 2))
    assert all(isinstance(c, str) and len(c) <= MAX_CELL_CHARS for _, cells in rows for c in cells)
    assert set(problems) <= set(numbers)


@FAST
@given(text=st.text(alphabet=st.sampled_from(list('ab,"\r\n 张\x00\x0b\u2028')), max_size=300),
       encoding=st.sampled_from(["utf-8", "utf-8-sig", "gb18030"]))
def test_every_physical_line_is_accounted_for(text: str, encoding: str) -> None:
    data = ("h1,h2\r\n" + text).encode(encoding)
    headers, rows, problems = _read(data)
    body_lines = re.findall(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+$", text)
    # no row spans more lines than a cell may, every line is in some row: rows never outnumber lines, and a
    # file without quotes has exactly one row per line
    assert len(rows) <= len(body_lines)
    for number, cells in rows:
        breaks = sum(len(re.findall(r"\r\n|\r|\n", c)) for c in cells)
        assert breaks <= MAX_RECORD_LINES
        if number in problems:
            assert breaks == 0  # a line read on its own holds nothing of the next line
    if '"' not in text:
        assert [cells for _, cells in rows] == [
            next(csv.reader([line.rstrip("\r\n")]), []) for line in body_lines]


@FAST
@given(rows=st.lists(st.lists(CELLS, min_size=0, max_size=7), max_size=8),
       encoding=st.sampled_from(["utf-8", "utf-8-sig", "gb18030"]), huge=st.integers(min_value=0, max_value=3),
       broken=st.booleans())
def test_any_file_with_the_header_gives_a_balanced_summary(rows: list[list[str]], encoding: str, huge: int,
                                                           broken: bool) -> None:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow(["姓名", "身份证号码", "变动类型", "变动日期", "备注"])
    writer.writerows(rows)
    if huge:
        writer.writerow(["张三", make_id("652701", "19800101", 1), "死亡", "2024-05-01",
                         "长" * (MAX_CELL_CHARS * huge)])
    text = buf.getvalue()
    if broken:
        text += '李四,652701198001011232,迁出,2024-05-02,"未关上\r\n' + text.split("\r\n", 1)[1]
    try:
        data = text.encode(encoding)
    except UnicodeEncodeError:
        assume(False)
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "r.csv"
        path.write_bytes(data)
        publisher = MemoryPublisher()
        now = dt.datetime(2024, 7, 1, 3, 0, tzinfo=dt.UTC)
        handler = EventHandler(REG, pseudonymiser=Pseudonymiser(TEST_KEY), codec=CODEC, clock=fixed_clock(now))
        summary = asyncio.run(run_file(REG, path, handler, publisher_factory=lambda: publisher, codec=CODEC,
                                       clock=fixed_clock(now)))
    assert summary.read == summary.published + summary.rejected + summary.duplicates
    assert len(publisher.on(REG.dlq)) == summary.rejected
    assert all(reasons for _, reasons in summary.rejects)
    if huge > 1:
        assert any("over the limit of 10,000" in r for _, reasons in summary.rejects for r in reasons)
    for message in publisher.sent:
        assert len(message.value) < 100_000
        record: dict[str, Any] = CODEC.decode(message.value).record
        assert record


@FAST
@given(cells=st.lists(st.lists(CELLS, min_size=1, max_size=4), min_size=1, max_size=4))
def test_xlsx_cells_are_text_within_the_limit(cells: list[list[str]]) -> None:
    from openpyxl import Workbook
    from openpyxl.utils.exceptions import IllegalCharacterError

    book = Workbook()
    sheet = book.active
    try:
        sheet.append(["a", "b", "c", "d"])
        for row in cells:
            sheet.append(row)
    except IllegalCharacterError:
        assume(False)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "f.xlsx"
        book.save(path)
        table = read_table(path)
        rows = list(table.rows)
    assert all(len(c) <= MAX_CELL_CHARS for _, row in rows for c in row)
    assert set(table.problems) <= {n for n, _ in rows}


# --- every feed's validation, cross-field checks included --------------------------------------------------------

SPECS = [*EVENT_FEEDS.values(), ROSTER]
PLAUSIBLE = st.sampled_from(["2024-03-05", "2024/6/30", "20240101", "2099-01-01", "0", "12", "6200", "1,234.50",
                             "-30", "1e5", "男", "女", "户主", "子", "死亡", "迁出", "洪涝", "倒塌", "初中", "小学",
                             "脱贫户", "监测中", "有劳动能力", "652701100201", "652701",
                             make_id("652701", "19800101", 1), make_id("652701", "20120915", 42), "BL-100201-0001",
                             "张三"])


@FAST
@given(data=st.data(), spec=st.sampled_from(SPECS))
def test_every_feed_validates_any_row_to_a_record_or_reasons(data: st.DataObject, spec: FeedSpec) -> None:
    cells = {c.field: data.draw(st.one_of(PLAUSIBLE, CELLS), label=c.field) for c in spec.columns}
    problems = tuple(data.draw(st.lists(st.sampled_from(["line 2: unbalanced quote"]), max_size=1)))
    outcome = validate(spec, RawRow(2, cells, problems), TODAY)
    if isinstance(outcome, Rejection):
        assert outcome.reasons and all(isinstance(r, str) and r for r in outcome.reasons)
        assert set(problems) <= set(outcome.reasons)
    else:
        assert isinstance(outcome, ValidRecord) and not problems
        assert set(outcome.values) == {c.field for c in spec.columns}
    fields = redacted_fields(spec, RawRow(2, cells))
    for col in spec.columns:
        if col.sensitive and cells[col.field].strip():
            assert fields[col.field] == f"<redacted {col.sensitive}>"

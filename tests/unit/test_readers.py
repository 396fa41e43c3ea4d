"""Reading department files from disk: encodings, XLSX cells, and files that cannot be read at all."""
from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from openpyxl import Workbook

from connectors.readers import decode_text, read_table
from schemas.errors import InputFileError

HEADER = ["姓名", "身份证号码", "疾病名称", "入院日期"]
ROW = ["张三", "652701198001011232", "脑梗死", "2024/3/5"]
CSV_TEXT = ",".join(HEADER) + "\r\n" + ",".join(ROW) + "\r\n"


def rows(path: Path) -> tuple[list[str], list[tuple[int, list[str]]], str]:
    table = read_table(path)
    return table.headers, list(table.rows), table.encoding


def one_line_error(path: Path) -> str:
    with pytest.raises(InputFileError) as info:
        rows(path)
    message = str(info.value)
    assert "\n" not in message and message
    return message


@pytest.mark.parametrize("encoding, detected", [("utf-8", "utf-8"), ("utf-8-sig", "utf-8-sig"),
                                                ("gbk", "gb18030"), ("gb18030", "gb18030")])
def test_csv_in_every_accepted_encoding(tmp_path: Path, encoding: str, detected: str) -> None:
    path = tmp_path / "h.csv"
    path.write_bytes(CSV_TEXT.encode(encoding))
    headers, data, found = rows(path)
    assert headers == HEADER  # no BOM left on the first header
    assert data == [(2, ROW)]
    assert found == detected


def test_gbk_bytes_are_really_not_utf8() -> None:
    # the point of the GBK case: these bytes fail UTF-8 and must be recognised as GB18030
    data = CSV_TEXT.encode("gbk")
    with pytest.raises(UnicodeDecodeError):
        data.decode("utf-8")
    assert decode_text(data) == (CSV_TEXT, "gb18030")


def test_gb18030_characters_outside_gbk(tmp_path: Path) -> None:
    name = "𠀀娜"  # U+20000 exists in GB18030 (four bytes), not in GBK
    with pytest.raises(UnicodeEncodeError):
        name.encode("gbk")
    path = tmp_path / "h.csv"
    path.write_bytes(f"姓名\r\n{name}\r\n".encode("gb18030"))
    assert rows(path) == (["姓名"], [(2, [name])], "gb18030")


def test_undecodable_file_is_one_clear_line(tmp_path: Path) -> None:
    garbage = b"\x80\xff\xfe\x81"
    for encoding in ("utf-8", "gb18030", "gbk"):
        with pytest.raises(UnicodeDecodeError):
            garbage.decode(encoding)
    path = tmp_path / "h.csv"
    path.write_bytes(b"\xd0\xd5\xc3\xfb," + garbage + b"\r\n")
    assert one_line_error(path) == "cannot decode the file: it is neither UTF-8 nor GB18030/GBK text"


def test_bom_followed_by_invalid_utf8(tmp_path: Path) -> None:
    path = tmp_path / "h.csv"
    path.write_bytes(b"\xef\xbb\xbf" + CSV_TEXT.encode("gbk"))
    assert one_line_error(path) == "file starts with a UTF-8 BOM but is not valid UTF-8"


@pytest.mark.parametrize("content", [b"", b"\xef\xbb\xbf"])
def test_empty_file(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "empty.csv"
    path.write_bytes(content)
    assert one_line_error(path) == "empty.csv: the file is empty (no header row)"


def test_missing_file_and_directory(tmp_path: Path) -> None:
    assert one_line_error(tmp_path / "nowhere.csv") == f"no such file: {tmp_path / 'nowhere.csv'}"
    (tmp_path / "dir.csv").mkdir()
    assert one_line_error(tmp_path / "dir.csv") == f"not a file: {tmp_path / 'dir.csv'}"


@pytest.mark.parametrize("name, message", [
    ("h.json", "h.json: unsupported file type .json; expected .csv or .xlsx"),
    ("h", "h: unsupported file type (none); expected .csv or .xlsx"),
    ("h.xls", "h.xls: legacy .xls is not supported; save it as .xlsx or .csv"),
    ("H.XLS", "H.XLS: legacy .xls is not supported; save it as .xlsx or .csv"),
])
def test_unsupported_file_types(tmp_path: Path, name: str, message: str) -> None:
    path = tmp_path / name
    path.write_bytes(CSV_TEXT.encode("utf-8"))
    assert one_line_error(path) == message


def test_upper_case_csv_suffix_and_txt(tmp_path: Path) -> None:
    for name in ("H.CSV", "h.txt"):
        (tmp_path / name).write_text(CSV_TEXT, encoding="utf-8")
        assert rows(tmp_path / name)[1] == [(2, ROW)]


def test_blank_lines_keep_their_row_numbers(tmp_path: Path) -> None:
    path = tmp_path / "h.csv"
    path.write_text(",".join(HEADER) + "\r\n\r\n" + ",".join(ROW) + "\r\n,,,\r\n" + ",".join(ROW) + "\r\n",
                    encoding="utf-8")
    _, data, _ = rows(path)
    assert data == [(2, []), (3, ROW), (4, ["", "", "", ""]), (5, ROW)]


def test_quoted_cells_with_commas_and_newlines(tmp_path: Path) -> None:
    path = tmp_path / "h.csv"
    path.write_text('金额,备注\r\n"38,200.00","第一行\r\n第二行"\r\n5,ok\r\n', encoding="utf-8")
    assert rows(path)[1] == [(2, ["38,200.00", "第一行\r\n第二行"]), (3, ["5", "ok"])]


def test_xlsx_cells_become_text(tmp_path: Path) -> None:
    book = Workbook()
    sheet = book.active
    sheet.append(["入院日期", "结算日期", "时间", "住院天数", "医疗总费用", "个人自付金额", "身份证号码", "备注"])
    sheet.append([dt.datetime(2024, 3, 5), dt.date(2024, 3, 18), dt.datetime(2024, 3, 5, 8, 30), 12, 38200.0,
                  14500.5, "11010519491231002X", None])
    sheet.append([None] * 8)
    sheet.append(["2024/4/1", None, None, 5, 6200, 0.5, "652701198001011232", "复诊"])
    book.save(tmp_path / "h.xlsx")
    headers, data, encoding = rows(tmp_path / "h.xlsx")
    assert encoding == "xlsx"
    assert headers[0] == "入院日期" and len(headers) == 8
    assert data == [
        (2, ["2024-03-05", "2024-03-18", "2024-03-05 08:30:00", "12", "38200", "14500.5", "11010519491231002X", ""]),
        (3, [""] * 8),
        (4, ["2024/4/1", "", "", "5", "6200", "0.5", "652701198001011232", "复诊"]),
    ]


def test_empty_xlsx(tmp_path: Path) -> None:
    Workbook().save(tmp_path / "empty.xlsx")
    assert one_line_error(tmp_path / "empty.xlsx") == "empty.xlsx: the first sheet is empty (no header row)"


@pytest.mark.parametrize("content", [b"not a workbook at all", CSV_TEXT.encode("utf-8"), b"PK\x03\x04broken"])
def test_file_named_xlsx_that_is_not_a_workbook(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "h.xlsx"
    path.write_bytes(content)
    assert one_line_error(path).startswith("h.xlsx: not a readable XLSX workbook")


def test_decode_text_prefers_utf8() -> None:
    assert decode_text("中文".encode("utf-8")) == ("中文", "utf-8")
    assert decode_text(b"\xef\xbb\xbf" + "中文".encode("utf-8")) == ("中文", "utf-8-sig")
    assert decode_text("中文".encode("gbk")) == ("中文", "gb18030")

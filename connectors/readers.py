"""Reading department files: CSV (UTF-8, UTF-8 with BOM, GB18030/GBK) and XLSX -> header + text rows.

`read_table(path)` returns a `Table`: the header cells and an iterator of `(row_number, cells)` where the
header is row 1, as the department sees it in Excel. Every cell is text; Excel dates become ISO dates.
A file that cannot be read at all raises `InputFileError` with one clear line.
"""
from __future__ import annotations

import csv
import datetime as dt
import io
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from schemas.errors import InputFileError

__all__ = ["Table", "read_table", "decode_text"]


@dataclass(frozen=True)
class Table:
    headers: list[str]
    rows: Iterator[tuple[int, list[str]]]
    encoding: str


def decode_text(data: bytes) -> tuple[str, str]:
    """(text, encoding name): UTF-8 with BOM, UTF-8, then GB18030 (a superset of GBK and GB2312)."""
    if data.startswith(b"\xef\xbb\xbf"):
        try:
            return data[3:].decode("utf-8"), "utf-8-sig"
        except UnicodeDecodeError:
            raise InputFileError("file starts with a UTF-8 BOM but is not valid UTF-8") from None
    for encoding in ("utf-8", "gb18030"):
        try:
            return data.decode(encoding), encoding
        except UnicodeDecodeError:
            continue
    raise InputFileError("cannot decode the file: it is neither UTF-8 nor GB18030/GBK text")


def _read_csv(path: Path) -> Table:
    text, encoding = decode_text(path.read_bytes())
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        headers = next(reader)
    except StopIteration:
        raise InputFileError(f"{path.name}: the file is empty (no header row)") from None
    except csv.Error as exc:
        raise InputFileError(f"{path.name}: not a CSV file ({exc})") from None

    def rows() -> Iterator[tuple[int, list[str]]]:
        number = 1
        try:
            for cells in reader:
                number += 1
                yield number, cells
        except csv.Error as exc:
            raise InputFileError(f"{path.name}: broken CSV near row {number + 1} ({exc})") from None

    return Table(headers, rows(), encoding)


def _cell_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, dt.datetime):
        return value.date().isoformat() if value.time() == dt.time() else value.isoformat(sep=" ")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _read_xlsx(path: Path) -> Table:
    import openpyxl  # imported here: only XLSX files need it
    from openpyxl.utils.exceptions import InvalidFileException

    try:
        book = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except (InvalidFileException, zipfile.BadZipFile, OSError, KeyError, ValueError) as exc:
        raise InputFileError(f"{path.name}: not a readable XLSX workbook ({exc})") from None
    sheet = book.worksheets[0]
    values = sheet.iter_rows(values_only=True)
    try:
        headers = [_cell_text(v) for v in next(values)]
    except StopIteration:
        book.close()
        raise InputFileError(f"{path.name}: the first sheet is empty (no header row)") from None

    def rows() -> Iterator[tuple[int, list[str]]]:
        try:
            for number, row in enumerate(values, start=2):
                yield number, [_cell_text(v) for v in row]
        finally:
            book.close()

    return Table(headers, rows(), "xlsx")


def read_table(path: Path) -> Table:
    if not path.exists():
        raise InputFileError(f"no such file: {path}")
    if not path.is_file():
        raise InputFileError(f"not a file: {path}")
    suffix = path.suffix.lower()
    if suffix in (".xlsx", ".xlsm"):
        return _read_xlsx(path)
    if suffix in (".csv", ".txt"):
        return _read_csv(path)
    if suffix == ".xls":
        raise InputFileError(f"{path.name}: legacy .xls is not supported; save it as .xlsx or .csv")
    raise InputFileError(f"{path.name}: unsupported file type {suffix or '(none)'}; expected .csv or .xlsx")

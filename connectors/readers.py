"""Reading department files: CSV (UTF-8, UTF-8 with BOM, GB18030/GBK) and XLSX -> header + text rows.

`read_table(path)` returns a `Table`: the header cells and an iterator of `(row_number, cells)` where the
header is row 1, as the department sees it in Excel. Every cell is text; Excel dates become ISO dates.
A file that cannot be read at all raises `InputFileError` with one clear line.

Messy input never costs more than its own row. `Table.problems` (filled as the rows are iterated, by row number)
lists what is wrong with a row the reader could still deliver:
- A CSV record is one physical line unless a quoted cell legitimately spans lines. A record that spans lines
  but does not close its quote by the end of the file, is not well-formed CSV, spans more than
  `MAX_RECORD_LINES` lines, or swallows a line that reads as a row of its own (as many cells as the header) is
  not taken: its first line is read on its own and gets a problem (unbalanced quote), and reading resumes on the
  next physical line. So every physical line is accounted for, and no row carries another row's text.
- A line csv cannot parse at all (whatever the reason) becomes a row of its own with that problem.
- A cell longer than `MAX_CELL_CHARS` is replaced by a placeholder starting with `OVERSIZED` and its row gets a
  problem; the whole file is never refused for it (csv's own field size limit is raised for this).
Row numbers count records, as Excel does (a cell with a line break keeps its row one row); in a file without
such cells, row N is physical line N.
"""
from __future__ import annotations

import csv
import datetime as dt
import re
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from schemas.errors import InputFileError

__all__ = ["Table", "read_table", "decode_text", "MAX_CELL_CHARS", "MAX_RECORD_LINES", "OVERSIZED"]

MAX_CELL_CHARS = 10_000  # a longer cell rejects its row (no field of any feed is near this)
MAX_RECORD_LINES = 50  # a quoted cell spanning more lines than this is taken for an unbalanced quote
OVERSIZED = "<oversized cell:"  # start of the placeholder that replaces a cell over MAX_CELL_CHARS

# csv's default field limit (131,072) would make one long cell fail the whole file; the limit is ours (above).
# Process-wide, and only ever raised.
_CSV_FIELD_LIMIT = 2**31 - 1
_LINE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+$")


@dataclass(frozen=True)
class Table:
    headers: list[str]
    rows: Iterator[tuple[int, list[str]]]
    encoding: str
    problems: dict[int, list[str]] = field(default_factory=dict)  # row number -> problems, filled while iterating


def _checked_cells(number: int, cells: list[str], headers: list[str],
                   problems: dict[int, list[str]]) -> list[str]:
    """Cells over MAX_CELL_CHARS are replaced by a placeholder and recorded as a problem of the row."""
    if all(len(c) <= MAX_CELL_CHARS for c in cells):
        return cells
    out = []
    for index, cell in enumerate(cells):
        if len(cell) > MAX_CELL_CHARS:
            name = headers[index].strip() if index < len(headers) and headers[index].strip() else "?"
            problems.setdefault(number, []).append(
                f"column {index + 1} ({name}): cell of {len(cell):,} characters, over the limit of "
                f"{MAX_CELL_CHARS:,}")
            cell = f"{OVERSIZED} {len(cell)} characters>"
        out.append(cell)
    return out


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


def _physical_lines(text: str) -> list[str]:
    """The text's lines with their ends (CRLF, LF or a lone CR), as csv would see them."""
    return _LINE.findall(text)


class _LineFeed:
    """Physical lines from `start` on, for csv.reader, counting what it takes; at most `limit` lines."""

    def __init__(self, lines: list[str], start: int, limit: int) -> None:
        self.lines, self.pos, self.limit = lines, start, limit
        self.record_start = start

    def __iter__(self) -> _LineFeed:
        return self

    def __next__(self) -> str:
        if self.pos >= len(self.lines) or self.pos - self.record_start >= self.limit:
            raise StopIteration
        self.pos += 1
        return self.lines[self.pos - 1]


def _line_alone(line: str) -> tuple[list[str], str]:
    """One physical line parsed on its own (an open quote runs to the end of the line): (cells, csv error)."""
    try:
        return next(csv.reader([line.rstrip("\r\n")]), []), ""
    except csv.Error as exc:
        return [line.rstrip("\r\n")], str(exc)


def _suspect(record_lines: list[str], width: int) -> bool:
    """Is a record spanning several lines a quote that never closed rather than a cell with line breaks?"""
    if len(record_lines) > MAX_RECORD_LINES:
        return True
    try:
        for _ in csv.reader(record_lines, strict=True):
            pass
    except csv.Error:
        return True  # not well-formed: e.g. the quote is still open at the end of the file
    return width >= 2 and any(len(_line_alone(line)[0]) >= width for line in record_lines[1:])


def _csv_records(lines: list[str], width: int | None) -> Iterator[tuple[list[str], str]]:
    """(cells, problem) per record; `width` is the header's cell count (None while reading the header)."""
    i = 0
    while i < len(lines):
        feed = _LineFeed(lines, i, MAX_RECORD_LINES + 1)
        reader = csv.reader(feed)
        while feed.pos < len(lines):
            start = feed.record_start = feed.pos
            try:
                cells = next(reader)
            except StopIteration:  # only at the record limit: the feed stopped in the middle of a record
                cells = []
            except csv.Error as exc:
                yield [lines[start].rstrip("\r\n")], f"line {start + 1} cannot be read as CSV ({exc})"
                i = start + 1
                break
            taken = lines[start:feed.pos]
            if len(taken) > 1 and _suspect(taken, width or 0):
                alone, error = _line_alone(lines[start])
                yield alone, (f"line {start + 1}: a quoted cell opens and does not close on its line (unbalanced "
                              f"quote); the line was read on its own" + (f" ({error})" if error else ""))
                i = start + 1
                break
            yield cells, ""
            if width is None:
                width = len(cells)
        else:
            i = len(lines)


def _read_csv(path: Path) -> Table:
    text, encoding = decode_text(path.read_bytes())
    if csv.field_size_limit() < _CSV_FIELD_LIMIT:
        csv.field_size_limit(_CSV_FIELD_LIMIT)
    lines = _physical_lines(text)
    records = _csv_records(lines, None)
    try:
        headers, _ = next(records)
    except StopIteration:
        raise InputFileError(f"{path.name}: the file is empty (no header row)") from None
    problems: dict[int, list[str]] = {}

    def rows() -> Iterator[tuple[int, list[str]]]:
        number = 1
        for cells, problem in records:
            number += 1
            if problem:
                problems.setdefault(number, []).append(problem)
            yield number, _checked_cells(number, cells, headers, problems)

    return Table(headers, rows(), encoding, problems)


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

    problems: dict[int, list[str]] = {}

    def rows() -> Iterator[tuple[int, list[str]]]:
        try:
            for number, row in enumerate(values, start=2):
                yield number, _checked_cells(number, [_cell_text(v) for v in row], headers, problems)
        finally:
            book.close()

    return Table(headers, rows(), "xlsx", problems)


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

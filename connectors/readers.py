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

import codecs
import csv
import datetime as dt
import io
import zipfile
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from schemas.errors import InputFileError

__all__ = ["Table", "read_table", "decode_text", "cell_text", "MAX_CELL_CHARS", "MAX_RECORD_LINES", "OVERSIZED"]

MAX_CELL_CHARS = 10_000  # a longer cell rejects its row (no field of any feed is near this)
MAX_RECORD_LINES = 50  # a quoted cell spanning more lines than this is taken for an unbalanced quote
OVERSIZED = "<oversized cell:"  # start of the placeholder that replaces a cell over MAX_CELL_CHARS

# csv's default field limit (131,072) would make one long cell fail the whole file; the limit is ours (above).
# Process-wide, and only ever raised.
_CSV_FIELD_LIMIT = 2**31 - 1


@dataclass(frozen=True)
class Table:
    headers: list[str]
    rows: Iterator[tuple[int, list[str]]]
    encoding: str
    problems: dict[int, list[str]] = field(default_factory=dict)  # row number -> problems, filled while iterating
    progress: Callable[[], tuple[int, int]] = lambda: (0, 0)  # (done, total) for an ETA: bytes, or XLSX rows
    close: Callable[[], None] = lambda: None  # release the file before the rows are exhausted


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


class _Lines:
    """Physical lines of a text stream with their ends (CRLF, LF or a lone CR), as csv would see them, read
    ahead only as far as asked: `at(k)` is the k-th line from the current one, `drop(n)` moves on."""

    def __init__(self, stream: Iterator[str]) -> None:
        self._stream = stream
        self._ahead: deque[str] = deque()
        self._ended = False

    def at(self, k: int) -> str | None:
        while len(self._ahead) <= k and not self._ended:
            line = next(self._stream, None)
            if line is None:
                self._ended = True
            else:
                self._ahead.append(line)
        return self._ahead[k] if k < len(self._ahead) else None

    def drop(self, n: int) -> None:
        for _ in range(n):
            self._ahead.popleft()

    def taken(self, n: int) -> list[str]:
        return [self._ahead[k] for k in range(n)]


class _LineFeed:
    """The lines of one record, for csv.reader, counting what it takes; at most `limit` lines."""

    def __init__(self, lines: _Lines, limit: int) -> None:
        self.lines, self.pos, self.limit = lines, 0, limit

    def __iter__(self) -> _LineFeed:
        return self

    def __next__(self) -> str:
        line = self.lines.at(self.pos) if self.pos < self.limit else None
        if line is None:
            raise StopIteration
        self.pos += 1
        return line


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


def _csv_records(lines: _Lines, width: int | None) -> Iterator[tuple[list[str], str]]:
    """(cells, problem) per record; `width` is the header's cell count (None while reading the header).
    Holds at most MAX_RECORD_LINES + 1 lines at a time, whatever the size of the file."""
    number = 0  # physical lines consumed so far
    while (first := lines.at(0)) is not None:
        feed = _LineFeed(lines, MAX_RECORD_LINES + 1)
        try:
            cells = next(csv.reader(feed))
        except StopIteration:  # only at the record limit: the feed stopped in the middle of a record
            cells = []
        except csv.Error as exc:
            yield [first.rstrip("\r\n")], f"line {number + 1} cannot be read as CSV ({exc})"
            lines.drop(1)
            number += 1
            continue
        if feed.pos > 1 and _suspect(lines.taken(feed.pos), width or 0):
            alone, error = _line_alone(first)
            yield alone, (f"line {number + 1}: a quoted cell opens and does not close on its line (unbalanced "
                          f"quote); the line was read on its own" + (f" ({error})" if error else ""))
            lines.drop(1)
            number += 1
            continue
        lines.drop(feed.pos)
        number += feed.pos
        yield cells, ""
        if width is None:
            width = len(cells)


_CHUNK = 1 << 20


def _sniff_encoding(path: Path) -> str:
    """The file's encoding, checked over the whole file a chunk at a time (the memory of one chunk): UTF-8 with
    BOM, UTF-8, then GB18030 (a superset of GBK and GB2312), as decode_text decides it."""
    with path.open("rb") as handle:
        bom = handle.read(3) == b"\xef\xbb\xbf"
        for encoding in (("utf-8",) if bom else ("utf-8", "gb18030")):
            handle.seek(3 if bom else 0)
            decoder = codecs.getincrementaldecoder(encoding)()
            try:
                while chunk := handle.read(_CHUNK):
                    decoder.decode(chunk)
                decoder.decode(b"", final=True)
            except UnicodeDecodeError:
                continue
            return "utf-8-sig" if bom else encoding
    if bom:
        raise InputFileError("file starts with a UTF-8 BOM but is not valid UTF-8")
    raise InputFileError("cannot decode the file: it is neither UTF-8 nor GB18030/GBK text")


def _read_csv(path: Path) -> Table:
    encoding = _sniff_encoding(path)
    if csv.field_size_limit() < _CSV_FIELD_LIMIT:
        csv.field_size_limit(_CSV_FIELD_LIMIT)
    size = path.stat().st_size
    raw = path.open("rb")
    text = io.TextIOWrapper(raw, encoding=encoding, newline="")
    records = _csv_records(_Lines(iter(text)), None)
    try:
        headers, _ = next(records)
    except StopIteration:
        text.close()
        raise InputFileError(f"{path.name}: the file is empty (no header row)") from None
    problems: dict[int, list[str]] = {}

    def rows() -> Iterator[tuple[int, list[str]]]:
        number = 1
        try:
            for cells, problem in records:
                number += 1
                if problem:
                    problems.setdefault(number, []).append(problem)
                yield number, _checked_cells(number, cells, headers, problems)
        finally:
            text.close()

    def progress() -> tuple[int, int]:
        return (size if raw.closed else raw.tell()), size

    return Table(headers, rows(), encoding, problems, progress=progress, close=text.close)


def cell_text(value: Any) -> str:
    """A cell value as the text a spreadsheet shows: dates ISO, whole floats without `.0`, None empty."""
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
        headers = [cell_text(v) for v in next(values)]
    except StopIteration:
        book.close()
        raise InputFileError(f"{path.name}: the first sheet is empty (no header row)") from None

    problems: dict[int, list[str]] = {}
    total = sheet.max_row or 0  # from the sheet's dimension, when the writer recorded one
    done = [1]

    def rows() -> Iterator[tuple[int, list[str]]]:
        try:
            for number, row in enumerate(values, start=2):
                done[0] = number
                yield number, _checked_cells(number, [cell_text(v) for v in row], headers, problems)
        finally:
            book.close()

    def progress() -> tuple[int, int]:
        return done[0], max(total, done[0]) if total else 0

    return Table(headers, rows(), "xlsx", problems, progress=progress, close=book.close)


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

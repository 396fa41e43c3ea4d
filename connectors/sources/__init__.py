"""Row sources: where a connector's rows come from. A file and a batch of a SQL table are both a `RowSource`
(header cells + numbered text rows), and one loop (connectors.framework.run_rows) validates, publishes and
dead-letters the rows of either.

    file_source(path)               a CSV or XLSX file, read as a stream (connectors.readers)
    connectors.sources.sql          a department's table or view, polled by a cursor (updated-at + key)
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from connectors.readers import read_table

__all__ = ["RowSource", "file_source"]


@dataclass
class RowSource:
    """`origin` names the source in every event and dead letter (`Source.origin`: the file name or the table);
    `row_origin(row)`, when set, names one row's origin instead (a SQL row: the table and the row's key).
    `problems` (row number -> what the reader found wrong) is filled as the rows are iterated.
    `position()` -> (done, total) measures how far the reading is, for progress."""

    origin: str
    headers: list[str]
    rows: Iterator[tuple[int, list[str]]]
    encoding: str = ""
    problems: dict[int, list[str]] = field(default_factory=dict)
    position: Callable[[], tuple[int, int]] = lambda: (0, 0)
    close: Callable[[], None] = lambda: None
    row_origin: Callable[[int], str] | None = None

    def origin_of(self, row: int) -> str:
        return self.row_origin(row) if self.row_origin is not None else self.origin


def file_source(path: Path) -> RowSource:
    """A department file as a row source (InputFileError with one line when it cannot be read at all)."""
    table = read_table(path)
    return RowSource(path.name, table.headers, table.rows, table.encoding, table.problems,
                     position=table.progress, close=table.close)

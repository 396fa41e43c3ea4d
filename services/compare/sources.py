"""Where a department's comparison looks: a file or a SQL table in the layout of one of its feeds (I/O only).

A file is read as the feed's connector reads it (connectors.sources.file_source: CSV in any of the encodings,
XLSX). A SQL source is read whole (`SELECT *` of the table, or the query), its column names being the headers,
each value turned into text as a spreadsheet cell is (connectors.readers.cell_text): the current data, read
afresh for every batch of requests.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError

from connectors.readers import cell_text
from connectors.sources import RowSource, file_source
from schemas.errors import DatabaseUnavailable, InputFileError

__all__ = ["SourceConfig", "open_source"]


@dataclass(frozen=True)
class SourceConfig:
    """One source: `path` (a file), or `url` with `table` or `query`."""

    feed: str
    path: Path | None = None
    url: str | None = None
    table: str | None = None
    query: str | None = None

    @property
    def label(self) -> str:
        return str(self.path.name) if self.path is not None else (self.table or "query")


def _sql_rows(config: SourceConfig) -> RowSource:
    try:
        engine = create_engine(config.url or "")
    except (ArgumentError, NoSuchModuleError, ValueError) as exc:
        raise InputFileError(f"comparison source {config.label}: bad url ({exc})") from None
    statement = config.query if config.query is not None else f"SELECT * FROM {config.table}"
    try:
        with engine.connect() as connection:
            result = connection.execute(text(statement))
            headers = list(result.keys())
            records = result.fetchall()
    except SQLAlchemyError as exc:
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DatabaseUnavailable(f"comparison source {config.label}: {detail}") from None
    finally:
        engine.dispose()

    def rows() -> Iterator[tuple[int, list[str]]]:
        for number, record in enumerate(records, start=2):  # as in a file: the header is row 1
            yield number, [cell_text(value) for value in record]

    return RowSource(config.label, headers, rows(), "sql")


def open_source(config: SourceConfig) -> RowSource:
    """The source's rows (InputFileError / DatabaseUnavailable with one line when it cannot be read)."""
    if config.path is not None:
        return file_source(config.path)
    return _sql_rows(config)

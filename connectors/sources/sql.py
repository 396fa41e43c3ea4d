"""A department's table or view as a row source, polled incrementally through SQLAlchemy.

Rows are read in the order of (update time, key) and only those after the cursor, the (update time, key) of
the last row already acknowledged; the condition is written without row values, so every database takes it:

    WHERE u > :t OR (u = :t AND k > :k)  ORDER BY u, k  LIMIT :n

A row updated again later comes back once more (its update time moved past the cursor), as a department expects
of a change feed. Values are compared as the driver returns them (no reflection of column types): a SQLite text
timestamp is compared as the text it is stored as, a PostgreSQL timestamp as a timestamp. The result's column
names are the headers (Chinese or English, as in a file) and each value becomes text as a spreadsheet cell
does; the one loop of connectors.framework validates, publishes and dead-letters them.
"""
from __future__ import annotations

import datetime as dt
import decimal
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, and_, column, create_engine, literal_column, or_, select, table, text
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError

from connectors.readers import cell_text
from connectors.sources import RowSource
from schemas.errors import DatabaseUnavailable, InputFileError

__all__ = ["SqlSpec", "Cursor", "SqlBatch", "SqlSource", "encode_value", "decode_value"]


@dataclass(frozen=True)
class SqlSpec:
    """`table` (optionally `schema.table`) or `query` (a SELECT whose result is read like a table)."""

    name: str
    url: str
    table: str | None
    query: str | None
    updated_column: str
    key_column: str
    batch_rows: int = 5000


@dataclass(frozen=True)
class Cursor:
    """The (update time, key) of the last row done, and how many rows the source has given so far (the next
    row's number in events and dead letters is `rows + 1`)."""

    updated: Any = None
    key: Any = None
    rows: int = 0


@dataclass
class SqlBatch:
    source: RowSource
    count: int
    last: Cursor  # the cursor once the whole batch is acknowledged


def encode_value(value: Any) -> Any:
    """A cursor value as JSON, tagged so that it comes back as the same type (decode_value)."""
    if isinstance(value, dt.datetime):
        return {"datetime": value.isoformat()}
    if isinstance(value, dt.date):
        return {"date": value.isoformat()}
    if isinstance(value, decimal.Decimal):
        return {"decimal": str(value)}
    if value is None or isinstance(value, (int, float, str)):
        return value
    return {"text": str(value)}


def decode_value(value: Any) -> Any:
    if isinstance(value, Mapping):
        [(kind, text_value)] = value.items()
        readers: dict[str, Callable[[str], Any]] = {"datetime": dt.datetime.fromisoformat,
                                                    "date": dt.date.fromisoformat,
                                                    "decimal": decimal.Decimal, "text": str}
        return readers[kind](text_value)
    return value


def _unavailable(spec: SqlSpec, exc: BaseException) -> DatabaseUnavailable:
    detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return DatabaseUnavailable(f"SQL source {spec.name}: {detail}")


class SqlSource:
    def __init__(self, spec: SqlSpec) -> None:
        self.spec = spec
        try:
            self._engine: Engine = create_engine(spec.url, pool_pre_ping=True)
        except (ArgumentError, NoSuchModuleError, ValueError) as exc:
            raise InputFileError(f"SQL source {spec.name}: bad url ({exc})") from None
        if spec.query is not None:
            relation: Any = text(f"({spec.query}) AS povwatch_source")
        else:
            schema, _, name = (spec.table or "").rpartition(".")
            relation = table(name, schema=schema or None)
        self._relation = relation
        self.label = spec.table or spec.name

    def close(self) -> None:
        self._engine.dispose()

    def _statement(self, cursor: Cursor) -> Any:
        u: Any = column(self.spec.updated_column)
        k: Any = column(self.spec.key_column)
        statement: Any = select(literal_column("*")).select_from(self._relation)
        if cursor.updated is not None:
            statement = statement.where(or_(u > cursor.updated, and_(u == cursor.updated, k > cursor.key)))
        return statement.order_by(u, k).limit(self.spec.batch_rows)

    def fetch(self, cursor: Cursor) -> SqlBatch:
        """The next batch after `cursor` (at most batch_rows rows). DatabaseUnavailable (one line) when the
        database cannot be read; InputFileError when the cursor columns are not in the result."""
        try:
            with self._engine.connect() as connection:
                result = connection.execute(self._statement(cursor))
                headers = list(result.keys())
                records: Sequence[Any] = result.fetchall()
        except SQLAlchemyError as exc:
            raise _unavailable(self.spec, exc) from None
        return self._batch(headers, records, cursor)

    def _batch(self, headers: list[str], records: Sequence[Any], cursor: Cursor) -> SqlBatch:
        missing = [c for c in (self.spec.updated_column, self.spec.key_column) if c not in headers]
        if missing:
            raise InputFileError(f"SQL source {self.spec.name}: cursor column{'s' if len(missing) > 1 else ''} "
                                 f"{', '.join(missing)} not in the result (columns: {', '.join(headers)})")
        u, k = headers.index(self.spec.updated_column), headers.index(self.spec.key_column)
        keys: dict[int, Any] = {}
        rows: list[tuple[int, list[str]]] = []
        number = cursor.rows
        for record in records:
            number += 1
            keys[number] = record[k]
            rows.append((number, [cell_text(v) for v in record]))
        last = (Cursor(records[-1][u], records[-1][k], number) if records else cursor)
        label, key_name = self.label, self.spec.key_column
        source = RowSource(label, headers, iter(rows), "sql", position=lambda: (0, 0),
                           row_origin=lambda row: f"{label}[{key_name}={keys[row]}]")
        return SqlBatch(source, len(rows), last)

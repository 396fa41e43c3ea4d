"""The SQL source on SQLite (the same behaviour as on PostgreSQL: tests/sql_source_behaviour.py), and its
one-line errors."""
from __future__ import annotations

import datetime as dt
import decimal
from pathlib import Path

import pytest

from connectors.sources.sql import Cursor, SqlSource, SqlSpec, decode_value, encode_value
from schemas.errors import DatabaseUnavailable, InputFileError
from services.watch.checkpoint import SqlMark, StateStore
from tests.sql_source_behaviour import check_incremental_polling


def test_incremental_polling_on_sqlite(tmp_path: Path) -> None:
    check_incremental_polling(f"sqlite:///{tmp_path / 'dept.db'}", tmp_path)


def test_cursor_values_round_trip_through_the_state_file(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "s.db")
    for value in (dt.datetime(2024, 1, 2, 3, 4, 5, 6), dt.datetime(2024, 1, 2, tzinfo=dt.UTC), dt.date(2024, 1, 2),
                  decimal.Decimal("1.50"), 7, "2024-01-02 03:04:05", None):
        assert decode_value(encode_value(value)) == value
        store.save_sql("x", SqlMark(Cursor(value, value, 3), {("t", 0): 5}))
        mark = store.sql("x")
        assert mark is not None and mark.cursor == Cursor(value, value, 3) and mark.offsets == {("t", 0): 5}
    store.close()


def test_errors_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match="bad url"):
        SqlSource(SqlSpec("s", "nonsense://", "t", None, "u", "k"))
    missing = SqlSource(SqlSpec("s", f"sqlite:///{tmp_path / 'x.db'}", "nope", None, "u", "k"))
    with pytest.raises(DatabaseUnavailable, match=r"^SQL source s: .*no such table: nope") as caught:
        missing.fetch(Cursor())
    assert "\n" not in str(caught.value)
    import sqlite3

    with sqlite3.connect(tmp_path / "y.db") as conn:
        conn.execute("CREATE TABLE t (a TEXT, b TEXT)")
        conn.execute("INSERT INTO t VALUES ('1', '2')")
    wrong = SqlSource(SqlSpec("s", f"sqlite:///{tmp_path / 'y.db'}", "t", None, "updated", "a"))
    with pytest.raises(DatabaseUnavailable, match=r"^SQL source s: .*no such column: updated$"):
        wrong.fetch(Cursor())  # the database itself refuses the ORDER BY

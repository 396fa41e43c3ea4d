"""The SQL source's behaviour, the same on every database: tests/unit/test_sql_source.py runs it on SQLite,
tests/integration/test_sql_source_postgres.py on the real PostgreSQL of scripts/postgres.sh.

A department table with Chinese column names (and a view of it with English ones), rows sharing an update time
(the key breaks the tie), a bad row, batches smaller than the table, a "restart" (a new source and a reopened
state file) between two batches, then updates and inserts: every row is published exactly once per version,
in (updated_at, id) order, and the cursor survives the restart."""
from __future__ import annotations

import asyncio
import datetime as dt
import decimal
import uuid
from pathlib import Path

from sqlalchemy import Column, Date, DateTime, Integer, MetaData, Numeric, Table, Text, create_engine, text

from connectors.catalog import get_feed
from connectors.framework import EventHandler, Resume, run_rows
from connectors.pseudonym import Pseudonymiser
from connectors.sources.sql import Cursor, SqlSource, SqlSpec
from schemas.codec import default_codec
from services.watch.checkpoint import SqlMark, StateStore
from tests.bigfile import person_id
from tests.unit.doubles import TEST_KEY, MemoryPublisher, fixed_clock

HOSP = get_feed("medical-security", "hospitalization")
CODEC = default_codec()
T0 = dt.datetime(2024, 6, 1, 10, 0, 0)


def make_table(url: str) -> tuple[str, list[dict[str, object]]]:
    """A fresh table named stays_<random> with 25 rows (row 13 has a negative amount); its rows."""
    name = f"stays_{uuid.uuid4().hex[:8]}"
    engine = create_engine(url)
    table = Table(name, MetaData(), Column("id", Integer, primary_key=True), Column("姓名", Text),
                  Column("身份证号码", Text), Column("疾病名称", Text), Column("入院日期", Date),
                  Column("住院天数", Integer), Column("医疗总费用", Numeric(12, 2)),
                  Column("个人自付金额", Numeric(12, 2)),
                  Column("结算日期", Date), Column("updated_at", DateTime))
    rows: list[dict[str, object]] = [
        {"id": pk, "姓名": "赵六", "身份证号码": person_id(700_000 + pk), "疾病名称": "肺炎",
         "入院日期": dt.date(2024, 3, 1), "住院天数": 3, "医疗总费用": decimal.Decimal("2000.50"),
         "个人自付金额": decimal.Decimal("-1" if pk == 13 else "300"), "结算日期": dt.date(2024, 3, 9),
         "updated_at": T0 + dt.timedelta(seconds=pk // 3)}  # three rows share each update time
        for pk in (25, 3, 7, 1, 2, 4, 5, 6, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24)]
    with engine.begin() as conn:
        table.create(conn)
        conn.execute(table.insert(), rows)
        conn.execute(text(f'CREATE VIEW {name}_en AS SELECT id, "姓名" AS name, "身份证号码" AS id_number, '
                          f'"疾病名称" AS disease, "入院日期" AS admission_date, "住院天数" AS days, '
                          f'"医疗总费用" AS total_cost, "个人自付金额" AS out_of_pocket, '
                          f'"结算日期" AS settlement_date, updated_at FROM {name}'))
    engine.dispose()
    return name, rows


def poll(spec: SqlSpec, state: Path, publisher: MemoryPublisher, *, max_batches: int | None = None) -> int:
    """Poll like the watch service: fetch after the stored cursor, run the batch, store the new cursor once the
    batch is flushed. Returns the number of batches run."""
    store = StateStore(state)
    source = SqlSource(spec)
    handler = EventHandler(HOSP, pseudonymiser=Pseudonymiser(TEST_KEY), codec=CODEC, clock=fixed_clock())
    runs = 0
    try:
        mark = store.sql(spec.name) or SqlMark(Cursor(), {})
        while max_batches is None or runs < max_batches:
            batch = source.fetch(mark.cursor)
            if batch.count == 0:
                break
            asyncio.run(run_rows(HOSP, batch.source, handler, publisher, codec=CODEC, clock=fixed_clock(),
                                 resume=Resume(mark.cursor.rows)))
            mark = SqlMark(batch.last, {})
            store.save_sql(spec.name, mark)
            runs += 1
    finally:
        source.close()
        store.close()
    return runs


def events(publisher: MemoryPublisher) -> list[dict[str, object]]:
    return [CODEC.decode(m.value).record for m in publisher.on(HOSP.topic)]


def check_incremental_polling(url: str, tmp: Path) -> None:
    name, rows = make_table(url)
    spec = SqlSpec("his", url, name, None, "updated_at", "id", batch_rows=4)
    state = tmp / "state.db"
    publisher = MemoryPublisher()
    assert poll(spec, state, publisher, max_batches=2) == 2          # 8 rows, then the "process" stops
    assert poll(spec, state, publisher) == 5                         # a new process resumes: 17 rows left
    published = events(publisher)
    origins = [e["source"]["origin"] for e in published]  # type: ignore[index]
    order = sorted((r for r in rows if r["id"] != 13), key=lambda r: (r["updated_at"], r["id"]))  # type: ignore
    assert origins == [f"{name}[id={r['id']}]" for r in order]      # in cursor order, each once
    assert len({e["event_id"] for e in published}) == 24
    [letter] = publisher.on(HOSP.dlq)
    assert letter.key == f"{name}[id=13]:{[r['id'] for r in sorted(rows, key=lambda r: (r['updated_at'], r['id']))].index(13) + 1}".encode()  # type: ignore  # noqa: E501
    assert {e["total_cost"] for e in published} == {decimal.Decimal("2000.50")}
    assert poll(spec, state, publisher) == 0                         # nothing new: nothing sent
    assert len(publisher.sent) == 25

    engine = create_engine(url)
    with engine.begin() as conn:                                      # one updated, one new, one untouched
        conn.execute(text(f'UPDATE {name} SET "个人自付金额" = 400, updated_at = :t WHERE id = 2'),
                     {"t": T0 + dt.timedelta(days=1)})
        conn.execute(text(f'INSERT INTO {name} (id, "姓名", "身份证号码", "疾病名称", "入院日期", "住院天数", '
                          f'"医疗总费用", "个人自付金额", "结算日期", updated_at) VALUES (26, \'钱七\', :n, \'骨折\', '
                          f':d, 5, 900, 100, :d, :t)'),
                     {"n": person_id(700_026), "d": dt.date(2024, 5, 1), "t": T0 + dt.timedelta(days=1)})
    engine.dispose()
    assert poll(spec, state, publisher) == 1
    newest = events(publisher)[-2:]
    assert [e["source"]["origin"] for e in newest] == [f"{name}[id=2]", f"{name}[id=26]"]  # type: ignore[index]
    assert [e["source"]["row"] for e in newest] == [26, 27]  # type: ignore[index]

    english = SqlSpec("his-en", url, None, f"SELECT * FROM {name}_en WHERE days > 0", "updated_at", "id", 100)
    again = MemoryPublisher()
    assert poll(english, tmp / "state-en.db", again) == 1           # a query, English headers: same events
    assert {e["event_id"] for e in events(again)} == {e["event_id"] for e in events(publisher)} - {
        published[[r["id"] for r in order].index(2)]["event_id"]}

"""The case DB's schema migrations (services/casedb/schema.py, services/casedb/migrations), written once for
every backend. Like tests/casedb_behaviour.py, not collected on its own: tests/unit/test_casedb_schema.py (SQLite)
and tests/integration/test_casedb_postgres.py (PostgreSQL) import the tests by name and define `db_url`, the URL
of an empty database.

A database of issue #2 is built the way #2 left it: the tables of revision 0001 (the schema `create_all` made at
commit d0a6d84; the SQLite module also builds one from that DDL verbatim) and no alembic_version table, filled
with cases and evidence as #2's casefeed wrote them.
"""
from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from sqlalchemy import JSON, Column, Date, Integer, MetaData, String, Table, Text, create_engine, inspect, text

from schemas.errors import ConfigError
from services.casedb import schema
from services.casedb.database import open_database
from services.casedb.models import REGION_CODE_WIDTH, UTCDateTime
from services.casedb.store import CaseStore, CaseView

HH1 = "652701000000000001"
HH2 = "652701000000000002"
VILLAGE = "652701100201"
T0 = dt.datetime(2024, 5, 1, 2, 0, tzinfo=dt.UTC)
REASON = "住院自付 12,000 元，超过 10,000 元"

_meta = MetaData()
ISSUE2_CASES = Table("cases", _meta, *(Column(n, t) for n, t in (
    ("id", Integer), ("subject_kind", String), ("subject_id", String), ("village_code", String),
    ("status", String), ("max_severity", String), ("opened_at", UTCDateTime()), ("updated_at", UTCDateTime()))))
ISSUE2_EVIDENCE = Table("evidence", _meta, *(Column(n, t) for n, t in (
    ("id", Integer), ("alert_id", String), ("case_id", Integer), ("rule", String), ("severity", String),
    ("reason", Text), ("event_ids", JSON), ("household_ids", JSON), ("occurred_at", Date),
    ("raised_at", UTCDateTime()), ("received_at", UTCDateTime()), ("source_topic", String))))

# (case id, subject kind, subject, status, max severity, opened day, updated day)
CASES = [(1, "household", HH1, "OPEN", "HIGH", 0, 3),
         (2, "household", HH2, "CLOSED", "MEDIUM", 0, 5),
         (3, "household", HH2, "OPEN", "LOW", 6, 6),
         (4, "village", VILLAGE, "OPEN", "HIGH", 1, 1)]
# (alert_id, case id, rule, severity, received day)
EVIDENCE = [("e1", 1, "MEDICAL_EXPENSE", "MEDIUM", 0), ("e2", 1, "MEDICAL_EXPENSE", "HIGH", 2),
            ("e3", 1, "DISASTER_LOSS", "LOW", 3), ("e4", 2, "SCHOOL_DROPOUT", "MEDIUM", 0),
            ("e5", 3, "SCHOOL_DROPOUT", "LOW", 6), ("e6", 4, "REGIONAL_DISASTER", "HIGH", 1),
            ("e7", 1, "MEDICAL_EXPENSE", "LOW", 3)]


def day(n: int) -> dt.datetime:
    return T0 + dt.timedelta(days=n)


def build_issue2_schema(url: str) -> None:
    """The tables of revision 0001 and no alembic_version: a case DB as issue #2 created it."""
    engine = create_engine(url)
    try:
        with engine.begin() as connection:
            command.upgrade(schema._config(connection), schema.FIRST_REVISION)
            connection.execute(text("DROP TABLE alembic_version"))
    finally:
        engine.dispose()


def fill_issue2_db(url: str) -> None:
    engine = create_engine(url)
    try:
        with engine.begin() as connection:
            connection.execute(ISSUE2_CASES.insert(), [
                {"id": i, "subject_kind": kind, "subject_id": subject, "village_code": VILLAGE, "status": status,
                 "max_severity": severity, "opened_at": day(opened), "updated_at": day(updated)}
                for i, kind, subject, status, severity, opened, updated in CASES])
            connection.execute(ISSUE2_EVIDENCE.insert(), [
                {"alert_id": alert_id, "case_id": case, "rule": rule, "severity": severity, "reason": REASON,
                 "event_ids": [f"ev-{alert_id}"], "household_ids": [HH1, HH2] if case == 4 else [],
                 "occurred_at": day(received).date(), "raised_at": day(received), "received_at": day(received),
                 "source_topic": "alerts.regional" if case == 4 else "alerts.household"}
                for alert_id, case, rule, severity, received in EVIDENCE])
            if engine.dialect.name == "postgresql":  # ids given explicitly: move the sequence past them
                connection.execute(text("SELECT setval('cases_id_seq', 4)"))
    finally:
        engine.dispose()


def _alerts(case: CaseView) -> list[tuple[str, str, str, tuple[str, ...]]]:
    return sorted((a.rule, a.status, a.severity, a.alert_ids) for a in case.alerts)


def check_upgraded_issue2_db(store: CaseStore) -> None:
    with store.engine.connect() as connection:
        assert schema.current(connection) == schema.head()
    assert store.counts() == {"cases_open": 3, "evidence": len(EVIDENCE)}
    cases = {c.id: c for c in store.list_cases()}
    assert sorted(cases) == [1, 2, 3, 4]
    assert _alerts(cases[1]) == [("DISASTER_LOSS", "OPEN", "LOW", ("e3",)),
                                 ("MEDICAL_EXPENSE", "OPEN", "HIGH", ("e1", "e2", "e7"))]
    assert _alerts(cases[2]) == [("SCHOOL_DROPOUT", "RESOLVED", "MEDIUM", ("e4",))]
    assert _alerts(cases[3]) == [("SCHOOL_DROPOUT", "OPEN", "LOW", ("e5",))]
    assert _alerts(cases[4]) == [("REGIONAL_DISASTER", "OPEN", "HIGH", ("e6",))]
    medical = next(a for a in cases[1].alerts if a.rule == "MEDICAL_EXPENSE")
    assert (medical.opened_at, medical.updated_at, medical.resolved_by) == (day(0), day(3), None)
    [dropout] = cases[2].alerts
    assert (dropout.resolved_by, dropout.resolved_at) == ("migration 0002", day(5))
    # the cases and their evidence as they were
    assert [(c.subject_kind, c.household_or_region, c.status, c.max_severity, c.opened_at, c.updated_at)
            for c in (cases[i] for i in sorted(cases))] == [
        (k, s, st, sev, day(o), day(u)) for _, k, s, st, sev, o, u in CASES]
    evidence = {e.alert_id: e for c in cases.values() for e in c.evidence}
    assert sorted(evidence) == sorted(alert_id for alert_id, *_ in EVIDENCE)
    e6 = evidence["e6"]
    assert (e6.reason, e6.event_ids, e6.household_ids, e6.raised_at, e6.occurred_at) == (
        REASON, ("ev-e6",), (HH1, HH2), day(1), day(1).date())
    assert all(e.case_alert_id is not None for e in evidence.values())


def test_a_db_of_issue_2_is_upgraded_keeping_its_cases_and_evidence(db_url: str) -> None:
    build_issue2_schema(db_url)
    fill_issue2_db(db_url)
    with open_database(db_url) as store:
        check_upgraded_issue2_db(store)
        before = store.list_cases()
        # new evidence attaches to the alerts the migration made, and escalates them
        medical = next(a for c in before if c.id == 1 for a in c.alerts if a.rule == "MEDICAL_EXPENSE")
        alert: dict[str, Any] = {"alert_id": "n1", "household_id": HH1, "village_code": VILLAGE,
                                 "rule": "MEDICAL_EXPENSE", "severity": "HIGH", "reason": REASON, "event_ids": ["x"],
                                 "occurred_at": day(7).date(), "raised_at": day(7)}
        result = store.record_household_alert(alert)
        assert (result.case_id, result.case_alert_id, result.escalated_from) == (1, medical.id, None)
        raised = store.record_household_alert({**alert, "alert_id": "n2", "rule": "DISASTER_LOSS"})
        assert (raised.case_id, raised.escalated_from) == (1, "LOW")
        new = store.record_household_alert({**alert, "alert_id": "n3", "household_id": "652701000000000009"})
        assert new.case_opened and new.case_id == 5                          # ids go on after #2's
    with open_database(db_url) as again:                                     # reopening changes nothing
        after = {c.id: c for c in again.list_cases()}
        assert after[2] == {c.id: c for c in before}[2] and again.counts()["evidence"] == len(EVIDENCE) + 3


def test_an_empty_db_goes_to_head_and_reopening_keeps_it(db_url: str) -> None:
    with open_database(db_url) as store:
        with store.engine.connect() as connection:
            assert schema.current(connection) == schema.head()
            tables = set(inspect(connection).get_table_names())
        assert {"cases", "evidence", "case_alerts", "case_history", "households", "members", "users", "audit_log",
                "outbox", "comparison_requests", "comparison_targets", "comparison_answers",
                "alembic_version"} <= tables
        assert "case_alert_id" in {c["name"] for c in inspect(store.engine).get_columns("evidence")}
        store.record_household_alert({"alert_id": "a1", "household_id": HH1, "village_code": VILLAGE,
                                      "rule": "MEDICAL_EXPENSE", "severity": "LOW", "reason": REASON,
                                      "event_ids": [], "occurred_at": day(0).date(), "raised_at": day(0)})
    with open_database(db_url) as again:
        assert again.counts() == {"cases_open": 1, "evidence": 1}


def test_dropped_tables_are_built_again(db_url: str) -> None:
    """Tests empty a database with Base.metadata.drop_all, which leaves alembic_version behind."""
    from services.casedb.models import Base

    with open_database(db_url) as store:
        Base.metadata.drop_all(store.engine)
    with open_database(db_url) as store:
        assert store.counts() == {"cases_open": 0, "evidence": 0}
        assert "case_alerts" in inspect(store.engine).get_table_names()


def test_a_revision_from_a_newer_povwatch_is_refused_in_one_line(db_url: str) -> None:
    open_database(db_url).close()
    engine = create_engine(db_url)
    try:
        with engine.begin() as connection:
            connection.execute(text("UPDATE alembic_version SET version_num = '0999'"))
    finally:
        engine.dispose()
    with pytest.raises(ConfigError) as info:
        open_database(db_url)
    message = str(info.value)
    assert "0999" in message and schema.head() in message and "\n" not in message


def test_downgrade_to_issue_2_and_upgrade_again(db_url: str) -> None:
    build_issue2_schema(db_url)
    fill_issue2_db(db_url)
    open_database(db_url).close()
    engine = create_engine(db_url)
    try:
        with engine.begin() as connection:
            command.downgrade(schema._config(connection), schema.FIRST_REVISION)
            assert set(inspect(connection).get_table_names()) == {"cases", "evidence", "alembic_version"}
            assert "case_alert_id" not in {c["name"] for c in inspect(connection).get_columns("evidence")}
    finally:
        engine.dispose()
    with open_database(db_url) as store:
        check_upgraded_issue2_db(store)


def _cases_columns(connection: Any) -> dict[str, Any]:
    return {c["name"]: c for c in inspect(connection).get_columns("cases")}


def test_0004_names_the_subject_column_and_gives_village_codes_one_width(db_url: str) -> None:
    """Revision 0004: cases.subject_id becomes household_or_region (what it holds: a household id or a region
    code), values kept, and cases.village_code is as wide as every other village code; a downgrade to 0003 gives
    the old name and width back, values kept, and the next open upgrades again."""
    build_issue2_schema(db_url)
    fill_issue2_db(db_url)
    open_database(db_url).close()
    subjects = sorted((case_id, subject) for case_id, _, subject, *_ in CASES)
    engine = create_engine(db_url)
    try:
        with engine.begin() as connection:
            columns = _cases_columns(connection)
            assert "subject_id" not in columns and columns["village_code"]["type"].length == REGION_CODE_WIDTH == 12
            assert sorted(tuple(r) for r in connection.execute(text("SELECT id, household_or_region FROM cases"))) \
                == subjects
            command.downgrade(schema._config(connection), "0003")
            columns = _cases_columns(connection)
            assert "household_or_region" not in columns and columns["village_code"]["type"].length == 32
            assert sorted(tuple(r) for r in connection.execute(text("SELECT id, subject_id FROM cases"))) == subjects
    finally:
        engine.dispose()
    with open_database(db_url) as store:
        check_upgraded_issue2_db(store)


OPENER = """
import os, sys, time
from pathlib import Path
from services.casedb.database import open_database
go = Path(sys.argv[2])
(go.parent / f"ready-{os.getpid()}").touch()
while not go.exists():
    time.sleep(0.005)  # sleep-ok: the child's polling interval while it waits for the start signal
open_database(sys.argv[1]).close()
"""


def open_at_once(url: str, tmp_path: Path, processes: int = 6) -> None:
    """`processes` processes, imports done, open the database at the same moment; each must succeed."""
    import subprocess
    import sys
    import time

    go = tmp_path / "go"
    children = [subprocess.Popen([sys.executable, "-c", OPENER, url, str(go)], cwd=Path(__file__).parents[1],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(processes)]
    deadline = time.monotonic() + 120
    while len(list(tmp_path.glob("ready-*"))) < processes:  # every child has imported and is waiting
        exited = [c for c in children if c.poll() is not None]
        assert not exited, f"a child exited before the start: {exited[0].communicate()[1].strip()[-500:]}"
        assert time.monotonic() < deadline, "the children did not get ready in 120 s"
        time.sleep(0.01)  # sleep-ok: the polling interval of a wait with a deadline
    go.touch()
    failed = []
    for child in children:
        out, err = child.communicate(timeout=120)
        if child.returncode != 0:
            failed.append(err.strip().splitlines()[-1] if err.strip() else f"exit {child.returncode}")
    assert not failed, f"{len(failed)} process(es) failed, first: {failed[0]}"
    with open_database(url) as store, store.engine.connect() as connection:
        assert schema.current(connection) == schema.head()
        assert connection.scalar(text("SELECT count(*) FROM alembic_version")) == 1


@pytest.mark.slow  # six Python processes, each importing SQLAlchemy and Alembic
def test_processes_opening_a_new_database_at_once_upgrade_it_once(db_url: str, tmp_path: Path) -> None:
    """The lock (PostgreSQL: advisory; SQLite: BEGIN IMMEDIATE): processes opening a new database at the same
    moment all succeed, and it is upgraded once."""
    open_at_once(db_url, tmp_path)

"""The case DB on a real PostgreSQL server: the SQLite unit tests' behaviours, plus real concurrent writers.

The server is the project's own private cluster, started by `scripts/postgres.sh start` (which installs Debian's
`postgresql` package on first use, so the first run may take a few minutes) and stopped again at the end of the
module - unless it was already running before, then it is left as it was. If the script fails, the tests fail
with its output; they never skip. Every test starts from empty tables (dropped and recreated), so reruns are clean.
"""
from __future__ import annotations

import datetime as dt
import random
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, event, insert, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from services.casefeed.db import Base, Case, CaseStore, Evidence, RecordResult, open_database
from tests.unit.test_casedb import HH1, HH2, RAISED, VILLAGE, household_alert, regional_alert

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "postgres.sh"
FIRST_START_TIMEOUT = 600  # a first start installs the server package


def _script(command: str, timeout: float) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(["bash", str(SCRIPT), command], capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as exc:
        def shown(out: bytes | str | None) -> str:
            return out.decode(errors="replace") if isinstance(out, bytes) else (out or "")
        pytest.fail(f"scripts/postgres.sh {command} did not finish within {timeout:.0f} s\n"
                    f"--- stdout\n{shown(exc.stdout)}--- stderr\n{shown(exc.stderr)}", pytrace=False)


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    was_running = _script("status", 60).returncode == 0
    started = _script("start", FIRST_START_TIMEOUT)
    lines = started.stdout.strip().splitlines()
    if started.returncode != 0 or not lines or not lines[-1].startswith("postgresql+psycopg://"):
        pytest.fail(f"scripts/postgres.sh start failed (exit {started.returncode})\n"
                    f"--- stdout\n{started.stdout}--- stderr\n{started.stderr}", pytrace=False)
    try:
        yield lines[-1]
    finally:
        if not was_running:
            stopped = _script("stop", 120)
            assert stopped.returncode == 0, f"scripts/postgres.sh stop failed:\n{stopped.stdout}{stopped.stderr}"


@pytest.fixture
def pg_fresh(pg_url: str) -> str:
    """The URL, with the case DB's tables dropped (open_database creates them again)."""
    engine = create_engine(pg_url)
    try:
        Base.metadata.drop_all(engine)
    finally:
        engine.dispose()
    return pg_url


@pytest.fixture
def store(pg_fresh: str) -> Iterator[CaseStore]:
    s = open_database(pg_fresh)
    assert s.engine.dialect.name == "postgresql"
    yield s
    s.close()


def test_household_alerts_share_one_case_and_redelivery_is_a_duplicate(store: CaseStore) -> None:
    first = store.record_household_alert(household_alert("a1"))
    assert first.case_opened and not first.duplicate
    second = store.record_household_alert(household_alert("a2", rule="DISASTER_LOSS"))
    assert second == RecordResult(first.case_id, case_opened=False, duplicate=False)
    again = store.record_household_alert(household_alert("a1"))
    assert again == RecordResult(first.case_id, case_opened=False, duplicate=True)
    assert store.counts() == {"cases_open": 1, "evidence": 2}
    other = store.record_household_alert(household_alert("b1", HH2))
    assert other.case_opened and other.case_id != first.case_id
    assert store.counts() == {"cases_open": 2, "evidence": 3}


def test_max_severity_rises_and_never_drops(store: CaseStore) -> None:
    store.record_household_alert(household_alert("a1", severity="MEDIUM"))
    [case] = store.list_cases()
    assert case.max_severity == "MEDIUM"
    store.record_household_alert(household_alert("a2", rule="SCHOOL_DROPOUT", severity="HIGH"))
    store.record_household_alert(household_alert("a3", rule="ASSET_PURCHASE", severity="LOW"))
    [case] = store.list_cases()
    assert case.max_severity == "HIGH"
    assert [e.severity for e in case.evidence] == ["MEDIUM", "HIGH", "LOW"]
    assert case.opened_at.tzinfo is not None and case.evidence[0].raised_at == RAISED
    assert case.evidence[0].reason == household_alert("a1")["reason"]           # Chinese text round-trips


def test_regional_alert_opens_a_village_case(store: CaseStore) -> None:
    result = store.record_regional_alert(regional_alert())
    assert result.case_opened
    [case] = store.list_cases()
    assert (case.subject_kind, case.subject_id, case.village_code) == ("village", VILLAGE, VILLAGE)
    assert case.evidence[0].household_ids[:2] == (HH1, HH2)
    assert case.evidence[0].raised_at == dt.datetime(2024, 6, 27, 17, 0, tzinfo=dt.UTC)   # +08:00 -> UTC
    assert case.evidence[0].occurred_at == dt.date(2024, 6, 20)
    # a household of that village is a different subject
    assert store.record_household_alert(household_alert("a1")).case_opened


def test_batch_with_duplicates_inside_it(store: CaseStore) -> None:
    store.record_household_alert(household_alert("a0"))
    results = store.record_batch([
        ("alerts.household", household_alert("a0")),           # already stored
        ("alerts.household", household_alert("b1", HH2)),      # opens a case
        ("alerts.household", household_alert("b1", HH2)),      # same alert again in the batch
        ("alerts.household", household_alert("b2", HH2, severity="HIGH")),
        ("alerts.regional", regional_alert()),
    ])
    assert [(r.case_opened, r.duplicate) for r in results] == [
        (False, True), (True, False), (False, True), (False, False), (True, False)]
    assert results[1].case_id == results[2].case_id == results[3].case_id
    assert store.counts() == {"cases_open": 3, "evidence": 4}


def test_partial_unique_index_allows_one_open_case_per_subject(store: CaseStore) -> None:
    with store.engine.connect() as conn:
        indexdef = conn.scalar(text("SELECT indexdef FROM pg_indexes WHERE indexname = 'uq_cases_open_subject'"))
    assert indexdef is not None and "UNIQUE" in indexdef and "WHERE" in indexdef and "OPEN" in indexdef

    store.record_household_alert(household_alert("a1"))
    now = dt.datetime.now(dt.UTC)

    def case(status: str) -> Case:
        return Case(subject_kind="household", subject_id=HH1, village_code=VILLAGE, status=status,
                    max_severity="LOW", opened_at=now, updated_at=now)

    with Session(store.engine) as session:
        session.add(case("OPEN"))
        with pytest.raises(IntegrityError) as info:
            session.commit()
    assert "uq_cases_open_subject" in str(info.value)
    with Session(store.engine) as session, session.begin():
        session.add(case("CLOSED"))                      # closed cases may pile up
    with Session(store.engine) as session, session.begin():
        session.query(Case).update({Case.status: "CLOSED"})
    assert store.counts()["cases_open"] == 0
    reopened = store.record_household_alert(household_alert("a2"))
    assert reopened.case_opened                          # a new OPEN case next to the CLOSED ones
    with Session(store.engine) as session, session.begin():
        session.add(case("CLOSED"))
    assert store.counts() == {"cases_open": 1, "evidence": 2}


def test_evidence_alert_id_is_unique_in_the_db(store: CaseStore) -> None:
    result = store.record_household_alert(household_alert("a1"))
    row = {"alert_id": "a1", "case_id": result.case_id, "rule": "MEDICAL_EXPENSE", "severity": "LOW",
           "reason": "x", "event_ids": [], "household_ids": [], "occurred_at": dt.date(2024, 1, 1),
           "raised_at": RAISED, "received_at": RAISED, "source_topic": "t"}
    with Session(store.engine) as session:
        with pytest.raises(IntegrityError):
            session.execute(insert(Evidence), [row])


def test_lost_race_on_the_open_case_is_retried(store: CaseStore) -> None:
    """Another writer commits the OPEN case between our read and our insert: we re-read and attach."""
    state = {"fired": False}

    def before(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.startswith("INSERT INTO cases") and not state["fired"]:
            state["fired"] = True
            other = open_database(store.engine.url.render_as_string(hide_password=False))
            try:
                assert other.record_household_alert(household_alert("rival")).case_opened
            finally:
                other.close()

    event.listen(store.engine, "before_cursor_execute", before)
    try:
        result = store.record_household_alert(household_alert("mine"))
    finally:
        event.remove(store.engine, "before_cursor_execute", before)
    assert state["fired"] and not result.case_opened and not result.duplicate
    [case] = store.list_cases()
    assert {e.alert_id for e in case.evidence} == {"rival", "mine"}


def test_lost_race_on_the_alert_id_reports_a_duplicate(store: CaseStore) -> None:
    first = store.record_household_alert(household_alert("a1"))
    state = {"fired": False}

    def before(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        # before our first write: after it we would hold the case row's lock, which the rival needs
        if statement.startswith(("INSERT", "UPDATE")) and not state["fired"]:
            state["fired"] = True
            other = open_database(store.engine.url.render_as_string(hide_password=False))
            try:
                assert not other.record_household_alert(household_alert("a2")).duplicate
            finally:
                other.close()

    event.listen(store.engine, "before_cursor_execute", before)
    try:
        result = store.record_household_alert(household_alert("a2"))
    finally:
        event.remove(store.engine, "before_cursor_execute", before)
    assert state["fired"]
    assert result == RecordResult(first.case_id, case_opened=False, duplicate=True)
    assert store.counts() == {"cases_open": 1, "evidence": 2}


WRITERS = 8
ALERTS = [household_alert(f"c{i}", severity=("LOW", "MEDIUM", "HIGH")[i % 3]) for i in range(12)]


def _race(url: str, work: Any) -> list[Any]:
    """Run work(store, index) in WRITERS threads at once, each with its own CaseStore; return their results."""
    stores = [open_database(url) for _ in range(WRITERS)]
    for s in stores:                                     # connect before the start line, so all race at once
        with s.engine.connect():
            pass
    barrier = threading.Barrier(WRITERS)
    results: list[Any] = [None] * WRITERS
    errors: list[BaseException] = []

    def run(index: int) -> None:
        try:
            barrier.wait(timeout=30)
            results[index] = work(stores[index], index)
        except BaseException as exc:  # noqa: BLE001 - reported below, with the thread it came from
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,), name=f"writer-{i}") for i in range(WRITERS)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert not any(t.is_alive() for t in threads), "a writer hung"
        assert not errors, f"{len(errors)} writer(s) failed, first: {errors[0]!r}"
    finally:
        for s in stores:
            s.close()
    return results


def _check_one_case(url: str, per_writer: list[list[RecordResult]]) -> None:
    flat = [r for results in per_writer for r in results]
    assert len(flat) == WRITERS * len(ALERTS)
    assert len({r.case_id for r in flat}) == 1                       # everybody attached to the same case
    assert sum(r.case_opened for r in flat) == 1                     # which exactly one writer opened
    assert sum(not r.duplicate for r in flat) == len(ALERTS)         # each alert stored by exactly one writer
    with open_database(url) as check:
        assert check.counts() == {"cases_open": 1, "evidence": len(ALERTS)}
        [case] = check.list_cases()
        assert (case.subject_id, case.max_severity) == (HH1, "HIGH")
        assert sorted(e.alert_id for e in case.evidence) == sorted(a["alert_id"] for a in ALERTS)


def test_concurrent_writers_open_one_case_and_store_each_alert_once(pg_fresh: str) -> None:
    """8 processes' worth of stores record the same alerts for one household at the same moment."""
    def work(store: CaseStore, index: int) -> list[RecordResult]:
        order = list(ALERTS)
        random.Random(index).shuffle(order)              # each writer in its own order
        return [store.record_household_alert(alert) for alert in order]

    _check_one_case(pg_fresh, _race(pg_fresh, work))


def test_concurrent_batches_open_one_case_and_store_each_alert_once(pg_fresh: str) -> None:
    """The same, each writer recording all alerts in one transaction (record_batch), in its own order."""
    def work(store: CaseStore, index: int) -> list[RecordResult]:
        order = list(ALERTS)
        random.Random(100 + index).shuffle(order)
        return store.record_batch([("alerts.household", alert) for alert in order])

    _check_one_case(pg_fresh, _race(pg_fresh, work))

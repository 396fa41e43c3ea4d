"""The casefeed's handling of a batch (services/casefeed/handling.py) on a real SQLite case DB, without Kafka:
bad alerts are isolated and dead-lettered, NULs are stored replaced, an unavailable DB holds the batch whole."""
from __future__ import annotations

import datetime as dt
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY

from plumbing.consumer_lag import LagTracker, lag
from schemas.codec import default_codec
from schemas.errors import DatabaseUnavailable
from schemas.topics import ALERTS_HOUSEHOLD, ALERTS_REGIONAL
from services.casedb.database import open_database
from services.casedb.store import NUL_REPLACEMENT, CaseStore, without_nul
from services.casefeed.handling import Backoff, Incoming, Refusal, handle_batch, record_isolated

pytest.register_assert_rewrite("tests.casedb_behaviour")  # whichever test module imports it first

from tests.casedb_behaviour import household_alert, regional_alert  # noqa: E402

CODEC = default_codec()
NOW = dt.datetime(2024, 7, 2, 10, 0, tzinfo=dt.UTC)
LONG_HOUSEHOLD = "H" * 65  # cases.household_or_region holds 64 characters


def incoming(alert: dict[str, Any], offset: int, *, topic: str = ALERTS_HOUSEHOLD, partition: int = 0) -> Incoming:
    schema = "povwatch.alerts.HouseholdAlert" if "household_id" in alert else "povwatch.alerts.RegionalAlert"
    return Incoming(topic, partition, offset, CODEC.encode(schema, alert))


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "cases.db"


@pytest.fixture
def store(db_path: Path) -> Iterator[CaseStore]:
    s = open_database(f"sqlite:///{db_path}?timeout=0.2")   # a locked database answers within 0.2 s
    yield s
    s.close()


def evidence_ids(store: CaseStore) -> list[str]:
    return sorted(e.alert_id for c in store.list_cases() for e in c.evidence)


def test_a_clean_batch_is_stored_in_order(store: CaseStore) -> None:
    messages = [incoming(household_alert("a1"), 0), incoming(household_alert("a2", "H2"), 1),
                incoming(regional_alert(), 0, topic=ALERTS_REGIONAL)]
    outcome = handle_batch(store, messages, CODEC, NOW)
    assert outcome.letters == [] and (outcome.undecodable, outcome.refused) == (0, 0)
    assert [(r.case_opened, r.duplicate) for r in outcome.results] == [(True, False), (True, False), (True, False)]
    assert store.counts() == {"cases_open": 3, "evidence": 3}


def test_a_poison_alert_is_dead_lettered_and_the_others_still_land(store: CaseStore) -> None:
    messages = [incoming(household_alert("a1"), 10), incoming(household_alert("bad", LONG_HOUSEHOLD), 11),
                incoming(household_alert("a2"), 12)]
    outcome = handle_batch(store, messages, CODEC, NOW)
    assert outcome.refused == 1 and outcome.undecodable == 0
    assert len(outcome.results) == 2 and not any(r.duplicate for r in outcome.results)
    assert evidence_ids(store) == ["a1", "a2"]
    assert store.counts() == {"cases_open": 1, "evidence": 2}
    [letter] = outcome.letters
    assert letter.key == b"alerts.household:0:11"
    record = CODEC.decode(letter.encode(), expect="povwatch.DeadLetter").record
    assert record["message"] == {"topic": ALERTS_HOUSEHOLD, "partition": 0, "offset": 11}
    assert record["stage"] == "casefeed" and record["source"]["row"] == 0
    [reason] = record["reasons"]
    assert "refuses the data" in reason and "household_or_region_at_most_64" in reason
    assert record["fields"]["alert_id"] == "bad" and record["fields"]["household_id"] == LONG_HOUSEHOLD
    assert record["rejected_at"] == NOW


def test_a_nul_in_the_text_is_stored_replaced_and_stays_one_alert(store: CaseStore) -> None:
    alert = household_alert("n1", reason="住院自付\x0012000元\x00")
    alert["event_ids"] = ["ev\x00-1"]
    outcome = handle_batch(store, [incoming(alert, 0)], CODEC, NOW)
    [result] = outcome.results
    assert result.sanitised and not result.duplicate and outcome.letters == []
    [case] = store.list_cases()
    [evidence] = case.evidence
    assert evidence.reason == f"住院自付{NUL_REPLACEMENT}12000元{NUL_REPLACEMENT}"
    assert evidence.event_ids == (f"ev{NUL_REPLACEMENT}-1",)
    again = handle_batch(store, [incoming(alert, 5)], CODEC, NOW)
    assert [r.duplicate for r in again.results] == [True]
    assert store.counts() == {"cases_open": 1, "evidence": 1}


def test_without_nul_is_pure() -> None:
    alert = {"alert_id": "x\x00", "event_ids": ["a", "b\x00"], "occurred_at": dt.date(2024, 1, 1), "n": 3}
    cleaned, changed = without_nul(alert)
    assert changed and cleaned == {"alert_id": "x\ufffd", "event_ids": ["a", "b\ufffd"],
                                   "occurred_at": dt.date(2024, 1, 1), "n": 3}
    assert alert["alert_id"] == "x\x00"                     # the input is left as it was
    assert without_nul({"reason": "clean"}) == ({"reason": "clean"}, False)


def test_undecodable_and_misplaced_messages_are_dead_lettered(store: CaseStore) -> None:
    regional_on_household_topic = incoming(regional_alert(), 3, topic=ALERTS_HOUSEHOLD)
    messages = [Incoming(ALERTS_HOUSEHOLD, 1, 0, b"not avro"), regional_on_household_topic,
                incoming(household_alert("ok"), 4), Incoming("alerts.other", 0, 9, b"")]
    outcome = handle_batch(store, messages, CODEC, NOW)
    assert (outcome.undecodable, outcome.refused, len(outcome.results)) == (3, 0, 1)
    assert [letter.key for letter in outcome.letters] == [b"alerts.household:1:0", b"alerts.household:0:3",
                                                          b"alerts.other:0:9"]
    reasons = [letter.record["reasons"][0] for letter in outcome.letters]
    assert reasons[0].startswith("undecodable: not an Avro single-object message")
    assert "expected povwatch.alerts.HouseholdAlert, got povwatch.alerts.RegionalAlert" in reasons[1]
    assert "does not read topic alerts.other" in reasons[2]
    assert evidence_ids(store) == ["ok"]


def test_an_unavailable_database_holds_the_whole_batch(store: CaseStore, db_path: Path) -> None:
    messages = [incoming(household_alert("a1"), 0), incoming(household_alert("bad", LONG_HOUSEHOLD), 1)]
    locker = sqlite3.connect(db_path, isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")                        # another process holds the write lock
    try:
        with pytest.raises(DatabaseUnavailable, match="database is locked") as info:
            handle_batch(store, messages, CODEC, NOW)
        assert "\n" not in str(info.value)
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    assert store.counts() == {"cases_open": 0, "evidence": 0}
    outcome = handle_batch(store, messages, CODEC, NOW)      # the retry, once the lock is gone
    assert (len(outcome.results), outcome.refused) == (1, 1)
    assert evidence_ids(store) == ["a1"]


class _CountingStore:
    """The real store, counting the alerts of each record_batch call (one call = one transaction)."""

    def __init__(self, store: CaseStore) -> None:
        self.store = store
        self.calls: list[int] = []

    def record_batch(self, items: Any) -> Any:
        self.calls.append(len(items))
        return self.store.record_batch(items)


def test_record_isolated_tries_the_batch_once_then_each_alert(store: CaseStore) -> None:
    counting = _CountingStore(store)
    items = [(ALERTS_HOUSEHOLD, household_alert("a1")), (ALERTS_HOUSEHOLD, household_alert("x", LONG_HOUSEHOLD)),
             (ALERTS_HOUSEHOLD, household_alert("a1"))]
    outcomes = record_isolated(counting, items)
    assert counting.calls == [3, 1, 1, 1]
    assert isinstance(outcomes[1], Refusal)
    assert [getattr(o, "duplicate", None) for o in outcomes] == [False, None, True]
    assert record_isolated(counting, []) == []
    clean = _CountingStore(store)
    record_isolated(clean, [(ALERTS_HOUSEHOLD, household_alert("a2"))])
    assert clean.calls == [1]                                # no refusal: one transaction


def test_backoff_grows_and_is_capped() -> None:
    backoff = Backoff(first=0.5, factor=2, maximum=5)
    assert [backoff.delay(n) for n in range(1, 7)] == [0.5, 1, 2, 4, 5, 5]
    assert Backoff().delay(10_000) == 30.0
    with pytest.raises(ValueError):
        backoff.delay(0)


def _lag(group: str, topic: str, partition: int) -> float | None:
    return REGISTRY.get_sample_value("povwatch_consumer_lag",
                                     {"group": group, "topic": topic, "partition": str(partition)})


def test_consumer_lag_follows_the_assignment() -> None:
    tracker = LagTracker("unit-group")
    shown = tracker.update({("alerts.household", 0): 10, ("alerts.household", 1): 4},
                           {("alerts.household", 0): 7, ("alerts.household", 1): 4},
                           [("alerts.household", 0), ("alerts.household", 1)])
    assert shown == {("alerts.household", 0): 3, ("alerts.household", 1): 0}
    assert _lag("unit-group", "alerts.household", 0) == 3 and _lag("unit-group", "alerts.household", 1) == 0
    tracker.update({("alerts.household", 1): 9}, {("alerts.household", 1): 5}, [("alerts.household", 1)])
    assert _lag("unit-group", "alerts.household", 0) is None        # partition 0 revoked: its series is gone
    assert _lag("unit-group", "alerts.household", 1) == 4
    assert lag(3, 5) == 0


def test_the_casefeed_log_is_one_line_per_record(capsys: pytest.CaptureFixture[str]) -> None:
    import logging

    from plumbing import logs

    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        logs.configure()
        try:
            raise ConnectionError("server closed the connection unexpectedly\n\tThis probably means the server died")
        except ConnectionError:
            logging.getLogger("sqlalchemy.pool.impl.QueuePool").error("Exception during reset or similar",
                                                                      exc_info=True)
        logging.getLogger("povwatch.casefeed").warning("two\nlines", stack_info=True)
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2
    assert lines[0].endswith("ERROR Exception during reset or similar "
                             "(ConnectionError: server closed the connection unexpectedly)")
    assert lines[1].endswith("povwatch.casefeed WARNING two lines")
    assert "Traceback" not in "".join(lines)


class _Orig(Exception):
    """A DB-API error as a driver raises it: a message, maybe a SQLSTATE (psycopg) or an error name (sqlite3)."""

    def __init__(self, message: str, sqlstate: str | None = None, sqlite_errorname: str | None = None) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate
        if sqlite_errorname is not None:
            self.sqlite_errorname = sqlite_errorname


@pytest.mark.parametrize("kind, error, expected", [
    ("integrity", _Orig("duplicate key value violates unique constraint", "23505"), "race"),
    ("integrity", _Orig("UNIQUE constraint failed: evidence.alert_id", None, "SQLITE_CONSTRAINT_UNIQUE"), "race"),
    ("integrity", _Orig("CHECK constraint failed: ck_cases_x", None, "SQLITE_CONSTRAINT_CHECK"), "refused"),
    ("integrity", _Orig("null value in column violates not-null constraint", "23502"), "refused"),
    ("operational", _Orig("could not serialize access", "40001"), "race"),
    ("operational", _Orig("deadlock detected", "40P01"), "race"),
    ("data", _Orig("value too long for type character varying(64)", "22001"), "refused"),
    ("data", _Orig("PostgreSQL text fields cannot contain NUL (0x00) bytes"), "refused"),
    ("operational", _Orig("terminating connection due to administrator command", "57P01"), "unavailable"),
    ("operational", _Orig("sorry, too many clients already", "53300"), "unavailable"),
    ("operational", _Orig('connection failed: connection to server at "127.0.0.1", port 55432 failed: '
                          "Connection refused"), "unavailable"),
    ("operational", _Orig("consuming input failed: server closed the connection unexpectedly"), "unavailable"),
    ("operational", _Orig('connection failed: ... failed: FATAL:  the database system is starting up'), "unavailable"),
    ("operational", _Orig('connection failed: ... failed: FATAL:  password authentication failed for user "x"'),
     "config"),
    ("operational", _Orig('connection failed: ... failed: FATAL:  database "nosuch" does not exist'), "config"),
    ("operational", _Orig("database is locked", None, "SQLITE_BUSY"), "unavailable"),
    ("operational", _Orig("no such table: evidence", None, "SQLITE_ERROR"), "fatal"),
    ("programming", _Orig('relation "evidence" does not exist', "42P01"), "fatal"),
])
def test_classify_database_errors(kind: str, error: _Orig, expected: str) -> None:
    from sqlalchemy.exc import DataError, IntegrityError, OperationalError, ProgrammingError

    from services.casedb.transaction import classify

    wrapper = {"integrity": IntegrityError, "operational": OperationalError, "data": DataError,
               "programming": ProgrammingError}[kind]
    assert classify(wrapper("INSERT ...", {}, error)) == expected

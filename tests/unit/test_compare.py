"""Comparison (比对) without a broker: the request and answer records, a department's lookup in its own file, the
comparison configuration, request progress, the outbox relay with an in-memory publisher, and the case-DB side
on SQLite (the tests of tests/compare_behaviour.py, shared with PostgreSQL)."""
from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest

from connectors.catalog import get_feed
from connectors.pseudonym import Pseudonymiser
from connectors.sources import file_source
from schemas.catalog import COMPARISON_DEPARTMENTS, comparison_department, monitored_feeds, project_topics
from schemas.codec import default_codec
from schemas.errors import ConfigError
from services.casedb import outbox
from services.casedb.database import open_database
from services.casedb.outbox import publish_pending
from services.casedb.store import CaseStore
from services.compare.config import load_compare_config
from services.compare.connector import answer_requests
from services.compare.lookup import find_persons
from services.compare.records import (
    REQUEST_SCHEMA,
    RESULT_SCHEMA,
    duration_text,
    progress_of,
    request_record,
    result_event_id,
    result_record,
)
from services.compare.render import progress_json, render_progress
from tests.unit.doubles import FIXED_NOW, TEST_KEY, MemoryPublisher, make_id, write_csv

pytest.register_assert_rewrite("tests.compare_behaviour")

from tests.compare_behaviour import (  # noqa: E402, F401
    test_a_request_for_a_case_stores_its_targets_and_its_outbox_message,
    test_all_monitored_takes_the_users_region,
    test_answers_are_stored_once_and_make_a_request_partly_then_fully_answered,
    test_outbox_rows_are_marked_published_in_order,
    test_who_may_ask_and_about_what,
)

PSEUDO = Pseudonymiser(TEST_KEY)
RICH = make_id("652701", "19700101", 11)
POOR = make_id("652701", "19750505", 22)
FAULTY = make_id("652701", "19800808", 33)
STRANGER = make_id("652701", "19900909", 44)
DEPOSIT_HEADER = ["姓名", "身份证号码", "存款余额", "贷款余额", "贷款类型", "贷款发放日期", "贷款到期日期", "贴息金额",
                  "比对日期"]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[CaseStore]:
    s = open_database(f"sqlite:///{tmp_path / 'cases.db'}")
    yield s
    s.close()


def deposits(path: Path) -> Path:
    return write_csv(path, [
        DEPOSIT_HEADER,
        ["马建国", RICH, "120,000.00", "0", "其他", "", "", "", "2024-06-30"],
        ["马建国", RICH, "5,000", "50000", "脱贫人口小额信贷", "2023-04-10", "2026-04-09", "1150", "2024-06-30"],
        ["李四", FAULTY, "-10", "0", "其他", "", "", "", "2024-06-30"],           # negative deposit: a faulty row
        ["王五", STRANGER, "800", "0", "其他", "", "", "", "2024-06-30"],          # not asked
        ["无名", "652701199001011234", "1", "0", "其他", "", "", "", "2024-06-30"],  # unreadable ID number
    ], encoding="gb18030")


# --- catalogue ---------------------------------------------------------------------------------------------
def test_the_five_comparison_departments_have_topics_that_are_not_monitored() -> None:
    assert [c.department for c in COMPARISON_DEPARTMENTS] == [
        "pboc", "natural-resources", "public-security", "farm-machinery", "market-regulation"]
    assert [f.feed for f in comparison_department("public-security").feeds] == ["vehicle-purchase", "identity-check"]
    names = {spec.name for spec in project_topics()}
    for entry in COMPARISON_DEPARTMENTS:
        assert {f"requests.{entry.department}.comparison", f"events.{entry.department}.comparison-result"} <= names
        for feed in entry.feeds:  # every comparison source has a feed declaration to be read with
            assert get_feed(entry.department, feed.feed).wire == feed
    assert not {feed.topic for feed in monitored_feeds()} & {c.result_topic for c in COMPARISON_DEPARTMENTS}
    with pytest.raises(KeyError, match="health answers no comparison requests"):
        comparison_department("health")


# --- records -----------------------------------------------------------------------------------------------
def test_request_and_result_records_round_trip_and_answers_are_deterministic() -> None:
    codec = default_codec()
    request = request_record("r1", "pboc", ["k1", "k2"], FIXED_NOW, None)
    assert codec.decode(codec.encode(REQUEST_SCHEMA, request)).record == request
    pboc = comparison_department("pboc")
    nothing = result_record(pboc, "r1", "k1", [], FIXED_NOW)
    assert (nothing["found"], nothing["records"]) == (False, [])
    assert nothing["summary"] == "人民银行博州中心支行未查到该人员的存贷款记录"
    assert nothing["event_id"] == result_event_id("r1", "k1") != result_event_id("r1", "k2")
    assert result_event_id("r1", "k1") != result_event_id("r2", "k1")
    assert codec.decode(codec.encode(RESULT_SCHEMA, nothing)).record == nothing
    found = result_record(pboc, "r1", "k2", [{"feed": "deposit-loan", "origin": "a.csv", "row": "2",
                                              "deposit_balance": "120000.00", "loan_type": "POVERTY_MICROCREDIT"}],
                          FIXED_NOW)
    assert found["found"] and found["summary"] == (
        "人民银行博州中心支行查到1条记录：存贷款：存款余额 120000.00，贷款类型 脱贫人口小额信贷")


# --- a department's lookup ------------------------------------------------------------------------------------
def test_lookup_finds_the_asked_persons_records_and_keeps_faulty_rows(tmp_path: Path) -> None:
    spec = get_feed("pboc", "deposit-loan")
    wanted = {PSEUDO.person_key(k) for k in (RICH, POOR, FAULTY)}
    found = find_persons(spec, file_source(deposits(tmp_path / "存贷款.csv")), wanted, pseudonymiser=PSEUDO,
                         today=dt.date(2024, 7, 1))
    assert (found.rows, found.rejected_kept, found.unreadable) == (5, 1, 1)
    assert set(found.records) == {PSEUDO.person_key(RICH), PSEUDO.person_key(FAULTY)}  # POOR: nothing held
    first, second = found.records[PSEUDO.person_key(RICH)]
    assert first == {"feed": "deposit-loan", "origin": "存贷款.csv", "row": "2", "deposit_balance": "120000.00",
                     "loan_balance": "0.00", "loan_type": "OTHER", "comparison_date": "2024-06-30"}
    assert (second["loan_type"], second["loan_due_date"], second["interest_subsidy"]) == (
        "POVERTY_MICROCREDIT", "2026-04-09", "1150.00")
    [faulty] = found.records[PSEUDO.person_key(FAULTY)]
    assert faulty["row"] == "4" and "negative" in faulty["problem"]
    text = repr(found.records)
    for secret in (RICH, FAULTY, "马建国", "李四"):  # no ID number, no name leaves the department
        assert secret not in text


def test_answer_requests_gives_one_answer_per_person_found_or_not(tmp_path: Path) -> None:
    deposits(tmp_path / "存贷款.csv")
    config_file = tmp_path / "compare.toml"
    config_file.write_text('department = "pboc"\n[comparison]\n[[comparison.sources]]\nfeed = "deposit-loan"\n'
                           'path = "存贷款.csv"\n', encoding="utf-8")
    config = load_compare_config(config_file)
    rich, poor = PSEUDO.person_key(RICH), PSEUDO.person_key(POOR)
    answers = answer_requests(config, [
        {"request_id": "r1", "person_keys": [rich, poor, rich]},
        {"request_id": "r2", "person_keys": [poor]},
    ], pseudonymiser=PSEUDO, now=FIXED_NOW, zone=dt.UTC)
    assert [(a["request_id"], a["person_key"], a["found"]) for a in answers] == [
        ("r1", rich, True), ("r1", poor, False), ("r2", poor, False)]
    assert answers[0]["summary"].startswith("人民银行博州中心支行查到2条记录：存贷款：存款余额 120000.00")
    for answer in answers:
        default_codec().encode(RESULT_SCHEMA, answer)  # fits the schema


def test_comparison_configuration_mistakes_are_one_line(tmp_path: Path) -> None:
    def load(text: str) -> None:
        path = tmp_path / "c.toml"
        path.write_text(text, encoding="utf-8")
        load_compare_config(path)

    source = '[[comparison.sources]]\nfeed = "deposit-loan"\npath = "x.csv"\n'
    cases = {
        'department = "health"\n[comparison]\n': "health answers no comparison requests",
        'department = "pboc"\n': "no [comparison] section",
        'department = "pboc"\n[comparison]\n': "no [[comparison.sources]]",
        'department = "pboc"\n[comparison]\n[[comparison.sources]]\nfeed = "vehicle-purchase"\npath = "x"\n':
            "pboc compares from deposit-loan, not 'vehicle-purchase'",
        'department = "pboc"\n[comparison]\n[[comparison.sources]]\nfeed = "deposit-loan"\n': "give either path or url",
        'department = "pboc"\n[comparison]\n[[comparison.sources]]\nfeed = "deposit-loan"\nurl = "sqlite://"\n':
            "with url, give either table or query",
        'department = "pboc"\n[comparison]\ncolour = 1\n' + source: "comparison: unknown key colour",
        'department = "pboc"\n[comparison]\n[[comparison.sources]]\nfeed = "deposit-loan"\nurl = "${NO_SUCH_VAR}"\n'
        'table = "t"\n': "environment variable NO_SUCH_VAR is not set",
    }
    for text, message in cases.items():
        with pytest.raises(ConfigError, match=message.replace("[", "\\[").replace("(", "\\(").replace("$", "\\$")):
            load(text)
    with pytest.raises(ConfigError, match="no such configuration file"):
        load_compare_config(tmp_path / "missing.toml")
    # a watch service's file with a [comparison] section serves both
    path = tmp_path / "both.toml"
    path.write_text('department = "pboc"\n[[folders]]\npath = "drop"\nfeed = "deposit-loan"\n[comparison]\n'
                    + source, encoding="utf-8")
    from services.watch.config import load_config

    assert load_config(path).folders[0].feed == "deposit-loan"
    assert load_compare_config(path).sources[0].path == tmp_path / "x.csv"


def test_a_sql_table_is_a_comparison_source(tmp_path: Path) -> None:
    from sqlalchemy import create_engine, text

    url = f"sqlite:///{tmp_path / 'bank.db'}"
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text('CREATE TABLE v_deposit ("姓名" TEXT, "身份证号码" TEXT, "存款余额" NUMERIC, '
                          '"贷款余额" NUMERIC, "贷款类型" TEXT, "比对日期" DATE)'))
        conn.execute(text("INSERT INTO v_deposit VALUES ('马建国', :id, 3000.5, 0, '其他', '2024-06-30')"),
                     {"id": RICH})
    engine.dispose()
    config_file = tmp_path / "compare.toml"
    config_file.write_text(f'department = "pboc"\n[comparison]\n[[comparison.sources]]\nfeed = "deposit-loan"\n'
                           f'url = "{url}"\ntable = "v_deposit"\n', encoding="utf-8")
    rich = PSEUDO.person_key(RICH)
    [answer] = answer_requests(load_compare_config(config_file), [{"request_id": "r", "person_keys": [rich]}],
                               pseudonymiser=PSEUDO, now=FIXED_NOW, zone=dt.UTC)
    assert answer["found"] and answer["records"][0]["deposit_balance"] == "3000.50"
    assert answer["records"][0]["origin"] == "v_deposit"


# --- progress ------------------------------------------------------------------------------------------------
def test_progress_states_and_rendering() -> None:
    at = FIXED_NOW
    open_ = progress_of("r1", "pboc", 3, "county1", at, ["a", "b"], {}, at + dt.timedelta(days=2, hours=3))
    partly = progress_of("r2", "pboc", None, "bureau", at, ["a", "b"], {"a": (True, at + dt.timedelta(hours=1)),
                                                                         "zz": (True, at)}, at + dt.timedelta(hours=5))
    done = progress_of("r3", "farm-machinery", 3, "county1", at, ["a", "b"],
                       {"a": (False, at + dt.timedelta(minutes=1)), "b": (True, at + dt.timedelta(minutes=7))},
                       at + dt.timedelta(days=9))
    assert (open_.state, open_.since) == ("open", dt.timedelta(days=2, hours=3))
    assert (partly.state, partly.answered, partly.found, partly.since) == ("partly answered", 1, 1,
                                                                          dt.timedelta(hours=5))
    assert (done.state, done.answered, done.found, done.since) == ("answered", 2, 1, dt.timedelta(minutes=7))
    lines = render_progress([open_, partly, done]).splitlines()
    assert lines[0].split() == ["REQUEST", "DEPARTMENT", "CASE", "BY", "PERSONS", "ANSWERED", "FOUND", "STATE", "FOR"]
    assert lines[2].split() == ["r1", "pboc", "3", "county1", "2", "0", "0", "open", "2d", "3h"]
    assert lines[3].split() == ["r2", "pboc", "all", "monitored", "bureau", "2", "1", "1", "partly", "answered",
                                "5h", "0m"]
    assert lines[4].split()[-2:] == ["answered", "7m"]
    assert render_progress([]).endswith("(no comparison requests)")
    assert '"state": "partly answered"' in progress_json([partly])
    assert [duration_text(dt.timedelta(seconds=s)) for s in (5, 65, 3700, 90000)] == ["5s", "1m", "1h 1m", "1d 1h"]


# --- the relay's publishing pass ------------------------------------------------------------------------------
def test_publish_pending_sends_in_id_order_and_marks_after_the_flush(store: CaseStore) -> None:
    from sqlalchemy.orm import Session

    with Session(store.engine) as session, session.begin():
        for i in range(7):
            outbox.add_message(session, "registry.households", f"h{i % 3}".encode(), bytes([i]), FIXED_NOW)
    publisher = MemoryPublisher()
    done = asyncio.run(publish_pending(store, lambda: publisher, lambda: FIXED_NOW, batch=3))
    assert done == 7 and [m.value for m in publisher.sent] == [bytes([i]) for i in range(7)]
    assert publisher.flushes == 3 and outbox.counts(store) == (0, 7)  # batches of 3, 3, 1: each flushed, then marked
    assert asyncio.run(publish_pending(store, lambda: publisher, lambda: FIXED_NOW)) == 0  # nothing twice


def test_nothing_is_marked_when_the_broker_does_not_acknowledge(store: CaseStore) -> None:
    from sqlalchemy.orm import Session

    from schemas.errors import BrokerUnavailable

    class Down(MemoryPublisher):
        async def flush(self) -> None:
            raise BrokerUnavailable("cannot reach Kafka at test")

    with Session(store.engine) as session, session.begin():
        for i in range(3):
            outbox.add_message(session, "registry.households", b"h", bytes([i]), FIXED_NOW)
    with pytest.raises(BrokerUnavailable):
        asyncio.run(publish_pending(store, lambda: Down(), lambda: FIXED_NOW))
    assert outbox.counts(store) == (3, 0)
    publisher = MemoryPublisher()
    assert asyncio.run(publish_pending(store, lambda: publisher, lambda: FIXED_NOW)) == 3
    assert [m.value for m in publisher.sent] == [b"\x00", b"\x01", b"\x02"]

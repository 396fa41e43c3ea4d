"""The case feed's cadre-visit consumer without Kafka (services/casefeed/screening_feed.py handle_visits): reports
made by the intake's own code (validate + to_event, pseudonymised with the key the roster was imported with),
encoded with the project's codec, recorded on a real SQLite case DB; garbage, the wrong record, a report of another
channel and an over-long event id are skipped and counted, and never hold the batch back."""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from connectors.pseudonym import Pseudonymiser
from schemas.catalog import INTAKE_SCHEMA
from schemas.codec import default_codec
from services.casedb.database import open_database
from services.casedb.store import CaseStore
from services.casefeed.screening_feed import CADRE_VISIT_TOPIC, handle_visits, screening_group
from services.cases.screening import Period
from services.cases.store import household_record
from services.intake.mapping import Report, to_event, validate
from tests.cases_behaviour import B_HEAD, HB, HC
from tests.screening_behaviour import HD, ScreeningWorld, sworld  # noqa: F401  (the fixture)
from tests.unit.doubles import TEST_KEY

CODEC = default_codec()
INGESTED = dt.datetime(2024, 8, 1, 3, 0, tzinfo=dt.UTC)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[CaseStore]:
    s = open_database(f"sqlite:///{tmp_path / 'cases.db'}")
    yield s
    s.close()


def report(day: dt.date, *, head: str | None = None, household: str | None = None,
           request_id: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"risk_type": "其他", "description": "入户走访, 家中情况正常",
                            "reported_on": day.isoformat(), "reporter": "村干部", "visit_result": "正常"}
    if head:
        body["head_id_number"] = head
    if household:
        body["household_id"] = household
    if request_id:
        body["request_id"] = request_id
    valid = validate("cadre-visit", body, dt.date(2024, 8, 1))
    assert isinstance(valid, Report), valid
    event = to_event(valid, Pseudonymiser(TEST_KEY), INGESTED)
    assert event.topic == CADRE_VISIT_TOPIC
    return event.record


def encoded(record: dict[str, Any]) -> bytes:
    return CODEC.encode(INTAKE_SCHEMA, record)


def test_the_topic_and_the_group() -> None:
    assert CADRE_VISIT_TOPIC == "events.intake.cadre-visit"
    assert screening_group("povwatch-casefeed") == "povwatch-casefeed.screening"


def test_reports_close_tasks_and_the_bad_ones_are_skipped(sworld: ScreeningWorld) -> None:  # noqa: F811
    sworld.screening.open(Period(2024, 3))
    sworld.screening.open(Period(2024))
    by_head = report(dt.date(2024, 7, 20), head=B_HEAD)            # HB, named by its head's ID number only
    by_id = report(dt.date(2024, 7, 21), household=HD, request_id="visit-hd-1")
    unknown = report(dt.date(2024, 7, 22), household="BL-NOT-IN-ROSTER")
    too_early = report(dt.date(2023, 12, 31), household=HC)       # no task of 2023Q4 or 2023
    other_channel = dict(report(dt.date(2024, 7, 23), household=HC), channel="SELF_DECLARATION")
    long_id = dict(report(dt.date(2024, 7, 24), household=HC), event_id="e" * 65)
    household = CODEC.encode("povwatch.registry.Household", household_record(sworld.household(HC), case_id=1,
                                                                              now=INGESTED))  # another record
    values = [encoded(by_head), b"\xc3\x01garbage-not-a-message", household, encoded(by_id), encoded(unknown),
              encoded(too_early), encoded(other_channel), encoded(long_id), encoded(by_head)]
    done = handle_visits(sworld.screening, values, CODEC)
    assert done.outcomes == ["closed", "undecodable", "undecodable", "closed", "unknown_household", "no_open_task",
                             "undecodable", "undecodable", "duplicate"]
    assert done.tasks_closed == 3  # HB's quarter and year, HD's year
    tasks = sworld.tasks()
    assert tasks[("2024Q3", HB)] == tasks[("2024", HB)] == ("CLOSED", "cadre-visit", by_head["event_id"])
    assert tasks[("2024", HD)] == ("CLOSED", "cadre-visit", by_id["event_id"])
    assert tasks[("2024Q3", HC)] == tasks[("2024", HC)] == ("OPEN", None, None)
    # the whole batch again (a redelivery after a crash before the commit): nothing changes
    again = handle_visits(sworld.screening, values, CODEC)
    assert again.outcomes == ["duplicate", "undecodable", "undecodable", "duplicate", "unknown_household",
                              "no_open_task", "undecodable", "undecodable", "duplicate"]
    assert again.tasks_closed == 0 and sworld.tasks() == tasks


def test_a_report_the_database_refuses_is_skipped_alone(sworld: ScreeningWorld,  # noqa: F811
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from services.casedb.errors import RecordRefused

    sworld.screening.open(Period(2024))
    first, poison, last = (report(dt.date(2024, 7, d), household=h) for d, h in ((2, HB), (3, HC), (4, HD)))
    real = sworld.screening.record_visits

    def refusing(reports: Any) -> Any:  # the DB refuses any transaction holding the poison report
        if any(r.event_id == poison["event_id"] for r in reports):
            raise RecordRefused("the case database refuses the data: value too long")
        return real(reports)

    monkeypatch.setattr(sworld.screening, "record_visits", refusing)
    done = handle_visits(sworld.screening, [encoded(first), encoded(poison), encoded(last)], CODEC)
    assert done.outcomes == ["closed", "refused", "closed"] and done.tasks_closed == 2
    assert sworld.tasks()[("2024", HC)] == ("OPEN", None, None)

"""集中排查 on a real PostgreSQL server: the behaviours shared with SQLite (tests/screening_behaviour.py, imported by
name), plus what only a server with concurrent writers shows: two `screening open`s of one period at the same
moment open each task once, and a cadre visit racing a desk user closes the task once.

The server is the project's private cluster of `scripts/postgres.sh`, as tests/integration/test_cases_postgres.py
runs it; the tables live in a schema of their own (`screening_wf`, dropped and made again before each test).
"""
from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from services.casedb.database import open_database
from services.casedb.errors import StepRefused
from services.casedb.models import ScreeningTask
from services.casedb.store import CaseStore
from services.cases.screening import Period, VisitOutcome
from services.cases.screening_store import Screening, VisitReport
from tests.integration.test_cases_postgres import fresh_schema, pg_url, store_in  # noqa: F401 (pg_url: the fixture)

pytest.register_assert_rewrite("tests.screening_behaviour")  # before the import below: pytest's detailed asserts

# The shared tests are imported to be collected here, on PostgreSQL (F401: nothing else uses them).
from tests.cases_behaviour import HB  # noqa: E402
from tests.screening_behaviour import (  # noqa: E402, F401
    ScreeningWorld,
    sworld,
    test_a_cadre_visit_closes_the_quarter_and_the_year_once,
    test_closing_by_hand_is_refused_outside_region_period_and_for_bad_notes,
    test_coverage_per_township,
    test_periods_not_begun_and_nobody_to_screen_are_refused,
    test_tasks_open_once_per_period,
    test_the_screening_commands,
    test_the_worklist_lists_the_users_open_tasks_of_the_running_periods,
    test_township_county_and_bureau_close_by_hand_a_village_user_cannot,
    test_visits_of_unknown_households_or_outside_every_period_close_nothing,
)

pytestmark = pytest.mark.integration

SCHEMA = "screening_wf"


@pytest.fixture
def db_url(pg_url: str) -> str:  # noqa: F811
    """The URL of an empty case DB in the schema of this module (dropped and made again)."""
    return fresh_schema(pg_url, SCHEMA)


@pytest.fixture
def store(db_url: str) -> Iterator[CaseStore]:
    yield from store_in(db_url, SCHEMA)


def _at_once(db_url: str, world: ScreeningWorld, *work: Callable[[Screening], Any]) -> list[Any]:
    """Run each `work` on a Screening of its own store (its own connections), all released at one barrier."""
    stores = [open_database(db_url) for _ in work]
    barrier = threading.Barrier(len(work))
    results: list[Any] = [None] * len(work)

    def run(i: int) -> None:
        screening = Screening(stores[i], clock=lambda: world.now)
        barrier.wait(timeout=30)
        try:
            results[i] = work[i](screening)
        except Exception as exc:  # noqa: BLE001 - the test looks at it
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(work))]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
    finally:
        for s in stores:
            s.close()
    return results


def test_two_opens_of_one_period_at_once_open_each_task_once(sworld: ScreeningWorld, db_url: str) -> None:  # noqa: F811
    year = Period(2024)
    results = _at_once(db_url, sworld, *[lambda s: s.open(year)] * 4)
    assert all(not isinstance(r, Exception) for r in results), results
    assert sum(r.opened for r in results) == 4 and all(r.households == 4 for r in results)
    with Session(sworld.store.engine) as session:
        assert session.scalar(select(text("count(*)")).select_from(ScreeningTask)) == 4


def test_a_visit_and_a_desk_user_closing_one_task_at_once_close_it_once(sworld: ScreeningWorld,  # noqa: F811
                                                                         db_url: str) -> None:
    sworld.screening.open(Period(2024, 3))
    task = sworld.task_id("2024Q3", HB)
    report = VisitReport("ev-race", None, sworld.head_key(HB), dt.date(2024, 7, 31), "NORMAL")
    for _ in range(3):
        results = _at_once(db_url, sworld, lambda s: s.record_visits([report]),
                           lambda s: s.close_by_hand("town1", task, "入户核实"))
        visit, hand = results
        assert not isinstance(visit, Exception), visit
        with Session(sworld.store.engine) as session:
            row = session.get(ScreeningTask, task)
            assert row is not None and row.status == "CLOSED"
            closed_by = row.closed_by
        if closed_by == "cadre-visit":      # the visit won: the desk user is told it is closed already
            assert visit[0].outcome == VisitOutcome.CLOSED
            assert isinstance(hand, StepRefused) and "already closed (by cadre-visit)" in str(hand)
        else:                               # the desk user won: the visit closes nothing
            assert closed_by == "town1" and not isinstance(hand, Exception)
            assert visit[0].outcome == VisitOutcome.ALREADY_CLOSED
        with Session(sworld.store.engine) as session, session.begin():  # open again for the next round
            row = session.get(ScreeningTask, task)
            assert row is not None
            row.status, row.closed_by, row.closed_at, row.closing_event_id, row.close_note = (
                "OPEN", None, None, None, None)

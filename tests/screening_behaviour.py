"""集中排查 on the case DB (services/cases/screening_store.py and `povwatch screening`), written once for every
backend: collected on SQLite by tests/unit/test_screening_store.py and on PostgreSQL by
tests/integration/test_screening_postgres.py, each of which defines a `store` fixture (an open CaseStore on empty
tables) and imports these tests by name.

The world is tests/cases_behaviour.py's (its roster imported through Cases.import_roster, its users), today
2024-08-01 in Bortala (2024Q3), plus one household of another county:
    HA  V1 652701100201  ORDINARY, NOT_INCLUDED           annual only
    HB  V1 652701100201  UNSTABLE_LIFTED, MONITORING      quarterly and annual
    HC  V3 652701200301  MARGINAL, NOT_INCLUDED           quarterly and annual
    HD  V4 652722100201  LIFTED, RISK_ELIMINATED          annual only (county 652722)
Users: vil1 (V1), vil2, vil3, town1 (652701100), town2 (652701200), county (652701), bureau (6527).
"""
from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from services.casedb.errors import NotFound, NotInRegion, StepRefused
from services.casedb.models import AuditEntry, Household, ScreeningTask
from services.casedb.store import CaseStore
from services.cases.screening import Period, RoleRefused, ScreeningError, VisitDecision, VisitOutcome
from services.cases.screening_store import Screening, VisitReport
from services.cli import main
from tests.cases_behaviour import HA, HB, HC, NOW, V1, World

HD, V4 = "BL-D-0004", "652722100201"
Q3, Y2024 = Period(2024, 3), Period(2024)


class ScreeningWorld(World):
    def __init__(self, store: CaseStore, tmp_path: Path) -> None:
        super().__init__(store, tmp_path)
        with Session(store.engine) as session, session.begin():
            session.add(Household(household_id=HD, village_code=V4, head_person_key="pk-head-of-hd",
                                  category="LIFTED", monitoring_status="RISK_ELIMINATED", labour_capacity="ABLE",
                                  per_capita_income=Decimal("9100"), household_size=3, updated_at=NOW))
        self.screening = Screening(store, clock=lambda: self.now)

    def tasks(self) -> dict[tuple[str, str], tuple[str, str | None, str | None]]:
        """(period, household) -> (status, closed_by, closing_event_id)."""
        with Session(self.store.engine) as session:
            return {(t.period, t.household_id): (t.status, t.closed_by, t.closing_event_id)
                    for t in session.scalars(select(ScreeningTask))}

    def task_id(self, period: str, household: str) -> int:
        with Session(self.store.engine) as session:
            found = session.scalar(select(ScreeningTask.id).where(ScreeningTask.period == period,
                                                                  ScreeningTask.household_id == household))
            assert found is not None
            return int(found)

    def audit(self, action: str) -> list[tuple[str, str | None, str | None]]:
        with Session(self.store.engine) as session:
            return [(a.user_name, a.household_id, a.detail) for a in session.scalars(
                select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.id))]

    def head_key(self, household: str) -> str:
        key = self.household(household).head_person_key
        assert key
        return key


@pytest.fixture
def sworld(store: CaseStore, tmp_path: Path) -> ScreeningWorld:
    return ScreeningWorld(store, tmp_path)


def visit(event_id: str, day: dt.date, *, household: str | None = None, head: str | None = None) -> VisitReport:
    return VisitReport(event_id, household, head, day, "NORMAL")


def test_tasks_open_once_per_period(sworld: ScreeningWorld) -> None:
    s = sworld.screening
    first = s.open(Q3)
    assert (first.households, first.opened, first.already_open, first.already_closed) == (2, 2, 0, 0)
    assert sworld.tasks() == {("2024Q3", HB): ("OPEN", None, None), ("2024Q3", HC): ("OPEN", None, None)}
    again = s.open(Q3)
    assert (again.households, again.opened, again.already_open, again.already_closed) == (2, 0, 2, 0)
    year = s.open(Y2024, county="652701")
    assert (year.households, year.opened) == (3, 3)
    assert s.open(Y2024).opened == 1  # HD, of county 652722
    with Session(sworld.store.engine) as session:
        rows = {(t.period, t.household_id): (t.kind, t.village_code, t.township_code)
                for t in session.scalars(select(ScreeningTask))}
    assert rows[("2024Q3", HB)] == ("quarterly", V1, "652701100")
    assert rows[("2024", HD)] == ("annual", V4, "652722100")
    assert len(rows) == 6
    # HA becomes monitored: the quarter's re-run opens its task, and only that one
    with Session(sworld.store.engine) as session, session.begin():
        session.execute(update(Household).where(Household.household_id == HA).values(monitoring_status="MONITORING"))
    later = s.open(Q3)
    assert (later.households, later.opened, later.already_open) == (3, 1, 2)
    assert [d for _, _, d in sworld.audit("SCREENING_OPEN")] == [
        "quarterly 2024Q3: 2 opened, 0 already there", "quarterly 2024Q3: 0 opened, 2 already there",
        "annual 2024 county 652701: 3 opened, 0 already there", "annual 2024: 1 opened, 3 already there",
        "quarterly 2024Q3: 1 opened, 2 already there"]


def test_periods_not_begun_and_nobody_to_screen_are_refused(sworld: ScreeningWorld) -> None:
    s = sworld.screening
    with pytest.raises(ScreeningError, match=r"2024Q4: it has not begun \(today is 2024-08-01 in Asia/Shanghai\)"):
        s.open(Period(2024, 4))
    with pytest.raises(ScreeningError, match="no households of county 652702 in the case DB's roster"):
        s.open(Y2024, county="652702")
    assert s.open(Period(2023, 4)).opened == 2  # a past quarter may be opened (late cadre-visit reports close it)
    assert s.open(Period(2024, 3), county="652722").households == 0  # no focus household there: nothing to open
    assert sworld.tasks().keys() == {("2023Q4", HB), ("2023Q4", HC)}


def test_a_cadre_visit_closes_the_quarter_and_the_year_once(sworld: ScreeningWorld) -> None:
    s = sworld.screening
    s.open(Q3)
    s.open(Y2024)
    day = dt.date(2024, 7, 30)
    decisions = s.record_visits([visit("ev-b", day, household=HB), visit("ev-c", day, head=sworld.head_key(HC)),
                                 visit("ev-a", dt.date(2024, 2, 1), household="not-a-household",
                                       head=sworld.head_key(HA))])
    assert [d.outcome for d in decisions] == [VisitOutcome.CLOSED] * 3
    assert len(decisions[0].close) == 2 and len(decisions[2].close) == 1  # HA: the year's task only
    tasks = sworld.tasks()
    assert tasks[("2024Q3", HB)] == tasks[("2024", HB)] == ("CLOSED", "cadre-visit", "ev-b")
    assert tasks[("2024Q3", HC)] == tasks[("2024", HC)] == ("CLOSED", "cadre-visit", "ev-c")
    assert tasks[("2024", HA)] == ("CLOSED", "cadre-visit", "ev-a")
    assert tasks[("2024", HD)] == ("OPEN", None, None)
    # redelivered (alone, or twice in one batch): nothing changes
    again = s.record_visits([visit("ev-b", day, household=HB), visit("ev-b", day, household=HB)])
    assert again == [VisitDecision(VisitOutcome.DUPLICATE)] * 2
    assert sworld.tasks() == tasks
    # another visit of the same household in the same period: the tasks are closed already
    assert s.record_visits([visit("ev-b2", dt.date(2024, 8, 1), household=HB)]) == [
        VisitDecision(VisitOutcome.ALREADY_CLOSED)]
    with Session(sworld.store.engine) as session:
        note = session.scalar(select(ScreeningTask.close_note).where(ScreeningTask.household_id == HB))
    assert note == "走访 2024-07-30 (NORMAL)"
    closes = sworld.audit("SCREENING_CLOSE")
    assert [(u, h) for u, h, _ in closes] == [("cadre-visit", HB), ("cadre-visit", HC), ("cadre-visit", HA)]
    assert "cadre-visit report ev-b of 2024-07-30" in (closes[0][2] or "")


def test_visits_of_unknown_households_or_outside_every_period_close_nothing(sworld: ScreeningWorld) -> None:
    s = sworld.screening
    s.open(Q3)
    before = sworld.tasks()
    decisions = s.record_visits([
        visit("ev-1", dt.date(2024, 7, 2), household="BL-NOBODY"),
        visit("ev-2", dt.date(2024, 7, 2), head="pk-nobody"),
        visit("ev-3", dt.date(2024, 6, 30), household=HB),    # the day before the quarter: 2024Q2 / 2024, none open
        visit("ev-4", dt.date(2024, 7, 2), household=HA),     # HA is not a focus household: no quarterly task
        visit("ev-5", dt.date(2025, 7, 2), household=HC),     # a year later
    ])
    assert [d.outcome for d in decisions] == [VisitOutcome.UNKNOWN_HOUSEHOLD, VisitOutcome.UNKNOWN_HOUSEHOLD,
                                              VisitOutcome.NO_OPEN_TASK, VisitOutcome.NO_OPEN_TASK,
                                              VisitOutcome.NO_OPEN_TASK]
    assert sworld.tasks() == before and sworld.audit("SCREENING_CLOSE") == []
    # the boundaries: the quarter's first and last day both count
    assert s.record_visits([visit("ev-6", dt.date(2024, 7, 1), household=HB),
                            visit("ev-7", dt.date(2024, 9, 30), household=HC)]) == [
        VisitDecision(VisitOutcome.CLOSED, (sworld.task_id("2024Q3", HB),)),
        VisitDecision(VisitOutcome.CLOSED, (sworld.task_id("2024Q3", HC),))]


def test_township_county_and_bureau_close_by_hand_a_village_user_cannot(sworld: ScreeningWorld) -> None:
    s = sworld.screening
    s.open(Y2024)
    hb, hc, hd = (sworld.task_id("2024", h) for h in (HB, HC, HD))
    with pytest.raises(RoleRefused, match="needs a bureau/county/township user, not a village user"):
        s.close_by_hand("vil1", hb, "入户走访, 无异常")
    view = s.close_by_hand("town1", hb, "  入户走访, 收入稳定  ", period="2024")
    assert (view.id, view.status, view.closed_by, view.close_note, view.category) == (
        hb, "CLOSED", "town1", "入户走访, 收入稳定", "UNSTABLE_LIFTED")
    assert s.close_by_hand("county", hc, "电话核实").closed_by == "county"
    assert s.close_by_hand("bureau", hd, "抽查").closed_by == "bureau"
    assert sworld.tasks()[("2024", HB)] == ("CLOSED", "town1", None)
    # a visit afterwards finds it closed
    assert s.record_visits([visit("ev-late", dt.date(2024, 8, 1), household=HB)])[0].outcome == \
        VisitOutcome.ALREADY_CLOSED
    assert [(u, h) for u, h, _ in sworld.audit("SCREENING_CLOSE")] == [("town1", HB), ("county", HC), ("bureau", HD)]
    assert sworld.audit("SCREENING_CLOSE")[0][2] == f"task {hb} 2024 marked screened: 入户走访, 收入稳定"
    [(user, household, detail)] = sworld.audit("REFUSED")
    assert (user, household) == ("vil1", HB) and "not a village user" in (detail or "")


def test_closing_by_hand_is_refused_outside_region_period_and_for_bad_notes(sworld: ScreeningWorld) -> None:
    s = sworld.screening
    s.open(Q3)
    s.open(Y2024)
    s.open(Period(2023))  # last year's screening: ended
    hb, hc = sworld.task_id("2024Q3", HB), sworld.task_id("2024Q3", HC)
    with pytest.raises(NotInRegion):
        s.close_by_hand("town2", hb, "越权")        # another township's task
    with pytest.raises(NotInRegion):
        s.close_by_hand("vil3", hb, "越权")
    with pytest.raises(NotFound, match="no screening task 999999"):
        s.close_by_hand("bureau", 999999, "不存在")
    with pytest.raises(NotFound, match="no user"):
        s.close_by_hand("nobody", hb, "x")
    with pytest.raises(StepRefused, match="belongs to the screening 2024Q3, not '2024Q2'"):
        s.close_by_hand("town1", hb, "伪造的排查期", period="2024Q2")
    with pytest.raises(StepRefused, match="the screening 2023 ended on 2023-12-31; it can no longer be marked"):
        s.close_by_hand("town1", sworld.task_id("2023", HB), "补录")
    with pytest.raises(StepRefused, match="needs a note"):
        s.close_by_hand("town1", hb, "   ")
    with pytest.raises(StepRefused, match="longer than 2000 characters"):
        s.close_by_hand("town1", hb, "很" * 2001)
    assert s.close_by_hand("town2", hc, "很" * 2000).close_note == "很" * 2000
    with pytest.raises(StepRefused, match=f"screening task {hc} is already closed \\(by town2\\)"):
        s.close_by_hand("county", hc, "再次")
    tasks = sworld.tasks()
    assert tasks[("2024Q3", HB)] == ("OPEN", None, None) and tasks[("2023", HB)] == ("OPEN", None, None)
    refused = sworld.audit("REFUSED")
    assert [u for u, _, _ in refused] == ["town2", "vil3", "town1", "town1", "town1", "town1", "county"]
    assert all(len(d or "") < 1100 for _, _, d in refused)
    # a period that has not begun (opened by hand in the DB, which `open` refuses): not closable either
    with Session(sworld.store.engine) as session, session.begin():
        session.add(ScreeningTask(period="2024Q4", kind="quarterly", household_id=HB, village_code=V1,
                                  township_code=V1[:9], status="OPEN", opened_at=NOW))
    with pytest.raises(StepRefused, match="the screening 2024Q4 begins on 2024-10-01"):
        s.close_by_hand("town1", sworld.task_id("2024Q4", HB), "提前")


def test_the_worklist_lists_the_users_open_tasks_of_the_running_periods(sworld: ScreeningWorld) -> None:
    s = sworld.screening
    for period in (Q3, Y2024, Period(2024, 2), Period(2023)):
        s.open(period)
    s.close_by_hand("town1", sworld.task_id("2024", HB), "已走访")

    def listed(user: str) -> set[tuple[str, str]]:
        tasks, total = s.visible_tasks(user)
        assert total == len(tasks)
        return {(t.period, t.household_id) for t in tasks}

    assert listed("vil1") == {("2024Q3", HB), ("2024", HA)}  # V1's open tasks of 2024Q3 and 2024
    assert listed("town2") == {("2024Q3", HC), ("2024", HC)}
    assert listed("county") == {("2024Q3", HB), ("2024", HA), ("2024Q3", HC), ("2024", HC)}
    assert listed("bureau") == listed("county") | {("2024", HD)}
    tasks, total = s.visible_tasks("bureau", limit=2)
    assert (len(tasks), total) == (2, 5)
    assert [t.period for t in tasks] == ["2024", "2024"]  # by period, then village
    with pytest.raises(NotFound):
        s.visible_tasks("nobody")


def test_coverage_per_township(sworld: ScreeningWorld) -> None:
    s = sworld.screening
    s.open(Y2024)
    s.record_visits([visit("ev-b", dt.date(2024, 7, 5), household=HB)])
    s.close_by_hand("town2", sworld.task_id("2024", HC), "已排查")
    c = s.coverage(Y2024)
    assert [(line.township, line.open, line.closed) for line in c.lines] == [
        ("652701100", 1, 1), ("652701200", 0, 1), ("652722100", 1, 0)]
    assert (c.total.open, c.total.closed, c.total.percent_closed) == (2, 2, Decimal("50.0"))
    assert [line.township for line in s.coverage(Y2024, county="652722").lines] == ["652722100"]
    assert s.coverage(Q3).lines == ()


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["screening", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_the_screening_commands(sworld: ScreeningWorld, monkeypatch: pytest.MonkeyPatch,
                                capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("POVWATCH_CASE_DB", sworld.store.engine.url.render_as_string(hide_password=False))
    code, out, _ = _cli(capsys, "open", "quarterly", "--period", "2024Q3")
    assert code == 0 and out.strip() == ("quarterly screening 2024Q3 (2024-07-01 to 2024-09-30): 2 household(s) to "
                                         "visit; opened 2 task(s)")
    code, out, _ = _cli(capsys, "open", "quarterly", "--period", "2024-q3")
    assert code == 0 and out.strip() == ("quarterly screening 2024Q3 (2024-07-01 to 2024-09-30): 2 household(s) to "
                                         "visit; nothing new to open: 2 already opened for 2024Q3 (2 open, 0 "
                                         "closed)")
    code, out, _ = _cli(capsys, "open", "annual", "--period", "2024", "--county", "652722")
    assert code == 0 and out.strip() == ("annual screening 2024 (2024-01-01 to 2024-12-31), county 652722: 1 "
                                         "household(s) to visit; opened 1 task(s)")
    sworld.screening.record_visits([visit("ev-b", dt.date(2024, 9, 1), household=HB)])
    code, out, _ = _cli(capsys, "open", "annual", "--period", "2024")
    assert code == 0 and out.strip().endswith("4 household(s) to visit; opened 3 task(s), 1 already opened for 2024 "
                                              "(1 open, 0 closed)")
    code, out, _ = _cli(capsys, "status", "--period", "2024Q3")
    lines = [line.split() for line in out.splitlines()[1:] if not line.strip().startswith("-")]
    assert code == 0 and out.splitlines()[0] == "quarterly screening 2024Q3 (2024-07-01 to 2024-09-30)"
    assert lines[1:] == [["652701100", "0", "1", "100.0%"], ["652701200", "1", "0", "0.0%"],
                         ["total", "1", "1", "50.0%"]]
    code, out, _ = _cli(capsys, "status", "--period", "2024", "--json")
    data = json.loads(out)["periods"]
    assert code == 0 and [p["period"] for p in data] == ["2024"]
    # HB's visit was recorded before the year's tasks were opened: it closed the quarter's task only
    assert data[0]["total"] == {"open": 4, "closed": 0, "tasks": 4, "percent_closed": 0.0}
    assert [t["township"] for t in data[0]["townships"]] == ["652701100", "652701200", "652722100"]
    # without --period: the quarter and the year running today (none opened for them here)
    code, out, _ = _cli(capsys, "status", "--json")
    periods = json.loads(out)["periods"]
    assert code == 0 and [p["kind"] for p in periods] == ["quarterly", "annual"]
    assert all(p["total"]["tasks"] == 0 for p in periods)
    # bad input: one line, exit 2, nothing opened
    before = sworld.tasks()
    for args, message in ((("open", "quarterly", "--period", "2024Q5"), "there is no quarter 5"),
                          (("open", "annual", "--period", "2024Q3"), "is a quarter; the period of an annual"),
                          (("open", "quarterly", "--period", "2024"), "is a year; the period of a quarterly"),
                          (("open", "annual", "--period", "24"), "not a period"),
                          (("open", "annual", "--period", "2024", "--county", "6527"), "6-digit"),
                          (("open", "annual", "--period", "2999"), "it has not begun"),
                          (("status", "--period", "2024Q9"), "there is no quarter 9"),
                          (("status", "annual"), "screening status takes no kind"),
                          (("open",), "usage: povwatch screening open")):
        code, out, err = _cli(capsys, *args)
        assert (code, out) == (2, ""), args
        assert err.startswith("povwatch: error: ") and message in err and len(err.strip().splitlines()) == 1, err
    assert sworld.tasks() == before

"""集中排查 on the case DB: the thin query layer under the pure rules of services/cases/screening.py.

    s = Screening(store, clock=..., zone=...)          # a services.casedb.store.CaseStore; or Screening.from_settings
    s.open(period, county=None)            -> OpenResult      one task per household screened, once per period
    s.coverage(period, county=None)        -> Coverage        open / closed per township
    s.record_visits(reports)               -> [VisitDecision] cadre-visit reports close the tasks of their day
    s.visible_tasks(user)                  -> [TaskView]      the user's open tasks of the periods running today
    s.close_by_hand(user, task_id, note, period=None) -> TaskView    "已排查" on the desk

Every call is one transaction (CaseStore.run: retried after a lost race, errors translated into schemas.errors).
Two `open`s of one period at once: the unique (period, household_id) makes the loser retry, and it finds the
tasks made. A task is closed by a compare-and-set (UPDATE ... WHERE status = 'OPEN'), so a visit and a desk user
closing the same task at once close it once. Opening, closing and refusals are written to audit_log.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from connectors.framework import DEFAULT_ZONE, local_today
from plumbing.clock import Clock, utc_now
from services.casedb.errors import NotFound, NotInRegion, StepRefused
from services.casedb.models import MAX_ID, AuditEntry, Household, ScreeningTask, User
from services.casedb.store import CaseStore
from services.cases.screening import (
    CLOSER_ROLES,
    MAX_NOTE,
    Coverage,
    HouseholdRow,
    Period,
    RoleRefused,
    ScreeningError,
    TaskState,
    VisitDecision,
    VisitOutcome,
    coverage,
    decide_visit,
    parse_period,
    periods_containing,
    screened,
    to_open,
)
from services.cases.users import UserView, covers

__all__ = ["Screening", "OpenResult", "VisitReport", "TaskView", "VISIT_CLOSER", "WORKLIST_LIMIT"]

VISIT_CLOSER = "cadre-visit"  # screening_tasks.closed_by of a task a cadre-visit report closed
WORKLIST_LIMIT = 200  # tasks listed on one desk page (the count says how many there are)



@dataclass(frozen=True)
class OpenResult:
    period: Period
    county: str | None
    households: int   # households the screening visits (of the county, when given)
    opened: int       # tasks opened now
    already_open: int     # of the others, tasks of the period still open
    already_closed: int   # ... and closed


@dataclass(frozen=True)
class VisitReport:
    """The fields of a povwatch.events.IntakeReport record the screening needs."""

    event_id: str
    household_id: str | None
    head_person_key: str | None
    day: dt.date  # reported_on (= occurred_at)
    visit_result: str | None

    @classmethod
    def of(cls, record: dict[str, Any]) -> VisitReport:
        day = record.get("reported_on") or record.get("occurred_at")
        if not isinstance(day, dt.date) or isinstance(day, dt.datetime):
            raise ValueError("reported_on is not a date")
        if not 0 < len(str(record["event_id"])) <= 64:  # screening_tasks.closing_event_id (both backends alike)
            raise ValueError("event_id is empty or longer than 64 characters")
        if record.get("channel") != "CADRE_SCREENING":
            raise ValueError(f"channel {record.get('channel')!r} is not CADRE_SCREENING")
        return cls(str(record["event_id"]), record.get("household_id"), record.get("head_person_key"), day,
                   record.get("visit_result"))


@dataclass(frozen=True)
class TaskView:
    id: int
    period: str
    kind: str
    household_id: str
    village_code: str
    township_code: str
    status: str
    category: str | None  # the roster's, None if the household has left it
    monitoring_status: str | None
    opened_at: dt.datetime
    closed_at: dt.datetime | None
    closed_by: str | None
    close_note: str | None


def _view(task: ScreeningTask, household: Household | None) -> TaskView:
    return TaskView(task.id, task.period, task.kind, task.household_id, task.village_code, task.township_code,
                    task.status, household.category if household else None,
                    household.monitoring_status if household else None, task.opened_at, task.closed_at,
                    task.closed_by, task.close_note)


class Screening:
    """The screening operations over one CaseStore (see the module docstring)."""

    def __init__(self, store: CaseStore, *, clock: Clock = utc_now, zone: dt.tzinfo = DEFAULT_ZONE) -> None:
        self._store = store
        self._clock = clock
        self._zone = zone

    @classmethod
    def from_settings(cls, store: CaseStore, settings: Any) -> Screening:
        return cls(store, zone=settings.zone)

    def close(self) -> None:
        self._store.close()

    def today(self) -> dt.date:
        """The prefecture's date (Settings.zone, POVWATCH_TIMEZONE)."""
        return local_today(self._clock(), self._zone)

    def _audit(self, session: Session, user: str, action: str, *, household_id: str | None = None,
               detail: str | None = None) -> None:
        session.add(AuditEntry(at=self._clock(), user_name=user[:64], action=action, household_id=household_id,
                               detail=detail))

    # --- opening -------------------------------------------------------------------------------------------
    def open(self, period: Period, *, county: str | None = None, by: str = "povwatch-cli") -> OpenResult:
        """Open the tasks of `period` that are not open yet (ScreeningError if it has not begun)."""
        today = self.today()
        if period.start > today:
            raise ScreeningError(f"--period {period.label}: it has not begun (today is {today} in {self._zone})")

        def work(session: Session) -> OpenResult:
            query = select(Household.household_id, Household.village_code, Household.category,
                           Household.monitoring_status)
            if county:
                query = query.where(Household.village_code.startswith(county, autoescape=True))
            households = [HouseholdRow(*row) for row in session.execute(query)]
            if not households:
                where = f" of county {county}" if county else ""
                raise ScreeningError(f"no households{where} in the case DB's roster (import it first: povwatch "
                                     "cases roster FILE)")
            existing: dict[str, str] = {h: s for h, s in session.execute(
                select(ScreeningTask.household_id, ScreeningTask.status).where(ScreeningTask.period == period.label))}
            chosen = screened(period.kind, households, county)
            new = to_open(period, chosen, existing, county)
            now = self._clock()
            for task in new:
                session.add(ScreeningTask(period=task.period, kind=task.kind.value, household_id=task.household_id,
                                          village_code=task.village_code, township_code=task.township_code,
                                          status="OPEN", opened_at=now))
            session.flush()  # a concurrent `open` of the period: a unique violation, and the run is retried
            before = [existing[h.household_id] for h in chosen if h.household_id in existing]
            result = OpenResult(period, county, len(chosen), len(new), before.count("OPEN"),
                                before.count("CLOSED"))
            self._audit(session, by, "SCREENING_OPEN",
                        detail=f"{period.kind} {period.label}" + (f" county {county}" if county else "")
                        + f": {result.opened} opened, {len(before)} already there")
            return result

        return self._store.run(work, f"open the screening tasks of {period.label}")

    # --- coverage ------------------------------------------------------------------------------------------
    def coverage(self, period: Period, *, county: str | None = None) -> Coverage:
        def work(session: Session) -> list[tuple[str, str]]:
            query = select(ScreeningTask.township_code, ScreeningTask.status).where(
                ScreeningTask.period == period.label)
            if county:
                query = query.where(ScreeningTask.township_code.startswith(county, autoescape=True))
            return [(t, s) for t, s in session.execute(query)]

        return coverage(period, self._store.run(work, f"read the screening of {period.label}"))

    def periods_with_tasks(self) -> list[str]:
        def work(session: Session) -> list[str]:
            return list(session.scalars(select(ScreeningTask.period).distinct()))

        return self._store.run(work, "list the screening periods")

    # --- cadre visits --------------------------------------------------------------------------------------
    def record_visits(self, reports: Sequence[VisitReport]) -> list[VisitDecision]:
        """Close, in ONE transaction, the open tasks each report's day lies in (see decide_visit); one decision
        per report, in order. Idempotent: a report seen before is a DUPLICATE and changes nothing."""
        def work(session: Session) -> list[VisitDecision]:
            return [self._visit(session, report) for report in reports]

        return self._store.run(work, "record cadre visits")

    def _household_of(self, session: Session, report: VisitReport) -> str | None:
        if report.household_id:
            found = session.scalar(select(Household.household_id)
                                   .where(Household.household_id == report.household_id))
            if found is not None:
                return str(found)
        if report.head_person_key:
            found = session.scalar(select(Household.household_id)
                                   .where(Household.head_person_key == report.head_person_key)
                                   .order_by(Household.household_id).limit(1))
            if found is not None:
                return str(found)
        return None

    def _visit(self, session: Session, report: VisitReport) -> VisitDecision:
        household = self._household_of(session, report)
        tasks: list[TaskState] = []
        if household is not None:
            tasks = [TaskState(i, s, e) for i, s, e in session.execute(
                select(ScreeningTask.id, ScreeningTask.status, ScreeningTask.closing_event_id)
                .where(ScreeningTask.household_id == household,
                       ScreeningTask.period.in_(periods_containing(report.day))))]
        decision = decide_visit(report.event_id, household is not None, tasks)
        if not decision.close:
            return decision
        now = self._clock()
        note = f"走访 {report.day.isoformat()}" + (f" ({report.visit_result})" if report.visit_result else "")
        closed = tuple(sorted(session.scalars(
            update(ScreeningTask).where(ScreeningTask.id.in_(decision.close), ScreeningTask.status == "OPEN")
            .values(status="CLOSED", closed_at=now, closed_by=VISIT_CLOSER, close_note=note,
                    closing_event_id=report.event_id)
            .returning(ScreeningTask.id).execution_options(synchronize_session=False))))
        if not closed:  # a desk user closed them in the meantime (the UPDATE waited for their lock)
            return VisitDecision(VisitOutcome.ALREADY_CLOSED)
        self._audit(session, VISIT_CLOSER, "SCREENING_CLOSE", household_id=household,
                    detail=f"task(s) {', '.join(map(str, closed))} closed by cadre-visit report "
                           f"{report.event_id} of {report.day.isoformat()}")
        return VisitDecision(VisitOutcome.CLOSED, closed)

    # --- the desk ------------------------------------------------------------------------------------------
    @staticmethod
    def _user(session: Session, user: UserView | str) -> User:
        name = user if isinstance(user, str) else user.name
        row = session.scalar(select(User).where(User.name == name))
        if row is None:
            raise NotFound(f"no user {name!r}")
        if not row.active:
            raise StepRefused(f"user {name} is deactivated")
        return row

    def visible_tasks(self, user: UserView | str, *, limit: int = WORKLIST_LIMIT) -> tuple[list[TaskView], int]:
        """The open tasks of the user's region for the periods running today (the quarter and the year), by
        period, village and household; at most `limit` of them, and how many there are."""
        today = self.today()

        def work(session: Session) -> tuple[list[TaskView], int]:
            me = self._user(session, user)
            where = (ScreeningTask.status == "OPEN", ScreeningTask.period.in_(periods_containing(today)),
                     ScreeningTask.village_code.startswith(me.region, autoescape=True))
            total = session.scalar(select(func.count()).select_from(ScreeningTask).where(*where)) or 0
            rows = session.execute(
                select(ScreeningTask, Household).outerjoin(Household,
                                                           Household.household_id == ScreeningTask.household_id)
                .where(*where).order_by(ScreeningTask.period, ScreeningTask.village_code,
                                        ScreeningTask.household_id).limit(limit)).all()
            return [_view(task, household) for task, household in rows], int(total)

        return self._store.run(work, "list screening tasks")

    def close_by_hand(self, user: UserView | str, task_id: int, note: str, *,
                      period: str | None = None) -> TaskView:
        """"已排查": a township, county or bureau user of the task's region closes it with a note, while its period
        runs. `period`, when given (the desk's form), must be the task's. NotFound / NotInRegion for a task the
        user cannot see; RoleRefused for a village user; StepRefused otherwise (logged as REFUSED)."""
        def work(session: Session) -> TaskView:
            me = self._user(session, user)
            in_range = 0 < task_id <= MAX_ID  # beyond the database's integers: no such task (never an overflow)
            task = session.scalar(select(ScreeningTask).where(ScreeningTask.id == task_id).with_for_update()) \
                if in_range else None
            if task is None:
                raise NotFound(f"no screening task {task_id}")
            if not covers(me.region, task.village_code):
                raise NotInRegion(f"screening task {task_id} (village {task.village_code}) is outside the region "
                                  f"{me.region} of {me.role} user {me.name}")
            if me.role not in CLOSER_ROLES:
                raise RoleRefused(f"screening task {task_id}: marking a household screened needs a "
                                  f"{'/'.join(sorted(CLOSER_ROLES))} user, not a {me.role} user (a village cadre "
                                  "reports the visit through the cadre-visit channel)")
            if period is not None and period != task.period:
                raise StepRefused(f"screening task {task_id} belongs to the screening {task.period}, not "
                                  f"{period[:16]!r}")
            if task.status != "OPEN":
                raise StepRefused(f"screening task {task_id} is already closed (by {task.closed_by})")
            running, today = parse_period(task.period), self.today()
            if today > running.end:
                raise StepRefused(f"screening task {task_id}: the screening {task.period} ended on {running.end}; "
                                  "it can no longer be marked screened by hand (a cadre-visit report dated in "
                                  "the period still closes it)")
            if today < running.start:
                raise StepRefused(f"screening task {task_id}: the screening {task.period} begins on "
                                  f"{running.start}")
            text = (note or "").strip()
            if not text:
                raise StepRefused(f"screening task {task_id}: marking it screened needs a note (what was found)")
            if len(text) > MAX_NOTE:
                raise StepRefused(f"screening task {task_id}: the note is longer than {MAX_NOTE} characters")
            task.status, task.closed_at, task.closed_by, task.close_note = "CLOSED", self._clock(), me.name, text
            self._audit(session, me.name, "SCREENING_CLOSE", household_id=task.household_id,
                        detail=f"task {task.id} {task.period} marked screened: {text}")
            session.flush()
            return _view(task, session.get(Household, task.household_id))

        try:
            return self._store.run(work, f"close screening task {task_id}")
        except StepRefused as exc:
            self._refused(user, task_id, exc)
            raise

    def _refused(self, user: UserView | str, task_id: int, exc: Exception) -> None:
        name = user if isinstance(user, str) else user.name

        def work(session: Session) -> None:
            task = session.get(ScreeningTask, task_id)
            self._audit(session, name, "REFUSED", household_id=task.household_id if task is not None else None,
                        detail=str(exc)[:1000])

        self._store.run(work, "log a refusal")

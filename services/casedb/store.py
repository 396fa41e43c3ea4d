"""The case store: turns risk alerts into cases for the Rural Revitalisation Bureau's case system.

Responsible for:
  * recording decoded alert records (plain dicts, as fastavro returns them) as `evidence` on `cases` (the tables:
    services/casedb/models.py), attached to a case alert (services/casedb/lifecycle.py); idempotent and race-safe:
    at most one OPEN case per subject and one evidence row per alert, enforced in the database as well as here;
    one fact, one alert: a known alert_id re-emitted with news (events of another department, a higher severity)
    updates its evidence - `evidence_events` keeps each event with its topic and department - and escalates its
    case alert; it is a duplicate only when nothing new came (services/casedb/recording.py, which records a batch
    with set-based reads and one flush);
  * NUL characters, which PostgreSQL text columns refuse, stored as U+FFFD on every backend (`without_nul`);
    bounded columns bounded on SQLite too (CHECK on their length), so both backends refuse the same alerts;
  * read-only views (`CaseView` with its `CaseAlertView`s, `EvidenceView`), rendered for `povwatch cases list`
    by services/cases/listing.py.

Every transaction is services/casedb/transaction.py's (`CaseStore.run` hands it to the case DB's other users), which
retries lost races and translates SQLAlchemy errors into the project's errors. Open a store with
services.casedb.database.open_database. A record missing a field is a `SchemaError`.
Timestamps are stored in UTC and always come back timezone-aware (UTC).
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session, selectinload

from plumbing.clock import Clock, utc_now
from schemas.alerts import severity_rank
from services.casedb.departments import EventSource, event_source, sources_of
from services.casedb.models import Case, CaseAlert, Evidence, EvidenceEvent
from services.casedb.recording import NUL_REPLACEMENT, Recorder, RecordResult, parse, without_nul
from services.casedb.transaction import transaction

__all__ = ["CaseStore", "RecordResult", "CaseView", "CaseAlertView", "EvidenceView", "without_nul",
           "evidence_events", "events_of", "NUL_REPLACEMENT", "HOUSEHOLD_TOPIC", "REGIONAL_TOPIC"]

HOUSEHOLD_TOPIC = "alerts.household"
REGIONAL_TOPIC = "alerts.regional"
_T = TypeVar("_T")


@dataclass(frozen=True)
class EvidenceView:
    alert_id: str
    rule: str
    severity: str
    reason: str
    event_ids: tuple[str, ...]
    occurred_at: dt.date
    raised_at: dt.datetime
    household_ids: tuple[str, ...] = ()
    case_alert_id: int | None = None
    events: tuple[EventSource, ...] = ()  # every event behind the alert, with its topic and department
    departments: tuple[str, ...] = ()  # the Chinese names of the departments that report it (公安, 卫健, ...)


@dataclass(frozen=True)
class CaseAlertView:
    """An alert of a case (services/casedb/lifecycle.py): OPEN, ACKNOWLEDGED or RESOLVED, with its evidence."""

    id: int
    rule: str
    status: str
    severity: str
    opened_at: dt.datetime
    updated_at: dt.datetime
    alert_ids: tuple[str, ...]  # the evidence attached to it, oldest first
    acknowledged_by: str | None = None
    acknowledged_at: dt.datetime | None = None
    resolved_by: str | None = None
    resolved_at: dt.datetime | None = None
    departments: tuple[str, ...] = ()  # the departments that report its evidence
    # its deadline to be acknowledged (services/cases/deadlines.py), filled in by `povwatch cases list`: the last
    # day (None: no clock runs - acknowledged, resolved) and the days past it (0: not overdue)
    due_on: dt.date | None = None
    overdue_days: int = 0


@dataclass(frozen=True)
class CaseView:
    id: int
    subject_kind: str
    household_or_region: str
    village_code: str
    status: str
    max_severity: str
    opened_at: dt.datetime
    updated_at: dt.datetime
    evidence: tuple[EvidenceView, ...]
    alerts: tuple[CaseAlertView, ...] = ()  # oldest first


class CaseStore:
    """The case database of one process; open it with `open_database`."""

    def __init__(self, engine: Engine, *, clock: Clock = utc_now) -> None:
        self._engine = engine
        self._clock = clock  # when an alert is received (evidence.received_at) and a case opened or raised

    @property
    def engine(self) -> Engine:
        """The SQLAlchemy engine (for tests and maintenance; application code should not need it)."""
        return self._engine

    def run(self, work: Callable[[Session], _T], action: str) -> _T:
        """Run `work(session)` in one transaction, retried after a lost race and with errors translated into
        schemas.errors exceptions (`action` completes "could not ..."): for the case DB's other modules."""
        return self._transaction(work, action)

    # --- writing -----------------------------------------------------------------------------------------
    def record_household_alert(self, alert: Mapping[str, Any], *, topic: str = HOUSEHOLD_TOPIC) -> RecordResult:
        """Attach a household alert to the OPEN case of its household (opening one if needed), once."""
        return self._record_all([("household", topic, alert)])[0]

    def record_regional_alert(self, alert: Mapping[str, Any], *, topic: str = REGIONAL_TOPIC) -> RecordResult:
        """Attach a regional alert to the OPEN case of its village (region_code), opening one if needed."""
        return self._record_all([("village", topic, alert)])[0]

    def record_batch(self, items: Sequence[tuple[str, Mapping[str, Any]]]) -> list[RecordResult]:
        """Record (topic, alert) pairs in ONE transaction; one result per item, in order.

        An alert with a `region_code` field is regional, any other a household alert. A repeated alert_id -
        already stored or earlier in the same batch - is reported as a duplicate and stored once.
        Commit Kafka offsets only after this returns: then nothing is lost and redelivery is harmless.
        """
        return self._record_all([("village" if isinstance(alert, Mapping) and "region_code" in alert
                                  else "household", topic, alert) for topic, alert in items])

    def _record_all(self, items: Sequence[tuple[str, str, Mapping[str, Any]]]) -> list[RecordResult]:
        parsed = [parse(kind, topic, alert) for kind, topic, alert in items]  # SchemaError: before any SQL

        def work(session: Session) -> list[RecordResult]:
            now = self._clock()
            recorder = Recorder.load(session, parsed)  # set-based reads and one flush: services/casedb/recording.py
            with session.no_autoflush:
                finish = [recorder.record(item, now) for item in parsed]
            recorder.write()  # a race on a unique key surfaces here, inside the retry loop
            return [result() for result in finish]

        # If a concurrent writer wins a race on a unique key, the whole transaction is retried.
        return self._transaction(work, "record alerts")

    def _transaction(self, work: Callable[[Session], _T], action: str) -> _T:
        return transaction(self._engine, work, action)

    # --- reading -----------------------------------------------------------------------------------------
    def list_cases(self, *, status: str | None = None) -> list[CaseView]:
        """All cases (or those with `status`), highest severity first, then oldest first."""
        def work(session: Session) -> list[CaseView]:
            query = select(Case).options(selectinload(Case.evidence))
            if status is not None:
                query = query.where(Case.status == status)
            cases = list(session.scalars(query))
            alerts: dict[int, list[CaseAlert]] = {}
            for alert in session.scalars(select(CaseAlert).order_by(CaseAlert.id)):
                alerts.setdefault(alert.case_id, []).append(alert)
            events = evidence_events(session, [e.alert_id for case in cases for e in case.evidence])
            return [_view(case, alerts.get(case.id, []), events) for case in cases]

        views = self._transaction(work, "list cases")
        return sorted(views, key=lambda c: (-severity_rank(c.max_severity), c.opened_at, c.id))

    def counts(self) -> dict[str, int]:
        """{"cases_open": n, "evidence": m}."""
        def work(session: Session) -> dict[str, int]:
            open_cases = session.scalar(select(func.count()).select_from(Case).where(Case.status == "OPEN"))
            evidence = session.scalar(select(func.count()).select_from(Evidence))
            return {"cases_open": int(open_cases or 0), "evidence": int(evidence or 0)}

        return self._transaction(work, "count cases")

    def close(self) -> None:
        self._engine.dispose()

    def __enter__(self) -> CaseStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def evidence_events(session: Session, alert_ids: Sequence[str]) -> dict[str, tuple[EventSource, ...]]:
    """The evidence_events of each alert in `alert_ids` (oldest first), as EventSources; an alert without rows
    (none are written before revision 0003 for alerts without event ids) maps to nothing."""
    out: dict[str, list[EventSource]] = {}
    wanted = list(dict.fromkeys(alert_ids))
    for start in range(0, len(wanted), 500):  # bounded IN lists
        for row in session.scalars(select(EvidenceEvent).where(EvidenceEvent.alert_id.in_(wanted[start:start + 500]))
                                   .order_by(EvidenceEvent.id)):
            out.setdefault(row.alert_id, []).append(event_source(row.event_id, row.topic, row.department))
    return {alert_id: tuple(rows) for alert_id, rows in out.items()}


def events_of(evidence: Evidence, events: Mapping[str, tuple[EventSource, ...]]) -> tuple[EventSource, ...]:
    """The evidence's events: its evidence_events rows, in the order of its event_ids (rows of events not in
    event_ids after them); an event id without a row is shown with its source unknown."""
    rows: dict[str, EventSource | None] = {e.event_id: e for e in events.get(evidence.alert_id, ())}
    ordered = [rows.pop(str(event_id), None) or event_source(str(event_id), None, None)
               for event_id in dict.fromkeys(evidence.event_ids or ())]
    return tuple(ordered) + tuple(e for e in rows.values() if e is not None)


def _view(case: Case, alerts: Sequence[Any], events: Mapping[str, tuple[EventSource, ...]]) -> CaseView:
    """`alerts`: the case's services.casedb.models.CaseAlert rows, oldest first; `events`: evidence_events(...)."""
    evidence = [(e, events_of(e, events)) for e in case.evidence]
    return CaseView(
        id=case.id, subject_kind=case.subject_kind, household_or_region=case.household_or_region,
        village_code=case.village_code,
        status=case.status, max_severity=case.max_severity, opened_at=case.opened_at,
        updated_at=case.updated_at,
        evidence=tuple(EvidenceView(
            alert_id=e.alert_id, rule=e.rule, severity=e.severity, reason=e.reason,
            event_ids=tuple(e.event_ids or ()), occurred_at=e.occurred_at, raised_at=e.raised_at,
            household_ids=tuple(e.household_ids or ()), case_alert_id=e.case_alert_id, events=mine,
            departments=sources_of(mine)) for e, mine in evidence),
        alerts=tuple(CaseAlertView(
            id=a.id, rule=a.rule, status=a.status, severity=a.severity, opened_at=a.opened_at,
            updated_at=a.updated_at, alert_ids=tuple(e.alert_id for e, _ in evidence if e.case_alert_id == a.id),
            acknowledged_by=a.acknowledged_by, acknowledged_at=a.acknowledged_at, resolved_by=a.resolved_by,
            resolved_at=a.resolved_at,
            departments=sources_of(ev for e, mine in evidence if e.case_alert_id == a.id for ev in mine))
            for a in alerts))



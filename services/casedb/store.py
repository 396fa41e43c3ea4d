"""The case store: turns risk alerts into cases for the Rural Revitalisation Bureau's case system.

Responsible for:
  * recording decoded alert records (plain dicts, as fastavro returns them) as `evidence` on `cases` (the tables:
    services/casedb/models.py), attached to a case alert (services/casedb/lifecycle.py); idempotent and race-safe:
    at most one OPEN case per subject and one evidence row per alert, enforced in the database as well as here;
    one fact, one alert: a known alert_id re-emitted with news (events of another department, a higher severity)
    updates its evidence - `evidence_events` keeps each event with its topic and department - and escalates its
    case alert; it is a duplicate only when nothing new came (`CaseStore._merge`);
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

import dataclasses
import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import Engine, func, select, update
from sqlalchemy.orm import Session, selectinload

from plumbing.clock import Clock, utc_now
from schemas.alerts import Rule, Severity, severity_rank
from schemas.errors import SchemaError
from services.casedb.departments import EventSource, department_of_topic, event_source, sources_of
from services.casedb.lifecycle import CASEFEED, attach, escalate, raise_case
from services.casedb.models import Case, CaseAlert, CaseHistory, Evidence, EvidenceEvent
from services.casedb.transaction import transaction

__all__ = ["CaseStore", "RecordResult", "CaseView", "CaseAlertView", "EvidenceView", "without_nul",
           "evidence_events", "events_of", "NUL_REPLACEMENT", "HOUSEHOLD_TOPIC", "REGIONAL_TOPIC"]

HOUSEHOLD_TOPIC = "alerts.household"
REGIONAL_TOPIC = "alerts.regional"
NUL_REPLACEMENT = "\ufffd"  # what a NUL (U+0000) in an alert's text is stored as
_T = TypeVar("_T")


@dataclass(frozen=True)
class RecordResult:
    case_id: int
    case_opened: bool
    duplicate: bool
    sanitised: bool = False  # the alert's text held NUL characters, stored as NUL_REPLACEMENT
    # the case alert the evidence attached to, and the severity it had before this evidence raised it (None: not
    # raised); for a duplicate, the case alert of the stored evidence
    case_alert_id: int | None = dataclasses.field(default=None, compare=False)
    escalated_from: str | None = dataclasses.field(default=None, compare=False)
    # a known alert_id that brought something new (one fact, one alert): events another department reported
    # (`events_added` of them), a higher severity, or the topics of events stored without one
    updated: bool = dataclasses.field(default=False, compare=False)
    events_added: int = dataclasses.field(default=0, compare=False)


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


def _field(alert: Mapping[str, Any], name: str) -> Any:
    value = alert.get(name) if isinstance(alert, Mapping) else None
    if value is None:
        alert_id = alert.get("alert_id") if isinstance(alert, Mapping) else None
        raise SchemaError(f"alert {alert_id or '?'}: field {name!r} is missing")
    return value


def _no_nul(value: Any) -> tuple[Any, bool]:
    if isinstance(value, str):
        return (value.replace("\x00", NUL_REPLACEMENT), True) if "\x00" in value else (value, False)
    if isinstance(value, list | tuple):
        cleaned = [_no_nul(item) for item in value]
        return [item for item, _ in cleaned], any(changed for _, changed in cleaned)
    return value, False


def without_nul(alert: Mapping[str, Any]) -> tuple[dict[str, Any], bool]:
    """The alert with every NUL (U+0000) in its text - strings and lists of strings - replaced by U+FFFD, and
    whether there was any. PostgreSQL text columns refuse NUL; the alert is real and must reach the case worker,
    so it is stored with the replacement (the same on every backend, so the same alert_id stays one alert)."""
    out: dict[str, Any] = {}
    changed = False
    for key, value in alert.items():
        out[key], hit = _no_nul(value)
        changed = changed or hit
    return out, changed


def _checked(value: Any, allowed: type[Rule] | type[Severity], what: str) -> str:
    try:
        return allowed(value).value
    except ValueError:
        raise SchemaError(f"unknown {what} {value!r}") from None


def _events_of(alert_id: str, event_ids: Sequence[Any], topics: Any) -> list[tuple[str, str | None, str | None]]:
    """(event_id, topic, department) of each distinct event of an alert: `event_topics` gives the topic of each
    event of `event_ids`, in the same order (alerts before schema v2 have none: topic and department None)."""
    if topics is None:
        topics = []
    if not isinstance(topics, list | tuple) or not all(isinstance(t, str) for t in topics):
        raise SchemaError(f"alert {alert_id}: event_topics must be a list of topics")
    out: dict[str, tuple[str | None, str | None]] = {}
    for index, raw in enumerate(event_ids):
        event_id = str(raw)
        event_topic = (topics[index] or None) if index < len(topics) else None
        if event_id not in out or (out[event_id][0] is None and event_topic is not None):
            out[event_id] = (event_topic, department_of_topic(event_topic))
    return [(event_id, event_topic, department) for event_id, (event_topic, department) in out.items()]


def _open_case(session: Session, kind: str, subject: str, village: str, severity: str,
               now: dt.datetime) -> tuple[Case, bool]:
    """The OPEN case of the subject, raised to `severity` if that is higher, or a new one; (case, opened)."""
    case = session.scalar(select(Case).where(Case.subject_kind == kind, Case.household_or_region == subject,
                                             Case.status == "OPEN"))
    if case is None:
        case = Case(subject_kind=kind, household_or_region=subject, village_code=village, status="OPEN",
                    max_severity=severity, opened_at=now, updated_at=now)
        session.add(case)
        session.flush()  # a concurrent writer that opened it first: IntegrityError, the transaction is retried
        return case, True
    raise_case(session, case, severity, now)
    return case, False


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
        def work(session: Session) -> list[RecordResult]:
            now = self._clock()
            return [self._record(session, kind, alert, topic, now) for kind, topic, alert in items]

        # If a concurrent writer wins a race on a unique key, the whole transaction is retried.
        return self._transaction(work, "record alerts")

    @staticmethod
    def _record(session: Session, kind: str, given: Mapping[str, Any], topic: str,
                now: dt.datetime) -> RecordResult:
        if not isinstance(given, Mapping):
            raise SchemaError(f"an alert is a record, not {type(given).__name__}")
        alert, sanitised = without_nul(given)
        alert_id = str(_field(alert, "alert_id"))
        if kind == "household":
            subject, village, households = _field(alert, "household_id"), _field(alert, "village_code"), []
        else:
            subject = village = _field(alert, "region_code")
            households = list(_field(alert, "household_ids"))
        severity = _checked(_field(alert, "severity"), Severity, "severity")
        occurred, raised = _field(alert, "occurred_at"), _field(alert, "raised_at")
        if not isinstance(occurred, dt.date) or not isinstance(raised, dt.datetime):
            raise SchemaError(f"alert {alert_id}: occurred_at must be a date and raised_at a datetime")
        rule = _checked(_field(alert, "rule"), Rule, "rule")
        reason, event_ids = str(_field(alert, "reason")), list(_field(alert, "event_ids"))
        events = _events_of(alert_id, event_ids, alert.get("event_topics"))
        existing = session.scalar(select(Evidence).where(Evidence.alert_id == alert_id))
        if existing is not None:
            return CaseStore._merge(session, existing, kind=kind, subject=subject, village=village,
                                    severity=severity, reason=reason, events=events, sanitised=sanitised, now=now)
        case, opened = _open_case(session, kind, subject, village, severity, now)
        attached = attach(session, case, rule=rule, severity=severity, alert_id=alert_id, now=now)
        session.add(Evidence(
            alert_id=alert_id, case=case, rule=rule, severity=severity, reason=reason,
            event_ids=[event_id for event_id, _, _ in events], household_ids=households, occurred_at=occurred,
            raised_at=raised, received_at=now, source_topic=topic, case_alert_id=attached.case_alert_id))
        session.add_all(EvidenceEvent(alert_id=alert_id, event_id=event_id, topic=event_topic, department=department,
                                      received_at=now) for event_id, event_topic, department in events)
        session.flush()  # a race on a unique key surfaces here, inside the retry loop
        return RecordResult(case.id, case_opened=opened, duplicate=False, sanitised=sanitised,
                            case_alert_id=attached.case_alert_id, escalated_from=attached.escalated_from)

    @staticmethod
    def _merge(session: Session, existing: Evidence, *, kind: str, subject: str, village: str, severity: str,
               reason: str, events: list[tuple[str, str | None, str | None]], sanitised: bool,
               now: dt.datetime) -> RecordResult:
        """A known alert_id again (one fact, one alert): a redelivery (a duplicate: nothing changes), or a
        re-emission with something new - events another department reported, a higher severity, topics of events
        stored without one. The new events become evidence_events rows and join Evidence.event_ids; a higher
        severity raises the evidence and its live case alert (an ESCALATION in case_history, services/casefeed/
        lifecycle.py); when that alert is RESOLVED or its case CLOSED, the worse fact needs the case worker's eyes
        again: the evidence moves to the live alert of its rule in the subject's OPEN case (opened if needed)."""
        def news() -> tuple[list[tuple[str, str | None, str | None]], list[EvidenceEvent], bool]:
            stored = {row.event_id: row for row in session.scalars(
                select(EvidenceEvent).where(EvidenceEvent.alert_id == existing.alert_id)
                .execution_options(populate_existing=True))}
            added = [event for event in events if event[0] not in stored]
            filled = [stored[event_id] for event_id, event_topic, _ in events
                      if event_id in stored and stored[event_id].topic is None and event_topic is not None]
            return added, filled, severity_rank(severity) > severity_rank(existing.severity)

        def duplicate() -> RecordResult:
            return RecordResult(existing.case_id, case_opened=False, duplicate=True, sanitised=sanitised,
                                case_alert_id=existing.case_alert_id)

        added, filled, higher = news()
        if not (added or filled or higher):
            return duplicate()
        # Something new: lock the evidence row (PostgreSQL: a row lock; SQLite: the database's write lock) and read
        # again, so a concurrent writer that merged the same news first is seen, and no event_ids union is lost.
        session.execute(update(Evidence).where(Evidence.id == existing.id).values(case_id=Evidence.case_id)
                        .execution_options(synchronize_session=False))
        session.refresh(existing)
        added, filled, higher = news()
        if not (added or filled or higher):
            return duplicate()
        topics = {event_id: (event_topic, department) for event_id, event_topic, department in events}
        for row in filled:
            row.topic, row.department = topics[row.event_id]
        session.add_all(EvidenceEvent(alert_id=existing.alert_id, event_id=event_id, topic=event_topic,
                                      department=department, received_at=now)
                        for event_id, event_topic, department in added)
        if added:
            existing.event_ids = list(dict.fromkeys([*(str(e) for e in existing.event_ids or ()),
                                                     *(event_id for event_id, _, _ in added)]))
        case_id, opened, escalated_from = existing.case_id, False, None
        case_alert_id = existing.case_alert_id
        if higher:
            seen = existing.severity
            existing.severity, existing.reason = severity, reason
            case = session.get(Case, existing.case_id)
            live = session.get(CaseAlert, existing.case_alert_id) if existing.case_alert_id is not None else None
            assert case is not None
            if case.status == "OPEN" and live is not None and live.status != "RESOLVED":
                raise_case(session, case, severity, now)
                escalated_from = escalate(session, case, live, severity=severity, alert_id=existing.alert_id, now=now)
            else:  # resolved, or its case closed: the worse fact is a live alert again
                case, opened = _open_case(session, kind, subject, village, severity, now)
                attached = attach(session, case, rule=existing.rule, severity=severity, alert_id=existing.alert_id,
                                  now=now)
                if attached.opened:
                    session.add(CaseHistory(
                        case_id=case.id, household_id=case.household_or_region, kind="ESCALATION", workflow=None,
                        step=None,
                        by_user=CASEFEED, on_day=now.date(), recorded_at=now,
                        note=f"{existing.rule} {seen} -> {severity} (alert {existing.alert_id}): worse again after "
                             "its alert was resolved"))
                existing.case_id, existing.case_alert_id = case.id, attached.case_alert_id
                case_id, escalated_from = case.id, seen
            case_alert_id = existing.case_alert_id
        elif added:
            existing.reason = reason  # the monitor's sentence for the fact as every department now reports it
        session.flush()  # a race on (alert_id, event_id) surfaces here, inside the retry loop
        return RecordResult(case_id, case_opened=opened, duplicate=False, sanitised=sanitised,
                            case_alert_id=case_alert_id, escalated_from=escalated_from, updated=True,
                            events_added=len(added))

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



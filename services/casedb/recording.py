"""How a batch of alerts is recorded in the case DB: `Recorder` (used by services.casedb.store.CaseStore).

    recorder = Recorder.load(session, parsed)     # parsed = [parse(kind, topic, alert) ...]: the batch's reads
    with session.no_autoflush:
        finish = recorder.record(item, now)       # for each item, in order
    recorder.write(); results = [finish() ...]    # the batch's INSERTs, table by table

What an alert does is decided item by item, in order, exactly as when each was recorded alone (services/casedb/
store.py's module docstring: one evidence row per alert_id, one OPEN case per subject, one live case alert per case
and rule, one fact one alert). How it is read and written is set-based: `Recorder.load` reads, in one SELECT ... IN
each (chunks of CHUNK keys), the evidence the batch's alert_ids already have with their evidence_events, the OPEN
cases of its subjects and their live case alerts; the items then look those up in memory, and the new cases, case
alerts, evidence and evidence_events are written at the end (`write`: the session's flush of the new cases and case
alerts - linked as objects, `CaseAlert.case` - then the evidence and evidence_events rows as plain multi-row
INSERTs with the ids the flush gave). Only the rare paths touch the database in
between - raising a stored case's or case alert's severity (a compare-and-set), a re-emission with news (locks and
re-reads its evidence row) - and what they need flushed first they flush themselves (the session does not
autoflush: an alert_id seen earlier in the batch, a case alert of the batch raised again, a case opened by it).

A race with a concurrent writer (a unique key, a compare-and-set that found the row changed) fails the batch's
transaction, which services/casedb/transaction.py runs again: `Recorder.load` then reads what the winner committed.

    parse(kind, topic, alert) -> Parsed         the alert's fields, checked (SchemaError, one line); NULs replaced
    without_nul(alert) -> (alert, changed)      NUL (U+0000) in its text -> U+FFFD
"""
from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Table, insert, select, update
from sqlalchemy.orm import Session

from schemas.alerts import Rule, Severity, severity_rank
from schemas.errors import SchemaError
from services.casedb.departments import department_of_topic
from services.casedb.lifecycle import CASEFEED, escalate, raise_case
from services.casedb.models import Case, CaseAlert, CaseHistory, Evidence, EvidenceEvent

__all__ = ["RecordResult", "Parsed", "parse", "without_nul", "NUL_REPLACEMENT", "Recorder", "CHUNK"]

NUL_REPLACEMENT = "\ufffd"  # what a NUL (U+0000) in an alert's text is stored as
CHUNK = 500  # keys per SELECT ... IN
Event = tuple[str, str | None, str | None]  # (event_id, topic, department)


def _table(model: type[Evidence] | type[EvidenceEvent]) -> Table:
    table = model.__table__
    assert isinstance(table, Table)
    return table


_EVIDENCE, _EVENTS = _table(Evidence), _table(EvidenceEvent)  # where new rows go (Core INSERTs)


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


# --- one alert's fields --------------------------------------------------------------------------------------
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


def _events_of(alert_id: str, event_ids: Sequence[Any], topics: Any) -> list[Event]:
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


@dataclass(frozen=True)
class Parsed:
    """One alert of a batch, checked: what recording it needs."""

    kind: str  # "household" or "village"
    topic: str
    alert_id: str
    subject: str
    village: str
    households: list[str]
    severity: str
    rule: str
    reason: str
    occurred: dt.date
    raised: dt.datetime
    events: list[Event]
    sanitised: bool


def parse(kind: str, topic: str, given: Mapping[str, Any]) -> Parsed:
    """The alert's fields, checked; SchemaError (one line) for a record missing a field or holding a wrong one."""
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
    return Parsed(kind, topic, alert_id, subject, village, households, severity, rule, reason, occurred, raised,
                  _events_of(alert_id, event_ids, alert.get("event_topics")), sanitised)


def _chunks(keys: Sequence[Any]) -> Iterator[Sequence[Any]]:
    unique = list(dict.fromkeys(keys))
    for start in range(0, len(unique), CHUNK):
        yield unique[start:start + CHUNK]


# --- a batch -------------------------------------------------------------------------------------------------
class Recorder:
    """The batch's view of the case DB (see the module docstring): what its reads found, and what it added since."""

    def __init__(self, session: Session) -> None:
        self._session = session
        self._evidence: dict[str, Evidence] = {}  # alert_id -> its stored evidence row
        # what the batch adds, written by `write` (Core INSERTs): each new evidence row with the case and case alert
        # objects it links to (their ids known after the session's flush), and the new evidence_events rows
        self._new_evidence: dict[str, tuple[dict[str, Any], Case, CaseAlert]] = {}
        self._new_events: list[dict[str, Any]] = []
        self._events: dict[str, dict[str, EvidenceEvent]] = {}  # alert_id -> event_id -> row, as read at load
        self._touched: set[str] = set()  # alert_ids the batch recorded (their `_events` are out of date)
        self._cases: dict[tuple[str, str], Case] = {}  # (subject_kind, subject) -> its OPEN case
        self._live: dict[tuple[int, str], CaseAlert] = {}  # (id() of the case object, rule) -> its live alert

    @classmethod
    def load(cls, session: Session, batch: Sequence[Parsed]) -> Recorder:
        """Read what the batch's alerts need, one SELECT ... IN per kind of row (and chunk of keys)."""
        me = cls(session)
        for ids in _chunks([p.alert_id for p in batch]):
            me._evidence.update((e.alert_id, e) for e in session.scalars(select(Evidence)
                                                                         .where(Evidence.alert_id.in_(ids))))
        for ids in _chunks(list(me._evidence)):
            for row in session.scalars(select(EvidenceEvent).where(EvidenceEvent.alert_id.in_(ids))):
                me._events.setdefault(row.alert_id, {})[row.event_id] = row
        by_id: dict[int, Case] = {}
        for subjects in _chunks([p.subject for p in batch]):
            for case in session.scalars(select(Case).where(Case.household_or_region.in_(subjects),
                                                           Case.status == "OPEN")):
                me._cases[(case.subject_kind, case.household_or_region)] = case
                by_id[case.id] = case
        for ids in _chunks(list(by_id)):
            for alert in session.scalars(select(CaseAlert).where(CaseAlert.case_id.in_(ids),
                                                                 CaseAlert.status != "RESOLVED")):
                me._live[(id(by_id[alert.case_id]), alert.rule)] = alert
        return me

    def write(self) -> None:
        """Write what the batch added so far: the session's new and changed objects (cases, case alerts, history),
        then the new evidence and evidence_events rows, in multi-row INSERTs."""
        self._session.flush()
        if self._new_evidence:
            self._session.execute(insert(_EVIDENCE), [
                {**row, "case_id": case.id, "case_alert_id": live.id}
                for row, case, live in self._new_evidence.values()])
            self._new_evidence.clear()
        if self._new_events:
            self._session.execute(insert(_EVENTS), self._new_events)
            self._new_events = []

    def record(self, p: Parsed, now: dt.datetime) -> Callable[[], RecordResult]:
        """Record one alert of the batch; its result, to be asked for after `write` (the rows' ids known then)."""
        if p.alert_id in self._touched and p.alert_id not in self._evidence:  # new earlier in this batch: written
            self.write()
            self._evidence[p.alert_id] = self._session.scalars(
                select(Evidence).where(Evidence.alert_id == p.alert_id)).one()
        existing = self._evidence.get(p.alert_id)
        if existing is not None:
            touched = p.alert_id in self._touched
            if touched:  # recorded earlier in this batch: the SQL below reads and locks its rows as they are now
                self.write()
            stored = None if touched else self._events.get(p.alert_id, {})
            self._touched.add(p.alert_id)
            merged = self._merge(existing, p, stored, now)
            return lambda: merged
        self._touched.add(p.alert_id)
        case, opened = self._open_case(p.kind, p.subject, p.village, p.severity, now)
        live, escalated_from = self._attach(case, rule=p.rule, severity=p.severity, alert_id=p.alert_id, now=now)
        self._new_evidence[p.alert_id] = (
            {"alert_id": p.alert_id, "rule": p.rule, "severity": p.severity, "reason": p.reason,
             "event_ids": [event_id for event_id, _, _ in p.events], "household_ids": p.households,
             "occurred_at": p.occurred, "raised_at": p.raised, "received_at": now, "source_topic": p.topic},
            case, live)
        self._new_events += [{"alert_id": p.alert_id, "event_id": event_id, "topic": event_topic,
                              "department": department, "received_at": now}
                             for event_id, event_topic, department in p.events]
        return lambda: RecordResult(case.id, case_opened=opened, duplicate=False, sanitised=p.sanitised,
                                    case_alert_id=live.id, escalated_from=escalated_from)

    # --- where evidence attaches (services/casedb/lifecycle.py's rules, over the batch's view) -----------------
    def _open_case(self, kind: str, subject: str, village: str, severity: str,
                   now: dt.datetime) -> tuple[Case, bool]:
        """The OPEN case of the subject, raised to `severity` if that is higher, or a new one; (case, opened)."""
        case = self._cases.get((kind, subject))
        if case is None:
            case = Case(subject_kind=kind, household_or_region=subject, village_code=village, status="OPEN",
                        max_severity=severity, opened_at=now, updated_at=now)
            self._session.add(case)
            self._cases[(kind, subject)] = case
            return case, True
        raise_case(self._session, case, severity, now)  # a case of this batch (no id yet) is raised in memory
        return case, False

    def _attach(self, case: Case, *, rule: str, severity: str, alert_id: str,
                now: dt.datetime) -> tuple[CaseAlert, str | None]:
        """The live alert of `case` for `rule` that this evidence belongs to - opened or raised as needed - and the
        severity it had before this evidence raised it (None: not raised)."""
        live = self._live.get((id(case), rule))
        if live is None:
            live = CaseAlert(case=case, household_id=case.household_or_region, rule=rule, status="OPEN",
                             severity=severity, opened_at=now, updated_at=now)
            self._session.add(live)
            self._live[(id(case), rule)] = live
            return live, None
        if live.id is None and severity_rank(severity) > severity_rank(live.severity):
            self._session.flush()  # the compare-and-set and the ESCALATION row need the rows' ids
        return live, escalate(self._session, case, live, severity=severity, alert_id=alert_id, now=now)

    # --- a known alert_id again ----------------------------------------------------------------------------------
    def _news(self, existing: Evidence, events: list[Event], severity: str,
              stored: Mapping[str, EvidenceEvent] | None) -> tuple[list[Event], list[EvidenceEvent], bool]:
        """What the re-emission brings: events not stored, stored events whose topic it fills in, a higher
        severity. `stored`: the evidence's events as the batch read them (None: read them again, now)."""
        if stored is None:
            stored = {row.event_id: row for row in self._session.scalars(
                select(EvidenceEvent).where(EvidenceEvent.alert_id == existing.alert_id)
                .execution_options(populate_existing=True))}
        added = [event for event in events if event[0] not in stored]
        filled = [stored[event_id] for event_id, event_topic, _ in events
                  if event_id in stored and stored[event_id].topic is None and event_topic is not None]
        return added, filled, severity_rank(severity) > severity_rank(existing.severity)

    def _merge(self, existing: Evidence, p: Parsed, stored: Mapping[str, EvidenceEvent] | None,
               now: dt.datetime) -> RecordResult:
        """A known alert_id again (one fact, one alert): a redelivery (a duplicate: nothing changes), or a
        re-emission with something new - events another department reported, a higher severity, topics of events
        stored without one. The new events become evidence_events rows and join Evidence.event_ids; a higher
        severity raises the evidence and its live case alert (an ESCALATION in case_history, services/casedb/
        lifecycle.py); when that alert is RESOLVED or its case CLOSED, the worse fact needs the case worker's eyes
        again: the evidence moves to the live alert of its rule in the subject's OPEN case (opened if needed)."""
        session = self._session

        def duplicate() -> RecordResult:
            return RecordResult(existing.case_id, case_opened=False, duplicate=True, sanitised=p.sanitised,
                                case_alert_id=existing.case_alert_id)

        added, filled, higher = self._news(existing, p.events, p.severity, stored)
        if not (added or filled or higher):
            return duplicate()
        # Something new: lock the evidence row (PostgreSQL: a row lock; SQLite: the database's write lock) and read
        # again, so a concurrent writer that merged the same news first is seen, and no event_ids union is lost.
        session.execute(update(Evidence).where(Evidence.id == existing.id).values(case_id=Evidence.case_id)
                        .execution_options(synchronize_session=False))
        session.refresh(existing)
        added, filled, higher = self._news(existing, p.events, p.severity, None)
        if not (added or filled or higher):
            return duplicate()
        topics = {event_id: (event_topic, department) for event_id, event_topic, department in p.events}
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
            existing.severity, existing.reason = p.severity, p.reason
            case = session.get(Case, existing.case_id)
            live = session.get(CaseAlert, existing.case_alert_id) if existing.case_alert_id is not None else None
            assert case is not None
            if case.status == "OPEN" and live is not None and live.status != "RESOLVED":
                raise_case(session, case, p.severity, now)
                escalated_from = escalate(session, case, live, severity=p.severity, alert_id=existing.alert_id,
                                          now=now)
            else:  # resolved, or its case closed: the worse fact is a live alert again
                case, opened = self._open_case(p.kind, p.subject, p.village, p.severity, now)
                live_before = self._live.get((id(case), existing.rule))
                attached, _ = self._attach(case, rule=existing.rule, severity=p.severity,
                                           alert_id=existing.alert_id, now=now)
                session.flush()  # the case and its alert have ids now
                if live_before is None:
                    session.add(CaseHistory(
                        case_id=case.id, household_id=case.household_or_region, kind="ESCALATION", workflow=None,
                        step=None, by_user=CASEFEED, on_day=now.date(), recorded_at=now,
                        note=f"{existing.rule} {seen} -> {p.severity} (alert {existing.alert_id}): worse again "
                             "after its alert was resolved"))
                existing.case_id, existing.case_alert_id = case.id, attached.id
                case_id, escalated_from = case.id, seen
            case_alert_id = existing.case_alert_id
        elif added:
            existing.reason = p.reason  # the monitor's sentence for the fact as every department now reports it
        return RecordResult(case_id, case_opened=opened, duplicate=False, sanitised=p.sanitised,
                            case_alert_id=case_alert_id, escalated_from=escalated_from, updated=True,
                            events_added=len(added))

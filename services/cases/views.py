"""What the case operations (services.cases.store.Cases) return: frozen plain values, no SQLAlchemy types, and
their renderings (one JSON encoder, short text tables for the command line).

    CaseSummary   a line of a worklist: the case, its current workflow step and its household's status
    CaseDetail    a case page: the household and its members (names), alerts with their evidence and Chinese
                  reasons, comparison answers, the household's history of steps, and the steps allowed now
    AuditView     who looked at or acted on a household's data, and when
    RosterCounts  what `povwatch cases roster FILE` imported
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import json
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from services.casedb.departments import EventSource
from services.cases.users import UserView

__all__ = ["CaseSummary", "HouseholdView", "MemberView", "EvidenceItem", "AlertView", "AnswerView",
           "ComparisonView", "HistoryView", "AllowedStep", "CaseDetail", "AuditView", "RosterCounts", "UserView",
           "to_json", "render_audit", "render_detail", "render_counts"]


@dataclass(frozen=True)
class CaseSummary:
    id: int
    subject_kind: str  # household | village
    household_or_region: str  # the household_id (or the village code of a regional case)
    village_code: str
    status: str  # OPEN | CLOSED
    max_severity: str
    opened_at: dt.datetime
    updated_at: dt.datetime
    age_days: int  # days since the case was opened
    rules: tuple[str, ...]
    alerts_open: int  # alerts of the case not RESOLVED
    workflow: str | None  # INCLUSION | ELIMINATION | None (no step taken yet)
    step: str | None  # the last step taken
    monitoring_status: str | None  # the household's (None: a village case, or a household not imported)
    category: str | None
    overdue_alerts: int = 0  # OPEN alerts not acknowledged in time (services/cases/deadlines.py)
    overdue_days: int = 0  # the most days any of them is overdue (0: none is)


@dataclass(frozen=True)
class HouseholdView:
    household_id: str
    village_code: str
    category: str
    monitoring_status: str
    labour_capacity: str
    per_capita_income: Decimal
    household_size: int
    head_person_key: str | None


@dataclass(frozen=True)
class MemberView:
    person_key: str
    name: str
    relation: str
    sex: str
    birth_date: dt.date


@dataclass(frozen=True)
class EvidenceItem:
    alert_id: str
    rule: str
    severity: str
    reason: str  # Chinese, as the monitor wrote it
    occurred_at: dt.date
    raised_at: dt.datetime
    event_ids: tuple[str, ...]
    events: tuple[EventSource, ...] = ()  # each event with its topic and department (evidence_events)
    departments: tuple[str, ...] = ()  # the Chinese names of the departments that report it, e.g. (公安, 卫健)


@dataclass(frozen=True)
class AlertView:
    id: int  # the case_alerts row id (`povwatch alerts ack ID`)
    case_id: int
    rule: str
    status: str  # OPEN | ACKNOWLEDGED | RESOLVED
    severity: str
    opened_at: dt.datetime
    updated_at: dt.datetime
    acknowledged_by: str | None
    acknowledged_at: dt.datetime | None
    resolved_by: str | None
    resolved_at: dt.datetime | None
    evidence: tuple[EvidenceItem, ...]
    departments: tuple[str, ...] = ()  # every department reporting its evidence
    corroboration: str | None = None  # "公安、卫健 印证" when two or more departments report it
    due_on: dt.date | None = None  # the last day to acknowledge it (None: acknowledged or resolved)
    overdue_days: int = 0  # days past due_on (0: not overdue)


@dataclass(frozen=True)
class AnswerView:
    person_key: str
    member_name: str | None  # from the roster, when the person is a member of the case's household
    found: bool
    summary: str
    records: tuple[dict[str, str], ...]
    received_at: dt.datetime


@dataclass(frozen=True)
class ComparisonView:
    request_id: str
    department: str
    requested_by: str
    requested_at: dt.datetime
    persons: int
    answers: tuple[AnswerView, ...]
    unanswered: int  # persons asked about without an answer yet


@dataclass(frozen=True)
class HistoryView:
    id: int
    case_id: int
    kind: str  # STEP, AUTHORISE, ESCALATION, ACKNOWLEDGE, RESOLVE
    workflow: str | None
    step: str | None
    by_user: str
    on_day: dt.date
    recorded_at: dt.datetime
    note: str | None
    override_reason: str | None


@dataclass(frozen=True)
class AllowedStep:
    step: str
    refusal: str | None  # None: the user may take it now; else why not (one line)


@dataclass(frozen=True)
class CaseDetail:
    case: CaseSummary
    household: HouseholdView | None
    members: tuple[MemberView, ...]
    alerts: tuple[AlertView, ...]
    evidence: tuple[EvidenceItem, ...]  # every alert of the case, newest last
    comparisons: tuple[ComparisonView, ...]
    history: tuple[HistoryView, ...]  # the household's, across its cases (re-entries keep theirs)
    allowed: tuple[AllowedStep, ...]  # for the viewing user, today
    notice_on: dt.date | None = None  # the current round's notice day
    authorised: bool = False  # the signed authorisation of the current inclusion round is on file


@dataclass(frozen=True)
class AuditView:
    id: int
    at: dt.datetime
    user_name: str
    action: str
    household_id: str | None
    case_id: int | None
    detail: str | None


@dataclass(frozen=True)
class RosterCounts:
    file: str
    read: int = 0
    rejected: int = 0
    duplicates: int = 0
    households_added: int = 0
    households_updated: int = 0
    households_unchanged: int = 0
    members_added: int = 0
    members_updated: int = 0
    members_unchanged: int = 0
    rejects: tuple[tuple[int, tuple[str, ...]], ...] = field(default_factory=tuple)


def _plain(value: Any) -> Any:
    if isinstance(value, dt.date | dt.datetime):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"not JSON: {type(value).__name__}")


def to_json(value: Any, *, indent: int | None = 2) -> str:
    """Any of the views above (or a list of them) as JSON; Chinese kept as is, dates ISO 8601, amounts strings."""
    if isinstance(value, list | tuple):
        data: Any = [dataclasses.asdict(v) for v in value]
    else:
        data = dataclasses.asdict(value)
    return json.dumps(data, ensure_ascii=False, indent=indent, default=_plain)


def render_audit(entries: list[AuditView]) -> str:
    if not entries:
        return "(nobody has looked at or acted on this household)"
    lines = [f"{'WHEN (UTC)':<20}  {'USER':<16}  {'ACTION':<14}  {'CASE':>5}  DETAIL"]
    for e in entries:
        lines.append(f"{e.at:%Y-%m-%d %H:%M:%S}  {e.user_name:<16}  {e.action:<14}  "
                     f"{e.case_id if e.case_id is not None else '-':>5}  {e.detail or ''}".rstrip())
    return "\n".join(lines)


def render_detail(d: CaseDetail) -> str:
    c = d.case
    lines = [f"case {c.id}  {c.subject_kind} {c.household_or_region}  village {c.village_code}  {c.status}  "
             f"{c.max_severity}"
             f"  step {c.step or '-'} ({c.workflow or 'no workflow yet'})"
             + (f"  OVERDUE: {c.overdue_alerts} alert(s), up to {c.overdue_days} day(s)" if c.overdue_alerts else "")]
    if d.household is not None:
        h = d.household
        lines.append(f"  household: {h.monitoring_status} {h.category}, labour {h.labour_capacity}, "
                     f"{h.household_size} person(s), income {h.per_capita_income}")
    for m in d.members:
        lines.append(f"  member: {m.name} ({m.relation}, {m.sex}, {m.birth_date})")
    for a in d.alerts:
        lines.append(f"  alert {a.id}: {a.rule} {a.severity} {a.status}"
                     + (f"  due {a.due_on}" if a.due_on else "")
                     + (f"  OVERDUE {a.overdue_days} day(s)" if a.overdue_days else "")
                     + (f"  [{a.corroboration or '、'.join(a.departments)}]" if a.departments else ""))
        for e in a.evidence:
            lines.append(f"    {e.occurred_at} {e.reason}")
            for event in e.events:
                lines.append(f"      event {event.event_id} {event.source}"
                             + (f" ({event.topic})" if event.topic else ""))
    for cmp in d.comparisons:
        lines.append(f"  comparison {cmp.request_id} ({cmp.department}): {len(cmp.answers)} answer(s), "
                     f"{cmp.unanswered} open")
    for hist in d.history:
        lines.append(f"  {hist.on_day} {hist.kind} {hist.step or ''} by {hist.by_user}"
                     + (f": {hist.note}" if hist.note else ""))
    for allowed in d.allowed:
        lines.append(f"  next: {allowed.step}" + (f" (refused: {allowed.refusal})" if allowed.refusal else ""))
    return "\n".join(lines)


def render_counts(c: RosterCounts) -> str:
    lines = [f"{c.file}: read {c.read}  rejected {c.rejected}  duplicates {c.duplicates}",
             f"  households: added {c.households_added}  updated {c.households_updated}  "
             f"unchanged {c.households_unchanged}",
             f"  members:    added {c.members_added}  updated {c.members_updated}  unchanged {c.members_unchanged}"]
    lines += [f"  row {row}: " + "; ".join(reasons) for row, reasons in c.rejects]
    return "\n".join(lines)

"""Reading a case inside a transaction: its workflow facts (services.cases.workflow.CaseFacts) and its views
(services.cases.views). Each function takes an open SQLAlchemy Session and returns plain values; the caller
(services.cases.store.Cases) owns the transaction.

Where the facts come from:
  * workflow and step: the last STEP row of case_history for the case;
  * the current round: the rows since the last APPLY or NOMINATE_NOTICE of the case; its notice day is the
    on_day of its PUBLIC_NOTICE / NOMINATE_NOTICE row, its authorisation an AUTHORISE row (written with APPLY);
  * open HIGH alerts: the household's case_alerts rows that are not RESOLVED;
  * comparisons open: the departments of the case's comparison_requests with a target person not answered.
"""
from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from connectors.framework import DEFAULT_ZONE
from schemas.alerts import severity_rank
from schemas.thresholds import IncomeLines
from services.casedb.departments import EventSource, corroboration, sources_of
from services.casedb.models import (
    Case,
    CaseAlert,
    CaseHistory,
    ComparisonAnswer,
    ComparisonRequest,
    ComparisonTarget,
    Evidence,
    Household,
    Member,
)
from services.casedb.store import events_of, evidence_events
from services.cases.overdue import deadlines
from services.cases.profiles import alert_states, income_of
from services.cases.views import (
    AlertView,
    AllowedStep,
    AnswerView,
    CaseDetail,
    CaseSummary,
    ComparisonView,
    EvidenceItem,
    HistoryView,
    HouseholdView,
    MemberView,
)
from services.cases.workflow import CaseFacts, Role, Step, Workflow, allowed_now

__all__ = ["Progress", "progress_of", "facts_of", "comparisons_open", "open_high_alerts", "summaries", "detail_of",
           "alert_view", "load_case"]

VERIFY_DAYS = 15  # Settings.case_verify_days' default: days to acknowledge an alert (services/cases/deadlines.py)
_ROUND_START = (Step.APPLY.value, Step.NOMINATE_NOTICE.value)
_NOTICES = (Step.PUBLIC_NOTICE.value, Step.NOMINATE_NOTICE.value)


@dataclass(frozen=True)
class Progress:
    """Where a case stands in its workflow, from its case_history rows."""

    workflow: Workflow | None
    step: Step | None
    last_on: dt.date | None  # the day of the last step
    notice_on: dt.date | None
    authorised: bool


def progress_of(rows: Sequence[CaseHistory]) -> Progress:
    """`rows`: the case's STEP and AUTHORISE rows in the order they were written."""
    steps = [r for r in rows if r.kind == "STEP" and r.step is not None]
    if not steps:
        return Progress(None, None, None, None, False)
    last = steps[-1]
    start = max((i for i, r in enumerate(rows) if r.kind == "STEP" and r.step in _ROUND_START), default=0)
    current = rows[start:]
    notice = [r.on_day for r in current if r.kind == "STEP" and r.step in _NOTICES]
    return Progress(Workflow(last.workflow) if last.workflow else None, Step(str(last.step)), last.on_day,
                    notice[-1] if notice else None, any(r.kind == "AUTHORISE" for r in current))


def _progress_rows(session: Session, case_id: int) -> list[CaseHistory]:
    return list(session.scalars(select(CaseHistory).where(
        CaseHistory.case_id == case_id, CaseHistory.kind.in_(("STEP", "AUTHORISE"))).order_by(CaseHistory.id)))


def comparisons_open(session: Session, case_id: int) -> tuple[str, ...]:
    """Departments asked about this case's persons that have not answered for every one of them."""
    departments: list[str] = []
    for request in session.scalars(select(ComparisonRequest).where(ComparisonRequest.case_id == case_id)
                                   .order_by(ComparisonRequest.requested_at)):
        if _unanswered(session, request) and request.department not in departments:
            departments.append(request.department)
    return tuple(departments)


def _unanswered(session: Session, request: ComparisonRequest) -> int:
    targets = set(session.scalars(select(ComparisonTarget.person_key)
                                  .where(ComparisonTarget.request_id == request.request_id)))
    answered = set(session.scalars(select(ComparisonAnswer.person_key)
                                   .where(ComparisonAnswer.request_id == request.request_id)))
    if targets:
        return len(targets - answered)
    return max(request.persons - len(answered), 0)


def open_high_alerts(session: Session, household_id: str) -> int:
    return int(session.scalar(select(func.count()).select_from(CaseAlert).where(
        CaseAlert.household_id == household_id, CaseAlert.status != "RESOLVED", CaseAlert.severity == "HIGH")) or 0)


def facts_of(session: Session, case: Case, household: Household, *, notice_days: int,
             lines: IncomeLines | None = None, on: dt.date | None = None) -> tuple[CaseFacts, Progress]:
    """The case's facts for a step on day `on` (default: the machine's today); `lines`: the county income lines
    (default: the plan's 9,000 CNY everywhere) that the household's income is held against (P70)."""
    progress = progress_of(_progress_rows(session, case.id))
    facts = CaseFacts(
        workflow=progress.workflow, step=progress.step, monitoring_status=household.monitoring_status,
        labour_capacity=household.labour_capacity, authorised=progress.authorised, notice_on=progress.notice_on,
        open_high_alerts=open_high_alerts(session, household.household_id),
        comparisons_open=comparisons_open(session, case.id), closed=case.status == "CLOSED",
        notice_days=notice_days,
        income=income_of(session, household, on=on or dt.date.today(), lines=lines or IncomeLines()),
        alerts=alert_states(session, household.household_id))
    return facts, progress


def summaries(session: Session, cases: Sequence[Case], today: dt.date, *, verify_days: int = VERIFY_DAYS,
              zone: dt.tzinfo = DEFAULT_ZONE) -> list[CaseSummary]:
    """Worklist lines for `cases` (their evidence loaded), highest severity first, then the oldest; each with its
    overdue alerts on `today` (not acknowledged within `verify_days` days, days in `zone`)."""
    ids = [c.id for c in cases]
    late = {alert_id: days for alert_id, (_, days) in deadlines(
        session, today=today, verify_days=verify_days, zone=zone, case_ids=ids).items() if days > 0}
    last_step: dict[int, CaseHistory] = {}
    alerts: dict[int, list[CaseAlert]] = defaultdict(list)
    if ids:
        for row in session.scalars(select(CaseHistory).where(CaseHistory.case_id.in_(ids), CaseHistory.kind == "STEP")
                                   .order_by(CaseHistory.id)):
            last_step[row.case_id] = row
        for alert in session.scalars(select(CaseAlert).where(CaseAlert.case_id.in_(ids))):
            alerts[alert.case_id].append(alert)
    subjects = [c.household_or_region for c in cases if c.subject_kind == "household"]
    households = {h.household_id: h for h in session.scalars(
        select(Household).where(Household.household_id.in_(subjects)))} if subjects else {}
    out = []
    for c in cases:
        step = last_step.get(c.id)
        household = households.get(c.household_or_region) if c.subject_kind == "household" else None
        rules = dict.fromkeys([e.rule for e in c.evidence] + [a.rule for a in alerts[c.id]])
        overdue = [late[a.id] for a in alerts[c.id] if a.id in late]
        out.append(CaseSummary(
            id=c.id, subject_kind=c.subject_kind, household_or_region=c.household_or_region,
            village_code=c.village_code,
            status=c.status, max_severity=c.max_severity, opened_at=c.opened_at, updated_at=c.updated_at,
            age_days=max((today - c.opened_at.date()).days, 0), rules=tuple(rules),
            alerts_open=sum(a.status != "RESOLVED" for a in alerts[c.id]),
            workflow=step.workflow if step else None, step=step.step if step else None,
            monitoring_status=household.monitoring_status if household else None,
            category=household.category if household else None,
            overdue_alerts=len(overdue), overdue_days=max(overdue, default=0)))
    return sorted(out, key=lambda s: (-severity_rank(s.max_severity), s.opened_at, s.id))


def _evidence_item(e: Evidence, events: Mapping[str, tuple[EventSource, ...]]) -> EvidenceItem:
    mine = events_of(e, events)
    return EvidenceItem(alert_id=e.alert_id, rule=e.rule, severity=e.severity, reason=e.reason,
                        occurred_at=e.occurred_at, raised_at=e.raised_at, event_ids=tuple(e.event_ids or ()),
                        events=mine, departments=sources_of(mine))


def alert_view(a: CaseAlert, evidence: Sequence[Evidence], events: Mapping[str, tuple[EventSource, ...]],
               deadline: tuple[dt.date, int] | None = None) -> AlertView:
    """The alert with its evidence: the rows linked to it (evidence.case_alert_id, services/casedb/lifecycle.py);
    evidence not linked to any alert goes with the alert of its rule that was live when it was received. `events`:
    services.casedb.store.evidence_events of the evidence; `deadline`: (due day, days overdue) if its clock runs."""
    mine = [e for e in evidence if getattr(e, "case_alert_id", None) == a.id
            or (getattr(e, "case_alert_id", None) is None and e.rule == a.rule
                and e.received_at >= a.opened_at - dt.timedelta(seconds=1)
                and (a.resolved_at is None or e.received_at <= a.resolved_at))]
    items = tuple(_evidence_item(e, events) for e in mine)
    departments = tuple(dict.fromkeys(d for item in items for d in item.departments))
    return AlertView(id=a.id, case_id=a.case_id, rule=a.rule, status=a.status, severity=a.severity,
                     opened_at=a.opened_at, updated_at=a.updated_at, acknowledged_by=a.acknowledged_by,
                     acknowledged_at=a.acknowledged_at, resolved_by=a.resolved_by, resolved_at=a.resolved_at,
                     evidence=items, departments=departments, corroboration=corroboration(departments),
                     due_on=deadline[0] if deadline else None, overdue_days=deadline[1] if deadline else 0)


def _comparisons(session: Session, case_id: int, names: dict[str, str]) -> tuple[ComparisonView, ...]:
    out = []
    for r in session.scalars(select(ComparisonRequest).where(ComparisonRequest.case_id == case_id)
                             .order_by(ComparisonRequest.requested_at)):
        answers = session.scalars(select(ComparisonAnswer).where(ComparisonAnswer.request_id == r.request_id)
                                  .order_by(ComparisonAnswer.received_at, ComparisonAnswer.id))
        out.append(ComparisonView(
            request_id=r.request_id, department=r.department, requested_by=r.requested_by,
            requested_at=r.requested_at, persons=r.persons, unanswered=_unanswered(session, r),
            answers=tuple(AnswerView(person_key=a.person_key, member_name=names.get(a.person_key), found=a.found,
                                     summary=a.summary, records=tuple(a.records or ()), received_at=a.received_at)
                          for a in answers)))
    return tuple(out)


def _history_view(h: CaseHistory) -> HistoryView:
    return HistoryView(id=h.id, case_id=h.case_id, kind=h.kind, workflow=h.workflow, step=h.step, by_user=h.by_user,
                       on_day=h.on_day, recorded_at=h.recorded_at, note=h.note, override_reason=h.override_reason)


def load_case(session: Session, case_id: int) -> Case | None:
    return session.scalar(select(Case).where(Case.id == case_id).options(selectinload(Case.evidence)))


def detail_of(session: Session, case: Case, *, role: Role, today: dt.date, notice_days: int,
              verify_days: int = VERIFY_DAYS, zone: dt.tzinfo = DEFAULT_ZONE,
              lines: IncomeLines | None = None) -> CaseDetail:
    """The case page for a user of `role` on `today` (the steps allowed now are theirs; the alerts' deadlines
    `verify_days` days from their opening, days in `zone`)."""
    [summary] = summaries(session, [case], today, verify_days=verify_days, zone=zone)
    household = session.get(Household, case.household_or_region) if case.subject_kind == "household" else None
    members: list[Member] = []
    history: list[CaseHistory] = []
    allowed: tuple[AllowedStep, ...] = ()
    notice_on, authorised = None, False
    if household is not None:
        members = list(session.scalars(select(Member).where(Member.household_id == household.household_id)
                                       .order_by(Member.relation != "户主", Member.birth_date)))
        history = list(session.scalars(select(CaseHistory).where(
            CaseHistory.household_id == household.household_id).order_by(CaseHistory.id)))
        facts, progress = facts_of(session, case, household, notice_days=notice_days, lines=lines, on=today)
        notice_on, authorised = progress.notice_on, progress.authorised
        allowed = tuple(AllowedStep(step.value, why) for step, why in allowed_now(facts, role, today))
    else:
        history = list(session.scalars(select(CaseHistory).where(CaseHistory.case_id == case.id)
                                       .order_by(CaseHistory.id)))
    evidence = list(case.evidence)
    events = evidence_events(session, [e.alert_id for e in evidence])
    due = deadlines(session, today=today, verify_days=verify_days, zone=zone, case_ids=[case.id])
    alerts = session.scalars(select(CaseAlert).where(CaseAlert.case_id == case.id).order_by(CaseAlert.id))
    names = {m.person_key: m.name for m in members}
    return CaseDetail(
        case=summary,
        household=HouseholdView(
            household_id=household.household_id, village_code=household.village_code, category=household.category,
            monitoring_status=household.monitoring_status, labour_capacity=household.labour_capacity,
            per_capita_income=household.per_capita_income, household_size=household.household_size,
            head_person_key=household.head_person_key) if household is not None else None,
        members=tuple(MemberView(person_key=m.person_key, name=m.name, relation=m.relation, sex=m.sex,
                                 birth_date=m.birth_date) for m in members),
        alerts=tuple(alert_view(a, evidence, events, due.get(a.id)) for a in alerts),
        evidence=tuple(_evidence_item(e, events) for e in evidence),
        comparisons=_comparisons(session, case.id, names),
        history=tuple(_history_view(h) for h in history),
        allowed=allowed, notice_on=notice_on, authorised=authorised)

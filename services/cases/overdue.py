"""The case alerts' deadlines read from the case DB: the rows of services/cases/deadlines.py (pure) and what the
desk, `povwatch cases list --overdue` and the casefeed's `povwatch_cases_overdue` gauge ask of them.

    clocks(session, case_ids=None)                      -> [AlertClock]  the OPEN alerts (of those cases)
    overdue_alerts(session, today=, verify_days=, zone=, case_ids=None)  -> {case_alert_id: days overdue}
    deadlines(session, today=, verify_days=, zone=, case_ids=None)       -> {case_alert_id: (due day, days overdue)}
    count_overdue(store, today=, verify_days=, zone=)   -> how many case alerts are overdue now

An acknowledged alert that is OPEN again was reopened by an escalation: its ESCALATION row in case_history (written
by services/casedb/lifecycle.py, its note starting with the alert's rule) recorded after the acknowledgement.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from services.casedb.models import Case, CaseAlert, CaseHistory
from services.casedb.store import CaseStore
from services.cases.deadlines import AlertClock, days_overdue, due_on, overdue

__all__ = ["clocks", "overdue_alerts", "deadlines", "count_overdue"]


def clocks(session: Session, case_ids: Sequence[int] | None = None) -> list[AlertClock]:
    """The deadline facts of every OPEN case alert (of `case_ids`, when given)."""
    query = (select(CaseAlert, Case.status).join(Case, Case.id == CaseAlert.case_id)
             .where(CaseAlert.status == "OPEN").order_by(CaseAlert.id))
    if case_ids is not None:
        if not case_ids:
            return []
        query = query.where(CaseAlert.case_id.in_(list(case_ids)))
    rows: list[tuple[CaseAlert, str]] = [(alert, case_status) for alert, case_status in session.execute(query)]
    reopened = _reopened(session, [alert for alert, _ in rows if alert.acknowledged_at is not None])
    return [AlertClock(case_alert_id=alert.id, case_id=alert.case_id, status=alert.status,
                       opened_at=alert.opened_at, acknowledged_at=alert.acknowledged_at,
                       reopened_at=reopened.get(alert.id), case_open=case_status == "OPEN")
            for alert, case_status in rows]


def _reopened(session: Session, alerts: Sequence[CaseAlert]) -> dict[int, dt.datetime]:
    """For acknowledged alerts that are OPEN again: the first ESCALATION of their rule after the acknowledgement."""
    if not alerts:
        return {}
    history: dict[int, list[CaseHistory]] = {}
    for row in session.scalars(select(CaseHistory).where(
            CaseHistory.kind == "ESCALATION", CaseHistory.case_id.in_({a.case_id for a in alerts}))
            .order_by(CaseHistory.recorded_at, CaseHistory.id)):
        history.setdefault(row.case_id, []).append(row)
    out = {}
    for alert in alerts:
        assert alert.acknowledged_at is not None
        for row in history.get(alert.case_id, []):
            if (row.note or "").startswith(f"{alert.rule} ") and row.recorded_at >= alert.acknowledged_at:
                out[alert.id] = row.recorded_at
                break
    return out


def overdue_alerts(session: Session, *, today: dt.date, verify_days: int, zone: dt.tzinfo,
                   case_ids: Sequence[int] | None = None) -> dict[int, int]:
    """{case_alert_id: days overdue} of the overdue alerts (of `case_ids`, when given) on `today`."""
    return overdue(clocks(session, case_ids), today, verify_days=verify_days, zone=zone)


def deadlines(session: Session, *, today: dt.date, verify_days: int, zone: dt.tzinfo,
              case_ids: Sequence[int] | None = None) -> dict[int, tuple[dt.date, int]]:
    """{case_alert_id: (the day it is due, days overdue on `today`)} of every OPEN alert of an open case."""
    out = {}
    for clock in clocks(session, case_ids):
        due = due_on(clock, verify_days=verify_days, zone=zone)
        if due is not None:
            out[clock.case_alert_id] = (due, days_overdue(clock, today, verify_days=verify_days, zone=zone))
    return out


def count_overdue(store: CaseStore, *, today: dt.date, verify_days: int, zone: dt.tzinfo) -> int:
    """How many case alerts are overdue on `today` (the casefeed's povwatch_cases_overdue)."""
    return store.run(lambda session: len(overdue_alerts(session, today=today, verify_days=verify_days, zone=zone)),
                     "count the overdue case alerts")

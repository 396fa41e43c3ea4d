"""The alert lifecycle in the case DB (issue #7, item 1): where an incoming alert's evidence attaches.

An alert of a case is a `case_alerts` row, one per (case, rule) while it is not RESOLVED:

    OPEN ──acknowledge──► ACKNOWLEDGED ──resolve──► RESOLVED     (resolving the case resolves its alerts)
      ▲                        │
      └──── escalation ────────┘   a higher severity needs the case worker's eyes again

Each incoming alert (one `evidence` row per alert_id) attaches to its case's live alert of the same rule, or
opens one (OPEN). When its severity is higher than the alert's, the alert and its case are raised and a
`case_history` row of kind ESCALATION says so ("MEDIUM -> HIGH", by "casefeed", with the alert_id).

One fact, one alert: the monitor re-emits an alert with the SAME alert_id when another department reports the
same fact (its event_ids grown) or the fact gets worse (a higher severity). services/casedb/store.py merges it into
the stored evidence (an evidence_events row per new event) and, for a higher severity, raises the evidence's live
alert here (`escalate`); when that alert was RESOLVED (or its case CLOSED) the worse fact attaches afresh
(services/casedb/recording.py, `Recorder._attach`, which opens a live alert over a batch's reads),
as a new alert would. Only a re-emission with nothing new is a duplicate.

Race-safe on every backend: opening an alert is guarded by the partial unique index (one live alert per case and
rule), raising a severity is a compare-and-set (UPDATE ... WHERE severity = the value read); a writer that loses
either raises `Conflict` or an IntegrityError, and its whole transaction is retried by the caller
(services/casedb/transaction.py), which re-reads what the winner committed.
"""
from __future__ import annotations

import datetime as dt

from sqlalchemy import CursorResult, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from schemas.alerts import severity_rank
from services.casedb.errors import Conflict
from services.casedb.models import Case, CaseAlert, CaseHistory

__all__ = ["Conflict", "escalate", "raise_case", "CASEFEED"]

CASEFEED = "casefeed"  # by_user of what the casefeed records


def _changed(result: object) -> int:
    assert isinstance(result, CursorResult)
    return int(result.rowcount)


def _written(row: Case | CaseAlert, **values: object) -> None:
    """The object as the compare-and-set just wrote it (not dirty: nothing more to flush). The UPDATE does not
    synchronise the session itself: searching every object of a batch's session for the row costs a batch's size
    per statement."""
    for name, value in values.items():
        set_committed_value(row, name, value)


def raise_case(session: Session, case: Case, severity: str, now: dt.datetime) -> None:
    """Raise the case's max_severity to `severity` if that is higher (compare-and-set); touch updated_at."""
    seen = case.max_severity
    if case.id is None or severity_rank(severity) <= severity_rank(seen):
        case.updated_at = now
        if case.id is None and severity_rank(severity) > severity_rank(seen):
            case.max_severity = severity
        return
    done = session.execute(update(Case).where(Case.id == case.id, Case.max_severity == seen)
                           .values(max_severity=severity, updated_at=now)
                           .execution_options(synchronize_session=False))
    if _changed(done) != 1:
        raise Conflict(f"case {case.id}: severity changed under us")
    _written(case, max_severity=severity, updated_at=now)


def escalate(session: Session, case: Case, live: CaseAlert, *, severity: str, alert_id: str, now: dt.datetime,
             note: str = "") -> str | None:
    """Raise the live (not RESOLVED) alert `live` of `case` to `severity` if that is higher (compare-and-set; an
    ACKNOWLEDGED alert is OPEN again) with an ESCALATION row in case_history; the severity it had before, or None
    when it was not raised (then only its updated_at is touched). `note` is added to the history row's note."""
    seen = live.severity
    if severity_rank(severity) <= severity_rank(seen):
        live.updated_at = now
        return None
    done = session.execute(
        update(CaseAlert).where(CaseAlert.id == live.id, CaseAlert.severity == seen, CaseAlert.status != "RESOLVED")
        .values(severity=severity, updated_at=now,
                status="OPEN")  # an ACKNOWLEDGED alert that escalates is OPEN again
        .execution_options(synchronize_session=False))
    if _changed(done) != 1:
        raise Conflict(f"case alert {live.id}: changed under us")
    _written(live, severity=severity, updated_at=now, status="OPEN")
    session.add(CaseHistory(case_id=case.id, household_id=case.household_or_region, kind="ESCALATION", workflow=None,
                            step=None, by_user=CASEFEED, on_day=now.date(), recorded_at=now,
                            note=f"{live.rule} {seen} -> {severity} (alert {alert_id}){note}"))
    return seen

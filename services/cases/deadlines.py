"""Deadlines of case alerts (issue #11, item 9): an alert not acknowledged within `verify_days` days
(Settings.case_verify_days, POVWATCH_CASE_VERIFY_DAYS, default 15) of its opening is overdue. Pure: the alerts and
today's date in, days overdue out; the rows come from services/cases/overdue.py.

    clock = AlertClock(case_alert_id=7, case_id=3, status="OPEN", opened_at=..., acknowledged_at=None)
    due_on(clock, verify_days=15, zone=ZONE)            -> the last day to acknowledge it (local date)
    days_overdue(clock, today, verify_days=15, zone=ZONE)  -> 0, or how many days past that day
    overdue([clock, ...], today, verify_days=15, zone=ZONE) -> {case_alert_id: days overdue} (overdue ones only)

The clock runs while the alert is OPEN in an OPEN case: acknowledging (ACKNOWLEDGED) or resolving it stops it. An
acknowledged alert that a higher severity made OPEN again (services/casedb/lifecycle.py) needs the case worker's
eyes again: its clock starts afresh at that escalation (`reopened_at`). Days are the prefecture's (`zone`): an
alert opened on 1 March with 15 days is due on 16 March and 1 day overdue on 17 March.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["AlertClock", "clock_start", "due_on", "days_overdue", "overdue"]


@dataclass(frozen=True)
class AlertClock:
    """What the deadline of one case alert depends on."""

    case_alert_id: int
    case_id: int
    status: str  # OPEN | ACKNOWLEDGED | RESOLVED
    opened_at: dt.datetime
    acknowledged_at: dt.datetime | None = None
    reopened_at: dt.datetime | None = None  # the escalation that made an acknowledged alert OPEN again
    case_open: bool = True


def clock_start(alert: AlertClock) -> dt.datetime | None:
    """When the alert's time to be acknowledged began; None when no clock runs (acknowledged, resolved, or its
    case closed)."""
    if alert.status != "OPEN" or not alert.case_open:
        return None
    if alert.acknowledged_at is not None:  # OPEN again after an acknowledgement: from the escalation that did it
        return max(alert.reopened_at or alert.acknowledged_at, alert.acknowledged_at)
    return alert.opened_at


def _local_day(at: dt.datetime, zone: dt.tzinfo) -> dt.date:
    return (at if at.tzinfo is not None else at.replace(tzinfo=dt.UTC)).astimezone(zone).date()


def due_on(alert: AlertClock, *, verify_days: int, zone: dt.tzinfo) -> dt.date | None:
    """The last day (local) to acknowledge the alert: its clock's first day + `verify_days`; None: no clock."""
    if verify_days <= 0:
        raise ValueError(f"verify_days must be positive, not {verify_days}")
    start = clock_start(alert)
    return None if start is None else _local_day(start, zone) + dt.timedelta(days=verify_days)


def days_overdue(alert: AlertClock, today: dt.date, *, verify_days: int, zone: dt.tzinfo) -> int:
    """How many days `today` lies past the alert's due day (0: not overdue, or no clock running)."""
    due = due_on(alert, verify_days=verify_days, zone=zone)
    return max((today - due).days, 0) if due is not None else 0


def overdue(alerts: Iterable[AlertClock], today: dt.date, *, verify_days: int, zone: dt.tzinfo) -> dict[int, int]:
    """{case_alert_id: days overdue} of the overdue alerts among `alerts`."""
    out = {}
    for alert in alerts:
        days = days_overdue(alert, today, verify_days=verify_days, zone=zone)
        if days > 0:
            out[alert.case_alert_id] = days
    return out

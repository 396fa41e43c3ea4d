"""`povwatch cases publish-status`: every household's decided status into the outbox, for registry.household-status.

Run once after upgrading from the release in which LABEL and ANNOUNCE_LABEL wrote `registry.households` (which is
now the roster load's alone): for every household with a LABEL or ANNOUNCE_LABEL step, its latest such step is
written to the outbox as a povwatch.registry.HouseholdStatus record - the status that step decides, `decided_at`
the time it was recorded - and `povwatch relay` publishes it. The monitor then judges the household by the later
of that and the roster's record (docs/monitor.md). Harmless to run again: the topic is compacted and the records
are the same.
"""
from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from sqlalchemy.orm import Session

from schemas.codec import Codec
from schemas.topics import REGISTRY_HOUSEHOLD_STATUS
from services.casedb.models import CaseHistory, Household
from services.casedb.outbox import add_message
from services.casedb.store import CaseStore
from services.cases.roster_import import DECIDING_STEPS
from services.cases.workflow import Step, status_after

__all__ = ["queue_decided_statuses"]


def queue_decided_statuses(store: CaseStore, codec: Codec, now: dt.datetime) -> int:
    """Write the latest deciding step of every household to the outbox; how many were written."""

    def work(session: Session) -> int:
        latest: dict[str, CaseHistory] = {}
        for row in session.scalars(select(CaseHistory)
                                   .where(CaseHistory.kind == "STEP", CaseHistory.step.in_(DECIDING_STEPS))
                                   .order_by(CaseHistory.recorded_at, CaseHistory.id)):
            latest[row.household_id] = row  # the last one wins
        written = 0
        for household_id, step in sorted(latest.items()):
            household = session.get(Household, household_id)
            status = status_after(Step(step.step)) if step.step else None
            if household is None or status is None:
                continue
            record = {"household_id": household_id, "monitoring_status": status, "category": household.category,
                      "decided_at": step.recorded_at, "case_id": step.case_id, "step": step.step}
            add_message(session, REGISTRY_HOUSEHOLD_STATUS, household_id.encode("utf-8"),
                        codec.encode("povwatch.registry.HouseholdStatus", record), now)
            written += 1
        return written

    return store.run(work, "queue the households' decided statuses")

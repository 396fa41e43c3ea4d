"""The case DB's audit_log onto the audit trail: every view, refusal and case step the desk and the case commands
wrote, copied in id order by `povwatch relay` as the chain of party `casedb` (plumbing/audit.py).

    rows_after(store, last_id, limit)      the audit_log rows after `last_id`, in id order, as trail records
    await copy_audit_log(store, trail)     one pass: copy what is new; returns the rows copied

The case DB keeps its own rows (`povwatch audit household`); the copy puts them under the chain's protection. Where
to resume is on the topic: every copied record carries its row's `audit_log_id`, and the chain's last record says
the last row copied. Only pseudonymous facts leave the case DB: the action, the household id, the case id and the
acting user's id in the users table - not the user's name, nor the row's free-text detail.
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from plumbing.audit import AuditTrail
from services.casedb.models import AuditEntry, User
from services.casedb.store import CaseStore

__all__ = ["CopiedRow", "rows_after", "copy_audit_log", "KIND_PREFIX"]

KIND_PREFIX = "casedb."
BATCH = 500


@dataclass(frozen=True)
class CopiedRow:
    id: int
    kind: str
    subjects: list[str]
    details: dict[str, str]


def rows_after(store: CaseStore, last_id: int, limit: int = BATCH) -> list[CopiedRow]:
    def work(session: Session) -> list[CopiedRow]:
        found = session.execute(
            select(AuditEntry, User.id).outerjoin(User, User.name == AuditEntry.user_name)
            .where(AuditEntry.id > last_id).order_by(AuditEntry.id).limit(limit))
        out = []
        for entry, user_id in found:
            subjects = []
            if entry.household_id:
                subjects.append(f"household:{entry.household_id}")
            if entry.case_id is not None:
                subjects.append(f"case:{entry.case_id}")
            out.append(CopiedRow(entry.id, KIND_PREFIX + entry.action.lower(), subjects, {
                "audit_log_id": str(entry.id), "user_id": str(user_id) if user_id is not None else "unknown",
                "at": entry.at.isoformat()}))
        return out

    return store.run(work, "read the audit log")


def last_copied(trail: AuditTrail) -> int:
    last = trail.last
    if last is None:
        return 0
    return int(last.get("details", {}).get("audit_log_id", "0") or 0)


async def copy_audit_log(store: CaseStore, trail: AuditTrail) -> int:
    """Copy the rows written since the last one on the trail; acknowledged before returning."""
    await trail.resumed()  # the chain's last record says where to go on
    copied = 0
    while True:
        rows = await asyncio.to_thread(rows_after, store, last_copied(trail))
        for row in rows:
            await trail.record(row.kind, subjects=row.subjects, details=row.details)
        await trail.flush()
        copied += len(rows)
        if len(rows) < BATCH:
            return copied

"""The desk's logged-in sessions as the case DB holds them (table desk_sessions). Each function works inside the
caller's transaction (a SQLAlchemy Session); services.cases.store.Cases owns the transactions.

Only the SHA-256 of a session id is stored: the id itself travels in the signed cookie alone. A session is valid
while its row exists and has not expired; logging out deletes its row, a password change or disabling the user
deletes all the user's rows - every desk process (replica or restarted) reads the same table.
"""
from __future__ import annotations

import datetime as dt
import hashlib

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from services.casedb.models import DeskSessionRow

__all__ = ["sid_hash", "open_session", "session_user", "end_session", "end_sessions_of"]


def sid_hash(sid: str) -> str:
    return hashlib.sha256(sid.encode("utf-8", "replace")).hexdigest()


def open_session(session: Session, sid: str, user_name: str, *, now: dt.datetime, max_age: int) -> None:
    """Store a new session (and drop the expired ones: the table holds live sessions only)."""
    session.execute(delete(DeskSessionRow).where(DeskSessionRow.expires_at <= now))
    session.add(DeskSessionRow(sid_hash=sid_hash(sid), user_name=user_name, created_at=now,
                               expires_at=now + dt.timedelta(seconds=max_age)))


def session_user(session: Session, sid: str, *, now: dt.datetime) -> str | None:
    """The user of a live session; None when it was ended or has expired."""
    row = session.scalar(select(DeskSessionRow).where(DeskSessionRow.sid_hash == sid_hash(sid)))
    if row is None or row.expires_at <= now:
        return None
    return row.user_name


def end_session(session: Session, sid: str) -> None:
    session.execute(delete(DeskSessionRow).where(DeskSessionRow.sid_hash == sid_hash(sid)))


def end_sessions_of(session: Session, user_name: str) -> int:
    """End every session of a user; how many there were."""
    result = session.execute(delete(DeskSessionRow).where(DeskSessionRow.user_name == user_name))
    return int(getattr(result, "rowcount", 0) or 0)

"""The case DB's outbox: messages written in the same transaction as the decision they announce, published later.

    add_message(session, topic, key, value, now)   inside the caller's transaction (LABEL, ANNOUNCE_LABEL, a
                                                   comparison request): the message exists iff the decision does
    pending(store, limit)                          the oldest unpublished rows, in id order
    mark_published(store, ids, at)                 after the broker acknowledged them
    counts(store)                                  (pending, published)
    in_transaction(store, work, action)            one transaction on the CaseStore's engine; SQLAlchemy errors
                                                   become schemas.errors exceptions (services.casefeed.db.classify)

The relay (services.cases.relay) is the only reader. A row is marked only after the broker acknowledged it; a
crash between the acknowledgement and the mark sends it again on restart - harmless, because every message here is
idempotent for its consumers (registry.household-status: the household's decided status on a compacted topic;
a comparison request: answered with deterministic event ids).
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from sqlalchemy import func, select, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from schemas.errors import ConfigError, DatabaseUnavailable, EnvironmentProblem, RecordRefused
from services.casefeed.db import CaseStore, classify
from services.cases.model import OutboxMessage

__all__ = ["OutboxRow", "add_message", "pending", "mark_published", "counts", "in_transaction"]

_T = TypeVar("_T")
_RETRIES = 5


@dataclass(frozen=True)
class OutboxRow:
    id: int
    topic: str
    key: bytes
    value: bytes
    created_at: dt.datetime


def in_transaction(store: CaseStore, work: Callable[[Session], _T], action: str) -> _T:
    """Run `work` in one transaction; retried at once when a concurrent writer won a race on a unique key."""
    for attempt in range(1, _RETRIES + 1):
        try:
            with Session(store.engine, expire_on_commit=False) as session, session.begin():
                return work(session)
        except DBAPIError as exc:
            kind = classify(exc)
            if kind == "race" and attempt < _RETRIES:
                continue
            lines = str(exc.orig or exc).strip().splitlines()
            detail = f"case database: could not {action}: {lines[0] if lines else type(exc).__name__}"
            if kind == "unavailable":
                raise DatabaseUnavailable(detail) from None
            if kind == "refused":
                raise RecordRefused(detail) from None
            if kind == "config":
                raise ConfigError(f"POVWATCH_CASE_DB: {detail}") from None
            raise EnvironmentProblem(detail) from None
    raise AssertionError("unreachable")


def add_message(session: Session, topic: str, key: bytes, value: bytes, now: dt.datetime) -> OutboxMessage:
    """Queue a message in the caller's transaction (it is published only if that transaction commits)."""
    message = OutboxMessage(created_at=now, topic=topic, key=key, value=value, published_at=None)
    session.add(message)
    return message


def pending(store: CaseStore, limit: int = 500) -> list[OutboxRow]:
    def work(session: Session) -> list[OutboxRow]:
        rows = session.scalars(select(OutboxMessage).where(OutboxMessage.published_at.is_(None))
                               .order_by(OutboxMessage.id).limit(limit))
        return [OutboxRow(r.id, r.topic, bytes(r.key), bytes(r.value), r.created_at) for r in rows]

    return in_transaction(store, work, "read the outbox")


def mark_published(store: CaseStore, ids: Sequence[int], at: dt.datetime) -> None:
    if not ids:
        return

    def work(session: Session) -> None:
        session.execute(update(OutboxMessage).where(OutboxMessage.id.in_(list(ids)),
                                                    OutboxMessage.published_at.is_(None)).values(published_at=at))

    in_transaction(store, work, "mark outbox messages published")


def counts(store: CaseStore) -> tuple[int, int]:
    """(pending, published) rows of the outbox."""
    def work(session: Session) -> tuple[int, int]:
        waiting = session.scalar(select(func.count()).select_from(OutboxMessage)
                                 .where(OutboxMessage.published_at.is_(None)))
        done = session.scalar(select(func.count()).select_from(OutboxMessage)
                              .where(OutboxMessage.published_at.is_not(None)))
        return int(waiting or 0), int(done or 0)

    return in_transaction(store, work, "count the outbox")

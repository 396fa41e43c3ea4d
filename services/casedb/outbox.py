"""The case DB's outbox: messages written in the same transaction as the decision they announce, published later.

    add_message(session, topic, key, value, now)   inside the caller's transaction (LABEL, ANNOUNCE_LABEL, a
                                                   comparison request): the message exists iff the decision does
    pending(store, limit)                          the oldest unpublished rows, in id order
    mark_published(store, ids, at)                 after the broker acknowledged them
    counts(store)                                  (pending, published)
    await publish_pending(store, publisher_factory, clock)
                                                   one pass: publish the pending rows, mark them once the broker
                                                   acknowledged them (the relay's loop; `compare request` at once)

Every call is one transaction of services.casedb.transaction (through CaseStore.run): retried after a lost race,
driver errors translated into the project's errors.

The relay (services.cases.relay) and `compare request` publish it (publish_pending). A row is marked only after
the broker acknowledged it; a crash between the acknowledgement and the mark sends it again on restart - harmless,
because every message here is idempotent for its consumers (registry.household-status: the household's decided
status on a compacted topic; a comparison request: answered with deterministic event ids).
"""
from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass

from prometheus_client import Counter, Gauge
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from connectors.framework import Publisher
from plumbing.clock import Clock
from services.casedb.models import OutboxMessage
from services.casedb.store import CaseStore

__all__ = ["OutboxRow", "add_message", "pending", "mark_published", "counts", "publish_pending", "PublisherFactory"]

PUBLISHED = Counter("povwatch_relay_published_total", "Outbox messages published and marked", ["topic"])
LAST_PUBLISH = Gauge("povwatch_relay_last_publish_timestamp_seconds",
                     "When the relay last published outbox messages (Unix time)")
BATCH = 500
PublisherFactory = Callable[[], AbstractAsyncContextManager[Publisher]]


@dataclass(frozen=True)
class OutboxRow:
    id: int
    topic: str
    key: bytes
    value: bytes
    created_at: dt.datetime


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

    return store.run(work, "read the outbox")


def mark_published(store: CaseStore, ids: Sequence[int], at: dt.datetime) -> None:
    if not ids:
        return

    def work(session: Session) -> None:
        session.execute(update(OutboxMessage).where(OutboxMessage.id.in_(list(ids)),
                                                    OutboxMessage.published_at.is_(None)).values(published_at=at))

    store.run(work, "mark outbox messages published")


def counts(store: CaseStore) -> tuple[int, int]:
    """(pending, published) rows of the outbox."""
    def work(session: Session) -> tuple[int, int]:
        waiting = session.scalar(select(func.count()).select_from(OutboxMessage)
                                 .where(OutboxMessage.published_at.is_(None)))
        done = session.scalar(select(func.count()).select_from(OutboxMessage)
                              .where(OutboxMessage.published_at.is_not(None)))
        return int(waiting or 0), int(done or 0)

    return store.run(work, "count the outbox")


async def publish_pending(store: CaseStore, publisher_factory: PublisherFactory, clock: Clock,
                          *, batch: int = BATCH, only: int | None = None) -> int:
    """One pass: publish every pending outbox row (or only row `only`) in id order, marking each batch once the
    broker acknowledged it. Returns the rows published. BrokerUnavailable / DatabaseUnavailable: rows of the
    failed batch stay pending (earlier batches are marked)."""
    done = 0
    while True:
        rows = await asyncio.to_thread(pending, store, batch)
        if only is not None:
            rows = [r for r in rows if r.id == only]
        if not rows:
            return done
        async with publisher_factory() as publisher:
            for row in rows:
                await publisher.send(row.topic, row.key, row.value)
            await publisher.flush()  # acknowledged by the broker (acks=all) before anything is marked
        now = clock()
        await asyncio.to_thread(mark_published, store, [r.id for r in rows], now)
        for row in rows:
            PUBLISHED.labels(row.topic).inc()
        LAST_PUBLISH.set(now.timestamp())
        done += len(rows)
        if only is not None or len(rows) < batch:
            return done

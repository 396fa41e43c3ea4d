"""The audit trail's writer: each process appends its exchanges to `audit.events` as one hash chain.

    async with AuditTrail(bootstrap, party="intake", instance="host-1") as trail:
        await trail.record("intake.request", subjects=["household:H01"], details={"status": "202"})

One chain per (party, instance), keyed "<party>/<instance>" on the topic's single partition, so a chain is read
in the order it was written. At start the writer resumes its chain from the topic: it reads the partition's tail
backwards in growing windows until it finds its key's last record (plumbing/audit_chain.py `Head.after`), so a
restarted process continues the chain instead of starting a new one. Two processes of one party at once must have
different instances (POVWATCH_AUDIT_INSTANCE); two with the same one would fork the chain, which `povwatch audit
verify` reports as `duplicated`.

`record` seals under a lock (one chain, one order) and enqueues the message on the idempotent producer (acks=all,
in order per partition); `flush` waits for the broker. When a send fails (BrokerUnavailable), the writer forgets
its head: the next `record` makes a new producer and resumes from the topic again, so a record that never landed
leaves no gap. Records carry pseudonymous subjects only.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import socket
from collections.abc import Iterable, Mapping
from typing import Any

from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

from plumbing.audit_chain import Head, chain_key, seal
from plumbing.clock import Clock, utc_now
from plumbing.kafka_io import _started_consumer, _stop, _unavailable, ensure_topics
from schemas.codec import Codec, default_codec
from schemas.errors import DecodeError
from schemas.topics import AUDIT_EVENTS, AUDIT_TOPIC

__all__ = ["AUDIT_SCHEMA", "AuditTrail", "read_last", "default_instance", "party_of", "record_once"]

AUDIT_SCHEMA = "povwatch.audit.AuditRecord"
_WINDOW = 512  # records of the tail read first when resuming; grows fourfold until the chain's last one is found


def default_instance() -> str:
    return socket.gethostname() or "localhost"


def party_of(settings: Any, role: str) -> tuple[str, str]:
    """(party, instance) of a process: POVWATCH_PARTY / POVWATCH_AUDIT_INSTANCE, else its role and host name."""
    return (getattr(settings, "party", None) or role, getattr(settings, "audit_instance", None) or default_instance())


async def read_last(bootstrap: str, party: str, instance: str, codec: Codec | None = None) -> dict[str, Any] | None:
    """The last record of the chain of (party, instance) on the topic (None: a new chain)."""
    codec = codec or default_codec()
    key = chain_key(party, instance).encode("utf-8")
    consumer = await _started_consumer(bootstrap, auto_offset_reset="earliest")
    try:
        tp = TopicPartition(AUDIT_EVENTS, 0)
        if not consumer.partitions_for_topic(AUDIT_EVENTS):
            return None
        consumer.assign([tp])
        begin = (await consumer.beginning_offsets([tp]))[tp]
        end = (await consumer.end_offsets([tp]))[tp]
        window = _WINDOW
        while end > begin:
            start = max(begin, end - window)
            consumer.seek(tp, start)
            last: bytes | None = None
            while await consumer.position(tp) < end:
                for m in (await consumer.getmany(tp, timeout_ms=1000)).get(tp, []):
                    if m.offset < end and m.key == key and m.value is not None:
                        last = m.value
            if last is not None:
                try:
                    return codec.decode(last, expect=AUDIT_SCHEMA).record
                except DecodeError:
                    return None
            end, window = start, window * 4
        return None
    except KafkaError as exc:
        raise _unavailable(bootstrap, exc) from None
    finally:
        await _stop(consumer)


class AuditTrail:
    def __init__(self, bootstrap: str, *, party: str, instance: str, codec: Codec | None = None,
                 clock: Clock = utc_now) -> None:
        self.party, self.instance = party, instance
        self._bootstrap = bootstrap
        self._codec = codec or default_codec()
        self._clock = clock
        self._key = chain_key(party, instance).encode("utf-8")
        self._producer: AIOKafkaProducer | None = None
        self._head = Head()
        self.last: dict[str, Any] | None = None  # the chain's last record (on the topic, or enqueued since)
        self._lock = asyncio.Lock()
        self._pending: list[asyncio.Future[Any]] = []
        self._stale = False  # a send failed: resume from the topic before the next record
        self.written = 0

    @property
    def head(self) -> Head:
        return self._head

    async def start(self) -> None:
        await ensure_topics(self._bootstrap, 1, [AUDIT_TOPIC])  # the one topic every party writes: never missing
        self.last = await read_last(self._bootstrap, self.party, self.instance, self._codec)
        self._head = Head() if self.last is None else Head.after(self.last)
        self._stale = False
        self._producer = AIOKafkaProducer(bootstrap_servers=self._bootstrap, client_id=f"povwatch-audit-{self.party}",
                                          acks="all", enable_idempotence=True, linger_ms=5)
        try:
            await self._producer.start()
        except (KafkaError, OSError) as exc:
            await self._producer.stop()
            self._producer = None
            raise _unavailable(self._bootstrap, exc) from None

    async def record(self, kind: str, *, subjects: Iterable[str] = (), counts: Mapping[str, int] | None = None,
                     details: Mapping[str, str] | None = None, at: dt.datetime | None = None) -> dict[str, Any]:
        """Append one record to the chain (enqueued; `flush` waits for the broker). Returns the sealed record."""
        if self._producer is None:
            raise RuntimeError("AuditTrail.record before start()")
        async with self._lock:
            if self._stale:
                await self._restart()
            sealed = seal(self._head, party=self.party, instance=self.instance, at=at or self._clock(), kind=kind,
                          subjects=subjects, counts=counts, details=details)
            value = self._codec.encode(AUDIT_SCHEMA, sealed)
            try:
                assert self._producer is not None
                self._pending.append(await self._producer.send(AUDIT_EVENTS, value, key=self._key))
            except KafkaError as exc:
                self._stale = True
                raise _unavailable(self._bootstrap, exc) from None
            self._head, self.last = Head.after(sealed), sealed
            self.written += 1
        if len(self._pending) >= 1000:
            await self.flush()
        return sealed

    async def flush(self) -> None:
        pending, self._pending = self._pending, []
        try:
            await asyncio.gather(*pending)
        except KafkaError as exc:
            self._stale = True
            raise _unavailable(self._bootstrap, exc) from None

    async def _restart(self) -> None:
        old, self._producer, self._pending = self._producer, None, []
        if old is not None:
            try:
                await old.stop()
            except KafkaError:
                pass  # the failed producer: a new one follows
        await self.start()

    async def stop(self) -> None:
        if self._producer is None:
            return
        try:
            await self.flush()
        finally:
            await self._producer.stop()
            self._producer = None

    async def stop_quietly(self) -> None:
        """Stop after a failure: what is still pending is dropped (the next start resumes from the topic)."""
        producer, self._producer, self._pending = self._producer, None, []
        if producer is not None:
            try:
                await producer.stop()
            except KafkaError:
                pass

    async def __aenter__(self) -> AuditTrail:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()


async def record_once(settings: Any, role: str, kind: str, *, subjects: Iterable[str] = (),
                      counts: Mapping[str, int] | None = None, details: Mapping[str, str] | None = None) -> None:
    """One record from a short-lived command (a connector run, a roster load): open the chain, append, close."""
    party, instance = party_of(settings, role)
    async with AuditTrail(settings.bootstrap, party=party, instance=instance) as trail:
        await trail.record(kind, subjects=subjects, counts=counts, details=details)

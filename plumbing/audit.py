"""The audit trail's writer: each process appends its exchanges to `audit.events` as one hash chain.

    async with AuditTrail(bootstrap, party="intake", instance="host-1") as trail:
        await trail.record("intake.request", subjects=["household:H01"], details={"status": "202"})

One chain per (party, instance), keyed "<party>/<instance>" on the topic's single partition, so a chain is read
in the order it was written. The instance is claimed with a lock (plumbing/audit_instance.py, `party_of`): the
first free of `<host>`, `<host>-2`, ... or POVWATCH_AUDIT_INSTANCE, so two processes of one party on one host
never write one chain (which `povwatch audit verify` would report as `duplicated`), and a restarted process gets
its instance, and its chain, back.

The writer resumes its chain from the topic: it reads the partition's tail backwards in growing windows until it
finds its key's last record (plumbing/audit_chain.py `Head.after`), so a restarted process continues the chain
instead of starting a new one. `start` returns at once and the resume runs in the background (a long trail takes
seconds to read back, and a service's work must not wait for it); the first `record` waits for it, so no record
is written before the chain's head is known, and raises what the resume raised. `resumed()` waits for it too.

`record` seals under a lock (one chain, one order) and enqueues the message on the idempotent producer (acks=all,
in order per partition); `flush` waits for the broker. When a send or the resume fails (BrokerUnavailable), the
writer forgets its head: the next `record` makes a new producer and resumes from the topic again, so a record that
never landed leaves no gap. Records carry pseudonymous subjects only.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

from plumbing.audit_chain import Head, chain_key, seal
from plumbing.audit_instance import InstanceClaim, claim_instance, default_instance
from plumbing.clock import Clock, utc_now
from plumbing.kafka_io import _started_consumer, _stop, _unavailable, ensure_topics
from plumbing.kafka_security import client_options
from schemas.codec import Codec, default_codec
from schemas.errors import DecodeError
from schemas.topics import AUDIT_EVENTS, AUDIT_TOPIC

__all__ = ["AUDIT_SCHEMA", "AuditTrail", "AuditWriter", "read_last", "default_instance", "party_of",
           "record_once"]

log = logging.getLogger("povwatch.audit")

AUDIT_SCHEMA = "povwatch.audit.AuditRecord"
_WINDOW = 512  # records of the tail read first when resuming; grows fourfold until the chain's last one is found


@dataclass(frozen=True)
class AuditWriter:
    """Who a process is on the trail: its party, its explicit instance (None: claim `<host>`, `<host>-2`, ...) and
    where instances are claimed."""

    party: str
    instance: str | None
    run_dir: Path

    def trail(self, bootstrap: str, *, codec: Codec | None = None, clock: Clock = utc_now) -> AuditTrail:
        return AuditTrail(bootstrap, party=self.party, instance=self.instance, run_dir=self.run_dir, codec=codec,
                          clock=clock)


def party_of(settings: Any, role: str) -> AuditWriter:
    """A process's writer: POVWATCH_PARTY / POVWATCH_AUDIT_INSTANCE, else its role and a claimed instance."""
    return AuditWriter(getattr(settings, "party", None) or role, getattr(settings, "audit_instance", None) or None,
                       Path(getattr(settings, "run_dir", Path("var") / "run")))


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
    """One chain's writer. With `run_dir` the instance is claimed there at `start` (`instance` as given, refused
    while another process holds it; None: the first free of `<host>`, `<host>-2`, ...) and released at `stop`;
    without it `instance` is written as given."""

    def __init__(self, bootstrap: str, *, party: str, instance: str | None = None, run_dir: Path | None = None,
                 codec: Codec | None = None, clock: Clock = utc_now) -> None:
        if instance is None and run_dir is None:
            raise ValueError("AuditTrail needs an instance or a run_dir to claim one in")
        self.party, self.instance = party, instance or ""
        self._explicit, self._run_dir = instance, run_dir
        self._claim: InstanceClaim | None = None
        self._bootstrap = bootstrap
        self._codec = codec or default_codec()
        self._clock = clock
        self._key = chain_key(party, self.instance).encode("utf-8")
        self._producer: AIOKafkaProducer | None = None
        self._resuming: asyncio.Task[None] | None = None
        self._head = Head()
        self.last: dict[str, Any] | None = None  # the chain's last record (on the topic, or enqueued since)
        self._lock = asyncio.Lock()
        self._pending: list[asyncio.Future[Any]] = []
        self._stale = False  # a send failed: resume from the topic before the next record
        self.written = 0
        self.resume_seconds: float | None = None  # how long the last resume took (None: not over yet)

    @property
    def head(self) -> Head:
        return self._head

    async def start(self) -> None:
        """Claim the instance (ConfigError, one line, when it is taken) and begin resuming the chain in the
        background; returns at once."""
        if self._run_dir is not None and self._claim is None:
            self._claim = claim_instance(self._run_dir, self.party, self._explicit)
            self.instance = self._claim.instance
            self._key = chain_key(self.party, self.instance).encode("utf-8")
        self._stale = False
        self._resuming = asyncio.create_task(self._resume(), name=f"audit-resume-{self.party}/{self.instance}")

    async def _resume(self) -> None:
        began = time.monotonic()
        self.resume_seconds = None
        await ensure_topics(self._bootstrap, 1, [AUDIT_TOPIC])  # the one topic every party writes: never missing
        last = await read_last(self._bootstrap, self.party, self.instance, self._codec)
        producer = AIOKafkaProducer(bootstrap_servers=self._bootstrap, **client_options(),
                                    client_id=f"povwatch-audit-{self.party}",
                                    acks="all", enable_idempotence=True, linger_ms=5)
        try:
            await producer.start()
        except (KafkaError, OSError) as exc:
            await producer.stop()
            raise _unavailable(self._bootstrap, exc) from None
        self._producer, self.last = producer, last
        self._head = Head() if last is None else Head.after(last)
        self.resume_seconds = time.monotonic() - began
        log.info("audit chain %s/%s resumed at seq %d (%.1f s)", self.party, self.instance, self._head.seq,
                 self.resume_seconds)

    async def resumed(self) -> None:
        """Wait until the chain's head is known and the producer started; raises what the resume raised."""
        if self._resuming is None:
            raise RuntimeError("AuditTrail used before start()")
        await asyncio.shield(self._resuming)

    async def _ready(self) -> None:
        """Under the lock: resume again after a failed send or a failed resume, then wait for the resume."""
        task = self._resuming
        if task is None:
            raise RuntimeError("AuditTrail.record before start()")
        if self._stale or (task.done() and (task.cancelled() or task.exception() is not None)):
            await self._restart()
        await self.resumed()

    async def record(self, kind: str, *, subjects: Iterable[str] = (), counts: Mapping[str, int] | None = None,
                     details: Mapping[str, str] | None = None, at: dt.datetime | None = None) -> dict[str, Any]:
        """Append one record to the chain (enqueued; `flush` waits for the broker). Returns the sealed record."""
        async with self._lock:
            await self._ready()
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

    async def _cancel_resume(self) -> None:
        task, self._resuming = self._resuming, None
        if task is not None and not task.done():
            task.cancel()
        if task is not None:
            await asyncio.gather(task, return_exceptions=True)  # its outcome: retrieved here, raised by nobody

    async def _restart(self) -> None:
        await self._cancel_resume()
        old, self._producer, self._pending = self._producer, None, []
        if old is not None:
            try:
                await old.stop()
            except KafkaError:
                pass  # the failed producer: a new one follows
        await self.start()

    def _release(self) -> None:
        claim, self._claim = self._claim, None
        if claim is not None:
            claim.release()

    async def stop(self) -> None:
        """Flush what is pending and stop; a resume still running (nothing recorded yet) is abandoned."""
        try:
            await self._cancel_resume()
            if self._producer is None:
                return
            try:
                await self.flush()
            finally:
                await self._producer.stop()
                self._producer = None
        finally:
            self._release()

    async def stop_quietly(self) -> None:
        """Stop after a failure: what is still pending is dropped (the next start resumes from the topic)."""
        try:
            await self._cancel_resume()
            producer, self._producer, self._pending = self._producer, None, []
            if producer is not None:
                try:
                    await producer.stop()
                except KafkaError:
                    pass
        finally:
            self._release()

    async def __aenter__(self) -> AuditTrail:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()


async def record_once(settings: Any, role: str, kind: str, *, subjects: Iterable[str] = (),
                      counts: Mapping[str, int] | None = None, details: Mapping[str, str] | None = None) -> None:
    """One record from a short-lived command (a connector run, a roster load): open the chain, append, close."""
    async with party_of(settings, role).trail(settings.bootstrap) as trail:
        await trail.record(kind, subjects=subjects, counts=counts, details=details)

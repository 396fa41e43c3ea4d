"""The stream engine under the monitor: one consumer group per stage, batches, partition-local state.

A `StageSpec` declares a stage: its registry tables (compacted topics read from the beginning into a table on
every assignment), its input topics, its state changelog, and a factory for its handler (`handlers.py`: plain
code over mappings). A `StageRunner` runs it on aiokafka:

    assignment   range assignor: partition p of every table, input and changelog topic goes to one worker
                 (co-partitioning: same key, same partition count, checked at start-up). For each new
                 partition: state restored from its changelog partition, tables read from the beginning;
                 its input partitions stay paused until the tables have reached the end offsets they had at
                 assignment. Tables are never paused: a stage waiting for the registry never stops reading it.
    batch        `getmany` (at most `max_records`): table records first, then inputs, through the handler;
                 1. every message the batch produced (alerts, forwards, dead letters) is sent and acknowledged;
                 2. every state key the batch changed is written once to the changelog and acknowledged;
                 3. only then are the input offsets committed.
                 A crash anywhere replays the batch: outputs are idempotent (deterministic ids, seen event ids).
    failure      a message that cannot be decoded goes to dlq.monitor; a transient failure (broker gone, send
                 timeout) abandons the batch uncommitted, reloads state from the changelogs, backs off and
                 retries; a bug stops the worker uncommitted.
    revocation   waits for the batch in flight, which commits before the partition moves to another worker.

Memory while catching up is bounded by the fetch limits (`max_partition_fetch_bytes` per partition,
`fetch_max_bytes` per fetch) and `max_records` per batch, plus the tables and state of assigned partitions.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.errors import CommitFailedError, KafkaError

from plumbing.backoff import Backoff
from plumbing.batch_sender import BatchSender
from plumbing.consumer_lag import LagTracker
from schemas.codec import Codec
from schemas.deadletter import message_dead_letter
from schemas.errors import DecodeError, SchemaError
from schemas.topics import MONITOR_DLQ
from services.monitor import metrics
from services.monitor.handlers import Emit
from services.monitor.state import StateCodec

__all__ = ["Handler", "TrackedDict", "StageSpec", "StageRunner", "TRANSIENT"]

log = logging.getLogger("povwatch.monitor")

TRANSIENT = (KafkaError, asyncio.TimeoutError, OSError)

S = TypeVar("S")


class Handler(Protocol):
    name: str

    def registry(self, key: str, value: bytes | None, now: dt.datetime, topic: str = "") -> list[Emit]: ...

    def event(self, topic: str, value: bytes, now: dt.datetime, key: bytes | None = None) -> list[Emit]: ...

    def sweep(self, now: dt.datetime) -> list[Emit]: ...

    def flush(self, now: dt.datetime) -> list[Emit]:
        """What the batch leaves to send once, after all its messages (e.g. one profile per household)."""
        ...

    def pending(self) -> int: ...


class TrackedDict(dict[str, S]):
    """A dict that remembers which keys were assigned or deleted since `take_dirty()`."""

    def __init__(self) -> None:
        super().__init__()
        self.dirty: set[str] = set()

    def __setitem__(self, key: str, value: S) -> None:
        super().__setitem__(key, value)
        self.dirty.add(key)

    def __delitem__(self, key: str) -> None:
        super().__delitem__(key)
        self.dirty.add(key)

    def pop(self, key: str, *default: Any) -> Any:
        if key in self:
            self.dirty.add(key)
        return super().pop(key, *default)

    def take_dirty(self) -> set[str]:
        dirty, self.dirty = self.dirty, set()
        return dirty


@dataclass(frozen=True)
class StageSpec(Generic[S]):
    name: str
    group: str
    tables: tuple[str, ...]
    inputs: tuple[str, ...]
    changelog: str
    state: StateCodec[S]
    make: Callable[[dict[str, Any], TrackedDict[S]], Handler]
    table_label: str = ""  # povwatch_registry_entries{table=...} for the registry table, if any


class _Part(Generic[S]):
    """One assigned partition: its handler, table and state, and whether it may process input yet."""

    def __init__(self, spec: StageSpec[S], partition: int) -> None:
        self.partition = partition
        self.table: dict[str, Any] = {}
        self.state: TrackedDict[S] = TrackedDict()
        self.handler = spec.make(self.table, self.state)
        self.restored = False
        self.targets: dict[str, int] = {}  # table topic -> end offset at assignment
        self.read: dict[str, int] = {}  # table topic -> next offset read
        self.ready = False


class StageRunner(ConsumerRebalanceListener, Generic[S]):  # type: ignore[misc]  # aiokafka is untyped
    def __init__(self, spec: StageSpec[S], *, bootstrap: str,
                 producer_factory: Callable[[], Awaitable[AIOKafkaProducer]], codec: Codec,
                 clock: Callable[[], dt.datetime], stopping: asyncio.Event, max_records: int = 2000,
                 sweep_seconds: float = 60.0) -> None:
        self.spec = spec
        self._bootstrap = bootstrap
        self._producer_factory = producer_factory
        self._producer: AIOKafkaProducer | None = None
        self._codec = codec
        self._clock = clock
        self._stopping = stopping
        self._max_records = max_records
        self._sweep_seconds = sweep_seconds
        self._parts: dict[int, _Part[S]] = {}
        self._lock = asyncio.Lock()
        self._consumer: AIOKafkaConsumer | None = None
        self._lag = LagTracker(spec.group)
        self._lag_at = 0.0
        self._sweep_at = time.monotonic()
        self._done: dict[tuple[str, int], int] = {}  # next offset to process, per consumed partition
        self._sender: BatchSender | None = None
        self._backoff = Backoff()  # 0.5 s doubling to 30 s
        self.assigned_once = False

    # --- readiness, seen from outside ---------------------------------------------------------------------
    def ready(self) -> bool:
        """Assigned at least once, and every assigned partition has loaded its tables and state."""
        return self.assigned_once and all(p.ready for p in self._parts.values())

    # --- rebalance listener -------------------------------------------------------------------------------
    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        async with self._lock:  # the batch in flight finishes and commits first
            pass

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        async with self._lock:
            consumer = self._consumer
            assert consumer is not None
            partitions = {tp.partition for tp in assigned}
            for gone in set(self._parts) - partitions:
                del self._parts[gone]
            self._done = {tp: offset for tp, offset in self._done.items() if tp[1] in partitions}
            new = sorted(partitions - set(self._parts))
            for p in new:
                self._parts[p] = _Part(self.spec, p)
            self._start_loading(consumer, new)
            self.assigned_once = True
            metrics.PARTITIONS_ASSIGNED.labels(self.spec.name).set(len(partitions))
            log.info("%s stage: assigned partitions %s (new: %s)", self.spec.name, sorted(partitions), new)

    def _start_loading(self, consumer: AIOKafkaConsumer, partitions: Iterable[int]) -> None:
        """Pause the inputs of partitions whose tables and state are not loaded yet (`_load` opens them)."""
        inputs = [TopicPartition(t, p) for p in partitions for t in self.spec.inputs]
        if inputs:
            consumer.pause(*inputs)

    # --- the loop -------------------------------------------------------------------------------------------
    async def run(self) -> None:
        spec = self.spec
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self._bootstrap, group_id=spec.group, client_id=f"{spec.group}",
            enable_auto_commit=False, auto_offset_reset="earliest",
            partition_assignment_strategy=(RangePartitionAssignor,),
            session_timeout_ms=10_000, heartbeat_interval_ms=3_000, max_poll_interval_ms=600_000,
            max_partition_fetch_bytes=1024 * 1024, fetch_max_bytes=16 * 1024 * 1024,
            request_timeout_ms=15_000, retry_backoff_ms=200,
        )
        self._consumer = consumer
        consumer.subscribe(topics=[*spec.tables, *spec.inputs], listener=self)
        await consumer.start()
        failures = 0
        broken = False
        try:
            while not self._stopping.is_set():
                try:
                    if self._producer is None or broken:
                        await self._renew_producer()
                    if broken:
                        await self._reset(consumer)
                        broken = False
                    await self._load()
                    batch = await consumer.getmany(timeout_ms=200, max_records=self._max_records)
                    async with self._lock:
                        started = time.monotonic()
                        await self._process(consumer, batch)
                        if batch:
                            metrics.BATCH_SECONDS.labels(spec.name).observe(time.monotonic() - started)
                            failures = 0
                except TRANSIENT as exc:
                    failures += 1
                    broken = True
                    backoff = self._backoff.delay(failures)
                    metrics.RECOVERIES.labels(spec.name).inc()
                    log.warning("%s stage: transient failure (%s: %s); nothing committed, retrying in %.1fs with "
                                "a new producer and the state reloaded", spec.name, type(exc).__name__, exc, backoff)
                    await asyncio.sleep(backoff)
        finally:
            self._consumer = None
            for client in (consumer, self._producer):
                if client is not None:
                    try:
                        await asyncio.wait_for(client.stop(), 30)
                    except (TimeoutError, KafkaError) as exc:
                        log.warning("%s stage: stopping a Kafka client failed: %s", spec.name, exc)

    async def _renew_producer(self) -> None:
        """A fresh producer: after a failed send, an idempotent producer can be stuck on sequence numbers the
        broker no longer expects (OutOfOrderSequenceNumber after a broker restart); a new one starts clean."""
        old, self._producer, self._sender = self._producer, None, None
        if old is not None:
            try:
                await asyncio.wait_for(old.stop(), 10)
            except (TimeoutError, KafkaError, OSError) as exc:
                log.info("%s stage: the old producer did not stop cleanly (%s)", self.spec.name, exc)
        self._producer = await self._producer_factory()
        self._sender = BatchSender(self._producer)

    async def _reset(self, consumer: AIOKafkaConsumer) -> None:
        """After a failed batch: forget in-memory state, go back to the committed offsets, load again."""
        async with self._lock:
            partitions = sorted(self._parts)
            self._parts = {p: _Part(self.spec, p) for p in partitions}
            inputs = [tp for tp in consumer.assignment() if tp.topic in self.spec.inputs]
            if inputs:
                await consumer.seek_to_committed(*inputs)
            self._start_loading(consumer, partitions)

    async def _load(self) -> None:
        """Restore the state of new partitions, then open those whose tables have caught up."""
        consumer = self._consumer
        assert consumer is not None
        async with self._lock:
            fresh = [p for p in self._parts.values() if not p.restored]
            if fresh:
                if self.spec.tables:  # a table is rebuilt from its compacted topic, whatever was committed
                    tables = [TopicPartition(t, p.partition) for p in fresh for t in self.spec.tables]
                    await asyncio.wait_for(consumer.seek_to_beginning(*tables), 30)
                    for p in fresh:
                        p.read = {}
                await self._restore(fresh)
                if self.spec.tables:
                    ends = await consumer.end_offsets([TopicPartition(t, p.partition)
                                                       for p in fresh for t in self.spec.tables])
                    for p in fresh:
                        p.targets = {t: ends[TopicPartition(t, p.partition)] for t in self.spec.tables}
            waiting = [p for p in self._parts.values() if p.restored and not p.ready]
        # positions are asked outside the lock: during a rebalance they wait for the group coordinator,
        # which may itself be waiting for the lock in the rebalance listener
        caught_up = [p for p in waiting
                     if all([p.read.get(t, 0) >= end or await self._position(consumer, t, p.partition) >= end
                             for t, end in p.targets.items()])]
        async with self._lock:
            for part in caught_up:
                if self._parts.get(part.partition) is not part:
                    continue  # reassigned meanwhile
                part.ready = True
                inputs = [TopicPartition(t, part.partition) for t in self.spec.inputs]
                consumer.resume(*inputs)
                log.info("%s stage: partition %d ready (%d table entries, %d state keys)", self.spec.name,
                         part.partition, len(part.table), len(part.state))
            metrics.PARTITIONS_READY.labels(self.spec.name).set(sum(p.ready for p in self._parts.values()))

    @staticmethod
    async def _position(consumer: AIOKafkaConsumer, topic: str, partition: int) -> int:
        """The consumer's position on a table partition; -1 when unknown yet (asked again next loop)."""
        tp = TopicPartition(topic, partition)
        if tp not in consumer.assignment():
            return -1
        try:
            return int(await asyncio.wait_for(consumer.position(tp), 0.2))
        except (TimeoutError, KafkaError):
            return -1

    async def _restore(self, parts: list[_Part[S]]) -> None:
        """Read the changelog partitions of `parts` to their end into their state (tombstones delete)."""
        by_tp = {TopicPartition(self.spec.changelog, p.partition): p for p in parts}
        # auto_offset_reset must agree with the seek below: assign() starts a reset of its own, which could
        # otherwise land after the seek and move the reader to the end (nothing restored)
        reader = AIOKafkaConsumer(bootstrap_servers=self._bootstrap, enable_auto_commit=False,
                                  auto_offset_reset="earliest", request_timeout_ms=15_000,
                                  max_partition_fetch_bytes=4 * 1024 * 1024)
        await reader.start()
        try:
            reader.assign(list(by_tp))
            ends = await reader.end_offsets(list(by_tp))
            await reader.seek_to_beginning(*by_tp)
            todo = {tp for tp, end in ends.items() if end > 0}
            while todo:
                if self._stopping.is_set():
                    return  # asked to stop (the broker may be gone): the partitions stay unrestored
                batch = await reader.getmany(*todo, timeout_ms=1000, max_records=10_000)
                for tp, messages in batch.items():
                    state = by_tp[tp].state
                    for m in messages:
                        key = m.key.decode()
                        if m.value is None:
                            dict.pop(state, key, None)
                        else:
                            dict.__setitem__(state, key, self.spec.state.decode(self._codec, m.value))
                    if messages and messages[-1].offset + 1 >= ends[tp]:
                        todo.discard(tp)
                for tp in list(todo):
                    if await reader.position(tp) >= ends[tp]:
                        todo.discard(tp)
        finally:
            await reader.stop()
        for p in parts:
            p.state.take_dirty()
            p.restored = True
        log.info("%s stage: restored state of partitions %s (%d keys from %d changelog records)", self.spec.name,
                 sorted(p.partition for p in parts), sum(len(p.state) for p in parts), sum(ends.values()))

    async def _process(self, consumer: AIOKafkaConsumer, batch: dict[TopicPartition, list[Any]]) -> None:
        spec = self.spec
        now = self._clock()
        out: list[Emit] = []
        offsets: dict[TopicPartition, int] = {}
        touched: set[int] = set()
        tables = [(tp, ms) for tp, ms in batch.items() if tp.topic in spec.tables]
        inputs = [(tp, ms) for tp, ms in batch.items() if tp.topic not in spec.tables]
        for tp, messages in [*tables, *inputs]:
            part = self._parts.get(tp.partition)
            if part is None or not messages:
                continue  # revoked meanwhile: the new owner reads it
            is_table = tp.topic in spec.tables
            if not is_table and not part.ready:
                consumer.seek(tp, messages[0].offset)  # fetched before the pause: read again once ready
                continue
            handle = part.handler.registry if is_table else None
            metrics.EVENTS_CONSUMED.labels(tp.topic).inc(len(messages))
            for m in messages:
                try:
                    if handle is not None:
                        out += handle(m.key.decode("utf-8", "replace") if m.key else "", m.value, now, tp.topic)
                    else:
                        out += part.handler.event(tp.topic, m.value or b"", now, m.key)
                except (DecodeError, SchemaError) as exc:
                    out.append(self._dead_letter(tp, m.offset, str(exc), now))
            if not is_table:
                metrics.PROCESSED.labels(spec.name).inc(len(messages))
            if is_table:
                part.read[tp.topic] = messages[-1].offset + 1
                metrics.REGISTRY_SIZE.labels(spec.table_label).set(sum(len(p.table) for p in self._parts.values()))
            offsets[tp] = messages[-1].offset + 1
            touched.add(tp.partition)
        if time.monotonic() - self._sweep_at >= self._sweep_seconds:
            self._sweep_at = time.monotonic()
            for part in self._parts.values():
                if part.ready:
                    out += part.handler.sweep(now)
                    touched.add(part.partition)
            metrics.PENDING.labels(spec.name).set(sum(p.handler.pending() for p in self._parts.values()))
            metrics.STATE_ENTRIES.labels(spec.name).set(sum(len(p.state) for p in self._parts.values()))
        for p in touched:
            out += self._parts[p].handler.flush(now)
        if not offsets and not touched:
            await self._update_lag(consumer)
            return
        # 1. outputs, acknowledged
        await self._send_all([(e.topic, e.key, e.value, None) for e in out])
        # 2. state changed by this batch, once per key, acknowledged
        changes: list[tuple[str, bytes, bytes | None, int | None]] = []
        for p in touched:
            part = self._parts[p]
            for key in part.state.take_dirty():
                value = part.state.get(key)
                empty = value is None or getattr(value, "empty", False)
                encoded = None if empty else spec.state.encode(self._codec, value)  # type: ignore[arg-type]
                if empty and value is not None:
                    dict.pop(part.state, key, None)
                changes.append((spec.changelog, key.encode(), encoded, p))
        await self._send_all(changes)
        # 3. commit
        if offsets:
            try:
                await consumer.commit(offsets)
            except CommitFailedError as exc:  # rebalanced meanwhile: the batch is replayed, idempotently
                log.warning("%s stage: commit refused after a rebalance (%s); the new owner replays it",
                            spec.name, exc)
        for tp, offset in offsets.items():
            self._done[(tp.topic, tp.partition)] = offset
        await self._update_lag(consumer)

    async def _send_all(self, messages: list[tuple[str, bytes, bytes | None, int | None]]) -> None:
        if messages:
            assert self._sender is not None, "the loop makes a producer before the first batch"
            await self._sender.send(messages)

    def _dead_letter(self, tp: TopicPartition, offset: int, reason: str, now: dt.datetime) -> Emit:
        metrics.DEAD_LETTERS.labels(tp.topic).inc()
        log.warning("dead-lettered %s[%d]@%d: %s", tp.topic, tp.partition, offset, reason)
        letter = message_dead_letter(tp.topic, tp.partition, offset, [reason], "monitor", now)
        return Emit(MONITOR_DLQ, letter.key, letter.encode(self._codec))

    async def _update_lag(self, consumer: AIOKafkaConsumer) -> None:
        """povwatch_consumer_lag for the input partitions, at most once a second."""
        if time.monotonic() - self._lag_at < 1.0:
            return
        self._lag_at = time.monotonic()
        assigned = [(tp.topic, tp.partition) for tp in consumer.assignment() if tp.topic in self.spec.inputs]
        ends: dict[tuple[str, int], int] = {}
        for topic, partition in assigned:
            high = consumer.highwater(TopicPartition(topic, partition))
            if high is not None:
                ends[(topic, partition)] = high
            part = self._parts.get(partition)
            if (topic, partition) not in self._done and part is not None and part.ready:
                position = await self._position(consumer, topic, partition)
                if position >= 0:
                    self._done[(topic, partition)] = position
        self._lag.update(ends, self._done, assigned)

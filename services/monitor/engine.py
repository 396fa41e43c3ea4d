"""The stream engine under the monitor: one consumer group per stage, batches, partition-local state.

A `StageSpec` declares a stage: its registry tables (compacted topics read from the beginning into a table on
every assignment), its input topics, its state changelog, and a factory for its handler (`handlers.py`: plain
code over mappings). A `StageRunner` runs it on aiokafka, its tables and state in a `Store` (`store.py`: in
memory, or on disk in RocksDB, `POVWATCH_MONITOR_STORE`):

    assignment   range assignor: partition p of every table, input and changelog topic goes to one worker
                 (co-partitioning: same key, same partition count, checked at start-up). For each new
                 partition its table and input partitions are paused, and a restore task reads its changelog
                 partition into its state, beside the loop and outside the lock: the partitions already loaded
                 keep being processed, and a rebalance never waits for a restore (a partition revoked
                 mid-restore is dropped at the restore's next fetch). Once restored, its tables are read from
                 the beginning; its inputs open when the tables have reached the end offsets they had at
                 assignment. Tables are not paused while waiting for them: a stage waiting for the registry
                 never stops reading it.
    batch        `getmany` (at most `max_records`): table records first, then inputs, through the handler;
                 1. every message the batch produced (alerts, forwards, dead letters) is sent and acknowledged
                    (handed to the producer every `HAND_OFF` input messages, so the next stage starts on them
                    while the batch goes on; their acknowledgements are all awaited here);
                 2. every state key the batch changed is written once to the changelog and acknowledged, then
                    settled in the store;
                 3. only then are the input offsets committed.
                 A crash anywhere replays the batch: outputs are idempotent (deterministic ids, seen event ids).
    failure      a message that cannot be decoded goes to dlq.monitor; a bug stops the worker uncommitted; a
                 transient failure (broker gone, send timeout) abandons the batch uncommitted, backs off, and
                 recovers only what the batch touched: every partition it read goes back to the batch's first
                 offset (committed or not: a partition's first batch is replayed, never skipped), and the
                 partitions whose state it may have changed roll back. The disk store rolls back by dropping the
                 batch's overlay (its database holds what the changelog acknowledged); the memory store's state
                 is stale (changed in place) and those partitions alone are restored from their changelog.
                 Tables are kept: their records of the failed batch are read again, which also releases again
                 what they released from the state.
    revocation   waits for the batch in flight, which commits before the partition moves to another worker.

Memory while catching up is bounded by the fetch limits (`max_partition_fetch_bytes` per partition,
`fetch_max_bytes` per fetch) and `max_records` per batch, plus the tables and state of assigned partitions (with
the memory store; the disk store keeps only RocksDB's caches and the batch's overlay in memory).
"""
from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.errors import CommitFailedError, KafkaError

from plumbing.backoff import Backoff
from plumbing.batch_sender import BatchSender
from plumbing.consumer_lag import LagTracker
from plumbing.kafka_security import client_options
from schemas.codec import Codec
from schemas.deadletter import message_dead_letter
from schemas.errors import BrokerUnavailable, DecodeError, PovwatchError, SchemaError
from schemas.topics import MONITOR_DLQ
from services.monitor import metrics
from services.monitor.handlers import Emit
from services.monitor.state import StateCodec
from services.monitor.store import MemoryStore, StateStore, Store, TableCodec, TrackedDict

__all__ = ["Handler", "TrackedDict", "StageSpec", "StageRunner", "TRANSIENT"]

log = logging.getLogger("povwatch.monitor")


class CorruptChangelog(PovwatchError):
    """A state changelog holds a record the monitor cannot read: restarting does not help, rebuilding does."""


TRANSIENT = (KafkaError, asyncio.TimeoutError, OSError, BrokerUnavailable)

S = TypeVar("S")


class Handler(Protocol):
    name: str

    def registry(self, key: str, value: bytes | None, now: dt.datetime, topic: str = "") -> list[Emit]: ...

    def event(self, topic: str, value: bytes, now: dt.datetime, key: bytes | None = None) -> list[Emit]: ...

    def sweep(self, now: dt.datetime) -> list[Emit]: ...

    def flush(self, now: dt.datetime) -> list[Emit]:
        """What the batch leaves to send once, after all its messages (e.g. one profile per household)."""
        ...

    def forget(self) -> None:
        """Drop what a failed batch left for `flush`: the replay of the batch makes it again."""
        ...

    def pending(self) -> int: ...




@dataclass(frozen=True)
class StageSpec(Generic[S]):
    name: str
    group: str
    tables: tuple[str, ...]
    inputs: tuple[str, ...]
    changelog: str
    state: StateCodec[S]
    make: Callable[[MutableMapping[str, Any], MutableMapping[str, S]], Handler]
    table_label: str = ""  # povwatch_registry_entries{table=...} for the registry table, if any
    table_codec: TableCodec[Any] | None = None  # how the disk store keeps the table's values


class _Part(Generic[S]):
    """One assigned partition: its handler, table and state, and whether it may process input yet."""

    def __init__(self, spec: StageSpec[S], partition: int, store: Store, codec: Codec) -> None:
        self.partition = partition
        self.table = store.table(spec.name, partition, spec.table_codec)
        self.state: StateStore[S] = store.state(spec.name, partition, spec.state, codec)
        self.handler = spec.make(self.table, self.state)
        self.tables_started = False  # table partitions sought to their beginning, their targets known
        self.restoring = False  # a restore task is reading its changelog partition
        self.restored = False
        self.targets: dict[str, int] = {}  # table topic -> end offset at assignment
        self.read: dict[str, int] = {}  # table topic -> next offset read
        self.ready = False
        self.closed = False

    def renew_state(self) -> None:
        """An empty state, to be restored from the changelog. The handler is kept: what it holds beside the
        table (e.g. the household stage's roster instants and status decisions) comes from the table topics."""
        self.state.reset()
        self.restored = self.ready = False

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.state.close()
            close = getattr(self.table, "close", None)
            if close is not None:
                close()


HAND_OFF = 1000  # input messages a batch handles between two hand-offs of its outputs to the producer


def _forgotten(acks: list[asyncio.Future[Any]]) -> None:
    """A batch abandoned with outputs in flight: their outcomes are retrieved when they come (not logged as never
    retrieved); the batch is replayed, its outputs sent again."""
    for ack in acks:
        ack.add_done_callback(lambda f: f.cancelled() or f.exception())


class StageRunner(ConsumerRebalanceListener, Generic[S]):  # type: ignore[misc]  # aiokafka is untyped
    def __init__(self, spec: StageSpec[S], *, bootstrap: str,
                 producer_factory: Callable[[], Awaitable[AIOKafkaProducer]], codec: Codec,
                 clock: Callable[[], dt.datetime], stopping: asyncio.Event, max_records: int = 2000,
                 sweep_seconds: float = 60.0, store: Store | None = None,
                 on_sent: Callable[[list[Emit]], Awaitable[None]] | None = None) -> None:
        self.spec = spec
        self._on_sent = on_sent  # told of a batch's outputs once acknowledged, before the commit (the audit trail)
        self._bootstrap = bootstrap
        self._producer_factory = producer_factory
        self._producer: AIOKafkaProducer | None = None
        self._codec = codec
        self._clock = clock
        self._stopping = stopping
        self._max_records = max_records
        self._sweep_seconds = sweep_seconds
        self._store: Store = store or MemoryStore()
        self._parts: dict[int, _Part[S]] = {}
        self._lock = asyncio.Lock()  # held by a batch (and the rebalance listener): never by a restore
        self._consumer: AIOKafkaConsumer | None = None
        self._lag = LagTracker(spec.group)
        self._lag_at = 0.0
        self._sweep_at = time.monotonic()
        self._done: dict[tuple[str, int], int] = {}  # next offset to process, per consumed partition
        self._sender: BatchSender | None = None
        self._backoff = Backoff()  # 0.5 s doubling to 30 s
        self._restores: set[asyncio.Task[None]] = set()
        self._failure: BaseException | None = None  # a bug in a restore task or the listener: raised by the loop
        self._in_flight: dict[TopicPartition, int] = {}  # the batch in flight: first offset per partition
        self._touched: set[int] = set()  # partitions whose state the batch in flight may have changed
        self._acks: list[asyncio.Future[Any]] = []  # the batch in flight's outputs handed to the producer
        self.assigned_once = False
        self.recovery_seconds: list[float] = []  # how long each recovery took (reload included), for benches

    # --- readiness, seen from outside ---------------------------------------------------------------------
    def ready(self) -> bool:
        """Assigned at least once, and every assigned partition has loaded its tables and state."""
        return self.assigned_once and all(p.ready for p in self._parts.values())

    def restoring(self) -> list[int]:
        """The partitions whose changelog is being read now."""
        return sorted(p.partition for p in self._parts.values() if p.restoring)

    def assigned(self) -> list[int]:
        return sorted(self._parts)

    # --- rebalance listener -------------------------------------------------------------------------------
    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        async with self._lock:  # the batch in flight finishes and commits first (a restore is not waited for)
            pass

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        try:
            await self._assigned(assigned)
        except Exception as exc:  # aiokafka only logs what a listener raises: the loop stops the worker with it
            self._failure = exc
            raise

    async def _assigned(self, assigned: Iterable[TopicPartition]) -> None:
        async with self._lock:
            consumer = self._consumer
            assert consumer is not None
            partitions = {tp.partition for tp in assigned}
            for gone in set(self._parts) - partitions:
                part = self._parts.pop(gone)
                if not part.restoring:  # else its restore task drops it when it sees it gone
                    part.close()
            self._done = {tp: offset for tp, offset in self._done.items() if tp[1] in partitions}
            new = sorted(partitions - set(self._parts))
            for p in new:
                self._parts[p] = _Part(self.spec, p, self._store, self._codec)
            self._start_loading(consumer, new)
            self.assigned_once = True
            metrics.PARTITIONS_ASSIGNED.labels(self.spec.name).set(len(partitions))
            log.info("%s stage: assigned partitions %s (new: %s)", self.spec.name, sorted(partitions), new)

    def _start_loading(self, consumer: AIOKafkaConsumer, partitions: Iterable[int]) -> None:
        """Pause the partitions whose state is not restored yet: their tables until it is (a table record can
        release what the state holds), their inputs until the tables have caught up too (`_load` opens them)."""
        paused = [TopicPartition(t, p) for p in partitions for t in (*self.spec.tables, *self.spec.inputs)]
        if paused:
            consumer.pause(*paused)

    # --- the loop -------------------------------------------------------------------------------------------
    async def run(self) -> None:
        spec = self.spec
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self._bootstrap, **client_options(), group_id=spec.group, client_id=f"{spec.group}",
            enable_auto_commit=False, auto_offset_reset="earliest",
            partition_assignment_strategy=(RangePartitionAssignor,),
            session_timeout_ms=10_000, heartbeat_interval_ms=3_000, max_poll_interval_ms=600_000,
            max_partition_fetch_bytes=4 * 1024 * 1024, fetch_max_bytes=16 * 1024 * 1024,
            request_timeout_ms=15_000, retry_backoff_ms=200,
        )
        self._consumer = consumer
        consumer.subscribe(topics=[*spec.tables, *spec.inputs], listener=self)
        await consumer.start()
        failures = 0
        broken = False
        try:
            while not self._stopping.is_set():
                if self._failure is not None:  # not retried, however transient its type
                    raise self._failure
                try:
                    if self._producer is None or broken:
                        await self._renew_producer()
                    if broken:
                        await self._recover(consumer)
                        broken = False
                    await self._load()
                    batch = await consumer.getmany(timeout_ms=200, max_records=self._max_records)
                    async with self._lock:
                        started = time.monotonic()
                        self._in_flight = {tp: ms[0].offset for tp, ms in batch.items() if ms}
                        await self._process(consumer, batch)
                        self._in_flight, self._touched = {}, set()
                        if batch:
                            metrics.BATCH_SECONDS.labels(spec.name).observe(time.monotonic() - started)
                            metrics.BATCH_DONE.labels(spec.name).set(time.time())
                            failures = 0
                except TRANSIENT as exc:
                    _forgotten(self._acks)
                    failures += 1
                    broken = True
                    backoff = self._backoff.delay(failures)
                    metrics.RECOVERIES.labels(spec.name).inc()
                    log.warning("%s stage: transient failure (%s: %s); nothing committed, retrying in %.1fs with "
                                "a new producer, the failed batch replayed", spec.name, type(exc).__name__, exc,
                                backoff)
                    await asyncio.sleep(backoff)
        finally:
            self._consumer = None
            for task in self._restores:
                task.cancel()
            await asyncio.gather(*self._restores, return_exceptions=True)
            for part in self._parts.values():
                part.close()
            self._store.close()
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

    async def _recover(self, consumer: AIOKafkaConsumer) -> None:
        """After a failed batch: every partition it read goes back to the batch's first offset (whether or not it
        ever committed: the first batch of a partition is replayed too), and the partitions whose state it may
        have changed reload only that state, from their changelog. Tables are kept: a failed batch applied some
        table records and read past them, and going back to its first offset applies them again (which also
        releases again what they released from the state)."""
        started = time.monotonic()
        async with self._lock:
            in_flight, touched, self._in_flight, self._touched = self._in_flight, self._touched, {}, set()
            assignment = consumer.assignment()
            for tp, first in in_flight.items():
                if tp in assignment and tp.partition in self._parts:
                    consumer.seek(tp, first)
            reload = []
            for p in sorted(touched | {tp.partition for tp in in_flight}):
                part = self._parts.get(p)
                if part is None:
                    continue  # gone: its new owner replays the batch
                part.handler.forget()
                if part.restoring or not part.restored:
                    continue  # not loaded yet: its load is still to come
                if not part.state.rollback():
                    part.renew_state()
                    reload.append(p)
            self._start_loading(consumer, reload)
        self.recovery_seconds.append(time.monotonic() - started)
        log.info("%s stage: replaying the failed batch from %d partition offsets; reloading the state of "
                 "partitions %s", self.spec.name, len(in_flight), reload)

    async def _load(self) -> None:
        """Start restoring the state of new partitions (a task beside the loop), then open those whose state is
        restored and whose tables have caught up."""
        consumer = self._consumer
        assert consumer is not None
        async with self._lock:
            fresh = [p for p in self._parts.values() if not p.restored and not p.restoring]
            starting = [p for p in fresh if not p.tables_started]
            if starting and self.spec.tables:  # a table is rebuilt from its compacted topic, whatever was committed
                tables = [TopicPartition(t, p.partition) for p in starting for t in self.spec.tables]
                await asyncio.wait_for(consumer.seek_to_beginning(*tables), 30)
                ends = await consumer.end_offsets(tables)
                for p in starting:
                    p.read = {}
                    p.targets = {t: ends[TopicPartition(t, p.partition)] for t in self.spec.tables}
            for p in fresh:
                p.tables_started = p.restoring = True
            waiting = [p for p in self._parts.values() if p.restored and not p.ready]
            tables = [TopicPartition(t, p.partition) for p in waiting for t in self.spec.tables]
            if tables:  # restored: its tables are read again
                consumer.resume(*tables)
        if fresh:
            task = asyncio.create_task(self._restore_task(fresh), name=f"restore-{self.spec.name}")
            self._restores.add(task)
            task.add_done_callback(self._restores.discard)
        # positions are asked outside the lock: during a rebalance they wait for the group coordinator,
        # which may itself be waiting for the lock in the rebalance listener
        caught_up = [p for p in waiting
                     if all([p.read.get(t, 0) >= end or await self._position(consumer, t, p.partition) >= end
                             for t, end in p.targets.items()])]
        async with self._lock:
            for part in caught_up:
                if self._parts.get(part.partition) is not part or not part.restored:
                    continue  # reassigned, or its state renewed, meanwhile
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

    async def _restore_task(self, parts: list[_Part[S]]) -> None:
        """`_restore` beside the loop: a transient failure leaves the partitions to be restored again (after a
        pause), a bug is raised by the loop."""
        try:
            await self._restore(parts)
        except TRANSIENT as exc:
            log.warning("%s stage: restoring partitions %s failed (%s: %s); trying again", self.spec.name,
                        sorted(p.partition for p in parts), type(exc).__name__, exc)
            await asyncio.sleep(1.0)
            for p in parts:
                if not p.restored:
                    p.renew_state()  # what was read so far goes: the restore starts again from the beginning
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # a bug: the loop stops the worker with it
            self._failure = exc
        finally:
            for p in parts:
                p.restoring = False
                if self._parts.get(p.partition) is not p:
                    p.close()  # revoked during the restore: dropped here, as nothing else holds it now

    async def _restore(self, parts: list[_Part[S]]) -> None:
        """Read the changelog partitions of `parts` to their end into their state (tombstones delete). Runs
        outside the lock: a partition revoked meanwhile is dropped at the next fetch."""
        by_tp = {TopicPartition(self.spec.changelog, p.partition): p for p in parts}
        # auto_offset_reset must agree with the seek below: assign() starts a reset of its own, which could
        # otherwise land after the seek and move the reader to the end (nothing restored)
        reader = AIOKafkaConsumer(bootstrap_servers=self._bootstrap, **client_options(), enable_auto_commit=False,
                                  auto_offset_reset="earliest", request_timeout_ms=15_000,
                                  max_partition_fetch_bytes=4 * 1024 * 1024)
        await reader.start()
        records = 0
        try:
            reader.assign(list(by_tp))
            ends = await reader.end_offsets(list(by_tp))
            await reader.seek_to_beginning(*by_tp)
            todo = {tp for tp, end in ends.items() if end > 0}
            while todo:
                if self._stopping.is_set():
                    return  # asked to stop (the broker may be gone): the partitions stay unrestored
                for tp in [tp for tp in todo if self._parts.get(tp.partition) is not by_tp[tp]]:
                    todo.discard(tp)  # revoked meanwhile: its new owner restores it
                if not todo:
                    break
                batch = await reader.getmany(*todo, timeout_ms=1000, max_records=5000)
                for tp, messages in batch.items():
                    if tp not in todo:
                        continue
                    try:
                        by_tp[tp].state.restore((m.key.decode(), m.value) for m in messages)
                    except (DecodeError, UnicodeDecodeError) as exc:  # not transient: the record stays there
                        raise CorruptChangelog(f"{tp.topic} partition {tp.partition}: a state record cannot be "
                                               f"read ({exc}); stop every monitor worker and run `povwatch "
                                               "rebuild monitor` (docs/runbook.md)") from None
                    records += len(messages)
                    if messages and messages[-1].offset + 1 >= ends[tp]:
                        todo.discard(tp)
                    await asyncio.sleep(0)  # a large restore leaves the loop (and the group) time between fetches
                for tp in list(todo):
                    if await reader.position(tp) >= ends[tp]:
                        todo.discard(tp)
        finally:
            await reader.stop()
        kept = [p for p in parts if self._parts.get(p.partition) is p]
        for p in kept:
            p.state.take_dirty()
            p.restored = True
        log.info("%s stage: restored state of partitions %s (%d keys from %d changelog records)%s", self.spec.name,
                 sorted(p.partition for p in kept), sum(len(p.state) for p in kept), records,
                 f"; dropped revoked {sorted(p.partition for p in parts if p not in kept)}" if len(kept) < len(parts)
                 else "")

    async def _process(self, consumer: AIOKafkaConsumer, batch: dict[TopicPartition, list[Any]]) -> None:
        spec = self.spec
        now = self._clock()
        out: list[Emit] = []
        acks = self._acks = []  # of the outputs handed to the producer during the batch
        handed = since = 0  # outputs handed over; messages handled since the last hand-off
        offsets: dict[TopicPartition, int] = {}
        touched: set[int] = self._touched  # seen by `_recover` if the batch fails
        tables = [(tp, ms) for tp, ms in batch.items() if tp.topic in spec.tables]
        inputs = [(tp, ms) for tp, ms in batch.items() if tp.topic not in spec.tables]
        for tp, messages in [*tables, *inputs]:
            part = self._parts.get(tp.partition)
            if part is None or not messages:
                continue  # revoked meanwhile: the new owner reads it
            is_table = tp.topic in spec.tables
            if not part.ready and (not is_table or not part.restored):
                consumer.seek(tp, messages[0].offset)  # fetched before the pause: read again once loaded
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
                since += 1
                if since >= HAND_OFF:  # the outputs so far go now: the next stage starts on them meanwhile
                    since = 0
                    acks += await self._enqueue(out[handed:])
                    handed = len(out)
                    await asyncio.sleep(0)  # the producer's sender and the other stages run
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
        # 1. outputs, acknowledged (those handed over during the batch and the rest)
        acks += await self._enqueue(out[handed:])
        await asyncio.gather(*acks)
        if self._on_sent is not None and out:
            await self._on_sent(out)
        # 2. state changed by this batch, once per key, acknowledged
        changes: list[tuple[str, bytes, bytes | None, int | None]] = []
        settled: list[tuple[StateStore[S], list[tuple[str, bytes | None]]]] = []
        for p in touched:
            state = self._parts[p].state
            written: list[tuple[str, bytes | None]] = []
            for key in state.take_dirty():
                value = state.get(key)
                empty = value is None or getattr(value, "empty", False)
                encoded = None if empty else spec.state.encode(self._codec, value)  # type: ignore[arg-type]
                written.append((key, encoded))
                changes.append((spec.changelog, key.encode(), encoded, p))
            settled.append((state, written))
        await self._send_all(changes)
        for state, written in settled:  # acknowledged: the store keeps them (an empty record goes)
            state.settle(written)
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

    async def _enqueue(self, emits: list[Emit]) -> list[asyncio.Future[Any]]:
        if not emits:
            return []
        assert self._sender is not None, "the loop makes a producer before the first batch"
        return await self._sender.enqueue([(e.topic, e.key, e.value, None) for e in emits])

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

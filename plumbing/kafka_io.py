"""The Kafka client factories and the one-shot operations: publishing, topic administration, reading topics.

aiokafka's errors are translated here into `BrokerUnavailable` with one clear line; no aiokafka type leaves.

Not the only module that talks to Kafka. These do too, each because it runs a long-lived consumer group whose
loop is its own logic (rebalance listeners, pausing partitions while the case DB is down, committing offsets only
after the database commit), which a wrapper here would have to reproduce call for call:
    services/monitor/engine.py         the stream engine's consumers and producers (stages, changelogs, tables)
    services/monitor/app.py            the monitor's producer factory (idempotent, acks=all)
    services/casefeed/service.py       the case feed's alert consumer group
    services/casefeed/side_consumer.py the case feed's profile and screening consumer groups
    services/cases/relay.py            the relay's consumer of comparison answers
    services/compare/connector.py      the comparison connector's consumer of requests
    plumbing/batch_sender.py           many messages at once, grouped by partition (the engine's outputs)
    plumbing/kafka_local.py            the local broker (admin calls while it starts)
    plumbing/aiokafka_fixes.py         a fix to aiokafka's consumer: fresh metadata when a leader has moved
Each translates aiokafka's errors into `BrokerUnavailable` itself. Every client of the project, here and there,
takes its security options (plaintext, or TLS as the current party) from plumbing/kafka_security.client_options().
"""
from __future__ import annotations

import asyncio
import datetime as dt
import logging
import random
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import (
    ClusterAuthorizationFailedError,
    GroupAuthorizationFailedError,
    KafkaConnectionError,
    KafkaError,
    KafkaTimeoutError,
    NodeNotReadyError,
    RequestTimedOutError,
    TopicAlreadyExistsError,
    TopicAuthorizationFailedError,
)

from plumbing.kafka_local import replication_for
from plumbing.kafka_security import client_options
from plumbing.kafka_security import current as current_security
from schemas.catalog import project_topics  # re-exported: callers import it from here
from schemas.errors import BrokerUnavailable
from schemas.topics import TopicSpec

__all__ = [
    "AdminClient",
    "KafkaPublisher",
    "project_topics",
    "ensure_topics",
    "missing_topics",
    "group_offsets",
    "wait_for_topics",
    "read_topic",
    "Record",
    "topic_end_offsets",
    "broker_count",
    "topic_offsets",
    "describe_group",
    "read_compacted",
    "read_since",
    "last_record_times",
]

_TIMEOUT_MS = 15_000
# How long a message may wait for its partition's leader before send() gives up (Kafka's delivery.timeout.ms):
# a broker frozen or failing over takes a while to lose its partitions (its session times out, then they move).
DELIVERY_TIMEOUT_S = 120.0
_log = logging.getLogger("povwatch.kafka")
_TOPIC_AUTHORIZATION_FAILED = 29  # Kafka's error code
_REFUSALS = (TopicAuthorizationFailedError, GroupAuthorizationFailedError, ClusterAuthorizationFailedError)


def _unavailable(bootstrap: str, exc: BaseException) -> BrokerUnavailable:
    detail = str(exc) or type(exc).__name__
    if isinstance(exc, _REFUSALS):
        return BrokerUnavailable(f"Kafka at {bootstrap} refused this party: {detail} (its certificate's role does "
                                 "not allow it: docs/security.md)")
    hint = "" if current_security().secure else "; a secured broker needs POVWATCH_SECURITY_PROTOCOL=SSL"
    return BrokerUnavailable(f"cannot reach Kafka at {bootstrap}: {detail} (is it running? `povwatch kafka up`"
                             f"{hint})")


class AdminClient(AIOKafkaAdminClient):  # type: ignore[misc]  # aiokafka.admin is untyped
    """aiokafka's admin client, but a request it would send to a random broker goes to another one when the
    first does not answer. A broker just lost stays in the cluster's metadata until the controller fences it
    (about 9 s, `broker.session.timeout.ms`): aiokafka would pick it once in N and fail the whole call."""

    async def _send_request(self, request: Any, node_id: int | None = None) -> Any:
        if node_id is not None:
            return await super()._send_request(request, node_id)
        nodes = [broker.nodeId for broker in self._client.cluster.brokers()]
        random.shuffle(nodes)
        for i, node in enumerate(nodes):
            try:
                return await self._client.send(node, request)
            except (NodeNotReadyError, KafkaConnectionError, RequestTimedOutError):
                if i == len(nodes) - 1:
                    raise
        return await super()._send_request(request)  # no broker known: aiokafka's own error


async def _admin(bootstrap: str) -> AIOKafkaAdminClient:
    admin = AdminClient(bootstrap_servers=bootstrap, **client_options(), request_timeout_ms=_TIMEOUT_MS)
    try:
        await admin.start()
    except (KafkaError, OSError) as exc:
        await admin.close()
        raise _unavailable(bootstrap, exc) from None
    return admin


async def ensure_topics(bootstrap: str, partitions: int, topics: Iterable[TopicSpec] | None = None) -> list[str]:
    """Create the missing topics; returns the names created (existing ones are left as they are).

    On a secured broker a party sees only the topics its ACLs name: the others look missing, and creating them is
    refused (TOPIC_AUTHORIZATION_FAILED, whether they exist or not). Those are left to the admin's `povwatch topics
    ensure` and not waited for; the party's own (the monitor's internal topics) are created."""
    wanted = list(topics if topics is not None else project_topics())
    refused: set[str] = set()
    admin = await _admin(bootstrap)
    try:
        existing = set(await admin.list_topics())
        # replication from the brokers the cluster lists now: RF min(3, n), min.insync.replicas 2 from three on
        replication, min_isr = 1, 1
        if any(spec.name not in existing for spec in wanted):
            replication, min_isr = replication_for(len((await admin.describe_cluster()).get("brokers") or ()))
        new = []
        for spec in wanted:
            if spec.name in existing:
                continue
            config = {"cleanup.policy": "compact"} if spec.compacted else {}
            if spec.retention_ms is not None and not spec.compacted:
                # cleanup.policy stays the broker's default, delete: a second config entry in aiokafka's CreateTopics
                # request left another topic's partition without a leader (seen with Kafka 4.1, aiokafka 0.12+)
                config = {"retention.ms": str(spec.retention_ms)}
            if min_isr > 1:
                config["min.insync.replicas"] = str(min_isr)
            count = spec.partitions or (1 if spec.name.startswith("dlq.") else partitions)
            new.append(NewTopic(spec.name, num_partitions=count, replication_factor=replication, topic_configs=config))
        if new:
            try:
                response = await admin.create_topics(new, timeout_ms=_TIMEOUT_MS)
            except TopicAlreadyExistsError:
                pass  # created concurrently by another process: fine
            else:
                refused = {error[0] for error in response.topic_errors if error[1] == _TOPIC_AUTHORIZATION_FAILED}
    except KafkaError as exc:
        raise _unavailable(bootstrap, exc) from None
    finally:
        await admin.close()
    # a created topic can take a moment to appear in the metadata that producers and consumers read
    await wait_for_topics(bootstrap, [spec.name for spec in wanted if spec.name not in refused])
    return [t.name for t in new if t.name not in refused]


async def wait_for_topics(bootstrap: str, names: Iterable[str], timeout: float = 30.0) -> None:
    """Return once the broker's metadata lists every topic (a new topic can lag behind its creation)."""
    wanted = list(names)
    deadline = asyncio.get_running_loop().time() + timeout
    while missing := await missing_topics(bootstrap, wanted):
        if asyncio.get_running_loop().time() > deadline:
            raise BrokerUnavailable(f"topics still missing on {bootstrap} after {timeout:.0f}s: {', '.join(missing)}")
        await asyncio.sleep(0.2)


async def group_offsets(bootstrap: str, group_id: str) -> dict[tuple[str, int], int]:
    """Committed offsets of a consumer group ((topic, partition) -> next offset to read)."""
    admin = await _admin(bootstrap)
    try:
        offsets = await admin.list_consumer_group_offsets(group_id)
    except KafkaError as exc:
        raise _unavailable(bootstrap, exc) from None
    finally:
        await admin.close()
    return {(tp.topic, tp.partition): meta.offset for tp, meta in offsets.items() if meta.offset >= 0}


async def missing_topics(bootstrap: str, names: Iterable[str]) -> list[str]:
    admin = await _admin(bootstrap)
    try:
        existing = set(await admin.list_topics())
    except KafkaError as exc:
        raise _unavailable(bootstrap, exc) from None
    finally:
        await admin.close()
    return sorted(set(names) - existing)


# A producer's batching for a bulk run (a department's files, a roster): up to 50 ms and 512 KB a batch per
# partition instead of 10 ms and aiokafka's 16 KB, so a batch holds hundreds of events, not dozens.
BULK_OPTIONS: dict[str, int] = {"linger_ms": 50, "max_batch_size": 512 * 1024}


class KafkaPublisher:
    """Idempotent producer (acks=all): `async with KafkaPublisher(...) as pub: await pub.send(...)`.

    `send` enqueues; `flush` waits until every message sent so far is acknowledged by the broker."""

    def __init__(self, bootstrap: str, *, client_id: str = "povwatch", require_topics: Iterable[str] = (),
                 bulk: bool = False) -> None:
        self._bootstrap = bootstrap
        self._client_id = client_id
        self._require = list(require_topics)
        # bulk: a whole file at once, no one waiting for a message: bigger batches, fewer waits (BULK_OPTIONS)
        self._batching = BULK_OPTIONS if bulk else {"linger_ms": 10}
        self._flush_every = 20_000 if bulk else 2000
        self._producer: AIOKafkaProducer | None = None  # made in __aenter__, inside the running loop
        self._pending: list[asyncio.Future[Any]] = []
        # (topic, partition) -> the offset after the last message acknowledged (for checkpoints: services.watch)
        self.acked: dict[tuple[str, int], int] = {}

    async def __aenter__(self) -> KafkaPublisher:
        if self._require:
            missing = await missing_topics(self._bootstrap, self._require)
            if missing:
                raise BrokerUnavailable(f"topic {', '.join(missing)} does not exist on {self._bootstrap}; "
                                        "run `povwatch topics ensure` first")
        self._producer = AIOKafkaProducer(
            bootstrap_servers=self._bootstrap, **client_options(),
            client_id=self._client_id, acks="all", enable_idempotence=True,
            request_timeout_ms=_TIMEOUT_MS, **self._batching,
        )
        try:
            await self._producer.start()
        except (KafkaError, OSError) as exc:
            await self._producer.stop()
            raise _unavailable(self._bootstrap, exc) from None
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        try:
            if exc_info[0] is None:
                await self.flush()
        finally:
            if self._producer is not None:
                await self._producer.stop()

    async def send(self, topic: str, key: bytes, value: bytes) -> None:
        if self._producer is None:
            raise RuntimeError("KafkaPublisher.send outside `async with`")
        self._pending.append(await self._enqueue(topic, key, value))
        if len(self._pending) >= self._flush_every:
            await self.flush()

    async def tombstone(self, topic: str, key: bytes) -> None:
        """Delete `key` from a compacted topic: a record with a null value."""
        if self._producer is None:
            raise RuntimeError("KafkaPublisher.tombstone outside `async with`")
        self._pending.append(await self._enqueue(topic, key, None))

    async def _enqueue(self, topic: str, key: bytes, value: bytes | None) -> asyncio.Future[Any]:
        """Hand one message to the producer. When its partition's buffer is full and the leader does not take it
        (a frozen broker: requests time out, the partition moves only once its session expired), aiokafka gives
        up after request_timeout_ms without taking the message: ask again, on fresh metadata, until
        DELIVERY_TIMEOUT_S. Safe: a refused message is not in the buffer, and the idempotent producer's
        retries of what it holds add no duplicate."""
        assert self._producer is not None
        deadline = time.monotonic() + DELIVERY_TIMEOUT_S
        while True:
            try:
                future: asyncio.Future[Any] = await self._producer.send(topic, value, key=key)
                return future
            except KafkaTimeoutError as exc:
                if time.monotonic() >= deadline:
                    raise BrokerUnavailable(f"Kafka at {self._bootstrap} took no message for {topic} for "
                                            f"{DELIVERY_TIMEOUT_S:.0f} s: its leader does not answer") from exc
                _log.warning("the leader of %s took no message for %.0f s (a broker frozen or failing over?); "
                             "still trying, for up to %.0f s", topic, _TIMEOUT_MS / 1000, DELIVERY_TIMEOUT_S)
                self._producer.client.force_metadata_update()
            except KafkaError as exc:
                raise _unavailable(self._bootstrap, exc) from None

    async def flush(self) -> None:
        pending, self._pending = self._pending, []
        try:
            done = await asyncio.gather(*pending)
        except KafkaError as exc:
            raise _unavailable(self._bootstrap, exc) from None
        for meta in done:
            tp = (meta.topic, meta.partition)
            self.acked[tp] = max(self.acked.get(tp, 0), meta.offset + 1)


@dataclass(frozen=True)
class Record:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    timestamp_ms: int


async def _stop(consumer: AIOKafkaConsumer) -> None:
    """Stop a consumer. aiokafka 0.14 re-raises the CancelledError of its own internal task when a consumer
    without a group is stopped right after start; swallow that one, never a cancellation of our own task."""
    try:
        await consumer.stop()
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise


async def _started_consumer(bootstrap: str, **options: Any) -> AIOKafkaConsumer:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, **client_options(), enable_auto_commit=False,
                                request_timeout_ms=_TIMEOUT_MS, **options)
    try:
        await consumer.start()
        # so partitions_for_topic() answers (aiokafka has no public call)
        await consumer._client.force_metadata_update()
    except (KafkaError, OSError) as exc:
        await _stop(consumer)
        raise _unavailable(bootstrap, exc) from None
    return consumer


async def topic_end_offsets(bootstrap: str, topics: Iterable[str]) -> dict[tuple[str, int], int]:
    """End offsets of every partition of each topic that exists (missing topics are left out); BrokerUnavailable
    when Kafka does not answer."""
    consumer = await _started_consumer(bootstrap)
    try:
        tps = [TopicPartition(t, p) for t in topics for p in sorted(consumer.partitions_for_topic(t) or ())]
        try:
            ends = await consumer.end_offsets(tps) if tps else {}
        except KafkaError as exc:  # e.g. KafkaTimeoutError while a broker is coming back: a transient outage
            raise _unavailable(bootstrap, exc) from None
        return {(tp.topic, tp.partition): off for tp, off in ends.items()}
    finally:
        await _stop(consumer)


async def broker_count(bootstrap: str) -> int:
    """How many brokers the cluster's metadata lists (BrokerUnavailable when it cannot be asked)."""
    admin = await _admin(bootstrap)
    try:
        cluster = await admin.describe_cluster()
    except KafkaError as exc:
        raise _unavailable(bootstrap, exc) from None
    finally:
        await admin.close()
    return len(cluster.get("brokers") or ())


async def topic_offsets(bootstrap: str, topics: Iterable[str]) -> dict[str, list[tuple[int, int]]]:
    """(log start, end) offsets of every partition of each topic that exists, indexed by partition; missing
    topics are left out."""
    consumer = await _started_consumer(bootstrap)
    try:
        tps = [TopicPartition(t, p) for t in topics for p in sorted(consumer.partitions_for_topic(t) or ())]
        if not tps:
            return {}
        try:
            starts = await consumer.beginning_offsets(tps)
            ends = await consumer.end_offsets(tps)
        except KafkaError as exc:
            raise _unavailable(bootstrap, exc) from None
        found: dict[str, list[tuple[int, int]]] = {}
        for tp in tps:
            found.setdefault(tp.topic, []).append((starts[tp], ends[tp]))
        return found
    finally:
        await _stop(consumer)


async def last_record_times(bootstrap: str, topics: Iterable[str], timeout: float = 15.0,
                            ) -> dict[str, dt.datetime | None]:
    """The timestamp (UTC) of the latest record of each topic, over its partitions: when its producer sent it
    (povwatch's producers leave the record's timestamp to the send time). None for an empty or missing topic."""
    names = list(topics)
    found: dict[str, dt.datetime | None] = dict.fromkeys(names)
    consumer = await _started_consumer(bootstrap, auto_offset_reset="latest")
    try:
        tps = [TopicPartition(t, p) for t in names for p in sorted(consumer.partitions_for_topic(t) or ())]
        if not tps:
            return found
        try:
            starts = await consumer.beginning_offsets(tps)
            ends = await consumer.end_offsets(tps)
            todo = {tp for tp in tps if ends[tp] > starts[tp]}
            if not todo:
                return found
            consumer.assign(list(todo))
            for tp in todo:
                consumer.seek(tp, ends[tp] - 1)
            deadline = asyncio.get_running_loop().time() + timeout
            while todo and asyncio.get_running_loop().time() < deadline:
                batch = await consumer.getmany(*todo, timeout_ms=500)
                for tp, records in batch.items():
                    if records:
                        when = dt.datetime.fromtimestamp(records[-1].timestamp / 1000, dt.UTC)
                        best = found[tp.topic]
                        found[tp.topic] = when if best is None or when > best else best
                        todo.discard(tp)
        except KafkaError as exc:
            raise _unavailable(bootstrap, exc) from None
        if todo:
            raise BrokerUnavailable(f"cannot read the latest record of {', '.join(sorted({tp.topic for tp in todo}))} "
                                    f"at {bootstrap} within {timeout:.0f} s")
        return found
    finally:
        await _stop(consumer)


async def describe_group(bootstrap: str, group_id: str) -> tuple[str, int]:
    """(state, number of members) of a consumer group, e.g. ("Stable", 1); ("Dead", 0) for an unknown group."""
    admin = await _admin(bootstrap)
    try:
        [response] = await admin.describe_consumer_groups([group_id])
    except KafkaError as exc:
        raise _unavailable(bootstrap, exc) from None
    finally:
        await admin.close()
    for group in response.to_object()["groups"]:
        if group["group"] == group_id:
            return (str(group["state"]) or "Dead", len(group["members"] or ()))
    return ("Dead", 0)


async def read_topic(
    bootstrap: str,
    topics: Iterable[str],
    *,
    from_beginning: bool = True,
    idle_timeout: float | None = 5.0,
) -> AsyncIterator[Record]:
    """Read topics without a consumer group (nothing committed). Ends after `idle_timeout` seconds without a
    new message (None: follow forever)."""
    names = list(topics)
    # the reset policy agrees with the seek below: assign() starts a reset of its own that may land after it
    consumer = await _started_consumer(bootstrap, auto_offset_reset="earliest" if from_beginning else "latest")
    try:
        tps = [TopicPartition(t, p) for t in names for p in sorted(consumer.partitions_for_topic(t) or ())]
        missing = [t for t in names if not consumer.partitions_for_topic(t)]
        if missing:
            raise BrokerUnavailable(f"topic {', '.join(missing)} does not exist (run `povwatch topics ensure`)")
        consumer.assign(tps)
        if from_beginning:
            await consumer.seek_to_beginning(*tps)
        else:
            await consumer.seek_to_end(*tps)
        while True:
            batch = await consumer.getmany(timeout_ms=int((idle_timeout or 3600) * 1000))
            if not batch:
                if idle_timeout is not None:
                    return
                continue
            for tp, messages in batch.items():
                for m in messages:
                    yield Record(tp.topic, tp.partition, m.offset, m.key, m.value or b"", m.timestamp)
    finally:
        await _stop(consumer)


async def read_compacted(bootstrap: str, topic: str, *, timeout: float = 120.0) -> dict[bytes, bytes]:
    """What a compacted topic holds now: the latest value per key, read up to the end offsets taken at the start
    (later records are left for the next reader). A tombstone (null value) removes its key; keyless records
    are ignored. BrokerUnavailable if the topic is missing or not read to its end within `timeout` seconds."""
    consumer = await _started_consumer(bootstrap, auto_offset_reset="earliest")
    try:
        partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            raise BrokerUnavailable(f"topic {topic} does not exist (run `povwatch topics ensure`)")
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        await consumer.seek_to_beginning(*tps)
        contents: dict[bytes, bytes] = {}
        remaining = [tp for tp in tps if await consumer.position(tp) < ends[tp]]
        deadline = asyncio.get_running_loop().time() + timeout
        while remaining:
            if asyncio.get_running_loop().time() > deadline:
                raise BrokerUnavailable(f"could not read {topic} to its end within {timeout:.0f}s on {bootstrap}")
            batch = await consumer.getmany(*remaining, timeout_ms=1000)
            for tp, messages in batch.items():
                for m in messages:
                    if m.offset >= ends[tp] or m.key is None:
                        continue
                    if m.value is None:
                        contents.pop(m.key, None)
                    else:
                        contents[m.key] = m.value
            remaining = [tp for tp in remaining if await consumer.position(tp) < ends[tp]]
        return contents
    except KafkaError as exc:
        raise _unavailable(bootstrap, exc) from None
    finally:
        await _stop(consumer)


async def read_since(bootstrap: str, topics: Iterable[str], offsets: dict[tuple[str, int], int], *,
                     timeout: float = 120.0) -> AsyncIterator[Record]:
    """Every message of `topics` from `offsets` ((topic, partition) -> offset; a partition not listed: from
    its beginning) up to the end offsets taken at the start. BrokerUnavailable if not read within `timeout`."""
    consumer = await _started_consumer(bootstrap, auto_offset_reset="earliest")
    try:
        names = list(topics)
        missing = [t for t in names if not consumer.partitions_for_topic(t)]
        if missing:
            raise BrokerUnavailable(f"topic {', '.join(missing)} does not exist (run `povwatch topics ensure`)")
        tps = [TopicPartition(t, p) for t in names for p in sorted(consumer.partitions_for_topic(t) or ())]
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        for tp in tps:
            start = offsets.get((tp.topic, tp.partition))
            if start is None:
                await consumer.seek_to_beginning(tp)
            else:
                consumer.seek(tp, min(start, ends[tp]))
        remaining = [tp for tp in tps if await consumer.position(tp) < ends[tp]]
        deadline = asyncio.get_running_loop().time() + timeout
        while remaining:
            if asyncio.get_running_loop().time() > deadline:
                raise BrokerUnavailable(f"could not read {', '.join(names)} to the end within {timeout:.0f}s")
            batch = await consumer.getmany(*remaining, timeout_ms=1000)
            for tp, messages in batch.items():
                for m in messages:
                    if m.offset < ends[tp]:
                        yield Record(tp.topic, tp.partition, m.offset, m.key, m.value or b"", m.timestamp)
            remaining = [tp for tp in remaining if await consumer.position(tp) < ends[tp]]
    except KafkaError as exc:
        raise _unavailable(bootstrap, exc) from None
    finally:
        await _stop(consumer)

"""The case feed's profile consumer: profiles.household (the monitor's povwatch.profiles.HouseholdProfile records,
compacted, key = household_id) -> the case DB's `household_profiles` table (services/cases/profiles.py).

`povwatch casefeed` runs it beside the alert consumer, in its own consumer group `<POVWATCH_CASEFEED_GROUP>.profiles`
(so neither holds the other's offsets back). At least once, idempotent: a batch is written in ONE transaction, and
only then are its offsets committed; a profile replaces the stored one only if its updated_at is not older, so a
redelivered or reordered profile never puts an older picture back (a `stale` outcome), and the same profile again
is a `duplicate`. A tombstone (null value) deletes the household's profile.

A message that cannot be decoded as a HouseholdProfile, or a profile that is not well formed or that the case DB
refuses with a data error, is dead-lettered to `dlq.casefeed` with the reason (stage "casefeed", its topic,
partition and offset; the household id and village code when known: no name or ID number travels here), counted,
and its offset committed with the batch: it never stops the feed. A case DB outage holds the batch (nothing
committed) and retries it with backoff, polling with the partitions paused so the consumer stays in its group.

    povwatch_casefeed_profiles_total{outcome}   profile messages consumed, by what they did: stored, replaced,
                                                duplicate, stale, deleted, absent (a tombstone for no stored
                                                profile), dead_letter
    povwatch_consumer_lag{group=<group>.profiles, topic=profiles.household, partition}
"""
from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError
from prometheus_client import Counter

from schemas.codec import Codec
from schemas.deadletter import DeadLetter, message_dead_letter
from schemas.errors import BrokerUnavailable, DatabaseUnavailable, SchemaError
from schemas.topics import CASEFEED_DLQ, PROFILES_HOUSEHOLD
from services.backoff import Backoff
from services.casefeed.db import CaseStore
from services.cases.profiles import OUTCOMES, profile_row, record_profiles
from services.consumer_lag import LagTracker
from services.kafka_io import KafkaPublisher

__all__ = ["PROFILE_SCHEMA", "STAGE", "DEAD_LETTER", "profiles_group", "ProfileMessage", "ProfileBatch",
           "handle_profiles", "ProfileFeed", "PROFILES"]

log = logging.getLogger("povwatch.casefeed.profiles")

PROFILE_SCHEMA = "povwatch.profiles.HouseholdProfile"
STAGE = "casefeed"
DEAD_LETTER = "dead_letter"
PROFILES = Counter("povwatch_casefeed_profiles_total",
                   "profiles.household messages consumed by the case feed, by what they did", ["outcome"])
POLL_SECONDS = 1.0
MAX_RECORDS = 500
_IDENTIFYING = ("household_id", "village_code")


def profiles_group(casefeed_group: str) -> str:
    return f"{casefeed_group}.profiles"


@dataclass(frozen=True)
class ProfileMessage:
    """One consumed message of profiles.household (value None: a tombstone)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None

    @property
    def where(self) -> str:
        return f"{self.topic}[{self.partition}]@{self.offset}"


@dataclass
class ProfileBatch:
    """What one batch did: an outcome per message, in order (services.cases.profiles.OUTCOMES or DEAD_LETTER),
    and the dead letters to send."""

    outcomes: list[str] = field(default_factory=list)
    letters: list[DeadLetter] = field(default_factory=list)


def _identifying(record: Any) -> dict[str, str]:
    if not isinstance(record, Mapping):
        return {}
    return {name: str(record[name])[:64] for name in _IDENTIFYING if isinstance(record.get(name), str)}


def handle_profiles(store: CaseStore, messages: Sequence[ProfileMessage], codec: Codec,
                    now: dt.datetime) -> ProfileBatch:
    """Decode, store and sort out one batch (no Kafka here; blocking: it writes the case DB). The batch is stored in
    one transaction; only when the DB refuses it is each profile stored alone, so one bad profile never holds the
    others back. DatabaseUnavailable propagates with nothing stored (the caller retries the whole batch)."""
    batch = ProfileBatch(outcomes=[""] * len(messages))
    items: list[tuple[int, str, Mapping[str, Any] | None]] = []

    def dead(i: int, reason: str, record: Any = None) -> None:
        message = messages[i]
        batch.outcomes[i] = DEAD_LETTER
        batch.letters.append(message_dead_letter(message.topic, message.partition, message.offset, [reason], STAGE,
                                                 now, fields=_identifying(record)))
        log.warning("dead-lettered %s to %s: %s", message.where, CASEFEED_DLQ, reason)

    for i, message in enumerate(messages):
        if message.value is None:
            key = (message.key or b"").decode("utf-8", errors="replace").strip()
            if not key:
                dead(i, "a tombstone without a key: no household to delete")
            else:
                items.append((i, key, None))
            continue
        try:
            record = codec.decode(message.value, PROFILE_SCHEMA).record
        except SchemaError as exc:  # DecodeError: not a single-object message of the expected schema
            dead(i, f"undecodable: {exc}")
            continue
        try:
            profile_row(record)
        except SchemaError as exc:
            dead(i, f"not a household profile: {exc}", record)
            continue
        items.append((i, str(record["household_id"]), record))
    try:
        outcomes = record_profiles(store, [(key, item) for _, key, item in items])
        for (i, _, _), outcome in zip(items, outcomes):
            batch.outcomes[i] = outcome
    except SchemaError:  # RecordRefused: find the profile(s) the DB refuses, storing the others
        for i, key, item in items:
            try:
                [batch.outcomes[i]] = record_profiles(store, [(key, item)])
            except SchemaError as exc:
                dead(i, f"refused by the case database: {exc}", item)
    return batch


class ProfileFeed:
    """The profile consumer as an asyncio task beside the alert consumer (see the module docstring)."""

    def __init__(self, consumer: AIOKafkaConsumer, dlq: KafkaPublisher, store: CaseStore, codec: Codec,
                 group: str, backoff: Backoff, clock: Callable[[], dt.datetime]) -> None:
        self._consumer = consumer
        self._dlq = dlq
        self._store = store
        self._codec = codec
        self._group = group
        self._backoff = backoff
        self._clock = clock
        self._stop = asyncio.Event()
        self._lag = LagTracker(group)
        self._task: asyncio.Task[None] | None = None
        self.consumed = 0
        self.stored = 0  # stored or replaced
        self.dead_letters = 0

    @classmethod
    async def start(cls, bootstrap: str, casefeed_group: str, store: CaseStore, codec: Codec, backoff: Backoff,
                    clock: Callable[[], dt.datetime]) -> ProfileFeed:
        for outcome in (*OUTCOMES, DEAD_LETTER):
            PROFILES.labels(outcome)  # every series from the start, so rate() sees the first profile
        group = profiles_group(casefeed_group)
        consumer = AIOKafkaConsumer(PROFILES_HOUSEHOLD, bootstrap_servers=bootstrap, group_id=group,
                                    enable_auto_commit=False, auto_offset_reset="earliest", request_timeout_ms=15_000)
        try:
            await consumer.start()
        except (KafkaError, OSError) as exc:
            await consumer.stop()
            raise BrokerUnavailable(f"cannot reach Kafka at {bootstrap}: {exc}") from None
        dlq = KafkaPublisher(bootstrap, client_id="povwatch-casefeed-profiles")
        try:
            await dlq.__aenter__()
        except BaseException:
            await consumer.stop()
            raise
        feed = cls(consumer, dlq, store, codec, group, backoff, clock)
        feed._task = asyncio.create_task(feed._run(), name="profile-feed")
        return feed

    def check(self) -> None:
        """Raise what stopped the consumer, if it stopped (the case feed then stops too)."""
        if self._task is not None and self._task.done() and not self._task.cancelled():
            error = self._task.exception()
            if error is not None:
                raise error

    async def stop(self) -> None:
        """Finish the batch in hand (written and committed, unless the DB is away), then leave the group."""
        self._stop.set()
        try:
            if self._task is not None:
                await self._task
        except Exception as exc:  # noqa: BLE001 - check() raised it while running; here it is only logged
            log.error("profile consumer stopped: %s", str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        finally:
            try:
                await self._dlq.__aexit__(None, None, None)
            except Exception as exc:  # noqa: BLE001 - the broker went away at the end: nothing is held
                log.warning("profile dead letters not flushed at stop: %s", exc)
            await self._consumer.stop()
            log.info("profiles: %d message(s) consumed, %d profile(s) stored, %d dead letter(s)", self.consumed,
                     self.stored, self.dead_letters)

    async def _run(self) -> None:
        try:
            while not self._stop.is_set():
                batch = await self._consumer.getmany(timeout_ms=int(POLL_SECONDS * 1000), max_records=MAX_RECORDS)
                messages = [ProfileMessage(tp.topic, tp.partition, m.offset, m.key, m.value)
                            for tp, ms in batch.items() for m in ms]
                if messages and not await self._process(messages):
                    return  # stopped during a DB outage: the batch is read again next time
                await self._show_lag()
        except KafkaError as exc:
            raise BrokerUnavailable(f"profile consumer lost Kafka: {exc}") from None

    async def _process(self, messages: list[ProfileMessage]) -> bool:
        attempt = 0
        while True:
            try:
                done = await asyncio.to_thread(handle_profiles, self._store, messages, self._codec, self._clock())
                break
            except DatabaseUnavailable as exc:
                attempt += 1
                delay = self._backoff.delay(attempt)
                log.warning("case database unavailable (attempt %d), holding %d profile(s) uncommitted, retrying in "
                            "%.1f s: %s", attempt, len(messages), delay, exc)
                if not await self._wait_polling(delay):
                    return False
        if attempt:
            log.info("case database available again after %d failed attempt(s)", attempt)
        for letter in done.letters:
            await self._dlq.send(CASEFEED_DLQ, letter.key, letter.encode(self._codec))
        await self._dlq.flush()  # the dead letters are on the broker before their offsets are committed
        for outcome in done.outcomes:
            PROFILES.labels(outcome).inc()
        self.consumed += len(messages)
        self.stored += sum(o in ("stored", "replaced") for o in done.outcomes)
        self.dead_letters += len(done.letters)
        try:
            await self._consumer.commit()
        except (CommitFailedError, IllegalStateError) as exc:
            log.warning("profile offsets not committed (%s); the profiles will be redelivered and recognised",
                        str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        return True

    async def _wait_polling(self, seconds: float) -> bool:
        """Wait with every partition paused, polling so the consumer stays in its group; False if stopped."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        self._consumer.pause(*self._consumer.assignment())
        try:
            while (left := deadline - loop.time()) > 0:
                if self._stop.is_set():
                    return False
                returned = await self._consumer.getmany(timeout_ms=int(min(left, POLL_SECONDS) * 1000))
                for tp, records in returned.items():
                    if records:
                        self._consumer.seek(tp, records[0].offset)
                self._consumer.pause(*self._consumer.assignment())
        finally:
            self._consumer.resume(*self._consumer.paused())
        return not self._stop.is_set()

    async def _show_lag(self) -> None:
        assigned = self._consumer.assignment()
        ends: dict[tuple[str, int], int] = {}
        done: dict[tuple[str, int], int] = {}
        try:
            for tp in assigned:
                high = self._consumer.highwater(tp)
                if high is not None:
                    ends[(tp.topic, tp.partition)] = high
                done[(tp.topic, tp.partition)] = await self._consumer.position(tp)
        except (KafkaError, IllegalStateError):
            return
        self._lag.update(ends, done, [(tp.topic, tp.partition) for tp in assigned])

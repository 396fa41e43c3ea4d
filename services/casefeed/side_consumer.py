"""The case feed's side consumers' common loop: one topic (or a few) -> the case DB, in a consumer group of its own,
as an asyncio task beside the alert consumer (services/casefeed/profile_feed.py, services/casefeed/screening_feed.py).

What differs from one side consumer to the next is in a `SideSpec`: the topics, the client id of its dead-letter
publisher (None: it dead-letters nothing), the asyncio task's name, the batch handler, the outcome counter and the
words its log lines use. A subclass of `SideConsumer` adds its own totals (`_tally`) and its closing line
(`_summary`). Everything else is here, the same for all of them:

  * at least once: a batch is handed to the handler (blocking, in a thread: it writes the case DB in one
    transaction), its dead letters are sent to `dlq.casefeed` and flushed, its outcomes counted, and only then are
    its offsets committed; a commit refused by a rebalance is logged, the batch is redelivered and recognised;
  * a case DB outage (the handler raises DatabaseUnavailable, nothing written) holds the batch uncommitted and
    retries it with backoff, polling with every partition paused so the consumer stays in its group; stopped
    meanwhile, the batch is left uncommitted, to be read again next time;
  * Kafka lost while running: BrokerUnavailable, raised by `check()`; unreachable at start: BrokerUnavailable;
  * `povwatch_consumer_lag{group, topic, partition}` updated after every poll.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, Protocol, Self, TypeVar

from aiokafka import AIOKafkaConsumer
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError
from prometheus_client import Counter

from plumbing.backoff import Backoff
from plumbing.clock import Clock, utc_now
from plumbing.consumer_lag import LagTracker
from plumbing.kafka_io import KafkaPublisher
from plumbing.kafka_security import client_options
from schemas.codec import Codec
from schemas.deadletter import DeadLetter
from schemas.errors import BrokerUnavailable, DatabaseUnavailable
from schemas.topics import CASEFEED_DLQ

__all__ = ["Message", "Handled", "SideSpec", "SideConsumer", "POLL_SECONDS", "MAX_RECORDS"]

POLL_SECONDS = 1.0
MAX_RECORDS = 500


@dataclass(frozen=True)
class Message:
    """One consumed message (value None: a tombstone)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None

    @property
    def where(self) -> str:
        return f"{self.topic}[{self.partition}]@{self.offset}"


class Handled(Protocol):
    """What a batch handler returns: an outcome per message, in order (the counter's label), and the dead letters."""

    @property
    def outcomes(self) -> Sequence[str]: ...

    @property
    def letters(self) -> Sequence[DeadLetter]: ...


S = TypeVar("S")  # what the handler writes to (the case store, the screening tasks)
M = TypeVar("M")  # the handler's message type
R = TypeVar("R", bound=Handled)


@dataclass(frozen=True)
class SideSpec(Generic[S, M, R]):
    """One side consumer: what it reads, what it does with a batch, how it counts and what its log lines say."""

    topics: tuple[str, ...]
    task_name: str  # the asyncio task's
    message: Callable[[str, int, int, bytes | None, bytes | None], M]  # (topic, partition, offset, key, value)
    handler: Callable[[S, Sequence[M], Codec, dt.datetime], R]  # blocking: run in a thread
    counter: Counter  # labelled by outcome
    outcomes: tuple[str, ...]  # every outcome label, made at start so rate() sees the first message
    log: logging.Logger
    label: str  # "<label> consumer stopped", "<label> offsets not committed", ...
    unit: str  # "holding <n> <unit> uncommitted"
    redelivered: str  # "the <redelivered> will be redelivered and recognised"
    client_id: str | None = None  # the dead-letter publisher's; None: no dead letters, no publisher


def _first_line(exc: BaseException) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__



class SideConsumer(Generic[S, M, R]):
    """A side consumer as an asyncio task (see the module docstring): `launch`, then `check` now and then, `stop`."""

    def __init__(self, spec: SideSpec[S, M, R], consumer: AIOKafkaConsumer, dlq: KafkaPublisher | None, store: S,
                 codec: Codec, group: str, backoff: Backoff, clock: Clock) -> None:
        self._spec = spec
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
        self.dead_letters = 0

    @classmethod
    async def launch(cls, spec: SideSpec[S, M, R], bootstrap: str, group: str, store: S, codec: Codec,
                     backoff: Backoff, clock: Clock = utc_now) -> Self:
        for outcome in spec.outcomes:
            spec.counter.labels(outcome)  # every series from the start
        consumer = AIOKafkaConsumer(*spec.topics, bootstrap_servers=bootstrap, **client_options(), group_id=group,
                                    enable_auto_commit=False, auto_offset_reset="earliest", request_timeout_ms=15_000)
        try:
            await consumer.start()
        except (KafkaError, OSError) as exc:
            await consumer.stop()
            raise BrokerUnavailable(f"cannot reach Kafka at {bootstrap}: {exc}") from None
        dlq: KafkaPublisher | None = None
        if spec.client_id is not None:
            dlq = KafkaPublisher(bootstrap, client_id=spec.client_id)
            try:
                await dlq.__aenter__()
            except BaseException:
                await consumer.stop()
                raise
        feed = cls(spec, consumer, dlq, store, codec, group, backoff, clock)
        feed._task = asyncio.create_task(feed._run(), name=spec.task_name)
        return feed

    def _tally(self, done: R) -> None:
        """A subclass's own totals and metrics for one batch done (consumed and dead_letters are counted here)."""

    def _summary(self) -> None:
        """A subclass's closing log line, at stop."""

    def check(self) -> None:
        """Raise what stopped the consumer, if it stopped (the case feed then stops too)."""
        if self._task is not None and self._task.done() and not self._task.cancelled():
            error = self._task.exception()
            if error is not None:
                raise error

    async def stop(self) -> None:
        """Finish the batch in hand (written and committed, unless the DB is away), then leave the group."""
        log = self._spec.log
        self._stop.set()
        try:
            if self._task is not None:
                await self._task
        except Exception as exc:  # noqa: BLE001 - check() raised it while running; here it is only logged
            log.error("%s consumer stopped: %s", self._spec.label, _first_line(exc))
        finally:
            if self._dlq is not None:
                try:
                    await self._dlq.__aexit__(None, None, None)
                except Exception as exc:  # noqa: BLE001 - the broker went away at the end: nothing is held
                    log.warning("%s dead letters not flushed at stop: %s", self._spec.label, exc)
            await self._consumer.stop()
            self._summary()

    async def _run(self) -> None:
        try:
            while not self._stop.is_set():
                batch = await self._consumer.getmany(timeout_ms=int(POLL_SECONDS * 1000), max_records=MAX_RECORDS)
                messages = [self._spec.message(tp.topic, tp.partition, m.offset, m.key, m.value)
                            for tp, ms in batch.items() for m in ms]
                if messages and not await self._process(messages):
                    return  # stopped during a DB outage: the batch is read again next time
                await self._show_lag()
        except KafkaError as exc:
            raise BrokerUnavailable(f"{self._spec.label} consumer lost Kafka: {exc}") from None

    async def _process(self, messages: list[M]) -> bool:
        spec, log = self._spec, self._spec.log
        attempt = 0
        while True:
            try:
                done = await asyncio.to_thread(spec.handler, self._store, messages, self._codec, self._clock())
                break
            except DatabaseUnavailable as exc:
                attempt += 1
                delay = self._backoff.delay(attempt)
                log.warning("case database unavailable (attempt %d), holding %d %s uncommitted, retrying in %.1f s: "
                            "%s", attempt, len(messages), spec.unit, delay, exc)
                if not await self._wait_polling(delay):
                    return False
        if attempt:
            log.info("case database available again after %d failed attempt(s)", attempt)
        if self._dlq is not None:
            for letter in done.letters:
                await self._dlq.send(CASEFEED_DLQ, letter.key, letter.encode(self._codec))
            await self._dlq.flush()  # the dead letters are on the broker before their offsets are committed
        for outcome in done.outcomes:
            spec.counter.labels(outcome).inc()
        self.consumed += len(messages)
        self.dead_letters += len(done.letters)
        self._tally(done)
        try:
            await self._consumer.commit()
        except (CommitFailedError, IllegalStateError) as exc:
            log.warning("%s offsets not committed (%s); the %s will be redelivered and recognised", spec.label,
                        _first_line(exc), spec.redelivered)
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

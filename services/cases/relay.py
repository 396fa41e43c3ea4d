"""`povwatch relay`: the case DB's bridge to Kafka, both ways.

  * out: the outbox (services.casedb.outbox) is published in id order with an idempotent producer (acks=all) and
    each row is marked published only after the broker acknowledged it. LABEL and ANNOUNCE_LABEL write the
    household's decided status for registry.household-status (compacted, key = household_id; the roster load
    alone writes registry.households) in the step's transaction, so the monitor judges the household by its new
    status unless a later roster record says otherwise; `compare request` writes its
    requests.<dept>.comparison message the same way. Kafka down: nothing is marked, the pass is retried with
    backoff (plumbing.backoff), one log line per attempt, and the relay catches up when Kafka is back. A crash
    between the acknowledgement and the mark sends the rows again: harmless, a status record is the household's
    whole decided status (the latest wins on the compacted topic) and a request is answered with deterministic
    event ids.
  * in: the departments' answers, events.<dept>.comparison-result of the five comparison departments, are stored in
    comparison_answers once per event_id; the consumer group's offsets are committed after the DB commit.

A topic that does not exist is not a broker that cannot be reached: rows for a missing topic are held with one
line naming it (`povwatch topics ensure`), and the answers' consumer subscribes only to the comparison-result
topics that exist (looking again for the others every TOPICS_CHECK_SECONDS), so it never waits for a topic's
metadata. `--once` ends promptly: rows for a missing topic are left pending and said so; answers are read up to the
end offsets found at its start (none there, or all committed by the group: no group join at all), within
ANSWERS_ONCE_SECONDS.

One relay per case DB (two would publish the same rows twice: harmless, but pointless).
/metrics: povwatch_relay_outbox_pending, povwatch_relay_published_total{topic},
povwatch_relay_last_publish_timestamp_seconds, povwatch_relay_publish_failures_total,
povwatch_relay_answers_total{department,outcome}.
"""
from __future__ import annotations

import asyncio
import logging
import signal
import time
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaError
from prometheus_client import Counter, Gauge

from plumbing.audit import AuditTrail, AuditWriter
from plumbing.backoff import Backoff
from plumbing.clock import Clock, utc_now
from plumbing.kafka_io import group_offsets, missing_topics, topic_end_offsets
from plumbing.kafka_security import client_options
from schemas.catalog import COMPARISON_DEPARTMENTS, comparison_result_topics
from schemas.codec import Codec, default_codec
from schemas.errors import BrokerUnavailable, DatabaseUnavailable, DecodeError, SchemaError
from services.casedb import outbox
from services.casedb.outbox import PublisherFactory, publish_pending
from services.casedb.store import CaseStore
from services.cases.audit_copy import copy_audit_log
from services.compare.casedb import store_answers
from services.compare.records import RESULT_SCHEMA

__all__ = ["RelayTotals", "Relay", "run_relay"]

log = logging.getLogger("povwatch.relay")

PENDING = Gauge("povwatch_relay_outbox_pending", "Outbox messages not yet published")
FAILURES = Counter("povwatch_relay_publish_failures_total", "Publishing attempts that failed (Kafka or the case DB)")
ANSWERS = Counter("povwatch_relay_answers_total", "Comparison answers consumed", ["department", "outcome"])
BATCH = 500
POLL_SECONDS = 1.0
ANSWERS_STALL_SECONDS = 20.0  # a poll or a stop of the answers' consumer taking longer than this is abandoned
PUBLISH_STALL_SECONDS = 60.0  # a publishing pass taking longer than this is a failed attempt (nothing marked)
ANSWERS_ONCE_SECONDS = 60.0  # `--once`: reading the answers there were at its start ends within this
TOPICS_CHECK_SECONDS = 30.0  # how often a running relay looks for comparison-result topics created since

@dataclass
class RelayTotals:
    published: int = 0
    failed_attempts: int = 0
    answers_stored: int = 0
    answers_duplicate: int = 0
    answers_skipped: int = 0
    audit_copied: int = 0  # audit_log rows copied onto the audit trail
    notes: list[str] = field(default_factory=list)  # `--once`: what was left undone, and why (one line each)


class Relay:
    """The relay's state across passes: the store, the answers consumer, the totals."""

    def __init__(self, store: CaseStore, *, bootstrap: str, group: str, publisher_factory: PublisherFactory,
                 clock: Clock, codec: Codec, backoff: Backoff) -> None:
        self.store = store
        self.bootstrap = bootstrap
        self.group = group
        self.publisher_factory = publisher_factory
        self.clock = clock
        self.codec = codec
        self.backoff = backoff
        self.totals = RelayTotals()
        self.consumer: AIOKafkaConsumer | None = None
        self.failures = 0  # consecutive failed attempts to publish the outbox
        self.held_for: list[str] = []  # missing topics the pending rows wait for (last pass)
        self.subscribed: tuple[str, ...] = ()  # the comparison-result topics the answers' consumer reads
        self.answer_failures = 0  # consecutive failed attempts to read the answers

    async def _pending_gauge(self) -> int:
        waiting, _ = await asyncio.to_thread(outbox.counts, self.store)
        PENDING.set(waiting)
        return waiting

    async def _missing_targets(self) -> list[str]:
        """The topics the next pending rows are for that do not exist (a send to one would wait for its metadata
        and fail as if Kafka were down)."""
        rows = await asyncio.to_thread(outbox.pending, self.store, BATCH)
        if not rows:
            return []
        return await missing_topics(self.bootstrap, {r.topic for r in rows})

    async def publish(self) -> bool:
        """Publish what is pending; False (after one log line) when Kafka or the case DB is unavailable, or when
        a pending row's topic does not exist (`held_for` names it)."""
        try:
            self.held_for = await asyncio.wait_for(self._missing_targets(), timeout=ANSWERS_STALL_SECONDS)
            if self.held_for:
                self.failures += 1
                waiting = await self._pending_gauge()
                log.warning("%d outbox message(s) held unpublished: topic %s does not exist on %s; run `povwatch "
                            "topics ensure`", waiting, ", ".join(self.held_for), self.bootstrap)
                return False
            published = await asyncio.wait_for(publish_pending(self.store, self.publisher_factory, self.clock),
                                               timeout=PUBLISH_STALL_SECONDS)
            await self._pending_gauge()
        except (BrokerUnavailable, DatabaseUnavailable, TimeoutError) as exc:
            self.failures += 1
            self.totals.failed_attempts += 1
            FAILURES.inc()
            try:
                waiting = await self._pending_gauge()
            except DatabaseUnavailable:
                waiting = -1
            log.warning("publishing the outbox failed (attempt %d), %s message(s) held unpublished: %s",
                        self.failures, waiting if waiting >= 0 else "?", exc or "no answer from Kafka")
            return False
        if self.failures:
            log.info("outbox published again after %d failed attempt(s)", self.failures)
        self.failures = 0
        if published:
            self.totals.published += published
            log.info("published %d outbox message(s)", published)
        return True

    async def existing_answer_topics(self) -> dict[tuple[str, int], int]:
        """The comparison-result topics' partitions on the broker and their end offsets (a missing topic: none)."""
        return await topic_end_offsets(self.bootstrap, comparison_result_topics())

    async def answers_due(self, ends: dict[tuple[str, int], int]) -> dict[tuple[str, int], int]:
        """Of `ends`, the partitions whose messages up to that end the group has not all committed. Nothing on
        them: {} without asking the group coordinator (on a fresh broker it can take seconds to be ready)."""
        if not any(ends.values()):
            return {}
        done = await group_offsets(self.bootstrap, self.group)
        return {tp: end for tp, end in ends.items() if done.get(tp, 0) < end}

    async def subscribe(self, topics: tuple[str, ...]) -> None:
        """Read `topics` (existing ones only: a missing topic would hold the consumer's start for its metadata)."""
        if topics != self.subscribed and self.consumer is not None:
            self.consumer.subscribe(list(topics))
        self.subscribed = topics

    async def _consumer(self) -> AIOKafkaConsumer:
        if self.consumer is None:
            consumer = AIOKafkaConsumer(*self.subscribed, bootstrap_servers=self.bootstrap,
                                        **client_options(), group_id=self.group, enable_auto_commit=False,
                                        auto_offset_reset="earliest", request_timeout_ms=15_000)
            try:
                await consumer.start()
            except (KafkaError, OSError) as exc:
                await consumer.stop()
                raise BrokerUnavailable(f"cannot reach Kafka at {self.bootstrap}: {exc}") from None
            self.consumer = consumer
        return self.consumer

    async def answers(self, timeout: float) -> int:
        """Poll once for comparison answers and store them; returns the messages consumed (no topic to read: 0,
        after waiting `timeout`)."""
        if not self.subscribed:
            await asyncio.sleep(timeout)
            return 0
        consumer = await self._consumer()
        try:
            batch = await consumer.getmany(timeout_ms=int(timeout * 1000), max_records=BATCH)
        except KafkaError as exc:
            raise BrokerUnavailable(f"lost Kafka at {self.bootstrap}: {exc}") from None
        results: list[dict[str, Any]] = []
        for tp, messages in batch.items():
            for message in messages:
                try:
                    results.append(self.codec.decode(message.value or b"", expect=RESULT_SCHEMA).record)
                except DecodeError as exc:
                    self.totals.answers_skipped += 1
                    ANSWERS.labels(tp.topic.split(".")[1], "skipped").inc()
                    log.warning("skipped an undecodable answer %s[%d]@%d: %s", tp.topic, tp.partition,
                                message.offset, exc)
        consumed = sum(len(m) for m in batch.values())
        if not consumed:
            return 0
        try:
            stored, duplicates = await asyncio.to_thread(store_answers, self.store, results, self.clock())
        except SchemaError as exc:  # a record the DB refuses: store the others one by one, skip it
            log.warning("an answer of this batch was refused (%s); storing them one by one", exc)
            stored = duplicates = 0
            for result in results:
                try:
                    s, d = await asyncio.to_thread(store_answers, self.store, [result], self.clock())
                except SchemaError as refused:
                    self.totals.answers_skipped += 1
                    log.warning("skipped answer %s: %s", result.get("event_id"), refused)
                    continue
                stored, duplicates = stored + s, duplicates + d
        self.totals.answers_stored += stored
        self.totals.answers_duplicate += duplicates
        for result in results:
            ANSWERS.labels(str(result.get("department")), "received").inc()
        if stored or duplicates:
            log.info("stored %d comparison answer(s), %d already stored", stored, duplicates)
        try:
            await consumer.commit()
        except KafkaError as exc:  # redelivered later: recognised by event_id
            log.warning("answer offsets not committed (%s); they will be redelivered and recognised", exc)
        return consumed

    async def close(self) -> None:
        """Stop the answers' consumer; one that does not stop within a bound (every broker down) is abandoned."""
        consumer, self.consumer = self.consumer, None
        if consumer is not None:
            try:
                await asyncio.wait_for(consumer.stop(), timeout=ANSWERS_STALL_SECONDS)
            except (TimeoutError, KafkaError, OSError) as exc:
                log.warning("abandoned the answers' consumer, which did not stop: %s", exc or "timed out")


async def _sleep(seconds: float, stop: asyncio.Event) -> None:
    try:
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    except TimeoutError:
        pass


async def run_relay(store: CaseStore, *, bootstrap: str, group: str, publisher_factory: PublisherFactory,
                    once: bool = False, interval: float = 1.0, clock: Clock | None = None,
                    codec: Codec | None = None, backoff: Backoff | None = None,
                    stop: asyncio.Event | None = None, audit: AuditWriter | None = None) -> RelayTotals:
    """Until SIGTERM/SIGINT (or `stop`), or with `once` until the outbox is published and the answers read.
    `audit` (plumbing.audit.party_of): also copy the case DB's audit_log onto the audit trail
    (services/cases/audit_copy.py)."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(signum, stop.set)
        except (NotImplementedError, RuntimeError, ValueError):  # not the main thread (tests)
            pass
    backoff = backoff or Backoff()
    for department in COMPARISON_DEPARTMENTS:  # series exist from the start
        ANSWERS.labels(department.department, "received")
    relay = Relay(store, bootstrap=bootstrap, group=group, publisher_factory=publisher_factory,
                  clock=clock or utc_now, codec=codec or default_codec(),
                  backoff=backoff)
    async def outbox_loop() -> None:
        """Publish the outbox until stopped (`once`: until nothing is pending), backing off while it fails."""
        while not stop.is_set():
            if not await relay.publish():
                if once and relay.held_for:  # not Kafka down: waiting would not help
                    relay.totals.notes.append(f"outbox messages held unpublished: topic {', '.join(relay.held_for)} "
                                              "does not exist (run `povwatch topics ensure`)")
                    return
                await _sleep(backoff.delay(relay.failures), stop)
                continue
            if once and not (await asyncio.to_thread(outbox.counts, store))[0]:
                return
            await _sleep(interval, stop)

    async def answers_loop() -> None:
        """Store the departments' answers until stopped (`once`: those there were at its start: the end offsets
        then, until the group has committed them, within ANSWERS_ONCE_SECONDS). Only existing topics are read
        (looked for again every TOPICS_CHECK_SECONDS). A consumer that does not answer within a bound (aiokafka can
        block while every broker is down) is abandoned and made again."""
        poll = POLL_SECONDS if once else interval
        ends: dict[tuple[str, int], int] | None = None  # the answers' end offsets at the start (`once`: the goal)
        looked = began = time.monotonic()
        while not stop.is_set():
            try:
                if ends is None or (not once and time.monotonic() - looked >= TOPICS_CHECK_SECONDS):
                    found = await asyncio.wait_for(relay.existing_answer_topics(), timeout=ANSWERS_STALL_SECONDS)
                    topics = tuple(sorted({topic for topic, _ in found}))
                    if ends is None and len(topics) < len(comparison_result_topics()):
                        missing = len(comparison_result_topics()) - len(topics)
                        log.info(f"{missing} comparison-result topic(s) do not exist yet; reading the "
                                 f"{len(topics)} that do" + ("" if once else
                                                             f", looking again every {TOPICS_CHECK_SECONDS:.0f} s"))
                        if once and not topics:
                            relay.totals.notes.append("no comparison-result topic on the broker yet: no answers")
                    ends, looked = (found if ends is None else ends), time.monotonic()
                    await relay.subscribe(topics)
                if once:
                    due = await asyncio.wait_for(relay.answers_due(ends), timeout=ANSWERS_STALL_SECONDS)
                    if not due:
                        return
                    if time.monotonic() - began > ANSWERS_ONCE_SECONDS:
                        relay.totals.notes.append(
                            f"answers on {len(due)} partition(s) not all read within {ANSWERS_ONCE_SECONDS:.0f} s "
                            f"(another relay of group {relay.group} may hold them): the next run reads them")
                        return
                await asyncio.wait_for(relay.answers(poll), timeout=poll + ANSWERS_STALL_SECONDS)
            except (BrokerUnavailable, DatabaseUnavailable, TimeoutError) as exc:
                relay.answer_failures += 1
                relay.totals.failed_attempts += 1
                log.warning("reading comparison answers failed (attempt %d): %s", relay.answer_failures,
                            exc or "no answer from Kafka")
                await relay.close()
                await _sleep(backoff.delay(relay.answer_failures), stop)
                continue
            if relay.answer_failures:
                log.info("reading comparison answers again after %d failed attempt(s)", relay.answer_failures)
                relay.answer_failures = 0

    async def audit_loop() -> None:
        """Copy the case DB's audit_log onto the trail until stopped (`once`: one pass), backing off on failure."""
        if audit is None:
            return
        trail: AuditTrail | None = None
        failures = 0
        while not stop.is_set():
            try:
                if trail is None:
                    made = audit.trail(bootstrap, codec=relay.codec, clock=relay.clock)
                    await made.start()
                    trail = made
                copied = await copy_audit_log(store, trail)
            except (BrokerUnavailable, DatabaseUnavailable) as exc:
                failures += 1
                log.warning("copying the audit log failed (attempt %d): %s", failures, exc)
                if trail is not None:
                    await trail.stop_quietly()
                    trail = None
                await _sleep(backoff.delay(failures), stop)
                continue
            failures = 0
            relay.totals.audit_copied += copied
            if once:
                break
            await _sleep(interval, stop)
        if trail is not None:
            await trail.stop()

    # Loops side by side: the outbox never waits on the answers' consumer, nor the other way round.
    try:
        await asyncio.gather(outbox_loop(), answers_loop(), audit_loop())
    finally:
        await relay.close()
    return relay.totals

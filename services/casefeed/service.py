"""`povwatch casefeed`: alerts.household + alerts.regional -> case DB, at least once, idempotent.

Offsets are committed only after the DB transaction that stored the batch; a redelivered alert is recognised
by its alert_id (insert-or-ignore in the case DB), so every alert is attached as evidence exactly once.
What happens to each message is decided in `services.casefeed.handling` (no Kafka there); this module is the loop:

  * a message that cannot be decoded, or an alert the case DB refuses with a DATA error (value too long, a
    constraint), is dead-lettered to `dlq.casefeed` with the reason, counted, and its offset committed: it never
    stops the feed. NUL characters in an alert's text are stored as U+FFFD (counted), see `db.without_nul`;
  * a DB outage (connection refused, server restart, SQLite locked) is retried with exponential backoff - one log
    line per attempt - while the batch is held and NO offset is committed; the consumer keeps polling with its
    partitions paused, so it stays in its group. When the DB answers again the held batch is recorded (alerts
    already stored by an in-doubt commit come back as duplicates): nothing lost, nothing doubled;
  * `povwatch_consumer_lag{group,topic,partition}` is updated after every poll (during an outage from the
    broker's end offsets, against the last committed offsets).

Beside the alert consumer, in consumer groups of their own: profiles.household -> household_profiles
(`services.casefeed.profile_feed`, group `<group>.profiles`) and cadre-visit reports -> screening tasks
(`services.casefeed.screening_feed`).
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError
from prometheus_client import Counter, Gauge

from plumbing.clock import Clock, utc_now
from plumbing.consumer_lag import LagTracker
from plumbing.kafka_io import KafkaPublisher
from plumbing.kafka_security import client_options
from plumbing.settings import Settings
from schemas.codec import Codec, default_codec
from schemas.errors import BrokerUnavailable, DatabaseUnavailable
from schemas.topics import ALERTS_HOUSEHOLD, ALERTS_REGIONAL, CASEFEED_DLQ
from services.casedb.database import open_database
from services.casedb.store import CaseStore
from services.casefeed.handling import Backoff, BatchOutcome, Incoming, handle_batch
from services.casefeed.overdue_gauge import OverdueGauge
from services.casefeed.profile_feed import ProfileFeed
from services.casefeed.screening_feed import ScreeningFeed
from services.cases.screening_store import Screening

__all__ = ["run_casefeed", "CasefeedTotals"]

log = logging.getLogger("povwatch.casefeed")

CONSUMED = Counter("povwatch_casefeed_alerts_consumed_total", "Alert messages consumed", ["topic"])
CASES_OPENED = Counter("povwatch_cases_opened_total", "Cases opened in the case DB")
EVIDENCE = Counter("povwatch_cases_evidence_written_total", "Alerts attached to cases as evidence")
DUPLICATES = Counter("povwatch_casefeed_duplicates_total", "Redelivered alerts already stored")
DEAD = Counter("povwatch_casefeed_dead_letters_total",
               "Alert messages dead-lettered to dlq.casefeed (undecodable, or refused by the case DB)")
REFUSED = Counter("povwatch_casefeed_alerts_refused_total",
                  "Alerts the case DB refused with a data error (dead-lettered)")
SANITISED = Counter("povwatch_casefeed_alerts_sanitised_total",
                    "Alerts stored with NUL characters in their text replaced by U+FFFD")
DB_RETRIES = Counter("povwatch_casefeed_db_retries_total", "Attempts that found the case DB unavailable")
ESCALATIONS = Counter("povwatch_casefeed_escalations_total",
                      "Case alerts raised to a higher severity by new evidence (an ESCALATION in the case's history)")
DB_UP = Gauge("povwatch_casefeed_db_up", "1 while the case DB answers, 0 during an outage")
UPDATED = Counter("povwatch_casefeed_alerts_updated_total",
                  "Known alerts re-emitted with something new (another department's events, a higher severity): "
                  "their evidence updated, no evidence added")

POLL_SECONDS = 1.0
MAX_RECORDS = 500


@dataclass
class CasefeedTotals:
    consumed: int = 0
    cases_opened: int = 0
    evidence: int = 0
    duplicates: int = 0
    updated: int = 0  # known alerts re-emitted with news (one fact, one alert)
    dead_letters: int = 0
    sanitised: int = 0
    db_retries: int = 0


async def _open_store(settings: Settings, idle_timeout: float | None, backoff: Backoff) -> CaseStore:
    """Open the case DB, waiting for it while it is unavailable (at most `idle_timeout` seconds, if given)."""
    attempt, waited = 0, 0.0
    while True:
        try:
            store = await asyncio.to_thread(open_database, settings.case_db)
        except DatabaseUnavailable as exc:
            attempt += 1
            if idle_timeout is not None and waited >= idle_timeout:
                raise
            delay = backoff.delay(attempt)
            DB_UP.set(0)
            log.warning("case database unavailable at start (attempt %d), retrying in %.1f s: %s", attempt, delay,
                        exc)
            await asyncio.sleep(delay)
            waited += delay
            continue
        DB_UP.set(1)
        return store


class _Feed:
    """One run of the feed: the consumer, the store, the dead-letter publisher and the totals."""

    def __init__(self, consumer: AIOKafkaConsumer, store: CaseStore, dlq: KafkaPublisher, codec: Codec,
                 clock: Clock, group: str, backoff: Backoff) -> None:
        self.consumer = consumer
        self.store = store
        self.dlq = dlq
        self.codec = codec
        self.clock = clock
        self.backoff = backoff
        self.totals = CasefeedTotals()
        self.lag = LagTracker(group)
        self.committed: dict[tuple[str, int], int] = {}  # next offset to read, as last committed

    # --- one batch ---------------------------------------------------------------------------------------
    async def process(self, batch: dict[TopicPartition, list[Any]]) -> None:
        messages = [Incoming(tp.topic, tp.partition, m.offset, m.value or b"")
                    for tp, records in batch.items() for m in records]
        for message in messages:
            CONSUMED.labels(message.topic).inc()
        self.totals.consumed += len(messages)
        outcome = await self._handle_until_stored(messages)
        await self._dead_letter(outcome)
        self._count(outcome)
        await self.dlq.flush()
        await self._commit()

    async def _handle_until_stored(self, messages: Sequence[Incoming]) -> BatchOutcome:
        """handle_batch, retried with backoff while the case DB is unavailable (nothing committed meanwhile)."""
        attempt = 0
        while True:
            try:
                outcome = await asyncio.to_thread(handle_batch, self.store, messages, self.codec, self.clock())
            except DatabaseUnavailable as exc:
                attempt += 1
                delay = self.backoff.delay(attempt)
                DB_UP.set(0)
                DB_RETRIES.inc()
                self.totals.db_retries += 1
                log.warning("case database unavailable (attempt %d), holding %d alert(s) uncommitted, retrying in "
                            "%.1f s: %s", attempt, len(messages), delay, exc)
                await self._wait_polling(delay)
                continue
            if attempt:
                log.info("case database available again after %d failed attempt(s)", attempt)
            DB_UP.set(1)
            return outcome

    async def _dead_letter(self, outcome: BatchOutcome) -> None:
        for letter in outcome.letters:
            where = letter.record["message"]
            log.warning("dead-lettered %s[%d]@%d to %s: %s", where["topic"], where["partition"], where["offset"],
                        CASEFEED_DLQ, "; ".join(letter.record["reasons"]))
            await self.dlq.send(CASEFEED_DLQ, letter.key, letter.encode(self.codec))

    def _count(self, outcome: BatchOutcome) -> None:
        DEAD.inc(len(outcome.letters))
        REFUSED.inc(outcome.refused)
        self.totals.dead_letters += len(outcome.letters)
        for result in outcome.results:
            if result.duplicate:
                DUPLICATES.inc()
                self.totals.duplicates += 1
                continue
            if result.updated:
                UPDATED.inc()
                self.totals.updated += 1
            else:
                EVIDENCE.inc()
                self.totals.evidence += 1
            if result.sanitised:
                SANITISED.inc()
                self.totals.sanitised += 1
            if result.case_opened:
                CASES_OPENED.inc()
                self.totals.cases_opened += 1
            if result.escalated_from is not None:
                ESCALATIONS.inc()

    async def _commit(self) -> None:
        try:
            await self.consumer.commit()
        except (CommitFailedError, IllegalStateError) as exc:
            # the group rebalanced while the batch was being stored: its new owner reads it again, and the
            # case DB recognises every alert of it by alert_id
            log.warning("offsets not committed (%s); the batch will be redelivered and recognised as duplicates",
                        str(exc).splitlines()[0] if str(exc) else type(exc).__name__)

    # --- staying in the group while the DB is away -------------------------------------------------------
    async def _wait_polling(self, seconds: float) -> None:
        """Wait `seconds` while polling with every partition paused, so the consumer stays in its group;
        anything a poll still returns (a partition assigned meanwhile) is put back to be read later."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        self.consumer.pause(*self.consumer.assignment())
        try:
            while (left := deadline - loop.time()) > 0:
                chunk = min(left, POLL_SECONDS)
                started = loop.time()
                returned = await self.consumer.getmany(timeout_ms=int(chunk * 1000))
                for tp, records in returned.items():
                    if records:
                        self.consumer.seek(tp, records[0].offset)
                self.consumer.pause(*self.consumer.assignment())
                await self.show_lag(fresh=True)
                rest = chunk - (loop.time() - started)
                if rest > 0:
                    await asyncio.sleep(rest)
        finally:
            self.consumer.resume(*self.consumer.paused())

    # --- consumer lag ------------------------------------------------------------------------------------
    async def show_lag(self, *, fresh: bool = False) -> None:
        """Update povwatch_consumer_lag. Between batches (nothing held) the consumer's positions are the
        committed offsets and its highwater marks are current; `fresh` (during an outage, partitions paused, a
        batch held) asks the broker for the end offsets and measures from the last committed offsets."""
        assigned = self.consumer.assignment()
        keys = {(tp.topic, tp.partition): tp for tp in assigned}
        ends: dict[tuple[str, int], int] = {}
        try:
            if fresh:
                ends = {(tp.topic, tp.partition): end
                        for tp, end in (await self.consumer.end_offsets(list(assigned))).items()}
            else:
                for key, tp in keys.items():
                    high = self.consumer.highwater(tp)
                    if high is not None:
                        ends[key] = high
                for key, tp in keys.items():
                    self.committed[key] = await self.consumer.position(tp)
        except (KafkaError, IllegalStateError):
            return  # a rebalance or a broker hiccup: the next poll updates the gauge
        self.lag.update(ends, self.committed, keys)


async def run_casefeed(settings: Settings, *, idle_timeout: float | None = None, codec: Codec | None = None,
                       clock: Clock | None = None, backoff: Backoff | None = None,
                       stop: asyncio.Event | None = None) -> CasefeedTotals:
    """Consume until `stop` is set (SIGTERM/SIGINT in `povwatch casefeed`), or until `idle_timeout` seconds pass
    without a message. A stop waits for the batch in flight, which is stored and committed first."""
    codec = codec or default_codec()
    now = clock or utc_now
    backoff = backoff or Backoff()
    for topic in (ALERTS_HOUSEHOLD, ALERTS_REGIONAL):
        CONSUMED.labels(topic)  # series exist from the start, so rate() sees the first alert
    store = await _open_store(settings, idle_timeout, backoff)
    consumer = AIOKafkaConsumer(
        ALERTS_HOUSEHOLD, ALERTS_REGIONAL, bootstrap_servers=settings.bootstrap, **client_options(),
        group_id=settings.casefeed_group,
        enable_auto_commit=False, auto_offset_reset="earliest", request_timeout_ms=15_000,
    )
    try:
        await consumer.start()
    except (KafkaError, OSError) as exc:
        await consumer.stop()
        store.close()
        raise BrokerUnavailable(f"cannot reach Kafka at {settings.bootstrap}: {exc}") from None
    screening: ScreeningFeed | None = None  # cadre-visit reports -> screening tasks, beside (screening_feed.py)
    profiles: ProfileFeed | None = None  # profiles.household -> household_profiles, beside (profile_feed.py)
    try:
        profiles = await ProfileFeed.start(settings.bootstrap, settings.casefeed_group, store, codec, backoff, now)
        screening = await ScreeningFeed.start(settings.bootstrap, settings.casefeed_group,
                                              Screening(store, clock=now, zone=settings.zone), codec, backoff)
        async with KafkaPublisher(settings.bootstrap, client_id="povwatch-casefeed") as dlq:
            feed = _Feed(consumer, store, dlq, codec, now, settings.casefeed_group, backoff)
            overdue = OverdueGauge(store, verify_days=settings.case_verify_days, zone=settings.zone, clock=now)
            await overdue.tick()  # povwatch_cases_overdue from the start, then every minute
            idle = 0.0
            while stop is None or not stop.is_set():
                batch = await consumer.getmany(timeout_ms=int(POLL_SECONDS * 1000), max_records=MAX_RECORDS)
                if batch:
                    idle = 0.0
                    await feed.process(batch)
                else:
                    idle += POLL_SECONDS
                await feed.show_lag()
                await overdue.tick()
                screening.check()
                profiles.check()
                if not batch and idle_timeout is not None and idle >= idle_timeout:
                    break
            return feed.totals
    except KafkaError as exc:
        raise BrokerUnavailable(f"lost Kafka at {settings.bootstrap}: {exc}") from None
    finally:
        if profiles is not None:
            await profiles.stop()
        if screening is not None:
            await screening.stop()
        await consumer.stop()
        store.close()

"""The case feed's second consumer: cadre-visit reports (`events.intake.cadre-visit`) close screening tasks (集中排查).

`povwatch casefeed` runs it beside the alert consumer, in its own consumer group `<POVWATCH_CASEFEED_GROUP>.screening`
(so the alerts' offsets and these never hold each other back). Each report (povwatch.events.IntakeReport, decoded
with schemas.codec.default_codec) names its household by `household_id` or by `head_person_key` (the case DB's
households.head_person_key); it closes the household's OPEN tasks of the quarter and the year its `reported_on` day
lies in (services/cases/screening.py decide_visit): closed_by "cadre-visit", closing_event_id the report's event id.

At least once, idempotent: a batch is written in one transaction, and only then are its offsets committed; a
report delivered again finds its own event id on the tasks it closed (a duplicate) and changes nothing. A case DB
outage holds the batch (nothing committed) and retries it with backoff, polling with the partitions paused so the
consumer stays in its group. A message that is not an IntakeReport of the cadre-visit channel is logged and
skipped; a report the case DB refuses with a data error is logged and skipped (counted either way): it would be
refused again on every retry.

    povwatch_screening_visits_total{outcome}   cadre-visit reports consumed, by what they did: closed, duplicate,
                                               already_closed, no_open_task (a known household without a task for
                                               that day: outside every period opened for it), unknown_household,
                                               undecodable, refused
    povwatch_screening_tasks_closed_total      screening tasks closed by cadre-visit reports
    povwatch_consumer_lag{group=<group>.screening, topic=events.intake.cadre-visit, partition}
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError
from prometheus_client import Counter

from schemas.catalog import INTAKE, INTAKE_SCHEMA
from schemas.codec import Codec
from schemas.errors import BrokerUnavailable, DatabaseUnavailable, DecodeError, SchemaError
from schemas.topics import event_topic
from services.backoff import Backoff
from services.cases.screening import VisitDecision, VisitOutcome
from services.cases.screening_store import Screening, VisitReport
from services.consumer_lag import LagTracker

__all__ = ["CADRE_VISIT_TOPIC", "screening_group", "VisitBatch", "handle_visits", "ScreeningFeed", "VISITS",
           "TASKS_CLOSED"]

log = logging.getLogger("povwatch.casefeed.screening")

CADRE_VISIT_TOPIC = event_topic(INTAKE, "cadre-visit")
VISITS = Counter("povwatch_screening_visits_total",
                 "Cadre-visit reports consumed by the case feed's screening consumer, by what they did", ["outcome"])
TASKS_CLOSED = Counter("povwatch_screening_tasks_closed_total", "Screening tasks closed by cadre-visit reports")
REFUSED = "refused"  # a report the case DB refused with a data error (an outcome label beside VisitOutcome's)
POLL_SECONDS = 1.0
MAX_RECORDS = 500


def screening_group(casefeed_group: str) -> str:
    return f"{casefeed_group}.screening"


@dataclass
class VisitBatch:
    """What one batch did: an outcome per message, in order, and the tasks closed."""

    outcomes: list[str] = field(default_factory=list)
    tasks_closed: int = 0


def _decode(codec: Codec, value: bytes) -> VisitReport:
    record = codec.decode(value, INTAKE_SCHEMA).record
    try:
        return VisitReport.of(record)
    except (KeyError, ValueError) as exc:
        raise DecodeError(f"not a cadre-visit report: {exc}") from None


def handle_visits(screening: Screening, values: Sequence[bytes], codec: Codec,
                  where: Sequence[str] = ()) -> VisitBatch:
    """Decode and record one batch (no Kafka here; blocking: it writes the case DB). DatabaseUnavailable
    propagates with nothing written; a batch the DB refuses is recorded report by report, the refused skipped."""
    batch = VisitBatch()
    reports: list[tuple[int, VisitReport]] = []
    outcomes: list[str] = [""] * len(values)
    for i, value in enumerate(values):
        try:
            reports.append((i, _decode(codec, value)))
        except DecodeError as exc:
            outcomes[i] = VisitOutcome.UNDECODABLE.value
            log.warning("skipped %s: %s", where[i] if i < len(where) else f"message {i}", exc)
    decisions: list[VisitDecision | None]
    try:
        decisions = list(screening.record_visits([r for _, r in reports]))
    except SchemaError:  # RecordRefused: find the report(s) the DB refuses, recording the others
        decisions = []
        for i, report in reports:
            try:
                decisions.extend(screening.record_visits([report]))
            except SchemaError as exc:
                decisions.append(None)
                log.warning("skipped cadre-visit report %s (%s): %s", report.event_id,
                            where[i] if i < len(where) else i, exc)
    for (i, _), decision in zip(reports, decisions):
        outcomes[i] = REFUSED if decision is None else decision.outcome.value
        if decision is not None and decision.outcome == VisitOutcome.CLOSED:
            batch.tasks_closed += len(decision.close)
    batch.outcomes = outcomes
    return batch


class ScreeningFeed:
    """The cadre-visit consumer as an asyncio task beside the alert consumer (see the module docstring)."""

    def __init__(self, consumer: AIOKafkaConsumer, screening: Screening, codec: Codec, group: str,
                 backoff: Backoff) -> None:
        self._consumer = consumer
        self._screening = screening
        self._codec = codec
        self._group = group
        self._backoff = backoff
        self._stop = asyncio.Event()
        self._lag = LagTracker(group)
        self._task: asyncio.Task[None] | None = None
        self.consumed = 0
        self.closed = 0

    @classmethod
    async def start(cls, bootstrap: str, casefeed_group: str, screening: Screening, codec: Codec,
                    backoff: Backoff) -> ScreeningFeed:
        for outcome in (*(o.value for o in VisitOutcome), REFUSED):
            VISITS.labels(outcome)  # every series from the start, so rate() sees the first report
        group = screening_group(casefeed_group)
        consumer = AIOKafkaConsumer(CADRE_VISIT_TOPIC, bootstrap_servers=bootstrap, group_id=group,
                                    enable_auto_commit=False, auto_offset_reset="earliest", request_timeout_ms=15_000)
        try:
            await consumer.start()
        except (KafkaError, OSError) as exc:
            await consumer.stop()
            raise BrokerUnavailable(f"cannot reach Kafka at {bootstrap}: {exc}") from None
        feed = cls(consumer, screening, codec, group, backoff)
        feed._task = asyncio.create_task(feed._run(), name="screening-feed")
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
            log.error("screening consumer stopped: %s", str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        finally:
            await self._consumer.stop()
            log.info("screening: %d cadre-visit report(s) consumed, %d task(s) closed", self.consumed, self.closed)

    async def _run(self) -> None:
        try:
            while not self._stop.is_set():
                batch = await self._consumer.getmany(timeout_ms=int(POLL_SECONDS * 1000), max_records=MAX_RECORDS)
                records = [(tp, m) for tp, ms in batch.items() for m in ms]
                if records and not await self._process(records):
                    return  # stopped during a DB outage: the batch is read again next time
                await self._show_lag()
        except KafkaError as exc:
            raise BrokerUnavailable(f"screening consumer lost Kafka: {exc}") from None

    async def _process(self, records: list[tuple[TopicPartition, Any]]) -> bool:
        values = [m.value or b"" for _, m in records]
        where = [f"{tp.topic}[{tp.partition}]@{m.offset}" for tp, m in records]
        attempt = 0
        while True:
            try:
                done = await asyncio.to_thread(handle_visits, self._screening, values, self._codec, where)
                break
            except DatabaseUnavailable as exc:
                attempt += 1
                delay = self._backoff.delay(attempt)
                log.warning("case database unavailable (attempt %d), holding %d cadre-visit report(s) uncommitted, "
                            "retrying in %.1f s: %s", attempt, len(values), delay, exc)
                if not await self._wait_polling(delay):
                    return False
        if attempt:
            log.info("case database available again after %d failed attempt(s)", attempt)
        for outcome in done.outcomes:
            VISITS.labels(outcome).inc()
        TASKS_CLOSED.inc(done.tasks_closed)
        self.consumed += len(values)
        self.closed += done.tasks_closed
        try:
            await self._consumer.commit()
        except (CommitFailedError, IllegalStateError) as exc:
            log.warning("screening offsets not committed (%s); the reports will be redelivered and recognised",
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

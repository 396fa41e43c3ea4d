"""`povwatch casefeed`: alerts.household + alerts.regional -> case DB, at least once, idempotent.

Offsets are committed only after the DB transaction that stored the batch; a redelivered alert is recognised
by its alert_id (insert-or-ignore in the case DB), so every alert is attached as evidence exactly once.
A message that cannot be decoded is dead-lettered to `dlq.monitor` and counted; it never stops the feed.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaError
from prometheus_client import Counter

from schemas.codec import Codec, default_codec
from schemas.errors import BrokerUnavailable, DecodeError
from schemas.topics import ALERTS_HOUSEHOLD, ALERTS_REGIONAL, MONITOR_DLQ
from services.casefeed.db import open_database
from services.kafka_io import KafkaPublisher
from services.settings import Settings

__all__ = ["run_casefeed", "CasefeedTotals"]

log = logging.getLogger("povwatch.casefeed")

CONSUMED = Counter("povwatch_casefeed_alerts_consumed_total", "Alert messages consumed", ["topic"])
CASES_OPENED = Counter("povwatch_cases_opened_total", "Cases opened in the case DB")
EVIDENCE = Counter("povwatch_cases_evidence_written_total", "Alerts attached to cases as evidence")
DUPLICATES = Counter("povwatch_casefeed_duplicates_total", "Redelivered alerts already stored")
DEAD = Counter("povwatch_casefeed_dead_letters_total", "Alert messages that could not be decoded")

_EXPECTED = {ALERTS_HOUSEHOLD: "povwatch.alerts.HouseholdAlert", ALERTS_REGIONAL: "povwatch.alerts.RegionalAlert"}


@dataclass
class CasefeedTotals:
    consumed: int = 0
    cases_opened: int = 0
    evidence: int = 0
    duplicates: int = 0
    dead_letters: int = 0


async def run_casefeed(settings: Settings, *, idle_timeout: float | None = None, codec: Codec | None = None,
                       clock: Callable[[], dt.datetime] | None = None) -> CasefeedTotals:
    """Consume until stopped, or until `idle_timeout` seconds pass without a message."""
    codec = codec or default_codec()
    now = clock or (lambda: dt.datetime.now(dt.UTC))
    store = open_database(settings.case_db)
    totals = CasefeedTotals()
    for topic in _EXPECTED:
        CONSUMED.labels(topic)  # series exist from the start, so rate() sees the first alert
    consumer = AIOKafkaConsumer(
        ALERTS_HOUSEHOLD, ALERTS_REGIONAL, bootstrap_servers=settings.bootstrap, group_id=settings.casefeed_group,
        enable_auto_commit=False, auto_offset_reset="earliest", request_timeout_ms=15_000,
    )
    try:
        await consumer.start()
    except (KafkaError, OSError) as exc:
        await consumer.stop()
        store.close()
        raise BrokerUnavailable(f"cannot reach Kafka at {settings.bootstrap}: {exc}") from None
    idle = 0.0
    try:
        async with KafkaPublisher(settings.bootstrap, client_id="povwatch-casefeed") as dlq:
            while True:
                batch = await consumer.getmany(timeout_ms=1000, max_records=500)
                if not batch:
                    idle += 1.0
                    if idle_timeout is not None and idle >= idle_timeout:
                        return totals
                    continue
                idle = 0.0
                items = []
                for tp, messages in batch.items():
                    for m in messages:
                        CONSUMED.labels(tp.topic).inc()
                        totals.consumed += 1
                        try:
                            items.append((tp.topic, codec.decode(m.value or b"", _EXPECTED[tp.topic]).record))
                        except DecodeError as exc:
                            DEAD.inc()
                            totals.dead_letters += 1
                            log.warning("dead-lettered %s[%d]@%d: %s", tp.topic, tp.partition, m.offset, exc)
                            letter = {"source": {"department": "bureau", "feed": "casefeed", "origin": tp.topic,
                                                 "row": m.offset, "connector_version": "casefeed"},
                                      "stage": "casefeed", "reasons": [str(exc)],
                                      "fields": {"partition": str(tp.partition), "offset": str(m.offset)},
                                      "rejected_at": now()}
                            await dlq.send(MONITOR_DLQ, f"{tp.topic}:{tp.partition}:{m.offset}".encode(),
                                           codec.encode("povwatch.DeadLetter", letter))
                results = await asyncio.to_thread(store.record_batch, items) if items else []
                for result in results:
                    if result.duplicate:
                        DUPLICATES.inc()
                        totals.duplicates += 1
                        continue
                    EVIDENCE.inc()
                    totals.evidence += 1
                    if result.case_opened:
                        CASES_OPENED.inc()
                        totals.cases_opened += 1
                await dlq.flush()
                await consumer.commit()
    except KafkaError as exc:
        raise BrokerUnavailable(f"lost Kafka at {settings.bootstrap}: {exc}") from None
    finally:
        await consumer.stop()
        store.close()

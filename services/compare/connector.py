"""`povwatch connector compare --config FILE`: a department answers the bureau's comparison requests (比对).

It consumes requests.<dept>.comparison (its own consumer group), looks every person key asked up in its own
sources (services.compare.lookup over services.compare.sources: files or SQL tables in the layout of the
department's feeds, read afresh for each batch of requests, validated with the feed's declaration and
pseudonymised with the same key as the feed's connector), and publishes one ComparisonResult per person to
events.<dept>.comparison-result, found or not ("nothing found" is an answer too). Offsets are committed only after
the broker acknowledged every answer of the batch: a crash re-answers the batch, and the answers' event ids are
deterministic (request + person), so the bureau stores each once.

A source that cannot be read (file missing, database down) answers nothing: the batch is retried with backoff,
one log line per attempt, uncommitted - an unreadable source must never become "nothing found". A request that
cannot be decoded, or that is addressed to another department, is logged and skipped.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import logging
import signal
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError
from prometheus_client import Counter

from connectors.catalog import get_feed
from connectors.framework import local_today
from connectors.pseudonym import Pseudonymiser
from plumbing.audit import AuditTrail, AuditWriter
from plumbing.backoff import Backoff
from plumbing.clock import Clock, utc_now
from plumbing.kafka_io import KafkaPublisher
from plumbing.kafka_security import client_options
from schemas.codec import Codec, default_codec
from schemas.errors import BrokerUnavailable, DatabaseUnavailable, DecodeError, InputFileError
from services.compare.config import CompareConfig
from services.compare.lookup import find_persons
from services.compare.records import REQUEST_SCHEMA, RESULT_SCHEMA, result_record
from services.compare.sources import open_source

__all__ = ["CompareTotals", "answer_requests", "run_compare"]

log = logging.getLogger("povwatch.compare")

REQUESTS = Counter("povwatch_compare_requests_total", "Comparison requests answered", ["department"])
ANSWERS = Counter("povwatch_compare_answers_total", "Answers published, one per person asked",
                  ["department", "found"])
SOURCE_ERRORS = Counter("povwatch_compare_source_errors_total", "Attempts whose source could not be read",
                        ["department"])
MAX_REQUESTS = 50


@dataclass
class CompareTotals:
    requests: int = 0
    answers: int = 0
    found: int = 0
    skipped: int = 0
    source_errors: int = 0


def answer_requests(config: CompareConfig, requests: Sequence[dict[str, Any]], *, pseudonymiser: Pseudonymiser,
                    now: dt.datetime, zone: dt.tzinfo) -> list[dict[str, Any]]:
    """The ComparisonResult records for `requests` (decoded ComparisonRequest records of this department), one
    per request and person, in request order. Reads every source once for all of them (blocking I/O)."""
    wanted = {key for request in requests for key in request["person_keys"]}
    found: dict[str, list[dict[str, str]]] = {}
    today = local_today(now, zone)
    for source in config.sources:
        spec = get_feed(config.department.department, source.feed)
        result = find_persons(spec, open_source(source), wanted, pseudonymiser=pseudonymiser, today=today)
        for key, records in result.records.items():
            found.setdefault(key, []).extend(records)
    return [result_record(config.department, request["request_id"], key, found.get(key, []), now)
            for request in requests for key in dict.fromkeys(request["person_keys"])]


def _decoded(codec: Codec, department: str, messages: Sequence[Any], totals: CompareTotals) -> list[dict[str, Any]]:
    requests = []
    for message in messages:
        try:
            record = codec.decode(message.value or b"", expect=REQUEST_SCHEMA).record
        except DecodeError as exc:
            totals.skipped += 1
            log.warning("skipped an undecodable request at offset %d: %s", message.offset, exc)
            continue
        if record["department"] != department:
            totals.skipped += 1
            log.warning("skipped request %s: addressed to %s, not %s", record["request_id"], record["department"],
                        department)
            continue
        requests.append(record)
    return requests


async def run_compare(config: CompareConfig, *, bootstrap: str, pseudonymiser: Pseudonymiser, zone: dt.tzinfo,
                      idle_timeout: float | None = None, clock: Clock | None = None,
                      codec: Codec | None = None, backoff: Backoff | None = None,
                      stop: asyncio.Event | None = None, audit: AuditWriter | None = None) -> CompareTotals:
    """Answer requests until SIGTERM/SIGINT (or `stop`), or until `idle_timeout` seconds without a request.
    `audit` (plumbing.audit.party_of): one `compare.answer` record per request answered on the audit trail."""
    codec = codec or default_codec()
    now = clock or utc_now
    backoff = backoff or Backoff()
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(signum, stop.set)
        except (NotImplementedError, RuntimeError, ValueError):
            pass
    entry = config.department
    totals = CompareTotals()
    consumer = AIOKafkaConsumer(entry.request_topic, bootstrap_servers=bootstrap, **client_options(),
                                group_id=config.group,
                                enable_auto_commit=False, auto_offset_reset="earliest", request_timeout_ms=15_000)
    try:
        await consumer.start()
    except (KafkaError, OSError) as exc:
        await consumer.stop()
        raise BrokerUnavailable(f"cannot reach Kafka at {bootstrap}: {exc}") from None
    log.info("%s answers comparison requests from %s (group %s)", entry.department,
             ", ".join(s.label for s in config.sources), config.group)
    idle, attempt = 0.0, 0
    trail = None if audit is None else audit.trail(bootstrap, codec=codec, clock=now)
    try:
        if trail is not None:
            await trail.start()  # its chain resumes in the background; the first record waits for it
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=1000, max_records=MAX_REQUESTS)
            if not batch:
                idle += 1.0
                if idle_timeout is not None and idle >= idle_timeout:
                    break
                continue
            idle = 0.0
            messages = [m for records in batch.values() for m in records]
            requests = _decoded(codec, entry.department, messages, totals)
            try:
                answers = await asyncio.to_thread(answer_requests, config, requests, pseudonymiser=pseudonymiser,
                                                  now=now(), zone=zone)
                async with KafkaPublisher(bootstrap, client_id=f"povwatch-compare-{entry.department}",
                                          require_topics=[entry.result_topic]) as publisher:
                    for answer in answers:
                        await publisher.send(entry.result_topic, answer["request_id"].encode("ascii"),
                                             codec.encode(RESULT_SCHEMA, answer))
                    await publisher.flush()
                if trail is not None:  # a failure here replays the batch: its answers are idempotent
                    await audit_answers(trail, entry.department, requests, answers)
            except (InputFileError, DatabaseUnavailable, BrokerUnavailable) as exc:
                attempt += 1
                totals.source_errors += 1
                SOURCE_ERRORS.labels(entry.department).inc()
                delay = backoff.delay(attempt)
                log.warning("%d request(s) not answered (attempt %d), retrying in %.1f s: %s", len(requests),
                            attempt, delay, exc)
                for tp, records in batch.items():  # read them again: nothing is committed
                    consumer.seek(TopicPartition(tp.topic, tp.partition), records[0].offset)
                try:
                    await asyncio.wait_for(stop.wait(), timeout=delay)
                except TimeoutError:
                    pass
                continue
            attempt = 0
            try:
                await consumer.commit()
            except KafkaError as exc:  # answered again later: the same event ids
                log.warning("request offsets not committed (%s); the requests will be answered again", exc)
            for request in requests:
                REQUESTS.labels(entry.department).inc()
                log.info("answered request %s: %d person(s)", request["request_id"],
                         len(set(request["person_keys"])))
            for answer in answers:
                ANSWERS.labels(entry.department, str(answer["found"]).lower()).inc()
            totals.requests += len(requests)
            totals.answers += len(answers)
            totals.found += sum(1 for a in answers if a["found"])
    except KafkaError as exc:
        raise BrokerUnavailable(f"lost Kafka at {bootstrap}: {exc}") from None
    finally:
        await consumer.stop()
        if trail is not None:
            await trail.stop_quietly()
    return totals


async def audit_answers(trail: AuditTrail, department: str, requests: Sequence[dict[str, Any]],
                        answers: Sequence[dict[str, Any]]) -> None:
    """One `compare.answer` record per request: its case, how many persons were asked and found (acknowledged
    before the request offsets are committed)."""
    for request in requests:
        mine = [a for a in answers if a["request_id"] == request["request_id"]]
        case = request.get("case_id")
        await trail.record("compare.answer", subjects=[f"case:{case}"] if case is not None else [],
                           counts={"persons": len(set(request["person_keys"])), "answers": len(mine),
                                   "found": sum(1 for a in mine if a["found"])},
                           details={"department": department, "request_id": str(request["request_id"])})
    await trail.flush()

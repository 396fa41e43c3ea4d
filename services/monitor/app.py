"""The monitor: a faust-streaming worker that joins department events with the roster and raises alerts.

Topology (DESIGN.md, "Processing guarantees"):

    registry.persons ──► persons table (key person_key)          registry.households ──► households table
    events.*.* ──► person stage: look the person up (unknown: counted, nothing raised)
                   └──► povwatch.monitor.household-events (key household_id, EnrichedEvent)
                         └──► household stage: seen event_ids, medical history, rules ──► alerts.household
                               └──► povwatch.monitor.village-disasters (key village code)
                                     └──► village stage: windowed distinct households ──► alerts.regional

Tables live in Faust changelog topics and are recovered after a restart. Event processing waits until the
registry tables have caught up with the registry topics as they were at start-up, so a fresh monitor does
not call roster people "unknown" just because it read their events first. The worker runs at_least_once;
duplicates are absorbed by the `seen` table and deterministic alert ids. Undecodable messages go to
`dlq.monitor` and never stop a stream. The agents only route, look up and emit: the logic is in
`services.monitor.stages` and `services.monitor.rules`.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Callable
from typing import Any, TypedDict

import faust

from schemas.codec import Codec, default_codec
from schemas.errors import DecodeError, PovwatchError
from schemas.topics import (
    ALERTS_HOUSEHOLD,
    ALERTS_REGIONAL,
    MONITOR_DLQ,
    REGISTRY_HOUSEHOLDS,
    REGISTRY_PERSONS,
    TopicSpec,
)
from services.kafka_io import group_offsets, topic_end_offsets
from services.monitor import metrics
from services.monitor.stages import (
    EVENT_KINDS,
    household_alert_record,
    household_stage,
    household_to_table,
    person_avro,
    person_from_table,
    person_to_table,
    regional_alert_record,
    village_stage,
)
from services.settings import Settings

__all__ = ["build_app", "internal_topics", "monitor_topics", "RegistryGate", "run_monitor", "TABLES"]

log = logging.getLogger("povwatch.monitor")



TABLES = ("persons", "households", "seen-events", "medical-history", "village-records", "village-fired")


def internal_topics(app_id: str) -> tuple[str, str]:
    """The monitor's re-keying topics, named after the app so two monitors never share them."""
    return f"{app_id}.household-events", f"{app_id}.village-disasters"


def monitor_topics(app_id: str) -> list[TopicSpec]:
    """Every topic the Faust app uses besides the project's: re-keying topics, table changelogs (compacted) and
    Faust's leader topic. They are created before the worker starts: a topic Faust creates itself can be missing
    from the broker's metadata at the first assignment, and its partitions are then never assigned."""
    return ([TopicSpec(name) for name in internal_topics(app_id)]
            + [TopicSpec(f"{app_id}-{table}-changelog", compacted=True) for table in TABLES]
            + [TopicSpec(f"{app_id}-__assignor-__leader", partitions=1)])


class _RawTopic(TypedDict):
    """`app.topic` keywords for topics of plain bytes: our codec, not Faust's, decodes and encodes the values."""

    key_type: type[bytes]
    value_type: type[bytes]
    key_serializer: str
    value_serializer: str


_RAW = _RawTopic(key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")


class RegistryGate:
    """Open once every assigned registry partition has been read up to its end offset at start-up."""

    def __init__(self, app: faust.App, bootstrap: str, group_id: str) -> None:
        self._app = app
        self._bootstrap = bootstrap
        self._group = group_id
        self._targets: dict[tuple[str, int], int] | None = None
        self._progress: dict[tuple[str, int], int] = {}
        self._open = False

    async def load_targets(self) -> None:
        ends = await topic_end_offsets(self._bootstrap, [REGISTRY_PERSONS, REGISTRY_HOUSEHOLDS])
        committed = await group_offsets(self._bootstrap, self._group)
        for tp, offset in committed.items():
            if tp in ends:
                self._progress.setdefault(tp, offset)
        self._targets = ends

    def note(self, topic: str, partition: int, next_offset: int) -> None:
        self._progress[(topic, partition)] = next_offset

    def _caught_up(self) -> bool:
        if self._targets is None:
            return False
        assigned = {(tp.topic, tp.partition) for tp in self._app.consumer.assignment()}
        return all(self._progress.get(tp, 0) >= end for tp, end in self._targets.items() if tp in assigned)

    async def wait(self) -> None:
        waited = 0
        while not self._open:
            waited += 1
            if waited % 100 == 0:
                targets = self._targets or {}
                done = sum(min(self._progress.get(tp, 0), end) for tp, end in targets.items())
                log.info("waiting for the registry to catch up: %d of %d records read", done,
                         sum(targets.values()))
            if self._app.should_stop:  # shutting down before the registry caught up: leave the agent
                raise asyncio.CancelledError()
            if self._caught_up():
                self._open = True
                metrics.REGISTRY_READY.set(1)
                log.info("registry caught up; processing events")
                return
            await asyncio.sleep(0.1)


def build_app(settings: Settings, *, codec: Codec | None = None,
              clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC)) -> faust.App:
    codec = codec or default_codec()
    cfg = settings.rules
    app = faust.App(
        settings.monitor_app_id,
        broker=f"kafka://{settings.bootstrap}",
        store="memory://",
        topic_partitions=settings.partitions,
        topic_replication_factor=1,
        processing_guarantee="at_least_once",
        web_enabled=False,
        datadir=str(settings.monitor_data),
        consumer_auto_offset_reset="earliest",
        stream_wait_empty=False,  # acks are manual: on shutdown, unprocessed events stay uncommitted
        # a crashed worker's partitions are handed over after 10 s instead of Kafka's 60 s default
        broker_session_timeout=10.0,
        broker_heartbeat_interval=3.0,
    )
    gate = RegistryGate(app, settings.bootstrap, settings.monitor_app_id)

    from services.ingest import CONNECTORS_EVENT_TOPICS  # the declared event topics

    metrics.initialise(list(CONNECTORS_EVENT_TOPICS), [REGISTRY_PERSONS, REGISTRY_HOUSEHOLDS])
    persons_topic = app.topic(REGISTRY_PERSONS, **_RAW)
    households_topic = app.topic(REGISTRY_HOUSEHOLDS, **_RAW)
    events_topic = app.topic(*CONNECTORS_EVENT_TOPICS, **_RAW)
    household_name, village_name = internal_topics(settings.monitor_app_id)
    household_events = app.topic(household_name, internal=True, partitions=settings.partitions, **_RAW)
    village_events = app.topic(village_name, internal=True, partitions=settings.partitions, **_RAW)
    alerts_household = app.topic(ALERTS_HOUSEHOLD, **_RAW)
    alerts_regional = app.topic(ALERTS_REGIONAL, **_RAW)
    dead_letters = app.topic(MONITOR_DLQ, **_RAW)

    persons, households, seen, medical, village_records, village_fired = (
        app.Table(name, default=None, partitions=settings.partitions) for name in TABLES)

    async def consume(stream: Any, handle: Callable[[Any], Any], *, stage: str, gated: bool) -> None:
        """Run `handle` on every event, then ack it. Acks are manual (Faust would ack an event whose handler
        was cancelled): an event is committed only once handled. A failing event is parked, never fatal."""
        manual = stream.noack()
        async for event in manual.events():
            if gated:
                await gate.wait()
            try:
                await handle(event)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the boundary that keeps one bad message from stopping the stream
                log.exception("failed on %s[%s]@%s", event.message.topic, event.message.partition,
                              event.message.offset)
                await park(event.message, f"{type(exc).__name__}: {exc}")
            await manual.ack(event)
            metrics.PROCESSED.labels(stage).inc()

    async def park(message: Any, reason: str) -> None:
        metrics.DEAD_LETTERS.labels(message.topic).inc()
        log.warning("dead-lettered %s[%s]@%s: %s", message.topic, message.partition, message.offset, reason)
        letter = {
            "source": {"department": "monitor", "feed": message.topic, "origin": message.topic,
                       "row": message.offset, "connector_version": "monitor"},
            "stage": "monitor", "reasons": [reason],
            "fields": {"partition": str(message.partition), "offset": str(message.offset)},
            "rejected_at": clock(),
        }
        await dead_letters.send(key=f"{message.topic}:{message.partition}:{message.offset}".encode(),
                                value=codec.encode("povwatch.DeadLetter", letter))

    @app.task  # type: ignore[untyped-decorator]  # faust's App.task is declared @no_type_check
    async def load_registry_targets() -> None:
        await gate.load_targets()

    def registry_handler(table: Any, schema: str, to_table: Callable[[dict[str, Any]], dict[str, Any]],
                         label: str) -> Callable[[Any], Any]:
        """Keep `table` equal to a compacted registry topic (a tombstone removes the key)."""
        async def handle(event: Any) -> None:
            message = event.message
            metrics.EVENTS_CONSUMED.labels(message.topic).inc()
            key = (event.key or b"").decode("utf-8", "replace")
            if not event.value:
                table.pop(key, None)
            else:
                try:
                    table[key] = to_table(codec.decode(event.value, schema).record)
                except DecodeError as exc:
                    await park(message, str(exc))
            metrics.REGISTRY_SIZE.labels(label).set(len(table))
            gate.note(message.topic, message.partition, message.offset + 1)
        return handle

    on_person = registry_handler(persons, "povwatch.registry.Person", person_to_table, "persons")
    on_household = registry_handler(households, "povwatch.registry.Household", household_to_table, "households")

    async def on_event(event: Any) -> None:
        """Person stage: look the person up; re-key the event by household."""
        message = event.message
        metrics.EVENTS_CONSUMED.labels(message.topic).inc()
        try:
            decoded = codec.decode(event.value or b"")
            if decoded.name not in EVENT_KINDS:
                raise DecodeError(f"{decoded.name} is not an event")
        except DecodeError as exc:
            await park(message, str(exc))
            return
        row = persons.get(decoded.record["person_key"])
        if row is None:
            metrics.EVENTS_UNMATCHED.labels(message.topic).inc()
            return
        enriched = {"topic": message.topic, "event": event.value,
                    "person": person_avro(row, decoded.record["source"], decoded.record["ingested_at"])}
        await household_events.send(key=row["household_id"].encode("utf-8"),
                                    value=codec.encode("povwatch.monitor.EnrichedEvent", enriched))
        metrics.FORWARDED.labels("person").inc()

    async def on_household_event(event: Any) -> None:
        """Household stage: dedupe, rules with household context, alert, history, village record."""
        try:
            enriched = codec.decode(event.value or b"", "povwatch.monitor.EnrichedEvent").record
            inner = codec.decode(enriched["event"])
        except DecodeError as exc:
            await park(event.message, str(exc))
            return
        record = inner.record
        if seen.get(record["event_id"]) is not None:
            metrics.EVENTS_DUPLICATE.inc()
            return
        person = enriched["person"]
        household = households.get(person["household_id"])
        if household is None:
            metrics.EVENTS_UNMATCHED.labels(enriched["topic"]).inc()
            return
        hh_id = household["household_id"]
        outcome = household_stage(inner.name, record, person_from_table(person_to_table(person)), household,
                                  medical.get(hh_id), cfg)
        if outcome.village_record is not None:
            village = outcome.village_record["village_code"]
            await village_events.send(key=village.encode("utf-8"),
                                      value=codec.encode("povwatch.monitor.VillageDisaster", outcome.village_record))
            metrics.FORWARDED.labels("household").inc()
        for draft in outcome.drafts:
            value = codec.encode("povwatch.alerts.HouseholdAlert", household_alert_record(draft, clock()))
            await (await alerts_household.send(key=hh_id.encode("utf-8"), value=value))  # wait for the ack
            metrics.ALERTS.labels(draft.rule.value, draft.severity.value).inc()
            log.info("alert %s %s %s household %s", draft.alert_id, draft.rule.value, draft.severity.value, hh_id)
        if outcome.medical_history is not None:
            medical[hh_id] = outcome.medical_history
        seen[record["event_id"]] = ",".join(d.alert_id for d in outcome.drafts)
        metrics.LATENCY.observe(max(0.0, (clock() - record["ingested_at"]).total_seconds()))

    async def on_village_disaster(event: Any) -> None:
        """Village stage: distinct households with disasters in one window -> one regional alert."""
        try:
            rec = codec.decode(event.value or b"", "povwatch.monitor.VillageDisaster").record
        except DecodeError as exc:
            await park(event.message, str(exc))
            return
        village = rec["village_code"]
        records = list(village_records.get(village) or [])
        if any(r[1] == rec["event_id"] for r in records):
            metrics.EVENTS_DUPLICATE.inc()
            return
        records.append([rec["household_id"], rec["event_id"], rec["disaster_date"].isoformat()])
        fired = list(village_fired.get(village) or [])
        draft = village_stage(village, records, fired, cfg)
        if draft is not None:
            value = codec.encode("povwatch.alerts.RegionalAlert", regional_alert_record(draft, clock()))
            await (await alerts_regional.send(key=village.encode("utf-8"), value=value))
            metrics.ALERTS.labels("REGIONAL_DISASTER", draft.severity.value).inc()
            log.info("regional alert %s village %s (%d households)", draft.alert_id, village,
                     len(draft.household_ids))
            fired.append([draft.window_start.isoformat(), draft.window_end.isoformat()])
            village_fired[village] = fired
        village_records[village] = records

    @app.agent(persons_topic)
    async def registry_persons(stream: Any) -> None:
        await consume(stream, on_person, stage="registry", gated=False)

    @app.agent(households_topic)
    async def registry_households(stream: Any) -> None:
        await consume(stream, on_household, stage="registry", gated=False)

    @app.agent(events_topic)
    async def person_stage(stream: Any) -> None:
        await consume(stream, on_event, stage="person", gated=True)

    @app.agent(household_events)
    async def household_agent(stream: Any) -> None:
        await consume(stream, on_household_event, stage="household", gated=True)

    @app.agent(village_events)
    async def village_agent(stream: Any) -> None:
        await consume(stream, on_village_disaster, stage="village", gated=False)

    return app


def run_monitor(settings: Settings) -> None:
    """`povwatch monitor`: ensure topics, serve /metrics, run the worker until stopped (SIGINT/SIGTERM)."""
    import asyncio as _asyncio

    from prometheus_client import start_http_server

    from services.kafka_io import ensure_topics, project_topics

    topics = project_topics() + monitor_topics(settings.monitor_app_id)

    _asyncio.run(ensure_topics(settings.bootstrap, settings.partitions, topics))
    try:
        start_http_server(settings.monitor_metrics_port)
    except OSError as exc:
        raise PovwatchError(f"cannot serve /metrics on port {settings.monitor_metrics_port}: {exc}") from None
    app = build_app(settings)
    worker = faust.Worker(app, loglevel="info", quiet=True)
    worker.execute_from_commandline()

"""The monitor: wires topics, tables and stages; the logic is in `handlers` (stages), `rules` and `engine`.

Topology (docs/architecture.md, "Processing guarantees"), one consumer group per stage:

    person stage (group <app id>)
        registry.persons ─► persons table; events.*.* (every feed and intake channel) ─► join by person_key
        ─► <app id>.household-events (key household_id, HouseholdEvent)
        ─► <app id>.village-disasters (key village code, VillageEvent: village-level events naming no one)
    household stage (group <app id>.household)
        registry.households + registry.household-status ─► households table (the later of the roster's record
        and the case's decided status, handlers.HouseholdStage); joined events ─► rules (and timers)
        ─► alerts.household
        ─► profiles.household (key household_id, once per batch, households that had an alert)
        ─► <app id>.village-disasters (key region code, VillageDisaster: what the regional rules count)
    village stage (group <app id>.village)
        regional records ─► windowed distinct households ─► alerts.regional; village-level events ─► their
        rules (and timers), facts

Each stage keeps its partition-local state in a compacted changelog (`<app id>.<stage>-state`); events that
wait longer than the grace period for their person or household are listed in `<app id>.unmatched`.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import logging
import signal
from collections.abc import Awaitable, Callable, MutableMapping
from decimal import Decimal
from typing import Any

from aiokafka import AIOKafkaProducer

from plumbing.audit import AuditTrail, party_of
from plumbing.clock import Clock, utc_now
from plumbing.kafka_security import client_options
from plumbing.settings import Settings
from schemas.catalog import monitored_feeds
from schemas.codec import Codec, default_codec
from schemas.errors import ConfigError, PovwatchError
from schemas.topics import (
    ALERTS_HOUSEHOLD,
    ALERTS_REGIONAL,
    REGISTRY_HOUSEHOLD_STATUS,
    REGISTRY_HOUSEHOLDS,
    REGISTRY_PERSONS,
    TopicSpec,
)
from services.monitor import metrics
from services.monitor.engine import StageRunner, StageSpec
from services.monitor.handlers import Emit, HouseholdStage, PersonRow, PersonStage, Routes, VillageStage
from services.monitor.rules import HouseholdContext
from services.monitor.state import (
    HOUSEHOLD_STATE,
    PERSON_STATE,
    VILLAGE_STATE,
    HouseholdState,
    PersonState,
    VillageState,
)
from services.monitor.store import TableCodec, open_store
from services.monitor.topics import MonitorTopics

__all__ = ["MonitorTopics", "monitor_topics", "monitored_topics", "stage_specs", "run_monitor", "serve",
           "check_partitions"]

log = logging.getLogger("povwatch.monitor")


def monitor_topics(app_id: str) -> list[TopicSpec]:
    """The monitor's own topics: re-keying topics, state changelogs and the unmatched list (compacted)."""
    t = MonitorTopics(app_id)
    return ([TopicSpec(t.household_events), TopicSpec(t.village_disasters)]
            + [TopicSpec(name, compacted=True) for name in (t.person_state, t.household_state, t.village_state)]
            + [TopicSpec(t.unmatched, compacted=True, partitions=1)])


def monitored_topics() -> tuple[str, ...]:
    """The event topics the person stage reads: every department feed and intake channel of the catalogue."""
    return tuple(feed.topic for feed in monitored_feeds())


def _fields(value: bytes) -> list[str]:
    return value.decode("utf-8").split("\x1f")


PERSON_ROWS: TableCodec[PersonRow] = TableCodec(  # the persons table on disk: four fields, unit separated
    lambda r: "\x1f".join((r.household_id, r.relation, r.birth_date.isoformat(), r.village_code)).encode("utf-8"),
    lambda b: (lambda f: PersonRow(f[0], f[1], dt.date.fromisoformat(f[2]), f[3]))(_fields(b)),
)

HOUSEHOLD_ROWS: TableCodec[HouseholdContext] = TableCodec(  # the households table on disk
    lambda h: "\x1f".join((h.household_id, h.village_code, h.monitoring_status, str(h.per_capita_income),
                            str(h.household_size))).encode("utf-8"),
    lambda b: (lambda f: HouseholdContext(f[0], f[1], f[2], Decimal(f[3]), int(f[4])))(_fields(b)),
)


def stage_specs(settings: Settings, codec: Codec) -> list[StageSpec[Any]]:
    t = MonitorTopics(settings.monitor_app_id)
    routes = Routes(t.household_events, t.village_disasters, ALERTS_HOUSEHOLD, ALERTS_REGIONAL, t.unmatched)
    grace = dt.timedelta(days=settings.monitor_pending_grace_days)
    rules = settings.rules

    def person(table: MutableMapping[str, Any], state: MutableMapping[str, PersonState]) -> PersonStage:
        return PersonStage(table, state, codec=codec, routes=routes, grace=grace)

    def household(table: MutableMapping[str, Any], state: MutableMapping[str, HouseholdState]) -> HouseholdStage:
        return HouseholdStage(table, state, codec=codec, routes=routes, rules=rules, grace=grace, zone=settings.zone)

    def village(table: MutableMapping[str, Any], state: MutableMapping[str, VillageState]) -> VillageStage:
        return VillageStage(state, codec=codec, routes=routes, rules=rules, zone=settings.zone)

    return [
        StageSpec("person", t.person_group, (REGISTRY_PERSONS,), monitored_topics(), t.person_state,
                  PERSON_STATE, person, "persons", PERSON_ROWS),
        StageSpec("household", t.household_group, (REGISTRY_HOUSEHOLDS, REGISTRY_HOUSEHOLD_STATUS),
                  (t.household_events,), t.household_state, HOUSEHOLD_STATE, household, "households",
                  HOUSEHOLD_ROWS),
        StageSpec("village", t.village_group, (), (t.village_disasters,), t.village_state, VILLAGE_STATE, village),
    ]


async def check_partitions(bootstrap: str, specs: list[StageSpec[Any]]) -> None:
    """Co-partitioning: every topic a stage reads or writes state to has the same partition count."""
    from plumbing.kafka_io import topic_offsets

    found = await topic_offsets(bootstrap, {t for spec in specs for t in (*spec.tables, *spec.inputs, spec.changelog)})
    for spec in specs:
        names = [*spec.tables, *spec.inputs, spec.changelog]
        counts = {name: len(found.get(name, [])) for name in names}
        if len(set(counts.values())) != 1:
            listed = ", ".join(f"{name} {count}" for name, count in counts.items())
            raise ConfigError(f"the monitor's {spec.name} stage needs co-partitioned topics (same partition count),"
                              f" found: {listed}; recreate them with POVWATCH_PARTITIONS partitions")


async def serve(settings: Settings, stopping: asyncio.Event, *, codec: Codec | None = None,
                clock: Clock = utc_now,
                producer_factory: Callable[[], Awaitable[AIOKafkaProducer]] | None = None,
                runners_out: list[StageRunner[Any]] | None = None) -> None:
    """Run the three stages until `stopping` is set (`producer_factory` and `runners_out`: for tests and benches,
    which inject faults into the producers and watch the runners)."""
    from plumbing.kafka_io import ensure_topics, project_topics
    from services.monitor.feed_watch import watch_feeds

    codec = codec or default_codec()
    await ensure_topics(settings.bootstrap, settings.partitions,
                        project_topics() + monitor_topics(settings.monitor_app_id))
    specs = stage_specs(settings, codec)
    await check_partitions(settings.bootstrap, specs)
    metrics.initialise(list(monitored_topics()), [REGISTRY_PERSONS, REGISTRY_HOUSEHOLDS, REGISTRY_HOUSEHOLD_STATUS])

    async def producer() -> AIOKafkaProducer:
        made = AIOKafkaProducer(bootstrap_servers=settings.bootstrap, **client_options(),
                                client_id=settings.monitor_app_id,
                                acks="all", enable_idempotence=True, linger_ms=settings.monitor_linger_ms,
                                request_timeout_ms=15_000, max_batch_size=256 * 1024)
        try:
            await made.start()
        except BaseException:
            await made.stop()
            raise
        return made

    # the audit chain resumes in the background (a long trail takes seconds to read back): the stages start at
    # once, the first alert batch's record waits for the resume, and a resume that fails stops the monitor
    trail = party_of(settings, "monitor").trail(settings.bootstrap, codec=codec, clock=clock)
    runners = [StageRunner(spec, bootstrap=settings.bootstrap, producer_factory=producer_factory or producer,
                           codec=codec, clock=clock, stopping=stopping, max_records=settings.monitor_max_records,
                           sweep_seconds=settings.monitor_sweep_seconds,
                           store=open_store(settings.monitor_store, settings.monitor_store_dir, spec.group),
                           on_sent=alerts_audit(trail))
               for spec in specs]
    if runners_out is not None:
        runners_out.extend(runners)

    async def readiness() -> None:
        registry_stages = [r for r in runners if r.spec.tables]
        announced = False
        while not stopping.is_set():
            ready = all(r.ready() for r in registry_stages)
            metrics.REGISTRY_READY.set(1 if ready else 0)
            if ready and not announced:
                log.info("registry caught up; processing events")
            announced = ready
            await asyncio.sleep(0.2)

    await trail.start()  # claims its instance (refused in one line when taken), returns at once
    tasks = [asyncio.create_task(r.run(), name=f"stage-{r.spec.name}") for r in runners]
    tasks.append(asyncio.create_task(readiness(), name="readiness"))
    resume = asyncio.create_task(trail.resumed(), name="audit-resume")
    tasks.append(resume)
    tasks.append(asyncio.create_task(watch_feeds(settings, stopping, clock, settings.feeds_check_seconds),
                                     name="feed-calendar"))
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for task in done:
            if not task.cancelled() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
    finally:
        stopping.set()  # every task ends on its own: the stages after their batch in flight
        resume.cancel()  # the wait only (shielded): `trail.stop` abandons a resume still running
        await asyncio.gather(*tasks, return_exceptions=True)
        await trail.stop()


AUDIT_SUBJECTS = 2000  # subjects per audit record: a larger batch of alerts is several records


def alerts_audit(trail: AuditTrail) -> Callable[[list[Emit]], Awaitable[None]]:
    """The monitor's audit hook: one `alert.raised` record per batch that raised alerts (not one per alert, which
    would cost a message each), naming the households and regions, acknowledged before the batch commits."""
    kinds = {ALERTS_HOUSEHOLD: "household", ALERTS_REGIONAL: "region"}

    async def on_sent(out: list[Emit]) -> None:
        subjects = [f"{kinds[e.topic]}:{e.key.decode()}" for e in out if e.topic in kinds]
        if not subjects:
            return
        for at in range(0, len(subjects), AUDIT_SUBJECTS):
            chunk = subjects[at:at + AUDIT_SUBJECTS]
            await trail.record("alert.raised", subjects=chunk, counts={
                "household": sum(1 for s in chunk if s.startswith("household:")),
                "regional": sum(1 for s in chunk if s.startswith("region:"))})
        await trail.flush()

    return on_sent


def run_monitor(settings: Settings) -> None:
    """`povwatch monitor`: serve /metrics, run the stages until SIGINT/SIGTERM."""
    from prometheus_client import start_http_server

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    try:
        start_http_server(settings.monitor_metrics_port)
    except OSError as exc:
        raise PovwatchError(f"cannot serve /metrics on port {settings.monitor_metrics_port}: {exc}") from None

    async def main() -> None:
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stopping.set)
        await serve(settings, stopping)

    asyncio.run(main())

"""The whole risk model on a real broker, counted exactly.

A generated population (services/demo/population.py, with the designed rows of services/demo/scenarios.py) goes
through the real connectors onto a broker of this module's own, the intake reports through the intake API's own
mapping onto the intake topics, and a real `povwatch monitor` process judges them. Every alert on alerts.household
and alerts.regional is read with the .avsc files and fastavro alone, and compared, per rule family and alert by
alert (id, subject, highest severity, every event behind it), with what the pipeline simulated in one process
(services/demo/oracle.py) must raise. A second part runs the monitor in this process with a clock of the test's
own: a JOB_LOSS timer set by one worker fires, exactly once, on another worker that took the partition over after
the first stopped, when the clock reaches its day.
"""
from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import io
import os
import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fastavro
import pytest

from connectors.framework import DEFAULT_ZONE
from connectors.pseudonym import Pseudonymiser
from plumbing import kafka_local
from plumbing.kafka_io import KafkaPublisher, ensure_topics, read_topic
from plumbing.processes import ChildProcess, wait_until
from plumbing.settings import Settings
from schemas.alerts import REGIONAL_RULES, Rule
from schemas.catalog import INTAKE_CHANNELS
from schemas.codec import AVRO_DIR, default_codec
from schemas.topics import ALERTS_HOUSEHOLD, ALERTS_REGIONAL
from services.demo.oracle import Simulation, designed_problems, simulate
from services.demo.population import DemoFiles, generate
from services.demo.run import monitor_settled
from services.ingest import load_roster, run_connector
from services.intake.mapping import Invalid, to_event, validate
from services.monitor.app import serve

pytestmark = pytest.mark.integration

PORT = int(os.environ.get("POVWATCH_TEST_BROKER_PORT", "19092")) + 800  # exact over whole topics: a broker of its own
FAMILIES = {
    "life events": (Rule.DEATH_IN_HOUSEHOLD, Rule.ACCIDENT_INJURY, Rule.SERIOUS_ILLNESS, Rule.CHRONIC_DISEASE,
                    Rule.SEVERE_DISABILITY, Rule.MEDICAL_EXPENSE),
    "education": (Rule.SCHOOL_DROPOUT,),
    "income and work": (Rule.INCOME_BELOW_LINE, Rule.INCOME_DROP, Rule.JOB_LOSS),
    "assets and loans": (Rule.ASSET_PURCHASE, Rule.LOAN_OVERDUE),
    "housing, water, disasters": (Rule.HOUSING_UNSAFE, Rule.WATER_UNSAFE, Rule.DISASTER_LOSS),
    "safety net": (Rule.SAFETY_NET, Rule.INSURANCE_GAP),
    "reports": (Rule.REPORTED_RISK,),
    "regional": tuple(sorted(REGIONAL_RULES)),
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _avsc_readers() -> dict[bytes, Any]:
    """Every record schema of schemas/avro by its single-object fingerprint, from the .avsc files alone."""
    readers = {}
    for path in AVRO_DIR.glob("povwatch.*.avsc"):
        schema = fastavro.schema.load_schema(str(path))
        canonical = fastavro.schema.to_parsing_canonical_form(schema)
        readers[bytes.fromhex(fastavro.schema.fingerprint(canonical, "CRC-64-AVRO"))] = schema
    return readers


READERS = _avsc_readers()


def decode(value: bytes) -> dict[str, Any]:
    """A message as a consumer outside this code base reads it: the .avsc files and fastavro, nothing else."""
    assert value[:2] == b"\xc3\x01", "not Avro single-object encoding"
    record = fastavro.schemaless_reader(io.BytesIO(value[10:]), READERS[value[2:10]])
    assert isinstance(record, dict)
    return record


@dataclass
class Raised:
    alert_id: str
    subject: str
    rule: str
    severity: str
    event_ids: set[str]
    households: set[str]
    emissions: int


@dataclass
class World:
    settings: Settings
    files: DemoFiles
    simulation: Simulation
    raised: dict[str, Raised]
    records: list[dict[str, Any]]


async def _intake(settings: Settings, files: DemoFiles, now: dt.datetime) -> int:
    """The intake requests the API would accept, published as the API publishes them."""
    topics = {c.feed: c.topic for c in INTAKE_CHANNELS}
    codec, seen = default_codec(), set()
    async with KafkaPublisher(settings.bootstrap, client_id="risk-model-intake") as publisher:
        for request in files.intake:
            report = validate(request.channel, request.body, now.astimezone(DEFAULT_ZONE).date())
            if isinstance(report, Invalid):
                continue
            event = to_event(report, Pseudonymiser(settings.checked_key()), now)
            if event.event_id in seen:
                continue
            seen.add(event.event_id)
            await publisher.send(topics[request.channel], event.key, codec.encode(event.schema, event.record))
        await publisher.flush()
    return len(seen)


async def _publish(settings: Settings, files: DemoFiles, now: dt.datetime) -> int:
    await load_roster(settings, files.roster, clock=lambda: now)
    published = 0
    for department, feed, path in files.feeds:
        summary = await run_connector(settings, department, feed, path, clock=lambda: now)
        assert summary.balanced and summary.rejected == files.bad_rows[feed], summary
        published += summary.published
    return published + await _intake(settings, files, now)


async def _alerts(bootstrap: str) -> list[dict[str, Any]]:
    return [decode(rec.value) async for rec in read_topic(bootstrap, [ALERTS_HOUSEHOLD, ALERTS_REGIONAL],
                                                          idle_timeout=2)]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    work = tmp_path_factory.mktemp("risk-model")
    settings = Settings(bootstrap=f"127.0.0.1:{PORT}", kafka_data=work / "kafka",
                        monitor_app_id=f"risk-{uuid.uuid4().hex[:8]}", monitor_metrics_port=_free_port())
    kafka_local.up(settings)
    monitor: ChildProcess | None = None
    try:
        asyncio.run(ensure_topics(settings.bootstrap, settings.partitions))
        now = dt.datetime.now(dt.UTC)
        files = generate(work / "files", households=400, seed=11, today=now.astimezone(DEFAULT_ZONE).date())
        simulation = simulate(files.roster, files.feeds, files.intake, key=settings.checked_key(),
                              rules=settings.rules, zone=DEFAULT_ZONE, now=now)
        assert designed_problems(files.designed, simulation, key=settings.checked_key(), now=now) == []
        published = asyncio.run(_publish(settings, files, now))
        assert published == simulation.events
        env = {"POVWATCH_BOOTSTRAP": settings.bootstrap, "POVWATCH_MONITOR_APP_ID": settings.monitor_app_id,
               "POVWATCH_MONITOR_METRICS_PORT": str(settings.monitor_metrics_port)}
        monitor = ChildProcess(["monitor"], env=env, log_path=work / "monitor.log")  # started on the backlog
        wait_until(settings.monitor_metrics_port, monitor_settled(published), timeout=300, child=monitor,
                   what=f"the monitor to judge {published} events")
        records = asyncio.run(_alerts(settings.bootstrap))
        raised: dict[str, Raised] = {}
        order = {"LOW": 0, "MEDIUM": 1, "HIGH": 2}
        for a in records:
            subject = a["region_code"] if "region_code" in a else a["household_id"]
            held = raised.setdefault(a["alert_id"], Raised(a["alert_id"], subject, a["rule"], a["severity"], set(),
                                                           set(), 0))
            held.emissions += 1
            held.event_ids |= set(a["event_ids"])
            held.households |= set(a.get("household_ids") or ())
            if order[a["severity"]] > order[held.severity]:
                held.severity = a["severity"]
        yield World(settings, files, simulation, raised, records)
    finally:
        if monitor is not None:
            monitor.stop()
        kafka_local.down(settings)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_each_rule_family_raises_exactly_the_expected_alerts(world: World, family: str) -> None:
    """Alert by alert: id, subject, highest severity, and every event behind it (for a regional alert, every
    household behind it: which of a household's events were in an emission depends on arrival order)."""
    def evidence(a: Any) -> set[str]:
        return a.households if Rule(a.rule) in REGIONAL_RULES else a.event_ids

    for rule in FAMILIES[family]:
        want = {a.alert_id: (a.subject, a.severity, evidence(a)) for a in world.simulation.alerts.values()
                if a.rule == rule}
        got = {a.alert_id: (a.subject, a.severity, evidence(a)) for a in world.raised.values() if a.rule == rule}
        assert want, f"{rule}: the generated files reach every rule"
        assert got == want, rule


def test_every_rule_is_covered_by_a_family() -> None:
    assert {r for rules in FAMILIES.values() for r in rules} == set(Rule)


def test_one_fact_one_alert_across_departments(world: World) -> None:
    """A fact several departments report is one alert id; a re-emission only grows its evidence. Each alert
    names the topic of every event behind it."""
    deaths = [a for a in world.raised.values() if a.rule == Rule.DEATH_IN_HOUSEHOLD]
    assert deaths
    for record in world.records:
        if "household_id" in record:
            assert len(record["event_topics"]) == len(record["event_ids"])
            assert all(t.startswith("events.") for t in record["event_topics"]), record
    emitted: dict[str, list[set[str]]] = {}
    for record in world.records:
        emitted.setdefault(record["alert_id"], []).append(set(record["event_ids"]))
    for alert_id, sets in emitted.items():
        union = set().union(*sets)
        assert union == world.raised[alert_id].event_ids
        assert max(sets, key=len) == union or len(sets) > 1, alert_id


def test_regional_alerts_name_their_households_and_regions(world: World) -> None:
    regional = [r for r in world.records if "region_code" in r]
    assert {r["rule"] for r in regional} == {str(rule) for rule in REGIONAL_RULES}
    for r in regional:
        width = 9 if r["rule"] == Rule.REGIONAL_RETURNS else 12
        assert len(r["region_code"]) == width and r["region_code"].isdigit(), r
        if r["rule"] in (Rule.REGIONAL_DISASTER, Rule.REGIONAL_RETURNS, Rule.REGIONAL_ILLNESS,
                         Rule.REGIONAL_RISK_CLUSTER) and r["household_ids"]:
            assert len(set(r["household_ids"])) == len(r["household_ids"])  # a household counts once


# --- a timer across workers -------------------------------------------------------------------------------------


class Clock:
    def __init__(self, now: dt.datetime) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now


def _by_rule(records: list[dict[str, Any]], rule: Rule) -> dict[str, list[str]]:
    """alert id -> the severities of its emissions, in order."""
    found: dict[str, list[str]] = {}
    for rec in records:
        if rec.get("rule") == rule:
            found.setdefault(rec["alert_id"], []).append(rec["severity"])
    return found


def test_timers_move_with_their_partition_and_fire_once_when_their_day_comes(world: World, tmp_path: Path) -> None:
    """Worker 1 (a `povwatch monitor` process, today's clock) takes in the backlog and sets the timers: JOB_LOSS
    for every end whose 60 days are not over, WATER_UNSAFE and REGIONAL_WATER for the problems not yet 30 days
    old. It stops; worker 2 (in this process, same app, so the partitions move to it) restores the state from the
    changelog and, once its clock is 61 days ahead, fires each timer once: the alerts are then those of the whole
    pipeline simulated on that day."""
    settings = world.settings.model_copy(update={"monitor_app_id": f"timers-{uuid.uuid4().hex[:8]}",
                                                 "monitor_sweep_seconds": 0.2,
                                                 "monitor_metrics_port": _free_port()})
    env = {"POVWATCH_BOOTSTRAP": settings.bootstrap, "POVWATCH_MONITOR_APP_ID": settings.monitor_app_id,
           "POVWATCH_MONITOR_METRICS_PORT": str(settings.monitor_metrics_port)}
    first = ChildProcess(["monitor"], env=env, log_path=tmp_path / "worker-1.log")
    try:
        wait_until(settings.monitor_metrics_port, monitor_settled(world.simulation.events), timeout=300,
                   child=first, what="worker 1 to take in the backlog")
    finally:
        first.stop()  # SIGTERM: its last batch's state written and committed; its partitions move
    before = asyncio.run(_alerts(settings.bootstrap))
    assert _by_rule(before, Rule.JOB_LOSS).keys() == {a.alert_id for a in world.simulation.alerts.values()
                                                      if a.rule == Rule.JOB_LOSS}  # only those already due

    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=61)
    then = simulate(world.files.roster, world.files.feeds, world.files.intake, key=settings.checked_key(),
                    rules=settings.rules, zone=DEFAULT_ZONE, now=later)
    want_jobs = {a.alert_id for a in then.alerts.values() if a.rule == Rule.JOB_LOSS}
    assert want_jobs > _by_rule(before, Rule.JOB_LOSS).keys()  # some ends are within the last 60 days
    clock = Clock(later)

    async def second_worker() -> None:
        stopping = asyncio.Event()
        task = asyncio.create_task(serve(settings, stopping, clock=clock))
        deadline = asyncio.get_running_loop().time() + 180
        try:
            while _by_rule(await _alerts(settings.bootstrap), Rule.JOB_LOSS).keys() != want_jobs:
                assert not task.done(), task.exception() if task.done() else ""
                assert asyncio.get_running_loop().time() < deadline, "the timers did not fire on worker 2"
                await asyncio.sleep(1)  # sleep-ok: the polling interval of a wait with a deadline
            # time passing is the behaviour: sweeps run every 0.2 s, and a timer that fired must not fire again
            await asyncio.sleep(1.0)  # sleep-ok: several more sweeps (time-driven) with nothing left to fire
        finally:
            stopping.set()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, 60)

    asyncio.run(second_worker())
    after = asyncio.run(_alerts(settings.bootstrap))
    jobs, earlier = _by_rule(after, Rule.JOB_LOSS), _by_rule(before, Rule.JOB_LOSS)
    assert jobs.keys() == want_jobs
    # the timers fired on worker 2, each once (the alerts already due were raised by the fixture's monitor and by
    # worker 1, each monitor app once, and not again)
    assert {k: len(v) - len(earlier.get(k, [])) for k, v in jobs.items()} == {
        k: 0 if k in earlier else 1 for k in want_jobs}
    for rule in (Rule.WATER_UNSAFE, Rule.REGIONAL_WATER):  # unsolved problems: HIGH now, the same alert ids
        got = {k: max(v, key=("LOW", "MEDIUM", "HIGH").index) for k, v in _by_rule(after, rule).items()}
        want = {a.alert_id: a.severity for a in then.alerts.values() if a.rule == rule}
        assert got == want, rule
        assert all(s == "HIGH" for s in got.values())

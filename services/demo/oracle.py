"""What the monitor must raise from the demo's files: the whole pipeline simulated in one process, without Kafka.

The roster and every feed file go through their connectors (the same code as `povwatch roster load` and
`povwatch connector run`, publishing into memory), the intake requests through the intake API's own validation and
mapping, and the messages through the monitor's three stages (the same `PersonStage`, `HouseholdStage` and
`VillageStage` the real monitor runs, on plain dicts), in file order. The alerts they raise, by alert id with the
highest severity any emission had, are what the real pipeline - separate processes, partitions, a broker, the case
feed - must deliver to the case DB, exactly. The demo compares the two per rule.

This checks the distributed pipeline against the rules, not the rules themselves (the unit tests do that).
"""
from __future__ import annotations

import asyncio
import datetime as dt
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from connectors.catalog import get_feed
from connectors.departments.bureau import load_snapshot
from connectors.framework import EventHandler, RawRow, ValidRecord, run_file
from connectors.framework import validate as validate_row
from connectors.pseudonym import Pseudonymiser
from schemas.alerts import severity_rank
from schemas.catalog import INTAKE_CHANNELS
from schemas.codec import Codec, default_codec
from schemas.thresholds import RuleConfig
from schemas.topics import (
    ALERTS_HOUSEHOLD,
    ALERTS_REGIONAL,
    REGISTRY_HOUSEHOLD_STATUS,
    REGISTRY_HOUSEHOLDS,
    REGISTRY_PERSONS,
)
from services.demo.feeds import IntakeRequest
from services.demo.scenarios import Designed
from services.intake.mapping import Invalid, to_event, validate
from services.monitor.handlers import Emit, HouseholdStage, PersonStage, Routes, VillageStage

__all__ = ["OracleAlert", "Simulation", "simulate", "designed_problems", "MemoryPublisher"]

_ROUTES = Routes("oracle.household-events", "oracle.village-disasters", ALERTS_HOUSEHOLD, ALERTS_REGIONAL,
                 "oracle.unmatched", "oracle.profiles")


@dataclass
class OracleAlert:
    """One alert as the case DB must hold it: its subject (household or region), rule, highest severity, and
    every event behind it."""

    alert_id: str
    kind: str  # household | regional
    subject: str
    rule: str
    severity: str
    event_ids: set[str] = field(default_factory=set)
    households: set[str] = field(default_factory=set)  # a regional alert's (their events may depend on order)


@dataclass
class Simulation:
    alerts: dict[str, OracleAlert]  # by alert id
    events: int  # department and intake events published
    alerted_events: set[str]  # the events that are evidence of some alert


class MemoryPublisher:
    """A publisher into a list (the connectors' Publisher and the roster's RegistryPublisher)."""

    def __init__(self, sink: list[tuple[str, bytes, bytes | None]]) -> None:
        self.sink = sink

    async def __aenter__(self) -> MemoryPublisher:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    async def send(self, topic: str, key: bytes, value: bytes) -> None:
        self.sink.append((topic, key, value))

    async def tombstone(self, topic: str, key: bytes) -> None:
        self.sink.append((topic, key, None))

    async def flush(self) -> None:
        return None


async def _published(roster: Path, feeds: Iterable[tuple[str, str, Path]], key: bytes, codec: Codec,
                     now: dt.datetime, zone: dt.tzinfo) -> list[tuple[str, bytes, bytes | None]]:
    sink: list[tuple[str, bytes, bytes | None]] = []

    async def nothing(topic: str) -> dict[bytes, bytes]:
        return {}

    await load_snapshot(roster, pseudonymiser=Pseudonymiser(key), codec=codec, clock=lambda: now,
                        read_state=nothing, publisher_factory=lambda: MemoryPublisher(sink), zone=zone)
    for department, feed, path in feeds:
        spec = get_feed(department, feed)
        handler = EventHandler(spec, pseudonymiser=Pseudonymiser(key), codec=codec, clock=lambda: now)
        await run_file(spec, path, handler, publisher_factory=lambda: MemoryPublisher(sink), codec=codec,
                       clock=lambda: now, zone=zone, progress=None)
    return sink


def _intake(requests: Iterable[IntakeRequest], key: bytes, codec: Codec, now: dt.datetime,
            today: dt.date) -> list[tuple[str, bytes, bytes | None]]:
    topics = {c.feed: c.topic for c in INTAKE_CHANNELS}
    out: list[tuple[str, bytes, bytes | None]] = []
    seen: set[str] = set()
    for request in requests:
        report = validate(request.channel, request.body, today)
        if isinstance(report, Invalid):
            continue
        event = to_event(report, Pseudonymiser(key), now)
        if event.event_id in seen:
            continue  # a replay: the API answers with the first event and publishes nothing
        seen.add(event.event_id)
        out.append((topics[request.channel], event.key, codec.encode(event.schema, event.record)))
    return out


def simulate(roster: Path, feeds: Iterable[tuple[str, str, Path]], intake: Iterable[IntakeRequest], *,
             key: bytes, rules: RuleConfig, zone: dt.tzinfo, now: dt.datetime) -> Simulation:
    """Everything the demo publishes, through the monitor's stages in one process."""
    codec = default_codec()
    messages = asyncio.run(_published(roster, feeds, key, codec, now, zone))
    messages += _intake(intake, key, codec, now, now.astimezone(zone).date())
    grace = dt.timedelta(days=365)
    persons = PersonStage({}, {}, codec=codec, routes=_ROUTES, grace=grace)
    households = HouseholdStage({}, {}, codec=codec, routes=_ROUTES, rules=rules, grace=grace, zone=zone)
    villages = VillageStage({}, codec=codec, routes=_ROUTES, rules=rules, zone=zone)
    alerts: dict[str, OracleAlert] = {}
    queue: deque[Emit] = deque()
    events = 0
    for topic, msg_key, value in messages:
        if topic == REGISTRY_PERSONS:
            queue += persons.registry(msg_key.decode(), value, now)
        elif topic in (REGISTRY_HOUSEHOLDS, REGISTRY_HOUSEHOLD_STATUS):  # the later of roster and decided status
            queue += households.registry(msg_key.decode(), value, now, topic)
        elif topic.startswith("events.") and value is not None:
            events += 1
            queue += persons.event(topic, value, now, msg_key)
        _drain(queue, households, villages, codec, alerts, now)
    queue += households.sweep(now) + villages.sweep(now)
    _drain(queue, households, villages, codec, alerts, now)
    evidence = {e for a in alerts.values() for e in a.event_ids}
    return Simulation(alerts, events, evidence)


def _drain(queue: deque[Emit], households: HouseholdStage, villages: VillageStage, codec: Codec,
           alerts: dict[str, OracleAlert], now: dt.datetime) -> None:
    while queue:
        emit = queue.popleft()
        if emit.topic == _ROUTES.household_events:
            queue += households.event(emit.topic, emit.value or b"", now, emit.key)
        elif emit.topic == _ROUTES.village_disasters:
            queue += villages.event(emit.topic, emit.value or b"", now, emit.key)
        elif emit.topic in (ALERTS_HOUSEHOLD, ALERTS_REGIONAL):
            _record(codec.decode(emit.value or b"").record, emit.topic, alerts)
        if not queue:  # what the stages keep for the end of a batch (profiles, each regional alert's latest)
            queue += households.flush(now) + villages.flush(now)


def _record(alert: dict[str, Any], topic: str, alerts: dict[str, OracleAlert]) -> None:
    regional = topic == ALERTS_REGIONAL
    held = alerts.get(alert["alert_id"])
    if held is None:
        held = alerts[alert["alert_id"]] = OracleAlert(
            alert["alert_id"], "regional" if regional else "household",
            alert["region_code"] if regional else alert["household_id"], alert["rule"], alert["severity"])
    if severity_rank(alert["severity"]) > severity_rank(held.severity):
        held.severity = alert["severity"]
    held.event_ids.update(alert["event_ids"])
    held.households.update(alert.get("household_ids") or ())


def designed_problems(designed: Iterable[Designed], simulation: Simulation, *, key: bytes,
                      now: dt.datetime) -> list[str]:
    """The designed rows (services/demo/scenarios.py) that did not do what they were designed for: a row meant to
    raise a rule for a subject, with no such alert; a row meant to raise nothing, evidence of an alert."""
    codec = default_codec()
    problems = []
    raised = {(a.rule, a.subject) for a in simulation.alerts.values()}
    for row in designed:
        if row.rule is not None:
            if (row.rule, row.subject) not in raised:
                problems.append(f"{row.feed}: no {row.rule} for {row.subject}")
            continue
        spec = get_feed(row.department, row.feed)
        valid = validate_row(spec, RawRow(2, {c.field: row.cells.get(c.field, "") for c in spec.columns}),
                             now.date())
        if not isinstance(valid, ValidRecord):
            problems.append(f"{row.feed}: designed row invalid: {valid}")
            continue
        handler = EventHandler(spec, pseudonymiser=Pseudonymiser(key), codec=codec, clock=lambda: now)
        accepted = handler.handle(valid, {"department": row.department, "feed": row.feed, "origin": "designed",
                                          "row": 0, "connector_version": "oracle"})
        if isinstance(accepted, list):
            problems.append(f"{row.feed}: designed row refused: {accepted}")
        elif accepted.identity in simulation.alerted_events:
            problems.append(f"{row.feed}: a row designed to raise nothing is evidence of an alert")
    return problems

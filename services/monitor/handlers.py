"""The monitor's three stages as plain code over table-like mappings: no Kafka, no event loop.

    PersonStage     registry.persons + events.*          -> events re-keyed by household (HouseholdEvent);
                                                            village-level events by village (VillageEvent)
    HouseholdStage  registry.households + joined events   -> alerts.household, village records, facts kept
    VillageStage    village records and events            -> alerts.regional, facts kept

What a stage does with an event is read from its feed's declaration (schemas.catalog.Feed, found by topic):
where it goes (`link`), which rules judge it (`rules`), whether it is kept as a fact (`facts`).

A stage owns the tables of ONE partition: `registry` keeps a registry table equal to its compacted topic (a
`None` value is a tombstone), `event` handles one input message, `sweep` expires what waited too long. Each
returns the messages to send (`Emit`); the engine sends them, then writes the state keys the batch changed,
then commits. Tables are any `MutableMapping` (dicts in the unit tests); a state record is always stored back
with `table[key] = state`, which is how the engine learns which keys to write.

Events that arrive before their person (or household) wait in the state, and are processed as soon as it
arrives; past the grace period they are listed as unmatched. A message that cannot be decoded raises
`DecodeError` (the engine dead-letters it); nothing else is dropped.
"""
from __future__ import annotations

import datetime as dt
import sys
from collections.abc import MutableMapping
from dataclasses import dataclass
from typing import Any, NamedTuple, TypeVar

from schemas.codec import Codec
from schemas.errors import DecodeError
from services.monitor import metrics
from services.monitor.rules import (
    HouseholdContext,
    PersonContext,
    RuleConfig,
    VillageRecord,
    regional_disaster,
    regional_period,
)
from services.monitor.stages import (
    address_of,
    fact_of,
    feed_for,
    household_alert_record,
    household_stage,
    needs_record,
    regional_alert_record,
)
from services.monitor.state import HouseholdState, Pending, PersonState, VillageState

__all__ = ["Emit", "Routes", "PersonRow", "PersonStage", "HouseholdStage", "VillageStage"]


class Emit(NamedTuple):
    """A message to send. `partition` None: the producer's partitioner (by key)."""

    topic: str
    key: bytes
    value: bytes | None


@dataclass(frozen=True)
class Routes:
    """Where the stages send what they produce."""

    household_events: str
    village_disasters: str
    alerts_household: str
    alerts_regional: str
    unmatched: str


def _unmatched(codec: Codec, routes: Routes, stage: str, item: Pending, now: dt.datetime) -> Emit:
    metrics.EVENTS_UNMATCHED.labels(item.topic).inc()
    record = {"stage": stage, "topic": item.topic, "event_id": item.event_id, "since": item.since,
              "expired_at": now}
    return Emit(routes.unmatched, item.event_id.encode(), codec.encode("povwatch.monitor.Unmatched", record))


W = TypeVar("W", PersonState, HouseholdState)


def _sweep(table: MutableMapping[str, W], deadline: dt.datetime, codec: Codec, routes: Routes, stage: str,
           now: dt.datetime) -> list[Emit]:
    """Give up on the events parked before `deadline`: one Unmatched record each; empty state records go."""
    out: list[Emit] = []
    for key in [k for k, s in table.items() if any(p.since < deadline for p in s.pending)]:
        state = table[key]
        out += [_unmatched(codec, routes, stage, item, now) for item in state.expire(deadline)]
        if state.empty:
            del table[key]
        else:
            table[key] = state
    return out


class PersonRow(NamedTuple):
    """What the monitor keeps of a roster person (the persons table holds one per person_key)."""

    household_id: str
    relation: str
    birth_date: dt.date
    village_code: str


class PersonStage:
    """Joins events with the roster person (by person_key) and re-keys them by household.

    The event body is not decoded here: the message key is the person_key (connectors key events by it) and
    the header says which record it is; the household stage decodes it, once. An event without a key is
    decoded for its person_key."""

    name = "person"

    def __init__(self, persons: MutableMapping[str, PersonRow], state: MutableMapping[str, PersonState], *,
                 codec: Codec, routes: Routes, grace: dt.timedelta) -> None:
        self.persons = persons
        self.state = state
        self._codec = codec
        self._routes = routes
        self._grace = grace
        self._forwarded = metrics.FORWARDED.labels(self.name, "household")  # bound once: counted for every event

    def registry(self, key: str, value: bytes | None, now: dt.datetime) -> list[Emit]:
        if value is None:
            self.persons.pop(key, None)
            return []
        rec = self._codec.decode(value, "povwatch.registry.Person").record  # DecodeError: the engine parks it
        row = PersonRow(rec["household_id"], rec["relation"], rec["birth_date"], sys.intern(rec["village_code"]))
        self.persons[key] = row
        waiting = self.state.get(key)
        if waiting is None:
            return []
        del self.state[key]
        metrics.PENDING_RELEASED.labels(self.name).inc(len(waiting.pending))
        return [self._forward(item.topic, key, item.message, row) for item in waiting.pending]

    def event(self, topic: str, value: bytes, now: dt.datetime, key: bytes | None = None) -> list[Emit]:
        feed = feed_for(topic, self._codec.name_of(value))
        if needs_record(feed) or not key:
            address = address_of(feed, self._codec.decode(value).record)
            if address.kind == "household":  # addressed to the household alone: no person to join
                self._forwarded.inc()
                return [self._emit_household(topic, None, address.key, value, None)]
            if address.kind == "village":
                metrics.FORWARDED.labels(self.name, "village").inc()
                record = {"topic": topic, "event": value, "village_code": address.key}
                return [Emit(self._routes.village_disasters, address.key.encode(),
                             self._codec.encode("povwatch.monitor.VillageEvent", record))]
            person_key = address.key
        else:
            person_key = key.decode("utf-8", "replace")
        person = self.persons.get(person_key)
        if person is not None:
            return [self._forward(topic, person_key, value, person)]
        event_id = self._codec.decode(value).record["event_id"]  # DecodeError: parked only if readable
        state = self.state.get(person_key) or PersonState()
        if state.park(Pending(topic, event_id, value, now)):
            metrics.PENDING_PARKED.labels(self.name, topic).inc()
        self.state[person_key] = state
        return []

    def _forward(self, topic: str, person_key: str, value: bytes, person: PersonRow) -> Emit:
        self._forwarded.inc()
        return self._emit_household(topic, person_key, person.household_id, value, person)

    def _emit_household(self, topic: str, person_key: str | None, household_id: str, value: bytes,
                        person: PersonRow | None) -> Emit:
        joined = {"topic": topic, "event": value, "person_key": person_key, "household_id": household_id,
                  "relation": person.relation if person else None,
                  "birth_date": person.birth_date if person else None,
                  "village_code": person.village_code if person else ""}
        return Emit(self._routes.household_events, household_id.encode(),
                    self._codec.encode("povwatch.monitor.HouseholdEvent", joined))

    def sweep(self, now: dt.datetime) -> list[Emit]:
        return _sweep(self.state, now - self._grace, self._codec, self._routes, self.name, now)

    def pending(self) -> int:
        return sum(len(s.pending) for s in self.state.values())


def _joined(codec: Codec, value: bytes) -> tuple[str, bytes, str, PersonContext | None]:
    """(topic, event message, household id, person) of a message on the household-events topic: a
    HouseholdEvent (no person for an event addressed to the household alone), or an EnrichedEvent written by an
    earlier version of the monitor."""
    decoded = codec.decode(value)
    rec = decoded.record
    if decoded.name == "povwatch.monitor.HouseholdEvent":
        if rec["person_key"] is None:
            return rec["topic"], rec["event"], rec["household_id"], None
        return rec["topic"], rec["event"], rec["household_id"], PersonContext(
            rec["person_key"], rec["household_id"], rec["birth_date"], rec["relation"], rec["village_code"])
    if decoded.name == "povwatch.monitor.EnrichedEvent":
        person = PersonContext.from_record(rec["person"])
        return rec["topic"], rec["event"], person.household_id, person
    raise DecodeError(f"{decoded.name} is not a joined event")


class HouseholdStage:
    """Dedupes, evaluates the rules with the household's context and history, raises household alerts."""

    name = "household"

    def __init__(self, households: MutableMapping[str, HouseholdContext],
                 state: MutableMapping[str, HouseholdState], *, codec: Codec, routes: Routes, rules: RuleConfig,
                 grace: dt.timedelta) -> None:
        self.households = households
        self.state = state
        self._codec = codec
        self._routes = routes
        self._rules = rules
        self._grace = grace

    def registry(self, key: str, value: bytes | None, now: dt.datetime) -> list[Emit]:
        if value is None:
            self.households.pop(key, None)
            return []
        self.households[key] = HouseholdContext.from_record(
            self._codec.decode(value, "povwatch.registry.Household").record)
        state = self.state.get(key)
        if state is None or not state.pending:
            return []
        waiting, state.pending = state.pending, []
        self.state[key] = state
        metrics.PENDING_RELEASED.labels(self.name).inc(len(waiting))
        return [emit for item in waiting for emit in self.event(item.topic, item.message, now)]

    def event(self, topic: str, value: bytes, now: dt.datetime, key: bytes | None = None) -> list[Emit]:
        source_topic, message, hh_id, person = _joined(self._codec, value)
        inner = self._codec.decode(message)
        feed = feed_for(source_topic, inner.name)
        record = inner.record
        state = self.state.get(hh_id) or HouseholdState()
        if record["event_id"] in state.seen:
            metrics.EVENTS_DUPLICATE.inc()
            return []
        if state.too_late(record["occurred_at"], self._rules.history_horizon_days):
            metrics.EVENTS_TOO_LATE.labels(self.name).inc()  # its history is gone: judging it could repeat alerts
            return []
        household = self.households.get(hh_id)
        if household is None:
            if state.park(Pending(source_topic, record["event_id"], value, now)):
                metrics.PENDING_PARKED.labels(self.name, source_topic).inc()
            self.state[hh_id] = state
            return []
        outcome = household_stage(feed, source_topic, record, person, household, state.stays, self._rules)
        if outcome.medical_history is not None:
            state.stays = outcome.medical_history
        if outcome.fact is not None:
            state.facts.append(outcome.fact)
            metrics.FACTS_KEPT.labels(self.name, source_topic).inc()
        state.seen[record["event_id"]] = record["occurred_at"]
        state.prune(self._rules.history_horizon_days)
        self.state[hh_id] = state
        out = []
        for draft in outcome.drafts:
            out.append(Emit(self._routes.alerts_household, hh_id.encode(),
                            self._codec.encode("povwatch.alerts.HouseholdAlert", household_alert_record(draft, now))))
            metrics.ALERTS.labels(draft.rule.value, draft.severity.value).inc()
        if outcome.village_record is not None:
            village = outcome.village_record["village_code"]
            out.append(Emit(self._routes.village_disasters, village.encode(),
                            self._codec.encode("povwatch.monitor.VillageDisaster", outcome.village_record)))
            metrics.FORWARDED.labels(self.name, "village").inc()
        metrics.LATENCY.observe(max(0.0, (now - record["ingested_at"]).total_seconds()))
        return out

    def sweep(self, now: dt.datetime) -> list[Emit]:
        return _sweep(self.state, now - self._grace, self._codec, self._routes, self.name, now)

    def pending(self) -> int:
        return sum(len(s.pending) for s in self.state.values())


class VillageStage:
    """Distinct households with disasters in one village and window -> one regional alert per period."""

    name = "village"

    def __init__(self, state: MutableMapping[str, VillageState], *, codec: Codec, routes: Routes,
                 rules: RuleConfig) -> None:
        self.state = state
        self._codec = codec
        self._routes = routes
        self._rules = rules

    def registry(self, key: str, value: bytes | None, now: dt.datetime) -> list[Emit]:
        raise TypeError("the village stage reads no registry")

    def event(self, topic: str, value: bytes, now: dt.datetime, key: bytes | None = None) -> list[Emit]:
        decoded = self._codec.decode(value)
        if decoded.name == "povwatch.monitor.VillageEvent":
            return self._fact(decoded.record)
        rec = self._codec.decode(value, "povwatch.monitor.VillageDisaster").record
        village = rec["village_code"]
        state = self.state.get(village) or VillageState(village_code=village)
        if state.known(rec["event_id"]):
            metrics.EVENTS_DUPLICATE.inc()
            return []
        if state.too_late(rec["disaster_date"], self._rules.history_horizon_days):
            metrics.EVENTS_TOO_LATE.labels(self.name).inc()
            return []
        state.records.append(VillageRecord(rec["household_id"], rec["event_id"], rec["disaster_date"]))
        drafts = regional_disaster(village, state.records, state.fired, self._rules)
        out = []
        for draft in drafts:
            out.append(Emit(self._routes.alerts_regional, village.encode(),
                            self._codec.encode("povwatch.alerts.RegionalAlert", regional_alert_record(draft, now))))
            metrics.ALERTS.labels("REGIONAL_DISASTER", draft.severity.value).inc()
            state.fired.add(draft.period)
        state.prune(self._rules.history_horizon_days, lambda day: regional_period(day, self._rules))
        self.state[village] = state
        return out

    def _fact(self, joined: dict[str, Any]) -> list[Emit]:
        """A village-level event naming no person: kept as a fact of its village."""
        topic, village = joined["topic"], joined["village_code"]
        inner = self._codec.decode(joined["event"])
        fact = fact_of(feed_for(topic, inner.name), topic, inner.record)
        state = self.state.get(village) or VillageState(village_code=village)
        if fact is None or state.known(fact.event_id):
            if fact is not None:
                metrics.EVENTS_DUPLICATE.inc()
            return []
        if state.too_late(fact.day, self._rules.history_horizon_days):
            metrics.EVENTS_TOO_LATE.labels(self.name).inc()
            return []
        state.facts.append(fact)
        metrics.FACTS_KEPT.labels(self.name, topic).inc()
        state.prune(self._rules.history_horizon_days, lambda day: regional_period(day, self._rules))
        self.state[village] = state
        return []

    def sweep(self, now: dt.datetime) -> list[Emit]:
        return []

    def pending(self) -> int:
        return 0

"""The monitor's three stages as plain code over table-like mappings: no Kafka, no event loop.

    PersonStage     registry.persons + events.*          -> events re-keyed by household (HouseholdEvent);
                                                            village-level events by village (VillageEvent)
    HouseholdStage  registry.households + registry.household-status + joined events
                                                          -> alerts.household, village records, facts kept
    VillageStage    village records and events            -> alerts.regional, facts kept

What a stage does with an event is read from its feed's declaration (schemas.catalog.Feed, found by topic):
where it goes (`link`), which rules judge it (`rules`), whether it is kept as a fact (`facts`).

A stage owns the tables of ONE partition: `registry` keeps a registry table equal to its compacted topic (a
`None` value is a tombstone; the household stage's table joins two topics, see `HouseholdStage`), `event`
handles one input message, `sweep` expires what waited too long. Each returns the messages to send (`Emit`);
the engine sends them, then writes the state keys the batch changed, then commits. Tables are any
`MutableMapping` (dicts in the unit tests); a state record is always stored back with `table[key] = state`,
which is how the engine learns which keys to write.

Events that arrive before their person (or household) wait in the state, and are processed as soon as it
arrives; past the grace period they are listed as unmatched. A message that cannot be decoded raises
`DecodeError` (the engine dead-letters it); nothing else is dropped.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import sys
import zoneinfo
from collections.abc import Iterable, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, TypeVar

from schemas.codec import Codec
from schemas.errors import DecodeError
from schemas.topics import PROFILES_HOUSEHOLD, REGISTRY_HOUSEHOLD_STATUS, REGISTRY_HOUSEHOLDS
from services.monitor import metrics
from services.monitor.flat_codec import FlatCodec
from services.monitor.household_rules import fire
from services.monitor.regional_rules import beyond_list, fills, fire_village, reach, village_row, windowed
from services.monitor.rules import (
    AlertDraft,
    Context,
    HouseholdContext,
    PersonContext,
    RegionalDraft,
    RuleConfig,
    VillageRecord,
    regional_period,
)
from services.monitor.stages import (
    HOSPITALIZATION_TOPIC,
    address_of,
    cluster_records,
    fact_of,
    feed_for,
    household_alert_record,
    household_stage,
    needs_record,
    profile_record,
    regional_alert_record,
)
from services.monitor.state import HouseholdState, Pending, PersonState, VillageState, add_timers, kept_until

PREFECTURE_ZONE = zoneinfo.ZoneInfo("Asia/Shanghai")

__all__ = ["Emit", "Routes", "PersonRow", "Decision", "effective_status", "PersonStage", "HouseholdStage",
           "VillageStage"]


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
    profiles: str = PROFILES_HOUSEHOLD


def _unmatched(codec: Codec, routes: Routes, stage: str, item: Pending, now: dt.datetime) -> Emit:
    metrics.EVENTS_UNMATCHED.labels(item.topic).inc()
    record = {"stage": stage, "topic": item.topic, "event_id": item.event_id, "since": item.since,
              "expired_at": now}
    return Emit(routes.unmatched, item.event_id.encode(), codec.encode("povwatch.monitor.Unmatched", record))


_CHILDREN: dict[tuple[int, tuple[str, ...]], Any] = {}


def _counted(metric: Any, *labels: str) -> Any:
    """`metric.labels(*labels)`, looked up once per label set (prometheus_client's lookup takes a lock)."""
    key = (id(metric), labels)
    child = _CHILDREN.get(key)
    if child is None:
        child = _CHILDREN[key] = metric.labels(*labels)
    return child


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
        self._forwards = {"household": 0, "village": 0}  # events the batch sent on, per stage: counted at its flush
        self._flat = FlatCodec(codec)  # the hop records by hand

    def registry(self, key: str, value: bytes | None, now: dt.datetime, topic: str = "") -> list[Emit]:
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
                self._forwards["household"] += 1
                return [self._emit_household(topic, None, address.key, value, None)]
            if address.kind == "village":
                self._forwards["village"] += 1
                record = {"topic": topic, "event": value, "village_code": address.key}
                return [Emit(self._routes.village_disasters, address.key.encode(),
                             self._flat.encode("povwatch.monitor.VillageEvent", record))]
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
        self._forwards["household"] += 1
        return self._emit_household(topic, person_key, person.household_id, value, person)

    def _emit_household(self, topic: str, person_key: str | None, household_id: str, value: bytes,
                        person: PersonRow | None) -> Emit:
        joined = {"topic": topic, "event": value, "person_key": person_key, "household_id": household_id,
                  "relation": person.relation if person else None,
                  "birth_date": person.birth_date if person else None,
                  "village_code": person.village_code if person else ""}
        return Emit(self._routes.household_events, household_id.encode(),
                    self._flat.encode("povwatch.monitor.HouseholdEvent", joined))

    def sweep(self, now: dt.datetime) -> list[Emit]:
        return _sweep(self.state, now - self._grace, self._codec, self._routes, self.name, now)

    def flush(self, now: dt.datetime) -> list[Emit]:
        """The batch's counts of events sent on (one lock per batch, not per event)."""
        for to, n in self._forwards.items():
            if n:
                metrics.FORWARDED.labels(self.name, to).inc(n)
                self._forwards[to] = 0
        return []

    def forget(self) -> None:
        """A failed batch's counts go: its replay counts them again."""
        self._forwards = dict.fromkeys(self._forwards, 0)

    def pending(self) -> int:
        return sum(len(s.pending) for s in self.state.values())


def _joined(codec: Codec | FlatCodec, value: bytes) -> tuple[str, bytes, str, PersonContext | None]:
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


class Decision(NamedTuple):
    """A household's status as a case step decided it (a povwatch.registry.HouseholdStatus record)."""

    status: str
    decided_at: dt.datetime


def effective_status(roster_status: str, roster_at: dt.datetime | None, decision: Decision | None) -> str:
    """The household's status: the later of the roster's record (its `ingested_at`, the time of the roster load
    that last changed the household) and the case's decision (its `decided_at`). A tie goes to the decision."""
    if decision is None or roster_at is None or decision.decided_at < roster_at:
        return roster_status
    return decision.status


class HouseholdStage:
    """Dedupes, evaluates the rules with the household's context and history, raises household alerts, keeps
    facts and timers, fires the timers that came due, publishes the profile of households that had an alert.

    Its households table joins two compacted topics, each with one writer: `registry.households` (the roster
    load: the bureau's export) and `registry.household-status` (the case DB's relay, after LABEL or
    ANNOUNCE_LABEL). The table holds the roster's household with the status of the later of the two
    (`effective_status`), whichever order they are read in: a roster record the load did not change since the
    label keeps its older `ingested_at` and no longer undoes it; one the load changed afterwards wins. The
    roster's own record is kept aside (`_overridden`) only for the households a decision overrides."""

    name = "household"

    def __init__(self, households: MutableMapping[str, HouseholdContext],
                 state: MutableMapping[str, HouseholdState], *, codec: Codec, routes: Routes, rules: RuleConfig,
                 grace: dt.timedelta, zone: dt.tzinfo = PREFECTURE_ZONE) -> None:
        self.households = households
        self.state = state
        self._codec = codec
        self._routes = routes
        self._rules = rules
        self._grace = grace
        self._zone = zone
        self._profiles: dict[str, None] = {}  # households whose profile the batch changed (published at flush)
        self._roster_at: dict[str, dt.datetime] = {}  # household -> its roster record's ingested_at
        self._instants: dict[dt.datetime, dt.datetime] = {}  # the distinct ingested_at values (one per load)
        self._decided: dict[str, Decision] = {}  # household -> its latest status record
        self._overridden: dict[str, HouseholdContext] = {}  # the roster's record where a decision overrides it
        self._flat = FlatCodec(codec)  # the hop records by hand
        self._tally = metrics.Tally()  # the batch's alerts, facts, forwards and latencies, counted at flush

    def registry(self, key: str, value: bytes | None, now: dt.datetime,
                 topic: str = REGISTRY_HOUSEHOLDS) -> list[Emit]:
        if topic == REGISTRY_HOUSEHOLD_STATUS:
            if value is None:
                self._decided.pop(key, None)
            else:
                rec = self._codec.decode(value, "povwatch.registry.HouseholdStatus").record
                self._decided[key] = Decision(sys.intern(rec["monitoring_status"]), rec["decided_at"])
            self._settle(key)
            return []
        if value is None:
            self.households.pop(key, None)
            self._roster_at.pop(key, None)
            self._overridden.pop(key, None)
            self._profiles.pop(key, None)
            return []
        rec = self._codec.decode(value, "povwatch.registry.Household").record
        self.households[key] = HouseholdContext.from_record(rec)
        # one instant per roster load (its households share it): kept once, not once per household
        self._roster_at[key] = self._instants.setdefault(rec["ingested_at"], rec["ingested_at"])
        self._overridden.pop(key, None)
        self._settle(key)
        state = self.state.get(key)
        if state is None or not state.pending:
            return []
        waiting, state.pending = state.pending, []
        self.state[key] = state
        metrics.PENDING_RELEASED.labels(self.name).inc(len(waiting))
        return [emit for item in waiting for emit in self.event(item.topic, item.message, now)]

    def _settle(self, key: str) -> None:
        """Put the household's effective record in the table (no roster record yet: nothing to settle)."""
        roster = self._overridden.pop(key, None) or self.households.get(key)
        if roster is None:
            return
        status = effective_status(roster.monitoring_status, self._roster_at.get(key), self._decided.get(key))
        if status == roster.monitoring_status:
            self.households[key] = roster
        else:
            self._overridden[key] = roster
            self.households[key] = dataclasses.replace(roster, monitoring_status=status)

    def event(self, topic: str, value: bytes, now: dt.datetime, key: bytes | None = None) -> list[Emit]:
        source_topic, message, hh_id, person = _joined(self._flat, value)
        inner = self._codec.decode(message)
        feed = feed_for(source_topic, inner.name)
        record = inner.record
        state = self.state.get(hh_id) or HouseholdState()
        if record["event_id"] in state.seen:
            metrics.EVENTS_DUPLICATE.inc()
            return []
        ingested = record["ingested_at"].date() if record.get("ingested_at") else None  # as facts keep it (UTC)
        kept = kept_until(source_topic, record["occurred_at"], ingested)
        if state.too_late(kept, self._rules.history_horizon_days):
            metrics.EVENTS_TOO_LATE.labels(self.name).inc()  # its history is gone: judging it could repeat alerts
            return []
        household = self.households.get(hh_id)
        if household is None:
            if state.park(Pending(source_topic, record["event_id"], value, now)):
                metrics.PENDING_PARKED.labels(self.name, source_topic).inc()
            self.state[hh_id] = state
            return []
        outcome = household_stage(feed, source_topic, record, person, household, state.facts, state.stays,
                                  self._today(now), self._rules)
        verdict = outcome.verdict
        if verdict.stays is not None:
            state.stays = verdict.stays
        if verdict.timers or verdict.cancel:
            state.timers = add_timers(state.timers, verdict.timers, verdict.cancel)
        if outcome.fact is not None:
            state.facts.append(outcome.fact)
            self._tally.add(metrics.FACTS_KEPT, self.name, source_topic)
        state.seen[record["event_id"]] = kept
        state.happened(record["occurred_at"])
        out = self._raise(household, state, verdict.drafts, now, {record["event_id"]: source_topic})
        out += self._regional(outcome.village_records, outcome.regions)
        if state.profiled and (verdict.drafts or outcome.fact is not None or verdict.stays is not None):
            self._profiles[hh_id] = None
        state.prune(self._rules.history_horizon_days)
        self.state[hh_id] = state
        self._tally.latencies.append(max(0.0, (now - record["ingested_at"]).total_seconds()))
        return out

    def _today(self, now: dt.datetime) -> dt.date:
        return now.astimezone(self._zone).date()

    def _raise(self, household: HouseholdContext, state: HouseholdState, drafts: Sequence[AlertDraft],
               now: dt.datetime, topics: dict[str, str]) -> list[Emit]:
        """The alerts, each naming the topic of every event behind it; the household is profiled from now on."""
        if not drafts:
            return []
        known = {f.event_id: f.topic for f in state.facts}
        known.update({s.event_id: HOSPITALIZATION_TOPIC for s in state.stays})
        known.update(topics)
        out = []
        for draft in drafts:
            out.append(Emit(self._routes.alerts_household, household.household_id.encode(),
                            self._codec.encode("povwatch.alerts.HouseholdAlert",
                                               household_alert_record(draft, now, known))))
            self._tally.add(metrics.ALERTS, draft.rule.value, draft.severity.value)
        state.profiled = True
        return out

    def _regional(self, records: Iterable[VillageRecord], regions: Iterable[str]) -> list[Emit]:
        out = []
        for rec, region in zip(records, regions, strict=True):
            body = {"village_code": region, "household_id": rec.household_id, "event_id": rec.event_id,
                    "disaster_date": rec.disaster_date, "rule": rec.rule, "person_key": rec.person_key,
                    "group": rec.group}
            out.append(Emit(self._routes.village_disasters, region.encode(),
                            self._flat.encode("povwatch.monitor.VillageDisaster", body)))
        if out:
            self._tally.add(metrics.FORWARDED, self.name, "village", n=len(out))
        return out

    def flush(self, now: dt.datetime) -> list[Emit]:
        """One profile per household the batch changed, as it stands after the batch; the batch's counts."""
        self._tally.apply()
        out = []
        for hh_id in self._profiles:
            household, state = self.households.get(hh_id), self.state.get(hh_id)
            if household is not None and state is not None:
                record = profile_record(household, state.facts, state.stays, now)
                out.append(Emit(self._routes.profiles, hh_id.encode(),
                                self._codec.encode("povwatch.profiles.HouseholdProfile", record)))
        self._profiles.clear()
        return out

    def forget(self) -> None:
        """A failed batch's profiles and counts go: its replay makes them again."""
        self._profiles.clear()
        self._tally.clear()

    def sweep(self, now: dt.datetime) -> list[Emit]:
        return _sweep(self.state, now - self._grace, self._codec, self._routes, self.name, now) + self._fire(now)

    def _fire(self, now: dt.datetime) -> list[Emit]:
        """The timers that came due (today in the prefecture's time zone): their rules judge them now."""
        today = self._today(now)
        out: list[Emit] = []
        for key in [k for k, s in self.state.items() if any(t.due <= today for t in s.timers)]:
            state = self.state[key]
            due = [t for t in state.timers if t.due <= today]
            state.timers = [t for t in state.timers if t.due > today]
            household = self.households.get(key)
            if household is not None:  # a household gone from the roster: its timers go with it
                drafts: list[AlertDraft] = []
                for timer in due:
                    metrics.TIMERS_FIRED.labels(timer.rule).inc()
                    drafts += fire(timer, Context("", None, household, state.facts, state.stays, today,
                                                  self._rules)).drafts
                out += self._raise(household, state, drafts, now, {})
                records, regions = cluster_records(household, drafts)
                out += self._regional(records, regions)
                if drafts:
                    self._profiles[key] = None
            if state.empty:
                del self.state[key]
            else:
                self.state[key] = state
        return out

    def pending(self) -> int:
        return sum(len(s.pending) for s in self.state.values())


class VillageStage:
    """The regional rules: windowed counts of distinct households (or persons) per region and group, rows of a
    village naming no household, and their timers; facts of the village kept."""

    name = "village"

    def __init__(self, state: MutableMapping[str, VillageState], *, codec: Codec, routes: Routes,
                 rules: RuleConfig, zone: dt.tzinfo = PREFECTURE_ZONE) -> None:
        self.state = state
        self._codec = codec
        self._routes = routes
        self._rules = rules
        self._zone = zone
        self._flat = FlatCodec(codec)  # the hop records by hand
        self._unsent: dict[str, RegionalDraft] = {}  # alert id -> its latest version in the batch (sent at flush)

    def registry(self, key: str, value: bytes | None, now: dt.datetime, topic: str = "") -> list[Emit]:
        raise TypeError("the village stage reads no registry")

    def event(self, topic: str, value: bytes, now: dt.datetime, key: bytes | None = None) -> list[Emit]:
        decoded = self._flat.decode(value)
        if decoded.name == "povwatch.monitor.VillageEvent":
            return self._row(decoded.record, now)
        if decoded.name != "povwatch.monitor.VillageDisaster":
            raise DecodeError(f"expected povwatch.monitor.VillageDisaster, got {decoded.name}")
        rec = decoded.record
        region = rec["village_code"]
        state = self.state.get(region) or VillageState(village_code=region)
        redated = False
        if state.known(rec["event_id"], rec["rule"]):
            redated = state.redate(rec["event_id"], rec["rule"], rec["disaster_date"])
            if not redated:
                metrics.EVENTS_DUPLICATE.inc()
                return []
        if state.too_late(rec["disaster_date"], self._rules.history_horizon_days):
            metrics.EVENTS_TOO_LATE.labels(self.name).inc()
            return self._kept(state, redated)
        record = VillageRecord(rec["household_id"], rec["event_id"], rec["disaster_date"], rec["rule"],
                               rec["person_key"], rec["group"])
        if beyond_list(record, state.fired_keys, self._rules,
                       lambda first, last: bool(state.records_of(record.rule, record.group, first, last))):
            metrics.REGIONAL_BEYOND_LIST.labels(record.rule).inc()
            return self._kept(state, redated)
        state.add_record(record)
        drafts = windowed(region, state.records_of(record.rule, record.group, *reach(record, self._rules)), record,
                          state.fired, state.fired_keys, self._rules, ordered=True)
        for draft in drafts:
            if draft.fact is None:
                state.fired.add(draft.period)
            else:
                state.fired_keys.add(draft.fact)
            full = fills(draft, self._rules)
            if full is not None:
                state.fired_keys.add(full)
        return self._store(state, drafts)

    def _kept(self, state: VillageState, changed: bool) -> list[Emit]:
        """An event that raises nothing: the state is stored back when it changed (a record re-dated), so every
        table store keeps the change and the changelog gets it."""
        if changed:
            self.state[state.village_code] = state
        return []

    def _store(self, state: VillageState, drafts: Sequence[RegionalDraft]) -> list[Emit]:
        """The state stored back; the alerts kept for the batch's flush, each alert id's latest version only."""
        for draft in drafts:
            self._unsent.pop(draft.alert_id, None)
            self._unsent[draft.alert_id] = draft  # moved to the end: the versions go in the order they were made
        state.prune(self._rules.history_horizon_days, lambda day: regional_period(day, self._rules))
        self.state[state.village_code] = state
        return []

    def _row(self, joined: dict[str, Any], now: dt.datetime) -> list[Emit]:
        """A village-level event naming no person: judged by its feed's regional rules, kept as a fact."""
        topic, village = joined["topic"], joined["village_code"]
        inner = self._codec.decode(joined["event"])
        feed = feed_for(topic, inner.name)
        record = inner.record
        state = self.state.get(village) or VillageState(village_code=village)
        if state.known(record["event_id"]):
            metrics.EVENTS_DUPLICATE.inc()
            return []
        ingested = record["ingested_at"].date() if record.get("ingested_at") else None  # as facts keep it (UTC)
        if state.too_late(kept_until(topic, record["occurred_at"], ingested), self._rules.history_horizon_days):
            metrics.EVENTS_TOO_LATE.labels(self.name).inc()
            return []
        verdict = village_row(feed.rules, village, record, state.facts, self._today(now), self._rules)
        if verdict.timers or verdict.cancel:
            state.timers = add_timers(state.timers, verdict.timers, verdict.cancel)
        fact = fact_of(feed, topic, record)
        if fact is not None:
            state.add_fact(fact)
            _counted(metrics.FACTS_KEPT, self.name, topic).inc()
        return self._store(state, verdict.drafts)

    def _today(self, now: dt.datetime) -> dt.date:
        return now.astimezone(self._zone).date()

    def flush(self, now: dt.datetime) -> list[Emit]:
        """The regional alerts the batch raised or grew: one version per alert id, its latest (a dense village
        re-sends an alert with each household it adds; each version names what the earlier ones named and the case
        system merges an id's versions, so the versions between two flushes would add nothing)."""
        out = []
        for draft in self._unsent.values():
            out.append(Emit(self._routes.alerts_regional, draft.village_code.encode(),
                            self._codec.encode("povwatch.alerts.RegionalAlert", regional_alert_record(draft, now))))
            _counted(metrics.ALERTS, draft.rule.value, draft.severity.value).inc()
        self._unsent.clear()
        return out

    def forget(self) -> None:
        """A failed batch's alerts are not sent: its replay makes them again from the state reloaded."""
        self._unsent.clear()

    def sweep(self, now: dt.datetime) -> list[Emit]:
        """Fire the timers that came due (REGIONAL_WATER unsolved)."""
        today = self._today(now)
        out: list[Emit] = []
        for key in [k for k, s in self.state.items() if any(t.due <= today for t in s.timers)]:
            state = self.state[key]
            due = [t for t in state.timers if t.due <= today]
            state.timers = [t for t in state.timers if t.due > today]
            drafts = []
            for timer in due:
                metrics.TIMERS_FIRED.labels(timer.rule).inc()
                drafts += fire_village(timer, key, state.facts, self._rules)
            out += self._store(state, drafts)
        return out

    def pending(self) -> int:
        return 0

"""The monitor's partition-local state: one record per key, what each stage keeps between events.

    person stage     PersonState     (key person_key)   events waiting for their person
    household stage  HouseholdState  (key household_id) seen event ids, medical stays, facts, events waiting
    village stage    VillageState    (key village code) disaster records, periods already alerted, facts

Each is written to its stage's changelog (compacted) at most once per batch and read back after a restart or
a rebalance. Everything is pruned at `history_horizon_days` before the latest event date of its key, so state
levels off under a steady stream. `StateCodec` turns them into Avro (the `povwatch.monitor.*State` schemas).
"""
from __future__ import annotations

import datetime as dt
from bisect import bisect_left, bisect_right, insort
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Generic, TypeVar

from schemas.catalog import monitored_feeds
from schemas.codec import Codec
from schemas.topics import event_topic
from services.monitor.rules import Fact, MedicalStay, Timer, VillageRecord, record_date
from services.monitor.split_writer import ItemCache, split_writer

__all__ = [
    "Fact",
    "Timer",
    "Pending",
    "PersonState",
    "HouseholdState",
    "VillageState",
    "StateCodec",
    "PERSON_STATE",
    "HOUSEHOLD_STATE",
    "VILLAGE_STATE",
    "horizon",
    "kept_until",
    "fact_kept_until",
]


_YEARLY = frozenset(feed.topic for feed in monitored_feeds() if feed.yearly)
_WINDOWED = frozenset({event_topic("medical-security", "hospitalization")})  # judged with earlier ones by date


def kept_until(topic: str, occurred: dt.date, ingested: dt.date | None) -> dt.date:
    """The day the history horizon counts an event by (it is too late, or forgotten, once the horizon passes it).

    The horizon runs `history_horizon_days` behind the latest date of the household's (or region's) events. An
    event counts by its date or the day it was reported, whichever is later: a chronic-disease row reports today
    a diagnosis of years ago, and must not be refused as too late for that. A hospitalisation counts by its
    admission (the medical window counts stays by it). A yearly row (a 年度, dated 1 January) counts to the end of
    the following year, so last year's and the year before's income stay for the comparison however recent the
    other feeds are."""
    day = max(occurred, ingested) if ingested is not None and topic not in _WINDOWED else occurred
    return max(day, dt.date(occurred.year + 1, 12, 31)) if topic in _YEARLY else day


def fact_kept_until(f: Fact) -> dt.date:
    """kept_until of a kept fact (by its ingested_on value, when it has one)."""
    ingested = f.values.get("ingested_on")
    return kept_until(f.topic, f.day, dt.date.fromisoformat(ingested) if ingested else None)


def _kept(facts: list[Fact], cut: dt.date) -> list[Fact]:
    return [f for f in facts if fact_kept_until(f) > cut]


def _timers_kept(timers: list[Timer], cut: dt.date) -> list[Timer]:
    return [t for t in timers if t.ref > cut]


def add_timers(timers: list[Timer], new: Iterable[Timer], cancel: Iterable[tuple[str, str]]) -> list[Timer]:
    """`timers` without the cancelled ones, with `new` (one per rule and fact: a later one replaces it)."""
    dropped = set(cancel)
    kept = {(t.rule, t.fact): t for t in timers if (t.rule, t.fact) not in dropped}
    for t in new:
        if (t.rule, t.fact) not in dropped:
            kept[(t.rule, t.fact)] = t
    return sorted(kept.values(), key=lambda t: (t.due, t.rule, t.fact))


@dataclass(frozen=True)
class Pending:
    """An event parked until its person or household reaches the registry."""

    topic: str
    event_id: str
    message: bytes
    since: dt.datetime


@dataclass
class _Waiting:
    """The events of a key that wait for their person or household (`pending`, oldest first)."""

    pending: list[Pending] = field(default_factory=list)

    def park(self, item: Pending) -> bool:
        """Keep `item` until released or expired; False if it already waits (a redelivery)."""
        if any(p.event_id == item.event_id for p in self.pending):
            return False
        self.pending.append(item)
        return True

    def expire(self, deadline: dt.datetime) -> list[Pending]:
        """Remove and return the events parked before `deadline`."""
        expired = [p for p in self.pending if p.since < deadline]
        self.pending = [p for p in self.pending if p.since >= deadline]
        return expired


@dataclass
class PersonState(_Waiting):
    @property
    def empty(self) -> bool:
        return not self.pending


@dataclass
class HouseholdState(_Waiting):
    seen: dict[str, dt.date] = field(default_factory=dict)  # event_id -> the day it is kept until (kept_until)
    stays: list[MedicalStay] = field(default_factory=list)
    facts: list[Fact] = field(default_factory=list)
    timers: list[Timer] = field(default_factory=list)
    profiled: bool = False  # it has had an alert: its profile is published
    latest: dt.date | None = None  # the latest date of the household's events: the horizon runs behind it
    # the facts as the changelog last wrote them (each encoded once while it is kept: split_writer)
    encoded_facts: ItemCache = field(default_factory=ItemCache, init=False, repr=False, compare=False)

    def happened(self, day: dt.date) -> None:
        """An event of the household is dated `day` (its occurred_at)."""
        self.latest = day if self.latest is None or day > self.latest else self.latest

    def _latest(self) -> dt.date | None:
        if self.latest is not None:
            return self.latest
        return max(self.seen.values()) if self.seen else None  # a state written before `latest` was kept

    def too_late(self, keep: dt.date, horizon_days: int) -> bool:
        """An event kept only until the horizon or before: what it would be judged with is forgotten."""
        latest = self._latest()
        return latest is not None and keep <= horizon(latest, horizon_days)

    def prune(self, horizon_days: int) -> None:
        """Forget what lies past the horizon before the latest event of the household."""
        latest = self._latest()
        if latest is None:
            return
        cut = horizon(latest, horizon_days)
        if self.seen and min(self.seen.values()) > cut:
            return  # every fact, stay and timer comes of an event still seen: nothing has passed the horizon
        self.seen = {eid: day for eid, day in self.seen.items() if day > cut}
        self.stays = [s for s in self.stays if s.admission_date > cut]
        self.facts = _kept(self.facts, cut)
        self.timers = _timers_kept(self.timers, cut)

    @property
    def empty(self) -> bool:
        return not (self.seen or self.stays or self.facts or self.pending or self.timers)


@dataclass
class VillageState:
    records: list[VillageRecord] = field(default_factory=list)
    fired: set[int] = field(default_factory=set)
    village_code: str = ""  # the key (a village, or a township for REGIONAL_RETURNS)
    facts: list[Fact] = field(default_factory=list)
    fired_keys: set[str] = field(default_factory=set)  # the other regional rules' alerts raised: rule|group|period
    timers: list[Timer] = field(default_factory=list)
    # built on first use from the fields above, kept up to date by add_record/add_fact, dropped by prune
    _index: _VillageIndex | None = field(default=None, init=False, repr=False, compare=False)
    # the records and facts as the changelog last wrote them (each encoded once while it is kept: split_writer)
    encoded_records: ItemCache = field(default_factory=ItemCache, init=False, repr=False, compare=False)
    encoded_facts: ItemCache = field(default_factory=ItemCache, init=False, repr=False, compare=False)

    def _indexed(self) -> _VillageIndex:
        if self._index is None:
            self._index = _VillageIndex.of(self.records, self.facts)
        return self._index

    def add_record(self, record: VillageRecord) -> None:
        self.records.append(record)
        self._indexed().add_record(record)

    def add_fact(self, fact: Fact) -> None:
        self.facts.append(fact)
        self._indexed().add_fact(fact)

    def redate(self, event_id: str, rule: str, day: dt.date) -> bool:
        """A record counted again with an earlier date (a HIGH alert re-sent under its id when a second department
        reported an earlier date, e.g. of a death): the earlier date replaces the later, so the count does not
        depend on which report came first. True when it did (the record is then to be counted anew)."""
        later = [r for r in self.records if r.event_id == event_id and r.rule == rule and r.disaster_date > day]
        if not later:
            return False
        self.records = [r for r in self.records if not (r.event_id == event_id and r.rule == rule)]
        self._index = None
        return True

    def records_of(self, rule: str, group: str, since: dt.date = dt.date.min,
                   until: dt.date = dt.date.max) -> list[VillageRecord]:
        """The records one regional count looks at: of `rule`, in `group`, dated `since` .. `until`."""
        found = self._indexed().groups.get((rule, group), [])
        return found[bisect_left(found, since, key=record_date):bisect_right(found, until, key=record_date)]

    def _latest(self) -> dt.date | None:
        return self._indexed().latest

    def known(self, event_id: str, rule: str | None = None) -> bool:
        """Whether the event is kept already (as a record of `rule`, when given, or as a fact)."""
        index = self._indexed()
        if event_id in index.fact_ids:
            return True
        rules = index.record_ids.get(event_id)
        if not rules:
            return False
        return rule is None or rule in rules

    def too_late(self, day: dt.date, horizon_days: int) -> bool:
        latest = self._latest()
        return latest is not None and day <= horizon(latest, horizon_days)

    def prune(self, horizon_days: int, period_of: Callable[[dt.date], int]) -> None:
        latest = self._latest()
        if latest is None:
            return
        cut = horizon(latest, horizon_days)
        if self._indexed().oldest > cut:
            return  # nothing has passed the horizon yet
        self.records = [r for r in self.records if r.disaster_date > cut]
        self.facts = _kept(self.facts, cut)
        self.timers = _timers_kept(self.timers, cut)
        oldest = period_of(cut)
        self.fired = {p for p in self.fired if p >= oldest}
        # a key (rule|group|first day of its period) goes a year after its period passed the horizon
        keep_from = (cut - dt.timedelta(days=366)).isoformat()
        self.fired_keys = {k for k in self.fired_keys if k.rsplit("|", 1)[1] >= keep_from}
        self._index = None

    @property
    def empty(self) -> bool:
        return not (self.records or self.fired or self.facts or self.fired_keys or self.timers)


@dataclass
class _VillageIndex:
    """What a village's state is searched by, per event: ids kept, records per count, the latest and oldest day."""

    record_ids: dict[str, set[str]]  # event id -> the rules it is a record of
    fact_ids: set[str]
    groups: dict[tuple[str, str], list[VillageRecord]]
    latest: dt.date | None
    oldest: dt.date

    @classmethod
    def of(cls, records: Iterable[VillageRecord], facts: Iterable[Fact]) -> _VillageIndex:
        index = cls({}, set(), {}, None, dt.date.max)
        for r in records:
            index.add_record(r)
        for f in facts:
            index.add_fact(f)
        return index

    def _day(self, day: dt.date) -> None:
        self.latest = day if self.latest is None or day > self.latest else self.latest
        self.oldest = min(self.oldest, day)

    def add_record(self, r: VillageRecord) -> None:
        self.record_ids.setdefault(r.event_id, set()).add(r.rule)
        insort(self.groups.setdefault((r.rule, r.group), []), r, key=record_date)  # by date
        self._day(r.disaster_date)

    def add_fact(self, f: Fact) -> None:
        self.fact_ids.add(f.event_id)
        self.latest = f.day if self.latest is None or f.day > self.latest else self.latest
        self.oldest = min(self.oldest, fact_kept_until(f))


def horizon(latest: dt.date, days: int) -> dt.date:
    return latest - dt.timedelta(days=days)


S = TypeVar("S")


def _pending_out(items: Iterable[Pending]) -> list[dict[str, Any]]:
    return [{"topic": p.topic, "event_id": p.event_id, "message": p.message, "since": p.since} for p in items]


def _pending_in(rows: Iterable[dict[str, Any]]) -> list[Pending]:
    return [Pending(r["topic"], r["event_id"], r["message"], r["since"]) for r in rows]


@dataclass(frozen=True)
class StateCodec(Generic[S]):
    """Encodes one kind of state record for its changelog (Avro single-object encoding). `write`, when given,
    writes the bytes of `codec.encode(schema, to_avro(state))` faster (from items kept encoded)."""

    schema: str
    to_avro: Callable[[S], dict[str, Any]]
    from_avro: Callable[[dict[str, Any]], S]
    write: Callable[[Codec, S], bytes] | None = None

    def encode(self, codec: Codec, state: S) -> bytes:
        if self.write is not None:
            return self.write(codec, state)
        return codec.encode(self.schema, self.to_avro(state))

    def decode(self, codec: Codec, data: bytes) -> S:
        return self.from_avro(codec.decode(data, self.schema).record)


PERSON_STATE: StateCodec[PersonState] = StateCodec(
    "povwatch.monitor.PersonState",
    lambda s: {"pending": _pending_out(s.pending)},
    lambda r: PersonState(_pending_in(r["pending"])),
)

_EPOCH = dt.date(1970, 1, 1).toordinal()


def _day(date: dt.date) -> int:
    return date.toordinal() - _EPOCH


def _date(day: int) -> dt.date:
    return dt.date.fromordinal(day + _EPOCH)


def _facts_out(facts: Iterable[Fact]) -> list[dict[str, Any]]:
    return [{"topic": f.topic, "event_id": f.event_id, "person_key": f.person_key, "day": _day(f.day),
             "values": f.values} for f in facts]


def _facts_in(rows: Iterable[dict[str, Any]]) -> list[Fact]:
    return [Fact(r["topic"], r["event_id"], r["person_key"], _date(r["day"]), dict(r["values"])) for r in rows]


def _timers_out(timers: Iterable[Timer]) -> list[dict[str, Any]]:
    return [{"rule": t.rule, "fact": t.fact, "due_day": _day(t.due), "ref_day": _day(t.ref), "event_id": t.event_id,
             "person_key": t.person_key} for t in timers]


def _timers_in(rows: Iterable[dict[str, Any]]) -> list[Timer]:
    return [Timer(r["rule"], r["fact"], _date(r["due_day"]), _date(r["ref_day"]), r["event_id"], r["person_key"])
            for r in rows]


def _household_out(s: HouseholdState, facts: bool = True) -> dict[str, Any]:
    return {
        "seen_ids": list(s.seen),
        "seen_days": [_day(day) for day in s.seen.values()],
        "stays": [{"event_id": m.event_id, "admission_day": _day(m.admission_date),
                   "out_of_pocket_cents": int(m.out_of_pocket * 100), "high": m.high} for m in s.stays],
        "pending": _pending_out(s.pending),
        "facts": _facts_out(s.facts) if facts else [],
        "timers": _timers_out(s.timers),
        "profiled": s.profiled,
        "latest_day": _day(s.latest) if s.latest is not None else -1,
    }


def _write_household(codec: Codec, s: HouseholdState) -> bytes:
    """HouseholdState as `codec.encode` writes it, each fact encoded once while the household keeps it."""
    writer = split_writer(codec, "povwatch.monitor.HouseholdState", "facts")
    items = s.encoded_facts.encode(s.facts, lambda facts: writer.items(_facts_out(facts)))
    return writer.write(_household_out(s, facts=False), items)


HOUSEHOLD_STATE: StateCodec[HouseholdState] = StateCodec(
    "povwatch.monitor.HouseholdState",
    _household_out,
    lambda r: HouseholdState(
        pending=_pending_in(r["pending"]),
        seen={eid: _date(day) for eid, day in zip(r["seen_ids"], r["seen_days"], strict=True)},
        stays=[MedicalStay(m["event_id"], _date(m["admission_day"]), Decimal(m["out_of_pocket_cents"]) / 100,
                           m["high"]) for m in r["stays"]],
        facts=_facts_in(r["facts"]),
        timers=_timers_in(r["timers"]),
        profiled=r["profiled"],
        latest=_date(r["latest_day"]) if r["latest_day"] >= 0 else None,
    ),
    _write_household,
)

def _record_out(s: VillageState, v: VillageRecord) -> dict[str, Any]:
    return {"village_code": s.village_code, "household_id": v.household_id, "event_id": v.event_id,
            "disaster_date": v.disaster_date, "rule": v.rule, "person_key": v.person_key, "group": v.group}


def _village_out(s: VillageState, arrays: bool = True) -> dict[str, Any]:
    return {
        "records": [_record_out(s, v) for v in s.records] if arrays else [],
        "fired": sorted(s.fired),
        "village_code": s.village_code,
        "facts": _facts_out(s.facts) if arrays else [],
        "fired_keys": sorted(s.fired_keys),
        "timers": _timers_out(s.timers),
    }


def _write_village(codec: Codec, s: VillageState) -> bytes:
    """VillageState as `codec.encode` writes it, each record and fact encoded once while the region keeps it."""
    writer = split_writer(codec, "povwatch.monitor.VillageState", "records", "facts")
    records = s.encoded_records.encode(s.records,
                                       lambda records: writer.items([_record_out(s, v) for v in records], "records"))
    facts = s.encoded_facts.encode(s.facts, lambda facts: writer.items(_facts_out(facts), "facts"))
    return writer.write(_village_out(s, arrays=False), records, facts)


VILLAGE_STATE: StateCodec[VillageState] = StateCodec(
    "povwatch.monitor.VillageState",
    _village_out,
    lambda r: VillageState([VillageRecord(v["household_id"], v["event_id"], v["disaster_date"], v["rule"],
                                          v["person_key"], v["group"]) for v in r["records"]],
                           set(r["fired"]),
                           r["village_code"] or (r["records"][0]["village_code"] if r["records"] else ""),
                           _facts_in(r["facts"]), set(r["fired_keys"]), _timers_in(r["timers"])),
    _write_village,
)

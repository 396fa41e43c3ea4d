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
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Generic, TypeVar

from schemas.codec import Codec
from services.monitor.rules import MedicalStay, VillageRecord

__all__ = [
    "Fact",
    "Pending",
    "PersonState",
    "HouseholdState",
    "VillageState",
    "StateCodec",
    "PERSON_STATE",
    "HOUSEHOLD_STATE",
    "VILLAGE_STATE",
    "horizon",
]


@dataclass(frozen=True)
class Fact:
    """An event kept as a fact of its household or village (see stages.fact_of): its feed's topic, who it is
    about, its date and its fields as text."""

    topic: str
    event_id: str
    person_key: str | None
    day: dt.date
    values: dict[str, str]


def _kept(facts: list[Fact], cut: dt.date) -> list[Fact]:
    return [f for f in facts if f.day > cut]


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
    seen: dict[str, dt.date] = field(default_factory=dict)  # event_id -> occurred_at
    stays: list[MedicalStay] = field(default_factory=list)
    facts: list[Fact] = field(default_factory=list)

    def too_late(self, day: dt.date, horizon_days: int) -> bool:
        """An event dated at or before the horizon: what it would be judged with is forgotten."""
        return bool(self.seen) and day <= horizon(max(self.seen.values()), horizon_days)

    def prune(self, horizon_days: int) -> None:
        """Forget what lies past the horizon before the latest event date of the household."""
        if not self.seen:
            return
        cut = horizon(max(self.seen.values()), horizon_days)
        self.seen = {eid: day for eid, day in self.seen.items() if day > cut}
        self.stays = [s for s in self.stays if s.admission_date > cut]
        self.facts = _kept(self.facts, cut)

    @property
    def empty(self) -> bool:
        return not (self.seen or self.stays or self.facts or self.pending)


@dataclass
class VillageState:
    records: list[VillageRecord] = field(default_factory=list)
    fired: set[int] = field(default_factory=set)
    village_code: str = ""  # the key, written into the changelog record
    facts: list[Fact] = field(default_factory=list)

    def _latest(self) -> dt.date | None:
        days = [r.disaster_date for r in self.records] + [f.day for f in self.facts]
        return max(days) if days else None

    def known(self, event_id: str) -> bool:
        return any(r.event_id == event_id for r in self.records) or any(f.event_id == event_id for f in self.facts)

    def too_late(self, day: dt.date, horizon_days: int) -> bool:
        latest = self._latest()
        return latest is not None and day <= horizon(latest, horizon_days)

    def prune(self, horizon_days: int, period_of: Callable[[dt.date], int]) -> None:
        latest = self._latest()
        if latest is None:
            return
        cut = horizon(latest, horizon_days)
        self.records = [r for r in self.records if r.disaster_date > cut]
        self.facts = _kept(self.facts, cut)
        oldest = period_of(cut)
        self.fired = {p for p in self.fired if p >= oldest}

    @property
    def empty(self) -> bool:
        return not (self.records or self.fired or self.facts)


def horizon(latest: dt.date, days: int) -> dt.date:
    return latest - dt.timedelta(days=days)


S = TypeVar("S")


def _pending_out(items: Iterable[Pending]) -> list[dict[str, Any]]:
    return [{"topic": p.topic, "event_id": p.event_id, "message": p.message, "since": p.since} for p in items]


def _pending_in(rows: Iterable[dict[str, Any]]) -> list[Pending]:
    return [Pending(r["topic"], r["event_id"], r["message"], r["since"]) for r in rows]


@dataclass(frozen=True)
class StateCodec(Generic[S]):
    """Encodes one kind of state record for its changelog (Avro single-object encoding)."""

    schema: str
    to_avro: Callable[[S], dict[str, Any]]
    from_avro: Callable[[dict[str, Any]], S]

    def encode(self, codec: Codec, state: S) -> bytes:
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


HOUSEHOLD_STATE: StateCodec[HouseholdState] = StateCodec(
    "povwatch.monitor.HouseholdState",
    lambda s: {
        "seen_ids": list(s.seen),
        "seen_days": [_day(day) for day in s.seen.values()],
        "stays": [{"event_id": m.event_id, "admission_day": _day(m.admission_date),
                   "out_of_pocket_cents": int(m.out_of_pocket * 100), "high": m.high} for m in s.stays],
        "pending": _pending_out(s.pending),
        "facts": _facts_out(s.facts),
    },
    lambda r: HouseholdState(
        pending=_pending_in(r["pending"]),
        seen={eid: _date(day) for eid, day in zip(r["seen_ids"], r["seen_days"], strict=True)},
        stays=[MedicalStay(m["event_id"], _date(m["admission_day"]), Decimal(m["out_of_pocket_cents"]) / 100,
                           m["high"]) for m in r["stays"]],
        facts=_facts_in(r["facts"]),
    ),
)

VILLAGE_STATE: StateCodec[VillageState] = StateCodec(
    "povwatch.monitor.VillageState",
    lambda s: {
        "records": [{"village_code": s.village_code, "household_id": v.household_id, "event_id": v.event_id,
                     "disaster_date": v.disaster_date} for v in s.records],
        "fired": sorted(s.fired),
        "village_code": s.village_code,
        "facts": _facts_out(s.facts),
    },
    lambda r: VillageState([VillageRecord(v["household_id"], v["event_id"], v["disaster_date"]) for v in r["records"]],
                           set(r["fired"]),
                           r["village_code"] or (r["records"][0]["village_code"] if r["records"] else ""),
                           _facts_in(r["facts"])),
)

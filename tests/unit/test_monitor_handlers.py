"""The monitor's stages (services.monitor.handlers) as plain code over dicts, with real Avro messages.

Pending joins (an event before its person or household), tombstones, moves and status changes, dedupe, the
A/B/C medical example in every arrival order, regional alert ids under shuffled arrival orders (hypothesis),
state that levels off at the history horizon, the state codecs and `TrackedDict`.

Every test runs with both stores of the engine (services/monitor/store.py): in memory, and in RocksDB, where
each change is written through (encoded, to disk, the overlay emptied) as the engine does after a batch, so
every read decodes what was written.
"""
from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Iterator, MutableMapping
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import REGISTRY

from schemas.catalog import DISASTER_LOSS, DROPOUT, HOSPITALIZATION, VEHICLE_PURCHASE
from schemas.codec import default_codec
from schemas.errors import DecodeError
from schemas.topics import REGISTRY_HOUSEHOLD_STATUS, REGISTRY_HOUSEHOLDS
from services.monitor.app import HOUSEHOLD_ROWS, PERSON_ROWS
from services.monitor.engine import TrackedDict
from services.monitor.handlers import (
    Decision,
    Emit,
    HouseholdStage,
    PersonStage,
    Routes,
    VillageStage,
    effective_status,
)
from services.monitor.rules import (
    AlertDraft,
    MedicalStay,
    RegionalDraft,
    Rule,
    RuleConfig,
    Severity,
    VillageRecord,
    regional_period,
)
from services.monitor.state import (
    HOUSEHOLD_STATE,
    PERSON_STATE,
    VILLAGE_STATE,
    HouseholdState,
    Pending,
    PersonState,
    StateCodec,
    VillageState,
)
from services.monitor.store import RocksStore, StateStore, TableCodec

CODEC = default_codec()
CFG = RuleConfig()
GRACE = dt.timedelta(days=3)
NOW = dt.datetime(2024, 7, 1, 9, 30, tzinfo=dt.UTC)
ROUTES = Routes("t.household-events", "t.village-disasters", "t.alerts.household", "t.alerts.regional",
                "t.unmatched")
HOSP, CAR, DIS, DROP = HOSPITALIZATION.topic, VEHICLE_PURCHASE.topic, DISASTER_LOSS.topic, DROPOUT.topic

VILLAGE = "652701100201"
HH = "BL-100201-0001"
HH2 = "BL-100201-0002"
PK = "a1" * 32  # pseudonymous person keys (64 hex characters)
PK2 = "b2" * 32
DAY = dt.date(2024, 3, 1)


# --- messages --------------------------------------------------------------------------------------------------


def source(feed: str = "hospitalization") -> dict[str, Any]:
    return {"department": "test", "feed": feed, "origin": "unit.csv", "row": 2, "connector_version": "test"}


def person_record(key: str = PK, household: str = HH, relation: str = "户主") -> dict[str, Any]:
    return {"person_key": key, "household_id": household, "relation": relation, "sex": "M",
            "birth_date": dt.date(1980, 1, 1), "village_code": VILLAGE, "ingested_at": NOW, "source": source("roster")}


def person_msg(key: str = PK, household: str = HH, relation: str = "户主") -> bytes:
    return CODEC.encode("povwatch.registry.Person", person_record(key, household, relation))


def household_msg(household: str = HH, status: str = "MONITORING", income: str = "5000", size: int = 4,
                  at: dt.datetime = NOW) -> bytes:
    # annual net income 5000 x 4 = 20000 CNY: the medical and disaster threshold (50%) is 10000
    return CODEC.encode("povwatch.registry.Household", {
        "household_id": household, "village_code": VILLAGE, "head_person_key": PK, "category": "LIFTED",
        "monitoring_status": status, "labour_capacity": "WEAK", "per_capita_income": Decimal(income),
        "household_size": size, "ingested_at": at, "source": source("roster")})


def status_msg(status: str, at: dt.datetime, household: str = HH, step: str = "LABEL") -> bytes:
    """A case's decided status, as the relay publishes it on registry.household-status."""
    return CODEC.encode("povwatch.registry.HouseholdStatus", {
        "household_id": household, "monitoring_status": status, "category": "SUDDEN_HARDSHIP", "decided_at": at,
        "case_id": 7, "step": step})


def _common(event_id: str, key: str, day: dt.date, feed: str) -> dict[str, Any]:
    return {"event_id": event_id, "person_key": key, "occurred_at": day, "ingested_at": NOW - dt.timedelta(hours=1),
            "source": source(feed)}


def hospitalisation(event_id: str, day: dt.date, oop: str, key: str = PK) -> bytes:
    return CODEC.encode("povwatch.events.Hospitalization", {
        **_common(event_id, key, day, "hospitalization"), "disease": "肺炎", "admission_date": day, "days": 5,
        "total_cost": Decimal(oop) * 2, "out_of_pocket": Decimal(oop), "settlement_date": day + dt.timedelta(days=5)})


def vehicle(event_id: str, day: dt.date = DAY, key: str = PK) -> bytes:
    return CODEC.encode("povwatch.events.VehiclePurchase", {
        **_common(event_id, key, day, "vehicle-purchase"), "vehicle_type": "小型轿车", "model": "比亚迪秦PLUS",
        "purchase_date": day, "registration_date": day + dt.timedelta(days=7), "price": Decimal("119800")})


def disaster(event_id: str, day: dt.date = DAY, key: str = PK, damage: str = "COLLAPSED") -> bytes:
    return CODEC.encode("povwatch.events.DisasterLoss", {
        **_common(event_id, key, day, "disaster-loss"), "village_code": VILLAGE, "disaster_type": "FLOOD",
        "disaster_date": day, "deaths": 0, "injuries": 1, "house_damage": damage, "direct_loss": Decimal("3000")})


def dropout(event_id: str, day: dt.date = DAY, key: str = PK) -> bytes:
    return CODEC.encode("povwatch.events.Dropout", {
        **_common(event_id, key, day, "dropout"), "school": "博乐市第三中学", "stage": "JUNIOR", "grade": "八年级",
        "dropout_date": day})


def village_msg(household: str, event_id: str, day: dt.date, village: str = VILLAGE) -> bytes:
    return CODEC.encode("povwatch.monitor.VillageDisaster", {
        "village_code": village, "household_id": household, "event_id": event_id, "disaster_date": day})


def enrich(topic: str, event: bytes, person: bytes | None = None) -> bytes:
    """The household stage's input, made by a person stage that knows the person (keyed as connectors key)."""
    key = CODEC.decode(event).record["person_key"]
    (out,) = person_stage(person or person_msg(key)).event(topic, event, NOW, key.encode())
    return out.value or b""


def deliver(stage: PersonStage, topic: str, event: bytes, now: dt.datetime = NOW) -> list[Emit]:
    """An event as the engine delivers it to the person stage: with its message key, the person_key."""
    return stage.event(topic, event, now, CODEC.decode(event).record["person_key"].encode())


def joined(emit: Emit) -> dict[str, Any]:
    assert emit.topic == ROUTES.household_events
    return CODEC.decode(emit.value or b"", "povwatch.monitor.HouseholdEvent").record


# --- stages and outputs ----------------------------------------------------------------------------------------


class WriteThrough(MutableMapping[str, Any]):
    """A disk store's state settled after every change (the engine settles after every batch)."""

    def __init__(self, inner: StateStore[Any], codec: StateCodec[Any]) -> None:
        self.inner, self.codec = inner, codec

    def __getitem__(self, key: str) -> Any:
        return self.inner[key]

    def __contains__(self, key: object) -> bool:
        return key in self.inner

    def __setitem__(self, key: str, value: Any) -> None:
        self.inner[key] = value
        self.inner.settle([(key, None if getattr(value, "empty", False) else self.codec.encode(CODEC, value))])

    def __delitem__(self, key: str) -> None:
        del self.inner[key]
        self.inner.settle([(key, None)])

    def __iter__(self) -> Iterator[str]:
        return iter(self.inner)

    def __len__(self) -> int:
        return len(self.inner)

    def items(self) -> Any:
        return self.inner.items()

    def values(self) -> Any:
        return self.inner.values()

    def take_dirty(self) -> set[str]:
        return self.inner.take_dirty()


STORE: dict[str, Any] = {}


@pytest.fixture(scope="module", autouse=True, params=["memory", "rocksdb"])
def store(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    STORE["kind"] = request.param
    STORE["disk"] = RocksStore(Path(tmp_path_factory.mktemp("stores")), "handlers")
    STORE["serial"] = itertools.count()
    yield request.param
    STORE["disk"].close()


def new_state(codec: StateCodec[Any]) -> Any:
    if STORE.get("kind") != "rocksdb":
        return TrackedDict()
    return WriteThrough(STORE["disk"].state("t", next(STORE["serial"]), codec, CODEC), codec)


def new_table(codec: TableCodec[Any]) -> Any:
    return STORE["disk"].table("t", next(STORE["serial"]), codec) if STORE.get("kind") == "rocksdb" else {}


def person_stage(*people: bytes) -> PersonStage:
    """A person stage over plain dicts, its persons table loaded from registry messages."""
    stage = PersonStage(new_table(PERSON_ROWS), new_state(PERSON_STATE), codec=CODEC, routes=ROUTES, grace=GRACE)
    for msg in people:
        assert stage.registry(CODEC.decode(msg).record["person_key"], msg, NOW) == []
    return stage


def household_stage(*households: bytes, cfg: RuleConfig = CFG) -> HouseholdStage:
    stage = HouseholdStage(new_table(HOUSEHOLD_ROWS), new_state(HOUSEHOLD_STATE), codec=CODEC, routes=ROUTES,
                           rules=cfg, grace=GRACE)
    for msg in households:
        assert stage.registry(CODEC.decode(msg).record["household_id"], msg, NOW) == []
    return stage


def village_stage(cfg: RuleConfig = CFG) -> VillageStage:
    return VillageStage(new_state(VILLAGE_STATE), codec=CODEC, routes=ROUTES, rules=cfg)


def dirty(stage: PersonStage | HouseholdStage | VillageStage) -> set[str]:
    state = stage.state
    assert isinstance(state, TrackedDict | WriteThrough)
    return state.take_dirty()


def decoded(emits: list[Emit], topic: str, schema: str) -> list[dict[str, Any]]:
    return [CODEC.decode(e.value or b"", schema).record for e in emits if e.topic == topic]


def household_alerts(emits: list[Emit]) -> list[dict[str, Any]]:
    return decoded(emits, ROUTES.alerts_household, "povwatch.alerts.HouseholdAlert")


def regional_alerts(emits: list[Emit]) -> list[dict[str, Any]]:
    return decoded(emits, ROUTES.alerts_regional, "povwatch.alerts.RegionalAlert")


def village_batch(stage: VillageStage, value: bytes, now: dt.datetime = NOW) -> list[Emit]:
    """One message to the village stage as a batch of its own: what it sends, the batch's flush included (the
    regional alerts go out there)."""
    return stage.event(ROUTES.village_disasters, value, now) + stage.flush(now)


def village_sweep(stage: VillageStage, now: dt.datetime) -> list[Emit]:
    """The village stage's timers swept, and the alerts they raised flushed, as the engine does."""
    return stage.sweep(now) + stage.flush(now)


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def parked(stage: str) -> float:
    """Events parked by a stage, over every topic."""
    return sum(s.value for family in REGISTRY.collect() for s in family.samples
               if s.name == "povwatch_events_parked_total" and s.labels.get("stage") == stage)


def released(stage: str) -> float:
    return sample("povwatch_events_released_total", stage=stage)


def duplicates() -> float:
    return sample("povwatch_events_duplicate_total")


def unmatched(topic: str) -> float:
    return sample("povwatch_events_unmatched_total", topic=topic)


# --- person stage: the pending join ----------------------------------------------------------------------------


def test_the_events_sent_on_are_counted_at_the_batchs_flush_and_a_failed_batch_counts_nothing() -> None:
    stage = person_stage(person_msg())

    def forwarded() -> float:
        return sample("povwatch_monitor_forwarded_total", stage="person", to="household")

    before = forwarded()
    assert len(deliver(stage, HOSP, hospitalisation("fw-1", DAY, "300"))) == 1
    assert len(deliver(stage, HOSP, hospitalisation("fw-2", DAY, "300"))) == 1
    assert forwarded() == before  # one lock per batch: nothing counted yet
    assert stage.flush(NOW) == [] and forwarded() == before + 2
    deliver(stage, HOSP, hospitalisation("fw-3", DAY, "300"))
    stage.forget()  # the batch failed: its replay counts the event again
    assert stage.flush(NOW) == [] and forwarded() == before + 2


def test_an_event_before_its_person_is_parked_then_forwarded_when_the_person_arrives() -> None:
    stage = person_stage()
    event = hospitalisation("hosp-1", DAY, "300")
    before = parked("person"), released("person")
    assert deliver(stage, HOSP, event, NOW) == []
    assert list(stage.state) == [PK]
    assert stage.state[PK].pending == [Pending(HOSP, "hosp-1", event, NOW)]
    assert stage.pending() == 1 and dirty(stage) == {PK}
    assert parked("person") == before[0] + 1
    # re-delivered while it waits: not parked twice
    assert deliver(stage, HOSP, event, NOW + dt.timedelta(minutes=5)) == []
    assert stage.state[PK].pending == [Pending(HOSP, "hosp-1", event, NOW)]
    assert stage.pending() == 1 and parked("person") == before[0] + 1
    dirty(stage)

    person = person_msg()
    out = stage.registry(PK, person, NOW + dt.timedelta(hours=1))
    assert [(e.topic, e.key) for e in out] == [(ROUTES.household_events, HH.encode())]
    # the event as it came, with what the household stage needs of the person
    assert joined(out[0]) == {"topic": HOSP, "event": event, "person_key": PK, "household_id": HH,
                              "relation": "户主", "birth_date": dt.date(1980, 1, 1), "village_code": VILLAGE}
    assert list(stage.persons) == [PK]
    assert PK not in stage.state and stage.pending() == 0
    assert dirty(stage) == {PK}  # the deleted state key is written (as a tombstone) by the engine
    assert released("person") == before[1] + 1

    # with the person known, the next event goes straight through and touches no state
    out = deliver(stage, HOSP, hospitalisation("hosp-2", DAY, "300"), NOW)
    assert [(e.topic, e.key) for e in out] == [(ROUTES.household_events, HH.encode())]
    assert stage.pending() == 0 and dirty(stage) == set()
    assert parked("person") == before[0] + 1


def test_several_events_wait_for_one_person_and_leave_in_arrival_order() -> None:
    stage = person_stage()
    events = [hospitalisation("hosp-1", DAY, "300"), vehicle("car-1"), dropout("drop-1")]
    for topic, event in zip([HOSP, CAR, DROP], events):
        assert stage.event(topic, event, NOW) == []
    assert deliver(stage, HOSP, hospitalisation("other", DAY, "1", key=PK2), NOW) == []
    assert stage.pending() == 4 and set(stage.state) == {PK, PK2}
    out = stage.registry(PK, person_msg(), NOW)
    forwarded = [joined(e) for e in out]
    assert [(f["topic"], f["event"], f["person_key"]) for f in forwarded] == [
        (HOSP, events[0], PK), (CAR, events[1], PK), (DROP, events[2], PK)]
    assert {e.key for e in out} == {HH.encode()}
    assert list(stage.state) == [PK2] and stage.pending() == 1


def test_an_event_without_a_message_key_is_joined_on_the_person_key_in_its_body() -> None:
    stage = person_stage(person_msg())
    event = vehicle("car-1")
    (keyless,) = stage.event(CAR, event, NOW)
    (keyed,) = deliver(stage, CAR, event)
    assert keyless == keyed and joined(keyless)["person_key"] == PK and keyless.key == HH.encode()


def test_person_sweep_expires_each_event_once_after_the_grace() -> None:
    stage = person_stage()
    deliver(stage, HOSP, hospitalisation("hosp-1", DAY, "300"), NOW)
    deliver(stage, CAR, vehicle("car-1"), NOW)
    deliver(stage, CAR, vehicle("car-2"), NOW + dt.timedelta(days=2))
    deliver(stage, HOSP, hospitalisation("hosp-9", DAY, "300", key=PK2), NOW + dt.timedelta(days=1))
    dirty(stage)
    before_hosp, before_car = unmatched(HOSP), unmatched(CAR)

    # exactly the grace: nothing expires
    assert stage.sweep(NOW + GRACE) == []
    assert stage.pending() == 4 and dirty(stage) == set()

    expired_at = NOW + GRACE + dt.timedelta(seconds=1)
    out = stage.sweep(expired_at)
    assert [(e.topic, e.key) for e in out] == [(ROUTES.unmatched, b"hosp-1"), (ROUTES.unmatched, b"car-1")]
    records = decoded(out, ROUTES.unmatched, "povwatch.monitor.Unmatched")
    assert records == [
        {"stage": "person", "topic": HOSP, "event_id": "hosp-1", "since": NOW, "expired_at": expired_at},
        {"stage": "person", "topic": CAR, "event_id": "car-1", "since": NOW, "expired_at": expired_at},
    ]
    assert all(PK.encode() not in (e.value or b"") for e in out)  # no person key in the unmatched topic
    assert [p.event_id for p in stage.state[PK].pending] == ["car-2"]
    assert [p.event_id for p in stage.state[PK2].pending] == ["hosp-9"]
    assert dirty(stage) == {PK}
    assert (unmatched(HOSP), unmatched(CAR)) == (before_hosp + 1, before_car + 1)

    assert stage.sweep(expired_at) == []  # removed: never listed twice
    later = NOW + dt.timedelta(days=2) + GRACE + dt.timedelta(seconds=1)
    out = stage.sweep(later)
    assert sorted(r["event_id"] for r in decoded(out, ROUTES.unmatched, "povwatch.monitor.Unmatched")) == [
        "car-2", "hosp-9"]
    assert len(stage.state) == 0 and stage.pending() == 0 and dirty(stage) == {PK, PK2}
    # the person arriving after the expiry releases nothing
    assert stage.registry(PK, person_msg(), later) == []


# --- household stage: the pending join -------------------------------------------------------------------------


def test_an_event_before_its_household_is_parked_then_raises_its_alert() -> None:
    stage = household_stage()
    event = enrich(HOSP, hospitalisation("hosp-1", DAY, "12000"))
    before = parked("household"), released("household"), duplicates()
    assert stage.event(ROUTES.household_events, event, NOW) == []
    assert stage.state[HH].pending == [Pending(HOSP, "hosp-1", event, NOW)]
    assert stage.state[HH].seen == {} and stage.state[HH].stays == []
    assert stage.pending() == 1 and dirty(stage) == {HH} and parked("household") == before[0] + 1
    assert stage.event(ROUTES.household_events, event, NOW) == []  # re-delivered: parked once
    assert stage.pending() == 1 and parked("household") == before[0] + 1
    dirty(stage)

    later = NOW + dt.timedelta(hours=2)
    out = stage.registry(HH, household_msg(), later)
    # the alert, the stay and the HIGH alert for the regional counts; the household's profile once per batch
    assert [(e.topic, e.key) for e in out] == [(ROUTES.alerts_household, HH.encode()),
                                               (ROUTES.village_disasters, VILLAGE.encode()),
                                               (ROUTES.village_disasters, VILLAGE.encode())]
    assert [(e.topic, e.key) for e in stage.flush(later)] == [(ROUTES.profiles, HH.encode())]
    assert stage.flush(later) == []
    (alert,) = household_alerts(out)
    assert (alert["rule"], alert["severity"], alert["household_id"], alert["village_code"]) == (
        "MEDICAL_EXPENSE", "HIGH", HH, VILLAGE)
    assert alert["event_ids"] == ["hosp-1"] and alert["occurred_at"] == DAY and alert["raised_at"] == later
    state = stage.state[HH]
    assert state.pending == [] and state.seen == {"hosp-1": DAY}
    assert state.stays == [MedicalStay("hosp-1", DAY, Decimal("12000"), high=True)]
    assert stage.pending() == 0 and dirty(stage) == {HH} and released("household") == before[1] + 1

    # delivered once more after it was processed: a duplicate, nothing raised
    assert stage.event(ROUTES.household_events, event, later) == []
    assert duplicates() == before[2] + 1 and dirty(stage) == set()


def test_household_sweep_expires_parked_events_and_keeps_the_history() -> None:
    stage = household_stage(household_msg())
    stage.event(ROUTES.household_events, enrich(HOSP, hospitalisation("hosp-1", DAY, "300")), NOW)
    assert stage.registry(HH, None, NOW) == []  # the household leaves the roster
    assert stage.event(ROUTES.household_events, enrich(CAR, vehicle("car-1")), NOW) == []
    assert [p.event_id for p in stage.state[HH].pending] == ["car-1"]
    assert stage.sweep(NOW + GRACE) == []
    before = unmatched(CAR)
    dirty(stage)

    expired_at = NOW + GRACE + dt.timedelta(milliseconds=1)
    out = stage.sweep(expired_at)
    assert [(e.topic, e.key) for e in out] == [(ROUTES.unmatched, b"car-1")]
    assert decoded(out, ROUTES.unmatched, "povwatch.monitor.Unmatched") == [
        {"stage": "household", "topic": CAR, "event_id": "car-1", "since": NOW, "expired_at": expired_at}]
    assert PK.encode() not in (out[0].value or b"")
    assert unmatched(CAR) == before + 1
    # the parked event is gone; the household's history stays (not empty, so the key is kept)
    assert stage.state[HH].pending == [] and stage.state[HH].seen == {"hosp-1": DAY}
    assert dirty(stage) == {HH} and stage.sweep(expired_at) == []


def test_the_household_stage_still_reads_enriched_events_of_the_earlier_monitor() -> None:
    event = hospitalisation("hosp-1", DAY, "12000")
    legacy = CODEC.encode("povwatch.monitor.EnrichedEvent", {
        "topic": HOSP, "event": event,
        "person": {**person_record(), "source": source(), "ingested_at": NOW - dt.timedelta(hours=1)}})
    current = enrich(HOSP, event)
    alerts = [household_alerts(household_stage(household_msg()).event(ROUTES.household_events, m, NOW))
              for m in (legacy, current)]
    assert alerts[0] == alerts[1]
    assert [(a["rule"], a["severity"], a["event_ids"]) for a in alerts[0]] == [("MEDICAL_EXPENSE", "HIGH", ["hosp-1"])]


# --- tombstones, moves, status changes -------------------------------------------------------------------------


def test_a_person_tombstone_removes_the_person_and_events_wait_again() -> None:
    stage = person_stage(person_msg(), person_msg(PK2))
    assert stage.registry(PK, None, NOW) == []
    assert list(stage.persons) == [PK2]
    assert stage.registry("never-there", None, NOW) == []  # a tombstone for an unknown key is harmless
    assert deliver(stage, HOSP, hospitalisation("hosp-1", DAY, "300"), NOW) == []
    assert [p.event_id for p in stage.state[PK].pending] == ["hosp-1"]
    assert len(deliver(stage, HOSP, hospitalisation("hosp-2", DAY, "300", key=PK2), NOW)) == 1


def test_a_removed_household_raises_nothing_and_its_return_releases_the_events() -> None:
    stage = household_stage(household_msg())
    first = stage.event(ROUTES.household_events, enrich(DROP, dropout("drop-1")), NOW)
    assert [(a["rule"], a["severity"]) for a in household_alerts(first)] == [("SCHOOL_DROPOUT", "HIGH")]
    assert stage.registry(HH, None, NOW) == []
    assert len(stage.households) == 0
    assert stage.event(ROUTES.household_events, enrich(DROP, dropout("drop-2")), NOW) == []
    assert stage.event(ROUTES.household_events, enrich(DIS, disaster("dis-1")), NOW) == []
    assert [p.event_id for p in stage.state[HH].pending] == ["drop-2", "dis-1"]
    assert stage.state[HH].seen == {"drop-1": NOW.date()}  # kept from when it was reported, after its date
    # back in the roster: both wait no longer
    out = stage.registry(HH, household_msg(), NOW)
    # the same child's second report of the school year is the same alert, now with both events as evidence
    (dropped, flooded) = household_alerts(out)
    assert (dropped["rule"], dropped["event_ids"]) == ("SCHOOL_DROPOUT", ["drop-1", "drop-2"])
    assert dropped["alert_id"] == household_alerts(first)[0]["alert_id"]
    assert (flooded["rule"], flooded["event_ids"]) == ("DISASTER_LOSS", ["dis-1"])
    assert [r for r in decoded(out, ROUTES.village_disasters, "povwatch.monitor.VillageDisaster")
            if r["rule"] == "REGIONAL_DISASTER"] == [
        {"village_code": VILLAGE, "household_id": HH, "event_id": "dis-1", "disaster_date": DAY,
         "rule": "REGIONAL_DISASTER", "person_key": None, "group": ""}]
    assert stage.state[HH].pending == [] and set(stage.state[HH].seen) == {"drop-1", "drop-2", "dis-1"}


def test_vehicle_alerts_follow_the_households_monitoring_status() -> None:
    stage = household_stage(household_msg(status="MONITORING"))

    def buy(event_id: str) -> list[tuple[str, str, list[str]]]:
        out = stage.event(ROUTES.household_events, enrich(CAR, vehicle(event_id)), NOW)
        return [(a["rule"], a["severity"], a["event_ids"]) for a in household_alerts(out)]

    assert buy("car-1") == [("ASSET_PURCHASE", "LOW", ["car-1"])]
    assert stage.registry(HH, household_msg(status="RISK_ELIMINATED"), NOW) == []
    assert buy("car-2") == []
    assert stage.registry(HH, household_msg(status="NOT_INCLUDED"), NOW) == []
    assert buy("car-3") == []
    assert stage.registry(HH, household_msg(status="MONITORING"), NOW) == []
    assert buy("car-4") == [("ASSET_PURCHASE", "LOW", ["car-4"])]
    # every one was processed (seen), none parked
    assert set(stage.state[HH].seen) == {"car-1", "car-2", "car-3", "car-4"} and stage.pending() == 0


# --- one writer per topic: the roster's record and the case's decided status (registry.household-status) --------

T0, T1, T2 = NOW - dt.timedelta(days=30), NOW - dt.timedelta(days=10), NOW - dt.timedelta(days=1)


def bought(stage: HouseholdStage, event_id: str) -> list[str]:
    """The rules a vehicle purchase raises (ASSET_PURCHASE: only for a household under monitoring)."""
    out = stage.event(ROUTES.household_events, enrich(CAR, vehicle(event_id)), NOW)
    return [a["rule"] for a in household_alerts(out)]


def test_effective_status_is_the_later_of_roster_and_decision() -> None:
    label = Decision("MONITORING", T1)
    assert effective_status("NOT_INCLUDED", T0, label) == "MONITORING"  # labelled after the roster said it
    assert effective_status("NOT_INCLUDED", T2, label) == "NOT_INCLUDED"  # the roster said it after the label
    assert effective_status("NOT_INCLUDED", T1, label) == "MONITORING"  # a tie goes to the decision
    assert effective_status("NOT_INCLUDED", T0, None) == "NOT_INCLUDED"
    assert effective_status("NOT_INCLUDED", None, label) == "NOT_INCLUDED"


def test_roster_then_label_then_the_same_roster_record_again_keeps_the_label() -> None:
    stage = household_stage(household_msg(status="NOT_INCLUDED", at=T0))
    assert bought(stage, "car-1") == []
    assert stage.registry(HH, status_msg("MONITORING", T1), NOW, REGISTRY_HOUSEHOLD_STATUS) == []
    assert stage.households[HH].monitoring_status == "MONITORING"
    assert bought(stage, "car-2") == ["ASSET_PURCHASE"]
    # the roster's record read again (a rebuild, or a load that did not change the household): still labelled
    assert stage.registry(HH, household_msg(status="NOT_INCLUDED", at=T0), NOW, REGISTRY_HOUSEHOLDS) == []
    assert stage.households[HH].monitoring_status == "MONITORING"
    assert bought(stage, "car-3") == ["ASSET_PURCHASE"]
    # a later load that changed the household: the bureau's export is the later word
    assert stage.registry(HH, household_msg(status="NOT_INCLUDED", income="5200", at=T2), NOW) == []
    assert stage.households[HH].monitoring_status == "NOT_INCLUDED"
    assert stage.households[HH].per_capita_income == Decimal("5200")
    assert bought(stage, "car-4") == []


def test_label_then_an_older_roster_snapshot_keeps_the_label_and_a_newer_one_wins() -> None:
    stage = household_stage()
    assert stage.registry(HH, status_msg("MONITORING", T1), NOW, REGISTRY_HOUSEHOLD_STATUS) == []
    assert len(stage.households) == 0  # a status alone is no household: events about it wait for the roster
    assert bought(stage, "car-1") == [] and stage.pending() == 1
    out = stage.registry(HH, household_msg(status="NOT_INCLUDED", income="4000", at=T0), NOW)
    assert [a["rule"] for a in household_alerts(out)] == ["ASSET_PURCHASE"]  # released, judged as labelled
    assert (stage.households[HH].monitoring_status, stage.households[HH].per_capita_income) == (
        "MONITORING", Decimal("4000"))  # the roster's other columns, the label's status
    assert stage.registry(HH, household_msg(status="NOT_INCLUDED", at=T2), NOW) == []
    assert stage.households[HH].monitoring_status == "NOT_INCLUDED"
    assert bought(stage, "car-2") == []


def test_announce_label_eliminates_the_risk_until_a_newer_roster_record() -> None:
    stage = household_stage(household_msg(status="MONITORING", at=T0))
    assert bought(stage, "car-1") == ["ASSET_PURCHASE"]
    stage.registry(HH, status_msg("RISK_ELIMINATED", T1, step="ANNOUNCE_LABEL"), NOW, REGISTRY_HOUSEHOLD_STATUS)
    assert bought(stage, "car-2") == []
    stage.registry(HH, household_msg(status="MONITORING", at=T2), NOW)
    assert bought(stage, "car-3") == ["ASSET_PURCHASE"]


def test_status_tombstone_restores_the_roster_and_a_roster_tombstone_keeps_the_status_aside() -> None:
    stage = household_stage(household_msg(status="NOT_INCLUDED", at=T0))
    stage.registry(HH, status_msg("MONITORING", T1), NOW, REGISTRY_HOUSEHOLD_STATUS)
    assert stage.households[HH].monitoring_status == "MONITORING"
    assert stage.registry(HH, None, NOW, REGISTRY_HOUSEHOLD_STATUS) == []  # a status tombstone: not a removal
    assert stage.households[HH].monitoring_status == "NOT_INCLUDED"
    stage.registry(HH, status_msg("MONITORING", T1), NOW, REGISTRY_HOUSEHOLD_STATUS)
    assert stage.registry(HH, None, NOW, REGISTRY_HOUSEHOLDS) == []  # gone from the roster
    assert HH not in stage.households
    stage.registry(HH, household_msg(status="NOT_INCLUDED", at=T0), NOW)  # back with its old record
    assert stage.households[HH].monitoring_status == "MONITORING"


@pytest.mark.parametrize("status_at", range(3))
def test_the_table_does_not_depend_on_how_the_two_topics_interleave(status_at: int) -> None:
    """Each topic is read in its own order; the engine interleaves them as fetches come in."""
    roster = [household_msg(status="NOT_INCLUDED", at=T0), household_msg(status="NOT_INCLUDED", at=T0)]
    for later in (False, True):
        stage = household_stage()
        if later:
            roster[1] = household_msg(status="NOT_INCLUDED", income="5200", at=T2)
        messages: list[tuple[str, bytes]] = [(REGISTRY_HOUSEHOLDS, m) for m in roster]
        messages.insert(status_at, (REGISTRY_HOUSEHOLD_STATUS, status_msg("MONITORING", T1)))
        for topic, msg in messages:
            stage.registry(HH, msg, NOW, topic)
        assert stage.households[HH].monitoring_status == ("NOT_INCLUDED" if later else "MONITORING")


def test_a_status_record_is_decoded_as_one() -> None:
    with pytest.raises(DecodeError):
        household_stage().registry(HH, household_msg(), NOW, REGISTRY_HOUSEHOLD_STATUS)


def test_a_person_who_moves_has_later_events_keyed_by_the_new_household() -> None:
    stage = person_stage(person_msg(household=HH))
    before = deliver(stage, HOSP, hospitalisation("hosp-1", DAY, "300"), NOW)
    assert [e.key for e in before] == [HH.encode()]
    assert stage.registry(PK, person_msg(household=HH2, relation="子"), NOW) == []
    after = deliver(stage, HOSP, hospitalisation("hosp-2", DAY, "300"), NOW)
    assert [(e.topic, e.key) for e in after] == [(ROUTES.household_events, HH2.encode())]
    assert (joined(after[0])["household_id"], joined(after[0])["relation"]) == (HH2, "子")
    # and the household stage files it under the new household
    households = household_stage(household_msg(HH), household_msg(HH2))
    households.event(ROUTES.household_events, after[0].value or b"", NOW)
    assert list(households.state) == [HH2] and households.state[HH2].seen == {"hosp-2": DAY}


# --- dedupe ----------------------------------------------------------------------------------------------------


def test_the_same_event_twice_raises_one_set_of_alerts() -> None:
    stage = household_stage(household_msg())
    event = enrich(DIS, disaster("dis-1", damage="COLLAPSED"))
    before = duplicates()
    first = stage.event(ROUTES.household_events, event, NOW)
    assert [e.topic for e in first] == [ROUTES.alerts_household, ROUTES.village_disasters,
                                        ROUTES.village_disasters]
    assert [(a["rule"], a["severity"]) for a in household_alerts(first)] == [("DISASTER_LOSS", "HIGH")]
    assert [e.key for e in first] == [HH.encode(), VILLAGE.encode(), VILLAGE.encode()]
    assert [e.topic for e in stage.flush(NOW)] == [ROUTES.profiles]
    dirty(stage)
    assert stage.event(ROUTES.household_events, event, NOW + dt.timedelta(minutes=1)) == []
    assert duplicates() == before + 1 and dirty(stage) == set()
    # a hospitalisation re-delivered is not counted twice in the window either
    hosp = enrich(HOSP, hospitalisation("hosp-1", DAY, "6000"))
    # no alert; the stay counted for REGIONAL_ILLNESS, the profile (the household had an alert) updated
    assert [e.topic for e in stage.event(ROUTES.household_events, hosp, NOW)] == [ROUTES.village_disasters]
    assert [e.topic for e in stage.flush(NOW)] == [ROUTES.profiles]
    assert stage.event(ROUTES.household_events, hosp, NOW) == []
    assert stage.flush(NOW) == []  # a duplicate changes nothing
    assert stage.state[HH].stays == [MedicalStay("hosp-1", DAY, Decimal("6000"))]
    assert duplicates() == before + 2


def test_a_failed_batch_leaves_no_profile_and_no_count_to_flush() -> None:
    """What a failed batch left for the flush goes (the engine replays the batch on the state rolled back)."""
    stage = household_stage(household_msg())
    counted = sample("povwatch_alerts_total", rule="DISASTER_LOSS", severity="HIGH")
    assert household_alerts(stage.event(ROUTES.household_events, enrich(DIS, disaster("dis-1", damage="COLLAPSED")),
                                        NOW))
    stage.forget()
    assert stage.flush(NOW) == []
    assert sample("povwatch_alerts_total", rule="DISASTER_LOSS", severity="HIGH") == counted


def test_the_same_village_record_twice_counts_once() -> None:
    stage = village_stage()
    before = duplicates()
    for i in range(4):
        assert village_batch(stage, village_msg(f"H{i}", f"dis-{i}", DAY), NOW) == []
    again = village_msg("H3", "dis-3", DAY)
    assert village_batch(stage, again, NOW) == []
    assert duplicates() == before + 1 and len(stage.state[VILLAGE].records) == 4
    out = village_batch(stage, village_msg("H4", "dis-4", DAY), NOW)
    assert [(e.topic, e.key) for e in out] == [(ROUTES.alerts_regional, VILLAGE.encode())]
    (alert,) = regional_alerts(out)
    assert alert["household_ids"] == ["H0", "H1", "H2", "H3", "H4"] and alert["region_code"] == VILLAGE
    assert stage.state[VILLAGE].fired == {regional_period(DAY, CFG)}


def test_a_redated_record_that_raises_nothing_is_still_stored() -> None:
    """A second report of a village record with an earlier date replaces it; when the earlier date is then too
    old to count, the replacement must still reach the store (a disk store keeps only what is stored back)."""
    stage = village_stage()
    for i in range(2):
        assert village_batch(stage, village_msg(f"H{i}", f"dis-{i}", DAY), NOW) == []
    dirty(stage)
    too_old = DAY - dt.timedelta(days=CFG.history_horizon_days + 30)
    assert village_batch(stage, village_msg("H0", "dis-0", too_old), NOW) == []
    assert dirty(stage) == {VILLAGE}  # written to the changelog
    assert [r.event_id for r in stage.state[VILLAGE].records] == ["dis-1"]  # and kept by the store


def test_undecodable_or_misrouted_messages_raise_decode_errors() -> None:
    persons = person_stage(person_msg())
    with pytest.raises(DecodeError, match="povwatch.registry.Person on events.medical-security.hospitalization, "
                                          "which carries povwatch.events.Hospitalization"):
        persons.event(HOSP, person_msg(), NOW)
    with pytest.raises(DecodeError, match="events.unknown.feed is not a monitored event topic"):
        persons.event("events.unknown.feed", hospitalisation("hosp-1", DAY, "1"), NOW)
    with pytest.raises(DecodeError):
        persons.event(HOSP, b"not avro", NOW)
    with pytest.raises(DecodeError):
        persons.registry(PK2, household_msg(), NOW)
    assert list(persons.persons) == [PK] and len(persons.state) == 0
    households = household_stage(household_msg())
    with pytest.raises(DecodeError):
        households.event(ROUTES.household_events, hospitalisation("hosp-1", DAY, "1"), NOW)  # not enriched
    with pytest.raises(DecodeError):
        households.registry(HH2, person_msg(), NOW)
    assert HH2 not in households.households and len(households.state) == 0
    with pytest.raises(TypeError):
        village_stage().registry(VILLAGE, None, NOW)


# --- the A/B/C medical example ---------------------------------------------------------------------------------

# household income 5000 x 4 = 20000/yr, threshold 10000; A day 0 6000, C day 300 6000, B day 400 100:
# C's 365-day window holds A + C = 12000 -> HIGH; B's holds C + B = 6100 -> nothing; A alone -> nothing
ABC = {"A": (DAY, "6000"), "B": (DAY + dt.timedelta(days=400), "100"), "C": (DAY + dt.timedelta(days=300), "6000")}
ABC_ID = AlertDraft(Rule.MEDICAL_EXPENSE, Severity.HIGH, HH, VILLAGE, "", ("A", "C"), ABC["C"][0]).alert_id


@pytest.mark.parametrize("order", ["".join(p) for p in itertools.permutations("ABC")])
@pytest.mark.parametrize("household_after", [0, 1, 2, 3])
def test_abc_gives_c_a_high_alert_in_every_arrival_order(order: str, household_after: int) -> None:
    stage = household_stage()
    out: list[Emit] = []
    for i, name in enumerate(order):
        if i == household_after:
            out += stage.registry(HH, household_msg(), NOW)
        day, oop = ABC[name]
        out += stage.event(ROUTES.household_events, enrich(HOSP, hospitalisation(name, day, oop)), NOW)
    if household_after == len(order):
        out += stage.registry(HH, household_msg(), NOW)
    (alert,) = household_alerts(out)
    assert (alert["rule"], alert["severity"]) == ("MEDICAL_EXPENSE", "HIGH")
    assert alert["event_ids"] == ["A", "C"] and alert["occurred_at"] == ABC["C"][0]
    assert alert["alert_id"] == ABC_ID
    assert "近365天家庭住院自付合计12000元(2次)" in alert["reason"]
    # besides the alert: each stay for REGIONAL_ILLNESS and the HIGH alert for REGIONAL_RISK_CLUSTER, and the
    # household's profile from its first alert on
    assert [e.topic for e in out if e.topic not in (ROUTES.village_disasters, ROUTES.profiles)] == [
        ROUTES.alerts_household]
    assert len([e for e in out if e.topic == ROUTES.village_disasters]) == 4
    state = stage.state[HH]
    assert state.pending == [] and set(state.seen) == {"A", "B", "C"}
    assert [(s.event_id, s.high) for s in state.stays] == [("A", False), ("C", True), ("B", False)]




# --- regional ids whatever the arrival order -------------------------------------------------------------------


def qualifying_ids(recs: list[tuple[str, str, dt.date]], cfg: RuleConfig = CFG) -> set[str]:
    """The oracle, written apart from the rule: every fixed period holding the start (a record's date) of a
    window of `regional_window_days` with `regional_min_households` distinct households, as alert ids."""
    span = dt.timedelta(days=cfg.regional_window_days)
    periods = set()
    for _, _, start in recs:
        households = {hh for hh, _, day in recs if start <= day <= start + span}
        if len(households) >= cfg.regional_min_households:
            periods.add(start.toordinal() // (cfg.regional_window_days + 1))
    return {RegionalDraft(VILLAGE, p, DAY, DAY, (), (), "").alert_id for p in periods}


def feed_village(recs: list[tuple[str, str, dt.date]]) -> dict[str, list[set[str]]]:
    """Alert id -> the households of each of its emissions, in order."""
    stage = village_stage()
    emitted: dict[str, list[set[str]]] = {}
    for hh, event_id, day in recs:
        for a in regional_alerts(village_batch(stage, village_msg(hh, event_id, day), NOW)):
            emitted.setdefault(a["alert_id"], []).append(set(a["household_ids"]))
    return emitted


def evidence_of(emitted: dict[str, list[set[str]]]) -> dict[str, set[str]]:
    """Each alert's households after its last emission; an alert is emitted again only with more households."""
    for alert_id, sets in emitted.items():
        assert all(a < b for a, b in zip(sets, sets[1:])), alert_id  # every re-emission adds a household
    return {alert_id: sets[-1] for alert_id, sets in emitted.items()}


# 3-12 households of one village, each reporting 1-3 disasters within four weeks (about three in four sets alert)
disaster_sets = st.integers(3, 12).flatmap(
    lambda n: st.lists(st.lists(st.integers(0, 27), min_size=1, max_size=3, unique=True), min_size=n, max_size=n),
).map(lambda households: [(f"H{h}", f"dis-H{h}-{d}", DAY + dt.timedelta(days=d))
                          for h, days in enumerate(households) for d in days])


@pytest.mark.slow(store="rocksdb")  # on the disk store too (slow: every state change written through)
@settings(max_examples=150, deadline=None)
@given(recs=disaster_sets, data=st.data())
def test_regional_alerts_do_not_depend_on_arrival_order(recs: list[tuple[str, str, dt.date]],
                                                       data: st.DataObject) -> None:
    """The same alert ids, each naming the same households in the end, in every arrival order."""
    expected = qualifying_ids(recs)
    in_order = evidence_of(feed_village(recs))
    assert set(in_order) == expected
    for _ in range(3):
        shuffled = evidence_of(feed_village(data.draw(st.permutations(recs))))
        assert shuffled == in_order


@settings(max_examples=120, deadline=None)
@given(recs=disaster_sets, data=st.data())
def test_a_batch_sends_each_regional_alert_once_as_it_ends(recs: list[tuple[str, str, dt.date]],
                                                           data: st.DataObject) -> None:
    """Records in batches of any size, in any order: each flush sends an alert id at most once, its version as the
    batch left it, and the alerts end naming what one record per batch ends with; never more versions."""
    order = data.draw(st.permutations(recs))
    cuts = sorted(data.draw(st.sets(st.integers(1, len(order)))) | {len(order)})
    stage = village_stage()
    emitted: dict[str, list[set[str]]] = {}
    start = 0
    for end in cuts:
        for hh, event_id, day in order[start:end]:
            assert stage.event(ROUTES.village_disasters, village_msg(hh, event_id, day), NOW) == []
        ids = []
        for a in regional_alerts(stage.flush(NOW)):
            ids.append(a["alert_id"])
            emitted.setdefault(a["alert_id"], []).append(set(a["household_ids"]))
        assert len(ids) == len(set(ids))
        start = end
    one_by_one = feed_village(order)  # the same order, one record per batch
    assert evidence_of(emitted) == evidence_of(one_by_one)
    assert sum(map(len, emitted.values())) <= sum(map(len, one_by_one.values()))
    assert stage.flush(NOW) == []


def test_a_dense_batch_sends_one_version_and_counts_it_once() -> None:
    """Eight households in one batch: one alert naming all eight, counted once (one by one: four versions)."""
    counted = sample("povwatch_alerts_total", rule="REGIONAL_DISASTER", severity="HIGH")
    stage = village_stage()
    for h in range(8):
        assert stage.event(ROUTES.village_disasters, village_msg(f"H{h}", f"dis-{h}", DAY), NOW) == []
    (alert,) = regional_alerts(stage.flush(NOW))
    assert alert["household_ids"] == [f"H{h}" for h in range(8)] and alert["raised_at"] == NOW
    assert sample("povwatch_alerts_total", rule="REGIONAL_DISASTER", severity="HIGH") == counted + 1
    assert [len(v) for v in feed_village([(f"H{h}", f"dis-{h}", DAY) for h in range(8)]).values()] == [4]


def test_a_failed_batch_leaves_no_alert_to_flush() -> None:
    """The engine rolls a failed batch's state back and replays it; the alerts it made are forgotten, not sent
    with the next batch's."""
    stage = village_stage()
    for h in range(5):
        stage.event(ROUTES.village_disasters, village_msg(f"H{h}", f"dis-{h}", DAY), NOW)
    stage.forget()
    assert stage.flush(NOW) == []


@pytest.mark.slow(store="rocksdb")  # on the disk store too (slow: every state change written through)
def test_regional_ids_in_every_order_of_a_cluster_over_a_period_boundary() -> None:
    # six households on days 7..12 of a period's first day (its last day and the next period's first five):
    # qualifying windows start in two periods, so two alerts in every order, each with the same households
    start = dt.date.fromordinal(regional_period(DAY, CFG) * 8)
    recs = [(f"H{i}", f"dis-{i}", start + dt.timedelta(days=7 + i)) for i in range(6)]
    expected = qualifying_ids(recs)
    assert len(expected) == 2
    first = evidence_of(feed_village(recs))
    assert sorted(len(e) for e in first.values()) == [5, 6]
    for order in itertools.permutations(recs):
        assert evidence_of(feed_village(list(order))) == first


# --- state levels off at the horizon ---------------------------------------------------------------------------


@pytest.mark.slow(store="rocksdb")  # on the disk store too (slow: every state change written through)
def test_household_state_levels_off_under_a_steady_stream() -> None:
    stage = household_stage(household_msg())
    kept = CFG.history_horizon_days // 10  # admissions every 10 days strictly after latest - 730: 73
    sizes = []
    for i in range(6 * 365 // 10):  # about six years
        day = DAY + dt.timedelta(days=10 * i)
        out = stage.event(ROUTES.household_events, enrich(HOSP, hospitalisation(f"h{i:04d}", day, "100")), NOW)
        assert [e.topic for e in out] == [ROUTES.village_disasters]  # the stay, for REGIONAL_ILLNESS; no alert:
        # 73 x 100 within a window never reaches 10000
        sizes.append((len(stage.state[HH].seen), len(stage.state[HH].stays)))
    assert kept == 73 and len(sizes) == 219
    assert sizes == [(min(i + 1, kept), min(i + 1, kept)) for i in range(219)]
    state = stage.state[HH]
    assert sorted(state.seen) == [f"h{i:04d}" for i in range(219 - kept, 219)]
    assert [s.event_id for s in state.stays] == [f"h{i:04d}" for i in range(219 - kept, 219)]


@pytest.mark.slow(store="rocksdb")  # on the disk store too (slow: every state change written through)
def test_village_state_levels_off_under_a_steady_stream() -> None:
    stage = village_stage()
    alerts = 0
    clusters: list[dt.date] = []
    for i in range(6 * 365 // 10):
        day = DAY + dt.timedelta(days=10 * i)
        clusters.append(day)
        for h in range(5):  # five households on one day: every cluster alerts, in a period of its own
            alerts += len(regional_alerts(village_batch(stage, village_msg(f"H{h}", f"d{i}-{h}", day), NOW)))
        state = stage.state[VILLAGE]
        cut = day - dt.timedelta(days=CFG.history_horizon_days)
        assert len(state.records) == 5 * min(i + 1, 73)
        assert state.fired == {regional_period(d, CFG) for d in clusters
                               if regional_period(d, CFG) >= regional_period(cut, CFG)}
        assert len(state.fired) <= 74
    assert alerts == 219
    assert len(stage.state[VILLAGE].records) == 365 and len(stage.state[VILLAGE].fired) in (73, 74)


# --- state codecs, TrackedDict ---------------------------------------------------------------------------------


def test_state_codecs_round_trip() -> None:
    pending = [Pending(HOSP, "hosp-1", hospitalisation("hosp-1", DAY, "300"), NOW),
               Pending(CAR, "car-1", vehicle("car-1"), NOW + dt.timedelta(milliseconds=250))]
    person = PersonState(pending)
    assert PERSON_STATE.decode(CODEC, PERSON_STATE.encode(CODEC, person)) == person
    assert PERSON_STATE.decode(CODEC, PERSON_STATE.encode(CODEC, PersonState())) == PersonState()
    household = HouseholdState(
        seen={"hosp-0": DAY, "car-9": DAY + dt.timedelta(days=3)},
        stays=[MedicalStay("hosp-0", DAY, Decimal("1234.56")), MedicalStay("hosp-2", DAY, Decimal("12000"), high=True)],
        pending=pending[:1])
    back = HOUSEHOLD_STATE.decode(CODEC, HOUSEHOLD_STATE.encode(CODEC, household))
    assert back == household and [s.out_of_pocket for s in back.stays] == [Decimal("1234.56"), Decimal("12000")]
    assert HOUSEHOLD_STATE.decode(CODEC, HOUSEHOLD_STATE.encode(CODEC, HouseholdState())) == HouseholdState()
    village = VillageState([VillageRecord("H0", "dis-0", DAY), VillageRecord("H1", "dis-1", DAY)],
                           {regional_period(DAY, CFG), regional_period(DAY, CFG) + 3}, village_code=VILLAGE)
    assert VILLAGE_STATE.decode(CODEC, VILLAGE_STATE.encode(CODEC, village)) == village
    assert CODEC.decode(VILLAGE_STATE.encode(CODEC, village)).record["records"][0]["village_code"] == VILLAGE
    assert VILLAGE_STATE.decode(CODEC, VILLAGE_STATE.encode(CODEC, VillageState())) == VillageState()


def test_state_made_by_the_stages_round_trips() -> None:
    households = household_stage()
    for name in "CAB":
        day, oop = ABC[name]
        households.event(ROUTES.household_events, enrich(HOSP, hospitalisation(name, day, oop)), NOW)
    households.registry(HH, household_msg(), NOW)
    households.event(ROUTES.household_events, enrich(CAR, vehicle("car-1"), person_msg(PK, HH2)), NOW)
    for key, state in households.state.items():
        assert HOUSEHOLD_STATE.decode(CODEC, HOUSEHOLD_STATE.encode(CODEC, state)) == state, key
    assert len(households.state) == 2 and len(households.state[HH2].pending) == 1
    persons = person_stage()
    deliver(persons, HOSP, hospitalisation("hosp-1", DAY, "300"), NOW)
    assert PERSON_STATE.decode(CODEC, PERSON_STATE.encode(CODEC, persons.state[PK])) == persons.state[PK]


def test_tracked_dict_records_the_keys_changed_since_the_last_take() -> None:
    d: TrackedDict[int] = TrackedDict()
    assert d.take_dirty() == set()
    d["a"] = 1
    d["b"] = 2
    d["a"] = 3
    assert d == {"a": 3, "b": 2} and d.dirty == {"a", "b"}
    assert d.take_dirty() == {"a", "b"} and d.dirty == set() and d.take_dirty() == set()
    del d["a"]
    assert d.pop("b") == 2
    assert d.pop("missing", None) is None  # nothing removed: not dirty
    with pytest.raises(KeyError):
        d.pop("missing")
    with pytest.raises(KeyError):
        del d["missing"]
    assert d == {} and d.take_dirty() == {"a", "b"}
    _ = d.get("x"), "x" in d  # reads change nothing
    assert d.take_dirty() == set()


def test_a_dense_cluster_is_listed_up_to_the_most_an_alert_lists_and_its_state_stays_bounded() -> None:
    stage = village_stage()
    before = sample("povwatch_monitor_regional_beyond_list_total", rule="REGIONAL_DISASTER")
    emissions = []
    for h in range(400):  # 400 households' disasters on two days of one period
        message = village_msg(f"H{h:03d}", f"d-{h}", DAY + dt.timedelta(days=h % 2))
        emissions += regional_alerts(village_batch(stage, message, NOW))
    listed = [len(a["household_ids"]) for a in emissions]
    assert len({a["alert_id"] for a in emissions}) == 1
    assert listed == list(range(CFG.regional_min_households, CFG.regional_list_max + 1))  # sent as households join
    state = stage.state[VILLAGE]
    assert len(state.records) == CFG.regional_list_max  # the records beyond the list are neither kept nor counted
    assert sample("povwatch_monitor_regional_beyond_list_total", rule="REGIONAL_DISASTER") - before == 400 - 50

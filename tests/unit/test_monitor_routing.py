"""Every feed of the catalogue through the monitor's stages: where each event goes (its feed's `link`), what is
kept of it (`facts`), which rules judge it (`rules`) — read from the declaration, so a new feed is covered here
as soon as it is declared. Plain code over dicts, real Avro messages made by the feeds' own connectors."""
from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from connectors.catalog import EVENT_FEEDS
from connectors.framework import EventHandler, FeedSpec, RawRow, ValidRecord, validate
from connectors.pseudonym import Pseudonymiser
from schemas.catalog import INTAKE_CHANNELS, INTAKE_SCHEMA
from services.monitor.handlers import Emit
from services.monitor.state import HOUSEHOLD_STATE, VILLAGE_STATE, Fact
from tests.unit.doubles import TEST_KEY
from tests.unit.test_monitor_handlers import (
    CODEC,
    HH,
    NOW,
    PK,
    ROUTES,
    VILLAGE,
    household_msg,
    household_stage,
    person_msg,
    person_stage,
    sample,
    village_stage,
)

SPECS = list(EVENT_FEEDS.values())
IDS = [f"{s.department}/{s.feed}" for s in SPECS]


def event_of(spec: FeedSpec, cells: dict[str, str] | None = None) -> tuple[bytes, bytes, dict[str, Any]]:
    """(message key, value, record) of the feed's example row as its connector publishes it."""
    valid = validate(spec, RawRow(2, dict(cells if cells is not None else spec.example)), NOW.date())
    assert isinstance(valid, ValidRecord), valid
    handler = EventHandler(spec, pseudonymiser=Pseudonymiser(TEST_KEY), codec=CODEC, clock=lambda: NOW)
    source = {"department": spec.department, "feed": spec.feed, "origin": "t.csv", "row": 2,
              "connector_version": "test"}
    accepted = handler.handle(valid, source)
    assert not isinstance(accepted, list)
    [message] = accepted.messages
    return message.key, message.value, CODEC.decode(message.value).record


def through(topic: str, key: bytes, value: bytes) -> tuple[list[Emit], list[Emit], Any, Any]:
    """One event through all three stages, its person (if any) and household in the roster."""
    persons = person_stage(person_msg(key.decode()))
    households = household_stage(household_msg())
    villages = village_stage()
    first = persons.event(topic, value, NOW, key)
    second: list[Emit] = []
    for emit in first:
        stage = households if emit.topic == ROUTES.household_events else villages
        second += stage.event(emit.topic, emit.value or b"", NOW, emit.key)
    for emit in [e for e in second if e.topic == ROUTES.village_disasters]:
        second += villages.event(emit.topic, emit.value or b"", NOW, emit.key)
    second += villages.flush(NOW)  # the regional alerts, sent at the end of the batch
    return first, second, households, villages


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_every_feed_reaches_its_household_and_is_judged_or_kept(spec: FeedSpec) -> None:
    key, value, record = event_of(spec)
    first, second, households, villages = through(spec.topic, key, value)
    if record["person_key"] is None:  # a village-level row naming no one: a fact of the village
        assert [e.topic for e in first] == [ROUTES.village_disasters] and first[0].key == VILLAGE.encode()
        assert list(villages.state) == [record["village_code"]] and not households.state
        [fact] = villages.state[record["village_code"]].facts
    else:
        assert [e.topic for e in first] == [ROUTES.household_events] and first[0].key == HH.encode()
        state = households.state[HH]
        assert record["event_id"] in state.seen
        alerts = [e for e in second if e.topic == ROUTES.alerts_household]
        assert bool(spec.wire.rules) or not alerts  # only a feed with rules raises alerts
        if not spec.wire.facts:
            assert state.facts == []
            return
        [fact] = state.facts
        assert fact.person_key == record["person_key"]
    assert fact.topic == spec.topic and fact.event_id == record["event_id"] and fact.day == record["occurred_at"]
    named = {c.field for c in spec.columns if not c.sensitive and spec.example.get(c.field)}
    assert named - {spec.occurred_at} <= set(fact.values) | {spec.occurred_at}
    assert not any(spec.example[c.field] in text for c in spec.columns if c.sensitive and spec.example.get(c.field)
                   for text in fact.values.values())


@pytest.mark.parametrize("spec", [s for s in SPECS if s.wire.link == "village"],
                         ids=[i for s, i in zip(SPECS, IDS, strict=True) if s.wire.link == "village"])
def test_a_village_level_row_that_names_someone_goes_to_their_household(spec: FeedSpec) -> None:
    ids = [c for c in spec.columns if c.sensitive == "id"]
    if not ids:
        pytest.skip(f"{spec.feed} names no one")
    cells = {**spec.example, ids[0].field: "652701198001011232"}
    key, value, record = event_of(spec, cells)
    assert record["person_key"] is not None and key == record["person_key"].encode()
    first, _, households, villages = through(spec.topic, key, value)
    assert [e.topic for e in first] == [ROUTES.household_events]
    assert all(not s.facts for s in villages.state.values())  # a fact of the household, not of the village
    assert [f.event_id for f in households.state[HH].facts] == [record["event_id"]]


def intake(channel_topic: str, *, head: str | None = PK, household: str | None = None) -> bytes:
    return CODEC.encode(INTAKE_SCHEMA, {
        "event_id": "i" * 32, "head_person_key": head, "household_id": household, "occurred_at": dt.date(2024, 6, 1),
        "ingested_at": NOW, "channel": "SELF_DECLARATION", "risk_type": "ILLNESS", "description": "父亲住院",
        "reported_on": dt.date(2024, 6, 1), "visit_result": None, "clue_source": None,
        "source": {"department": "intake", "feed": "self-declaration", "origin": "api", "row": 0,
                   "connector_version": "test"}})


def test_intake_reports_by_head_or_by_household_id_are_facts_of_the_household() -> None:
    topic = INTAKE_CHANNELS[0].topic
    by_head = intake(topic)
    first, second, households, _ = through(topic, PK.encode(), by_head)
    assert [e.topic for e in first] == [ROUTES.household_events]
    # a self-declaration is a REPORTED_RISK alert (MEDIUM), with the report's channel and text
    assert [e.topic for e in second] == [ROUTES.alerts_household]
    assert [e.topic for e in households.flush(NOW)] == [ROUTES.profiles]
    alert = CODEC.decode(second[0].value or b"").record
    assert (alert["rule"], alert["severity"], alert["event_ids"]) == ("REPORTED_RISK", "MEDIUM", ["i" * 32])
    assert alert["reason"] == "农户自主申报(2024-06-01): 风险类型因病; 内容: 父亲住院"
    assert alert["event_topics"] == [topic]
    [fact] = households.state[HH].facts
    assert fact == Fact(topic, "i" * 32, PK, dt.date(2024, 6, 1), {
        "channel": "SELF_DECLARATION", "risk_type": "ILLNESS", "description": "父亲住院", "reported_on": "2024-06-01",
        "ingested_on": NOW.date().isoformat()})
    # only the 户编号: no person to join, straight to the household
    by_id = intake(topic, head=None, household=HH)
    persons = person_stage()
    [emit] = persons.event(topic, by_id, NOW, HH.encode())
    assert emit.topic == ROUTES.household_events and emit.key == HH.encode()
    households = household_stage(household_msg())
    [alert] = households.event(emit.topic, emit.value or b"", NOW)
    assert CODEC.decode(alert.value or b"").record["household_id"] == HH
    [fact] = households.state[HH].facts
    assert fact.person_key is None and fact.values["risk_type"] == "ILLNESS"


def test_facts_survive_the_changelog_and_are_pruned_at_the_horizon() -> None:
    topic = INTAKE_CHANNELS[0].topic
    _, _, households, _ = through(topic, PK.encode(), intake(topic))
    state = households.state[HH]
    again = HOUSEHOLD_STATE.decode(CODEC, HOUSEHOLD_STATE.encode(CODEC, state))
    assert again.facts == state.facts
    state.happened(NOW.date() + dt.timedelta(days=729))  # still kept: reported (ingested) within the horizon
    state.prune(730)
    assert state.facts == again.facts
    state.happened(NOW.date() + dt.timedelta(days=730))
    state.prune(730)
    assert state.facts == []
    village = village_stage().state
    assert village == {}
    fact = Fact("events.water.drinking-water", "w" * 32, None, dt.date(2024, 5, 1), {"problems": "QUANTITY"})
    from services.monitor.state import VillageState
    kept = VillageState(village_code=VILLAGE, facts=[fact])
    back = VILLAGE_STATE.decode(CODEC, VILLAGE_STATE.encode(CODEC, kept))
    assert back.facts == [fact] and back.village_code == VILLAGE


def village_row() -> tuple[FeedSpec, bytes, bytes, dict[str, Any]]:
    """The first village-level feed's example row naming no one: its spec, message key, value and record."""
    villages = [s for s in SPECS if s.wire.link == "village"]
    if not villages:
        pytest.skip("no village-level feed declared")
    spec = villages[0]
    cells = {c.field: v for c, v in ((c, spec.example.get(c.field, "")) for c in spec.columns) if c.sensitive != "id"}
    return (spec, *event_of(spec, cells))


def test_a_village_event_delivered_twice_is_kept_once() -> None:
    spec, key, value, record = village_row()
    persons, stage = person_stage(), village_stage()
    [emit] = persons.event(spec.topic, value, NOW, key)
    assert stage.event(emit.topic, emit.value or b"", NOW) == []
    assert stage.event(emit.topic, emit.value or b"", NOW) == []
    assert [f.event_id for f in stage.state[record["village_code"]].facts] == [record["event_id"]]


def test_village_rows_sent_on_are_counted_at_the_batchs_flush() -> None:
    spec, key, value, _ = village_row()
    persons = person_stage()
    before = sample("povwatch_monitor_forwarded_total", stage="person", to="village")
    [emit] = persons.event(spec.topic, value, NOW, key)
    assert emit.topic == ROUTES.village_disasters
    assert sample("povwatch_monitor_forwarded_total", stage="person", to="village") == before  # not yet
    persons.flush(NOW)
    assert sample("povwatch_monitor_forwarded_total", stage="person", to="village") == before + 1

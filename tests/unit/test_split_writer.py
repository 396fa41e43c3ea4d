"""States written from facts and records encoded once (services/monitor/split_writer.py): the codec's bytes."""
from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from decimal import Decimal

import pytest

from schemas.codec import default_codec
from schemas.errors import SchemaError
from schemas.topics import event_topic
from services.monitor.rules import Fact, MedicalStay, Timer
from services.monitor.split_writer import ItemCache, SplitWriter
from services.monitor.state import HOUSEHOLD_STATE, HouseholdState, Pending

CODEC = default_codec()
DEATH = event_topic("civil-affairs", "death")
INCOME = event_topic("statistics", "household-income")
HOSPITAL = event_topic("medical-security", "hospitalization")


def _state() -> HouseholdState:
    s = HouseholdState()
    s.seen = {"e1": dt.date(2026, 3, 1), "e2": dt.date(2026, 4, 2), "e3": dt.date(2027, 12, 31)}
    s.stays = [MedicalStay("e2", dt.date(2026, 4, 2), Decimal("12345.67"), True)]
    s.pending = [Pending(DEATH, "e9", b"\xc3\x01message", dt.datetime(2026, 5, 1, 8, tzinfo=dt.UTC))]
    s.facts = [Fact(DEATH, "e1", "p" * 64, dt.date(2026, 3, 1), {"death_date": "2026-03-01", "cause": "病故"}),
               Fact(INCOME, "e3", None, dt.date(2026, 1, 1), {"year": "2026", "per_capita_net_income": "6800.00"})]
    s.timers = [Timer("JOB_LOSS", "f", dt.date(2026, 9, 1), dt.date(2026, 3, 1), "e1", "p" * 64)]
    s.profiled, s.latest = True, dt.date(2026, 4, 2)
    return s


def _codecs(s: HouseholdState) -> bytes:
    return CODEC.encode(HOUSEHOLD_STATE.schema, HOUSEHOLD_STATE.to_avro(s))


def test_a_state_is_written_as_the_codec_writes_it_again_and_again() -> None:
    s = _state()
    assert HOUSEHOLD_STATE.encode(CODEC, s) == _codecs(s)
    assert HOUSEHOLD_STATE.decode(CODEC, HOUSEHOLD_STATE.encode(CODEC, s)) == s
    s.facts.append(Fact(DEATH, "e4", None, dt.date(2026, 6, 1), {"death_date": "2026-06-01"}))  # a new fact
    assert HOUSEHOLD_STATE.encode(CODEC, s) == _codecs(s)
    s.facts = s.facts[1:]  # pruned
    assert HOUSEHOLD_STATE.encode(CODEC, s) == _codecs(s)
    empty = HouseholdState()
    assert HOUSEHOLD_STATE.encode(CODEC, empty) == _codecs(empty)


def test_the_cache_encodes_what_was_appended_and_everything_after_any_other_change() -> None:
    runs: list[list[str]] = []
    a, b, c = (Fact(HOSPITAL, e, None, dt.date(2026, 1, 1), {}) for e in "abc")
    cache = ItemCache()

    def make(facts: Sequence[Fact]) -> bytes:
        runs.append([f.event_id for f in facts])
        return "".join(f.event_id for f in facts).encode()

    assert cache.encode([a, b], make) == (2, b"ab")
    assert cache.encode([a, b], make) == (2, b"ab")
    assert cache.encode([a, b, c], make) == (3, b"abc")
    assert cache.encode([b, c], make) == (2, b"bc")  # pruned: everything again
    assert cache.encode([], make) == (0, b"")
    assert runs == [["a", "b"], ["c"], ["b", "c"], []]


def test_a_field_that_is_not_an_array_is_refused() -> None:
    with pytest.raises(SchemaError, match="not an array"):
        SplitWriter(CODEC, "povwatch.monitor.HouseholdState", "profiled")


def test_a_village_state_is_written_as_the_codec_writes_it() -> None:
    from services.monitor.rules import VillageRecord
    from services.monitor.state import VILLAGE_STATE, VillageState

    s = VillageState(village_code="652701100101")
    s.add_record(VillageRecord("H1", "e1", dt.date(2026, 7, 1)))
    s.add_record(VillageRecord("H2", "e2", dt.date(2026, 7, 3), "REGIONAL_ILLNESS", None, "肺炎"))
    s.fired, s.fired_keys = {3, 1}, {"REGIONAL_ILLNESS|肺炎|2026-07-01"}

    def codecs() -> bytes:
        return CODEC.encode(VILLAGE_STATE.schema, VILLAGE_STATE.to_avro(s))

    assert VILLAGE_STATE.encode(CODEC, s) == codecs()
    s.add_record(VillageRecord("H3", "e3", dt.date(2026, 7, 4), "REGIONAL_RETURNS", "p" * 64))
    assert VILLAGE_STATE.encode(CODEC, s) == codecs()
    assert VILLAGE_STATE.decode(CODEC, VILLAGE_STATE.encode(CODEC, s)).records == s.records


def test_a_village_state_with_facts_and_timers_is_written_as_the_codec_writes_it_again_and_again() -> None:
    from services.monitor.rules import VillageRecord
    from services.monitor.state import VILLAGE_STATE, VillageState

    water = event_topic("water-resources", "drinking-water")
    s = VillageState(village_code="652701100101")

    def codecs() -> bytes:
        return CODEC.encode(VILLAGE_STATE.schema, VILLAGE_STATE.to_avro(s))

    assert VILLAGE_STATE.encode(CODEC, s) == codecs()  # nothing in any array
    s.add_fact(Fact(water, "w1", None, dt.date(2026, 7, 1), {"problem": "水质不达标", "village_code": "652701100101"}))
    s.add_record(VillageRecord("H1", "e1", dt.date(2026, 7, 1)))
    s.timers = [Timer("REGIONAL_WATER", "w1", dt.date(2026, 7, 31), dt.date(2026, 7, 1), "w1", None)]
    s.fired, s.fired_keys = {7}, {"REGIONAL_ILLNESS|肺炎|2026-07-01"}
    assert VILLAGE_STATE.encode(CODEC, s) == codecs()
    s.add_fact(Fact(water, "w2", None, dt.date(2026, 8, 1), {"resolved_date": "2026-08-01"}))  # appended
    s.add_record(VillageRecord("H2", "e2", dt.date(2026, 8, 3), "REGIONAL_ILLNESS", None, "肺炎"))
    assert VILLAGE_STATE.encode(CODEC, s) == codecs()
    s.facts = s.facts[1:]  # pruned: written again from the start
    s.timers = []
    assert VILLAGE_STATE.encode(CODEC, s) == codecs()
    assert VILLAGE_STATE.decode(CODEC, VILLAGE_STATE.encode(CODEC, s)) == s


def test_a_writer_is_given_every_array_it_was_split_at() -> None:
    writer = SplitWriter(CODEC, "povwatch.monitor.VillageState", "records", "facts")
    with pytest.raises(SchemaError, match="1 arrays given, 2 expected"):
        writer.write({}, (0, b""))


@pytest.mark.parametrize("fields, message", [
    (("facts", "records"), "in the schema's order"),  # `write` would take the items in the other order
    (("records", "records"), "in the schema's order"),
    (("records", "evidence"), "has no field evidence"),
])
def test_a_split_out_of_order_or_at_no_such_field_is_refused(fields: tuple[str, ...], message: str) -> None:
    with pytest.raises(SchemaError, match=message):
        SplitWriter(CODEC, "povwatch.monitor.VillageState", *fields)

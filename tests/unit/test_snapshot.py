"""connectors/snapshot.py: the roster diff as a pure function, on plain dicts and on records encoded by the real
codec. The property: whatever the topics hold, applying the plan's messages gives exactly the file's state (plus
what the plan keeps), and an interrupted plan, re-planned from where it stopped, converges to the same state."""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.snapshot import (
    HOUSEHOLD_SCHEMA,
    PERSON_SCHEMA,
    UNDECODABLE,
    Diff,
    Send,
    Wanted,
    content_of,
    decode_state,
    diff,
    plan_roster,
)
from schemas.codec import default_codec
from schemas.topics import REGISTRY_HOUSEHOLDS, REGISTRY_PERSONS

CODEC = default_codec()


# --- diff on plain dicts ----------------------------------------------------------------------------------------

def test_added_changed_unchanged_removed() -> None:
    current = {b"a": {"v": 1}, b"b": {"v": 2}, b"c": {"v": 3}}
    wanted = {b"d": {"v": 4}, b"b": {"v": 20}, b"a": {"v": 1}}
    assert diff(current, wanted) == Diff(added=(b"d",), changed=(b"b",), unchanged=(b"a",), removed=(b"c",))


def test_file_order_is_kept_and_gone_keys_are_sorted() -> None:
    current = {b"z": {}, b"m": {}, b"x": {"v": 1}, b"y": {"v": 1}}
    wanted = {b"y": {"v": 2}, b"q": {}, b"x": {"v": 2}, b"p": {}}
    result = diff(current, wanted)
    assert result.added == (b"q", b"p") and result.changed == (b"y", b"x")
    assert result.removed == (b"m", b"z")


def test_delta_removes_nothing() -> None:
    result = diff({b"a": {"v": 1}, b"b": {"v": 2}}, {b"a": {"v": 9}}, delta=True)
    assert result == Diff(changed=(b"a",), kept_not_in_file=(b"b",))
    assert result.removed == ()


def test_kept_keys_are_not_removed() -> None:
    result = diff({b"a": {}, b"b": {}, b"c": {}}, {}, keep={b"b", b"zz"})
    assert result.removed == (b"a", b"c") and result.kept_row_rejected == (b"b",)
    assert result.counts() == {"added": 0, "changed": 0, "removed": 2, "unchanged": 0, "kept_row_rejected": 1,
                               "kept_not_in_file": 0}


def test_empty_topic_everything_added() -> None:
    assert diff({}, {b"a": {}, b"b": {}}) == Diff(added=(b"a", b"b"))


# --- real records: provenance is not content ---------------------------------------------------------------------

T0 = dt.datetime(2025, 1, 2, 3, 4, 5, tzinfo=dt.UTC)


def person(key: str, household: str, *, relation: str = "户主", sex: str = "M", born: dt.date = dt.date(1970, 1, 1),
           village: str = "652701100201", row: int = 2, at: dt.datetime = T0,
           origin: str = "roster.csv") -> dict[str, Any]:
    return {"person_key": key, "household_id": household, "relation": relation, "sex": sex, "birth_date": born,
            "village_code": village, "ingested_at": at,
            "source": {"department": "bureau", "feed": "roster", "origin": origin, "row": row,
                       "connector_version": "0.1.0"}}


def household(hid: str, *, head: str | None = None, status: str = "MONITORING", size: int = 3,
              income: Decimal = Decimal("6800.00"), village: str = "652701100201", row: int = 2, at: dt.datetime = T0,
              origin: str = "roster.csv") -> dict[str, Any]:
    return {"household_id": hid, "village_code": village, "head_person_key": head, "category": "LIFTED",
            "monitoring_status": status, "labour_capacity": "WEAK", "per_capita_income": income,
            "household_size": size, "ingested_at": at,
            "source": {"department": "bureau", "feed": "roster", "origin": origin, "row": row,
                       "connector_version": "0.1.0"}}


def enc_p(record: Mapping[str, Any]) -> bytes:
    return CODEC.encode(PERSON_SCHEMA, record)


def enc_h(record: Mapping[str, Any]) -> bytes:
    return CODEC.encode(HOUSEHOLD_SCHEMA, record)


def wanted_of(values: Iterable[tuple[bytes, bytes]], schema: str) -> dict[bytes, Wanted]:
    return {k: Wanted(content_of(CODEC.decode(v, expect=schema).record), v) for k, v in values}


def test_content_leaves_provenance_out() -> None:
    assert content_of(person("k", "H1")) == {"person_key": "k", "household_id": "H1", "relation": "户主",
                                             "sex": "M", "birth_date": dt.date(1970, 1, 1),
                                             "village_code": "652701100201"}


def test_a_record_differing_only_in_provenance_is_unchanged() -> None:
    on_topic = {b"k": enc_p(person("k", "H1", row=7, at=T0, origin="old.csv"))}
    in_file = wanted_of([(b"k", enc_p(person("k", "H1", row=2, at=T0 + dt.timedelta(days=30), origin="new.xlsx")))],
                        PERSON_SCHEMA)
    plan = plan_roster(decode_state(on_topic, CODEC, PERSON_SCHEMA), {}, in_file, {})
    assert plan.persons == Diff(unchanged=(b"k",))
    assert plan.messages == []


def test_a_semantic_difference_is_a_change() -> None:
    on_topic = {b"H1": enc_h(household("H1", status="MONITORING"))}
    in_file = wanted_of([(b"H1", enc_h(household("H1", status="RISK_ELIMINATED", at=T0 + dt.timedelta(1))))],
                        HOUSEHOLD_SCHEMA)
    plan = plan_roster({}, decode_state(on_topic, CODEC, HOUSEHOLD_SCHEMA), {}, in_file)
    assert plan.households == Diff(changed=(b"H1",))
    assert plan.messages == [Send(REGISTRY_HOUSEHOLDS, b"H1", in_file[b"H1"].value)]


def test_an_undecodable_value_is_replaced_or_removed() -> None:
    state = decode_state({b"a": b"garbage", b"b": b"\xc3\x01" + b"\x00" * 8}, CODEC, PERSON_SCHEMA)
    assert all(UNDECODABLE in content for content in state.values())
    in_file = wanted_of([(b"a", enc_p(person("a", "H1")))], PERSON_SCHEMA)
    plan = plan_roster(state, {}, in_file, {})
    assert plan.persons == Diff(changed=(b"a",), removed=(b"b",))


def test_plan_order_households_first_then_persons_then_tombstones() -> None:
    current_p = decode_state({b"p-gone": enc_p(person("p-gone", "H-gone")),
                              b"p-moved": enc_p(person("p-moved", "H-gone", relation="子"))}, CODEC, PERSON_SCHEMA)
    current_h = decode_state({b"H-gone": enc_h(household("H-gone"))}, CODEC, HOUSEHOLD_SCHEMA)
    wanted_p = wanted_of([(b"p-moved", enc_p(person("p-moved", "H-new", relation="子"))),
                          (b"p-new", enc_p(person("p-new", "H-new")))], PERSON_SCHEMA)
    wanted_h = wanted_of([(b"H-new", enc_h(household("H-new", head="p-new")))], HOUSEHOLD_SCHEMA)
    plan = plan_roster(current_p, current_h, wanted_p, wanted_h)
    assert [[(s.topic, s.key, s.value is None) for s in step] for step in plan.steps] == [
        [(REGISTRY_HOUSEHOLDS, b"H-new", False)],
        [(REGISTRY_PERSONS, b"p-moved", False), (REGISTRY_PERSONS, b"p-new", False)],
        [(REGISTRY_PERSONS, b"p-gone", True)],
        [(REGISTRY_HOUSEHOLDS, b"H-gone", True)],
    ]
    assert plan.tombstones == 2
    assert plan.persons.counts()["changed"] == 1 and plan.persons.counts()["added"] == 1


def test_rejected_but_known_person_is_kept_with_its_household() -> None:
    current_p = decode_state({b"p1": enc_p(person("p1", "H1")), b"p2": enc_p(person("p2", "H2")),
                              b"p3": enc_p(person("p3", "H3"))}, CODEC, PERSON_SCHEMA)
    current_h = decode_state({h: enc_h(household(h.decode())) for h in (b"H1", b"H2", b"H3")}, CODEC,
                             HOUSEHOLD_SCHEMA)
    wanted_p = wanted_of([(b"p1", enc_p(person("p1", "H1")))], PERSON_SCHEMA)
    wanted_h = wanted_of([(b"H1", enc_h(household("H1")))], HOUSEHOLD_SCHEMA)
    plan = plan_roster(current_p, current_h, wanted_p, wanted_h, rejected_person_keys={b"p2", b"p-unknown"})
    assert plan.persons == Diff(unchanged=(b"p1",), removed=(b"p3",), kept_row_rejected=(b"p2",))
    assert plan.households == Diff(unchanged=(b"H1",), removed=(b"H3",), kept_row_rejected=(b"H2",))
    assert [(s.key, s.value) for s in plan.messages] == [(b"p3", None), (b"H3", None)]


def test_delta_plan_sends_no_tombstone() -> None:
    current_p = decode_state({b"p1": enc_p(person("p1", "H1"))}, CODEC, PERSON_SCHEMA)
    current_h = decode_state({b"H1": enc_h(household("H1"))}, CODEC, HOUSEHOLD_SCHEMA)
    wanted_p = wanted_of([(b"p2", enc_p(person("p2", "H2")))], PERSON_SCHEMA)
    wanted_h = wanted_of([(b"H2", enc_h(household("H2")))], HOUSEHOLD_SCHEMA)
    plan = plan_roster(current_p, current_h, wanted_p, wanted_h, delta=True)
    assert all(s.value is not None for s in plan.messages) and plan.tombstones == 0
    assert plan.persons == Diff(added=(b"p2",), kept_not_in_file=(b"p1",))
    assert plan.households == Diff(added=(b"H2",), kept_not_in_file=(b"H1",))


# --- the property -------------------------------------------------------------------------------------------------

PERSON_KEYS = [f"{i:02x}" * 32 for i in range(8)]
HOUSEHOLD_IDS = [f"BL-{i}" for i in range(5)]
instants = st.datetimes(min_value=dt.datetime(2024, 1, 1), max_value=dt.datetime(2026, 1, 1),
                        timezones=st.just(dt.UTC)).map(lambda t: t.replace(microsecond=0))


@st.composite
def roster_state(draw: st.DrawFn) -> tuple[dict[bytes, bytes], dict[bytes, bytes]]:
    """A consistent registry (every person's household is there), encoded, with random provenance."""
    hids = draw(st.lists(st.sampled_from(HOUSEHOLD_IDS), unique=True))
    keys = draw(st.lists(st.sampled_from(PERSON_KEYS), unique=True)) if hids else []
    persons = {k.encode(): enc_p(person(
        k, draw(st.sampled_from(hids)), relation=draw(st.sampled_from(["户主", "配偶", "子"])),
        sex=draw(st.sampled_from(["M", "F"])), village=draw(st.sampled_from(["652701100201", "652722100203"])),
        row=draw(st.integers(2, 99)), at=draw(instants))) for k in keys}
    households = {h.encode(): enc_h(household(
        h, head=draw(st.sampled_from([None, *keys])), status=draw(st.sampled_from(["MONITORING", "RISK_ELIMINATED"])),
        size=draw(st.integers(1, 4)), income=draw(st.sampled_from([Decimal("4200.50"), Decimal("6800.00")])),
        row=draw(st.integers(2, 99)), at=draw(instants), origin=draw(st.sampled_from(["a.csv", "b.xlsx"]))))
        for h in hids}
    return persons, households


PERSON_FIELDS = ("person_key", "household_id", "relation", "sex", "birth_date", "village_code")
HOUSEHOLD_FIELDS = ("household_id", "village_code", "head_person_key", "category", "monitoring_status",
                    "labour_capacity", "per_capita_income", "household_size")


def meaning(state: Mapping[bytes, bytes], fields: tuple[str, ...]) -> dict[bytes, tuple[Any, ...]]:
    decoded = {k: CODEC.decode(v).record for k, v in state.items()}
    return {k: tuple(r[f] for f in fields) for k, r in decoded.items()}


def apply(state: dict[bytes, bytes], sends: Iterable[Send], topic: str) -> dict[bytes, bytes]:
    """What a compacted topic holds after the sends: the latest value per key, a tombstone removes the key."""
    out = dict(state)
    for send in sends:
        if send.topic != topic:
            continue
        if send.value is None:
            out.pop(send.key, None)
        else:
            out[send.key] = send.value
    return out


def plan_for(old: tuple[dict[bytes, bytes], dict[bytes, bytes]], new: tuple[dict[bytes, bytes], dict[bytes, bytes]],
             *, delta: bool, rejected: set[bytes]) -> Any:
    return plan_roster(decode_state(old[0], CODEC, PERSON_SCHEMA), decode_state(old[1], CODEC, HOUSEHOLD_SCHEMA),
                       wanted_of(new[0].items(), PERSON_SCHEMA), wanted_of(new[1].items(), HOUSEHOLD_SCHEMA),
                       delta=delta, rejected_person_keys=rejected)


def contents(state: Mapping[bytes, bytes], schema: str) -> dict[bytes, dict[str, Any]]:
    return decode_state(state, CODEC, schema)


def consistent(persons: Mapping[bytes, bytes], households: Mapping[bytes, bytes]) -> bool:
    return all(c["household_id"].encode() in households for c in contents(persons, PERSON_SCHEMA).values())


@settings(max_examples=100, deadline=None)  # 300 took most of a minute on a loaded machine
@given(old=roster_state(), new=roster_state(), delta=st.booleans(),
       rejected=st.sets(st.sampled_from(PERSON_KEYS).map(str.encode)), cut=st.integers(0, 30))
def test_applying_the_plan_gives_the_files_state(old: Any, new: Any, delta: bool, rejected: set[bytes],
                                                 cut: int) -> None:
    plan = plan_for(old, new, delta=delta, rejected=rejected)
    persons = apply(old[0], plan.messages, REGISTRY_PERSONS)
    households = apply(old[1], plan.messages, REGISTRY_HOUSEHOLDS)

    # exactly the file's content, plus what the plan keeps (everything not in the file with delta)
    expected_p = {**{k: v for k, v in contents(old[0], PERSON_SCHEMA).items()
                     if k in plan.persons.kept_row_rejected + plan.persons.kept_not_in_file},
                  **contents(new[0], PERSON_SCHEMA)}
    expected_h = {**{k: v for k, v in contents(old[1], HOUSEHOLD_SCHEMA).items()
                     if k in plan.households.kept_row_rejected + plan.households.kept_not_in_file},
                  **contents(new[1], HOUSEHOLD_SCHEMA)}
    assert contents(persons, PERSON_SCHEMA) == expected_p
    assert contents(households, HOUSEHOLD_SCHEMA) == expected_h
    if delta:
        assert set(persons) == set(old[0]) | set(new[0]) and set(households) == set(old[1]) | set(new[1])
    elif not rejected:
        assert contents(persons, PERSON_SCHEMA) == contents(new[0], PERSON_SCHEMA)
        assert contents(households, HOUSEHOLD_SCHEMA) == contents(new[1], HOUSEHOLD_SCHEMA)

    # only what differs in meaning is sent (fields listed here, independently of the code's PROVENANCE)
    for topic, i, fields in ((REGISTRY_PERSONS, 0, PERSON_FIELDS), (REGISTRY_HOUSEHOLDS, 1, HOUSEHOLD_FIELDS)):
        before, after = meaning(old[i], fields), meaning(new[i], fields)
        sent = [s.key for s in plan.messages if s.topic == topic and s.value is not None]
        assert sorted(sent) == sorted(key for key in after if before.get(key) != after[key])
    # the counts add up
    assert len(plan.messages) == len(plan.persons.upserts) + len(plan.households.upserts) + plan.tombstones
    assert len(plan.persons.upserts) + len(plan.persons.unchanged) == len(new[0])
    assert plan_for((persons, households), new, delta=delta, rejected=rejected).messages == []

    # after every step the topics are consistent: no person names a household that is not there
    p, h = old
    for step in plan.steps:
        p, h = apply(p, step, REGISTRY_PERSONS), apply(h, step, REGISTRY_HOUSEHOLDS)
        assert consistent(p, h)

    # interrupted after `cut` messages, re-planned from what is on the topics: converges to the same state
    done = plan.messages[:cut]
    p, h = apply(old[0], done, REGISTRY_PERSONS), apply(old[1], done, REGISTRY_HOUSEHOLDS)
    rerun = plan_for((p, h), new, delta=delta, rejected=rejected)
    p, h = apply(p, rerun.messages, REGISTRY_PERSONS), apply(h, rerun.messages, REGISTRY_HOUSEHOLDS)
    assert contents(p, PERSON_SCHEMA) == expected_p and contents(h, HOUSEHOLD_SCHEMA) == expected_h


def test_the_property_sees_interesting_cases() -> None:
    """Guard against a vacuous property: one hand-made case with every fate at once."""
    old = ({b"a" * 64: enc_p(person("a" * 64, "H1")), b"b" * 64: enc_p(person("b" * 64, "H2"))},
           {b"H1": enc_h(household("H1")), b"H2": enc_h(household("H2"))})
    new = ({b"a" * 64: enc_p(person("a" * 64, "H3", at=T0 + dt.timedelta(1))),
            b"c" * 64: enc_p(person("c" * 64, "H1"))},
           {b"H1": enc_h(household("H1", row=9)), b"H3": enc_h(household("H3"))})
    plan = plan_for(old, new, delta=False, rejected=set())
    assert plan.persons.counts() == {"added": 1, "changed": 1, "removed": 1, "unchanged": 0, "kept_row_rejected": 0,
                                     "kept_not_in_file": 0}
    assert plan.households.counts() == {"added": 1, "changed": 0, "removed": 1, "unchanged": 1,
                                        "kept_row_rejected": 0, "kept_not_in_file": 0}


@pytest.mark.parametrize("delta", [False, True])
def test_same_state_twice_sends_nothing(delta: bool) -> None:
    state = ({b"k": enc_p(person("k", "H1"))}, {b"H1": enc_h(household("H1"))})
    assert plan_for(state, state, delta=delta, rejected=set()).steps == ()

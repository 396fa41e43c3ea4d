"""Every declared event feed, generically: its example row, its required columns, its enumerations, its key.

The feed-specific checks and messy rows are tested per department (tests/unit/test_feeds_*.py); what holds for
every feed is tested here, so a new feed is covered as soon as it is declared.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import hmac
from typing import Any

import pytest

from connectors.catalog import EVENT_FEEDS
from connectors.fields import Choice, Date, MultiChoice, Year
from connectors.framework import Accepted, EventHandler, FeedSpec, RawRow, Rejection, ValidRecord, validate
from connectors.pseudonym import Pseudonymiser
from schemas.codec import default_codec
from tests.unit.doubles import FIXED_NOW, TEST_KEY, fixed_clock

CODEC = default_codec()
TODAY = FIXED_NOW.date()
SPECS = list(EVENT_FEEDS.values())
IDS = [f"{s.department}/{s.feed}" for s in SPECS]
SOURCE = {"department": "d", "feed": "f", "origin": "file.csv", "row": 2, "connector_version": "test"}


def person_key(id18: str) -> str:
    return hmac.new(TEST_KEY, id18.encode(), hashlib.sha256).hexdigest()


def handle(spec: FeedSpec, cells: dict[str, str]) -> tuple[Accepted | list[str] | Rejection, dict[str, Any] | None]:
    outcome = validate(spec, RawRow(2, dict(cells)), TODAY)
    if not isinstance(outcome, ValidRecord):
        return outcome, None
    handler = EventHandler(spec, pseudonymiser=Pseudonymiser(TEST_KEY), codec=CODEC, clock=fixed_clock())
    accepted = handler.handle(outcome, SOURCE)
    assert isinstance(accepted, Accepted)
    [message] = accepted.messages
    return accepted, CODEC.decode(message.value, spec.schema).record


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_example_row_is_complete_and_valid(spec: FeedSpec) -> None:
    declared = {c.field for c in spec.columns}
    assert set(spec.example) <= declared, f"example names undeclared fields: {set(spec.example) - declared}"
    assert {c.field for c in spec.columns if c.required} <= set(spec.example), "example misses a required column"
    outcome, record = handle(spec, dict(spec.example))
    assert isinstance(outcome, Accepted), outcome
    assert record is not None and record["event_id"] == outcome.identity
    assert isinstance(record["occurred_at"], dt.date)


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_event_carries_no_name_and_no_id_number_and_is_keyed_by_its_link(spec: FeedSpec) -> None:
    outcome, record = handle(spec, dict(spec.example))
    assert isinstance(outcome, Accepted) and record is not None
    [message] = outcome.messages
    assert message.topic == spec.topic == f"events.{spec.department}.{spec.feed}"
    for col in spec.columns:
        text = spec.example.get(col.field, "")
        if col.sensitive and text:
            assert text.encode() not in message.value, f"{col.field} travels in clear"
            assert col.field not in record
    ids = [c for c in spec.columns if c.sensitive == "id"]
    id_text = spec.example.get(ids[0].field, "") if ids else ""
    if id_text:
        assert record["person_key"] == person_key(id_text.upper()) and message.key == record["person_key"].encode()
    else:
        assert spec.wire.link == "village"
        assert record["person_key"] is None and message.key == record["village_code"].encode()


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_every_required_column_left_empty_rejects_the_row_naming_it(spec: FeedSpec) -> None:
    for col in spec.columns:
        cells = {**spec.example, col.field: ""}
        outcome, _ = handle(spec, cells)
        if col.required:
            assert isinstance(outcome, Rejection), col.field
            assert any(r.startswith(f"{col.field}: missing {col.label}") for r in outcome.reasons), outcome.reasons
        else:
            assert isinstance(outcome, Accepted), (col.field, outcome)


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_every_enumeration_is_closed(spec: FeedSpec) -> None:
    for col in spec.columns:
        if not isinstance(col.parser, (Choice, MultiChoice)) or col.field not in spec.example:
            continue
        outcome, _ = handle(spec, {**spec.example, col.field: "不在列表中"})
        assert isinstance(outcome, Rejection), col.field
        [reason] = [r for r in outcome.reasons if r.startswith(f"{col.field}:")]
        assert all(label in reason for label in col.parser.labels), reason
        for label in col.parser.labels:  # and every listed label is taken
            taken, _ = handle(spec, {**spec.example, col.field: label})
            if isinstance(taken, Rejection):  # a cross-field check may refuse a combination, never the value
                assert not any(r.startswith(f"{col.field}: unknown") for r in taken.reasons), taken.reasons


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_dates_in_the_future_are_rejected(spec: FeedSpec) -> None:
    tomorrow = (TODAY + dt.timedelta(days=1)).isoformat()
    dated = [c for c in spec.columns if type(c.parser).__name__ == "Date" and c.field in spec.example]
    [dated_by] = [c for c in spec.columns if c.field == spec.occurred_at]
    assert isinstance(dated_by.parser, (Date, Year)), "an event is dated by a date or a year"
    if isinstance(dated_by.parser, Year):  # a year-only feed: dated 1 January, and next year is refused
        outcome, record = handle(spec, dict(spec.example))
        assert record is not None and record["occurred_at"] == dt.date(int(spec.example["year"]), 1, 1)
        outcome, _ = handle(spec, {**spec.example, dated_by.field: str(TODAY.year + 1)})
        assert isinstance(outcome, Rejection) and any(r.startswith(f"{dated_by.field}:") for r in outcome.reasons)
    for col in dated:
        outcome, _ = handle(spec, {**spec.example, col.field: tomorrow})
        assert isinstance(outcome, Rejection) and any(r.startswith(f"{col.field}:") for r in outcome.reasons)


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_schema_matches_the_declaration(spec: FeedSpec) -> None:
    schema = CODEC.schema(spec.schema)
    fields = {f["name"]: f for f in schema["fields"]}
    assert {"event_id", "person_key", "occurred_at", "ingested_at", "source"} <= set(fields)
    for col in spec.columns:
        if col.sensitive:
            assert col.field not in fields, f"{col.field} must not be in the schema"
        else:
            assert col.field in fields, f"{col.field} is declared but not in {spec.schema}"
            optional = isinstance(fields[col.field]["type"], list) and "null" in fields[col.field]["type"]
            assert optional == (not col.required), f"{col.field}: optional in one, required in the other"
    person_optional = isinstance(fields["person_key"]["type"], list)
    assert person_optional == (spec.wire.link == "village")

"""The hop records written and read by hand (services/monitor/flat_codec.py) against fastavro's bytes."""
from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from schemas.codec import default_codec
from schemas.errors import DecodeError, SchemaError
from services.monitor.flat_codec import HOP_SCHEMAS, FlatCodec, flat_fields

CODEC = default_codec()
FLAT = FlatCodec(CODEC)

RECORDS: list[tuple[str, dict[str, Any]]] = [
    ("povwatch.monitor.HouseholdEvent",
     {"topic": "events.civil-affairs.death", "event": b"\xc3\x01" + bytes(range(256)) * 3, "person_key": "a" * 64,
      "household_id": "6527011001-0001", "relation": "户主", "birth_date": dt.date(1956, 2, 29),
      "village_code": "652701100101"}),
    ("povwatch.monitor.HouseholdEvent",
     {"topic": "intake.hotline", "event": b"", "person_key": None, "household_id": "户" * 50, "relation": None,
      "birth_date": None, "village_code": ""}),
    ("povwatch.monitor.HouseholdEvent",
     {"topic": "t", "event": b"y" * 200, "person_key": "", "household_id": "h", "relation": "配偶",
      "birth_date": dt.date(1, 1, 1), "village_code": "v"}),
    ("povwatch.monitor.VillageDisaster",
     {"village_code": "652701100101", "household_id": "h", "event_id": "e" * 70, "disaster_date": dt.date(2026, 7, 1),
      "rule": "REGIONAL_ILLNESS", "person_key": None, "group": "肺炎"}),
    ("povwatch.monitor.VillageDisaster",
     {"village_code": "6527011001", "household_id": "h", "event_id": "e", "disaster_date": dt.date(1969, 12, 31),
      "rule": "REGIONAL_RETURNS", "person_key": "p", "group": ""}),
    ("povwatch.monitor.VillageEvent", {"topic": "events.water.drinking", "event": b"\x00" * 130, "village_code": "v"}),
]


def test_every_hop_schema_is_flat() -> None:
    for name in HOP_SCHEMAS:
        assert flat_fields(name)
    with pytest.raises(SchemaError, match="not a flat field type"):
        flat_fields("povwatch.monitor.HouseholdState")


@pytest.mark.parametrize(("name", "record"), RECORDS)
def test_written_bytes_are_fastavros_and_read_back_the_same(name: str, record: dict[str, Any]) -> None:
    written = FLAT.encode(name, record)
    assert written == CODEC.encode(name, record)
    decoded = FLAT.decode(written)
    assert decoded == CODEC.decode(written)
    assert decoded.name == name and decoded.record == record


def test_another_schema_goes_to_the_codec() -> None:
    record = {"stage": "person", "topic": "t", "event_id": "e", "since": dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
              "expired_at": dt.datetime(2026, 1, 2, tzinfo=dt.UTC)}
    written = FLAT.encode("povwatch.monitor.Unmatched", record)
    assert written == CODEC.encode("povwatch.monitor.Unmatched", record)
    assert FLAT.decode(written) == CODEC.decode(written)
    with pytest.raises(DecodeError, match="expected povwatch.monitor.HouseholdEvent"):
        FLAT.decode(written, "povwatch.monitor.HouseholdEvent")


def test_a_record_that_does_not_fit_is_the_codecs_schema_error() -> None:
    name, record = RECORDS[3]
    with pytest.raises(SchemaError):
        FLAT.encode(name, {**record, "household_id": 5})
    with pytest.raises(SchemaError):
        FLAT.encode(name, {k: v for k, v in record.items() if k != "event_id"})


@pytest.mark.parametrize("cut", [1, 5, 20])
def test_a_truncated_message_is_the_codecs_decode_error(cut: int) -> None:
    written = FLAT.encode(*RECORDS[0])
    with pytest.raises(DecodeError):
        FLAT.decode(written[:-cut])


def test_a_bad_union_index_is_the_codecs_decode_error() -> None:
    written = bytearray(FLAT.encode(*RECORDS[1]))
    union = 10 + 1 + len("intake.hotline") + 1  # header, topic, empty event: person_key's union index
    assert written[union] == 0
    written[union] = 0x08  # branch 4 of a two-branch union
    with pytest.raises(DecodeError):
        FLAT.decode(bytes(written))


def test_a_missing_field_with_a_default_gets_it_as_from_the_codec() -> None:
    name, record = RECORDS[3]
    without = {k: v for k, v in record.items() if k != "rule"}
    assert FLAT.encode(name, without) == CODEC.encode(name, without)

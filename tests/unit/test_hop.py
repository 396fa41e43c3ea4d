"""The hand-written HouseholdEvent (services/monitor/hop.py) against the schema file and fastavro's bytes."""
from __future__ import annotations

import datetime as dt
import json

import pytest

from schemas.codec import AVRO_DIR, Decoded, default_codec
from schemas.errors import DecodeError
from services.monitor.hop import FIELDS, HOUSEHOLD_EVENT, Hop, HopCodec, as_record

CODEC = default_codec()
HOPS = HopCodec(CODEC)

RECORDS = [
    {"topic": "events.civil-affairs.death", "event": b"\xc3\x01" + bytes(range(256)) * 3, "person_key": "a" * 64,
     "household_id": "6527011001-0001", "relation": "户主", "birth_date": dt.date(1956, 2, 29),
     "village_code": "652701100101"},
    {"topic": "intake.hotline", "event": b"", "person_key": None, "household_id": "户" * 50, "relation": None,
     "birth_date": None, "village_code": ""},
    {"topic": "t", "event": b"x", "person_key": "", "household_id": "h", "relation": "子",
     "birth_date": dt.date(2024, 12, 31), "village_code": "v"},
    {"topic": "t", "event": b"y" * 200, "person_key": "k", "household_id": "h", "relation": "配偶",
     "birth_date": dt.date(1, 1, 1), "village_code": "v"},
]


def _schema_fields() -> list[tuple[str, object]]:
    schema = json.loads((AVRO_DIR / f"{HOUSEHOLD_EVENT}.avsc").read_text(encoding="utf-8"))
    out: list[tuple[str, object]] = []
    for field in schema["fields"]:
        kind = field["type"]
        if isinstance(kind, list):
            kind = tuple(k["logicalType"] if isinstance(k, dict) else k for k in kind)
        elif isinstance(kind, dict):
            kind = kind["logicalType"]
        out.append((field["name"], kind))
    return out


def test_the_layout_is_the_schema_files() -> None:
    assert list(FIELDS) == _schema_fields()


@pytest.mark.parametrize("record", RECORDS)
def test_written_bytes_are_fastavros_and_read_back_the_same(record: dict[str, object]) -> None:
    written = HOPS.write(*record.values())  # type: ignore[arg-type]
    assert written == CODEC.encode(HOUSEHOLD_EVENT, record)
    read = HOPS.read(written)
    assert isinstance(read, Hop)
    assert as_record(read) == CODEC.decode(written).record == record


def test_another_message_is_left_to_the_codec() -> None:
    person = CODEC.encode("povwatch.monitor.VillageEvent", {"topic": "t", "event": b"e", "village_code": "v"})
    read = HOPS.read(person)
    assert isinstance(read, Decoded) and read.name == "povwatch.monitor.VillageEvent"


@pytest.mark.parametrize("cut", [1, 5, 20])
def test_a_truncated_message_is_the_codecs_decode_error(cut: int) -> None:
    written = HOPS.write(*RECORDS[0].values())  # type: ignore[arg-type]
    with pytest.raises(DecodeError):
        HOPS.read(written[:-cut])


def test_a_bad_union_index_is_the_codecs_decode_error() -> None:
    written = bytearray(HOPS.write(*RECORDS[1].values()))  # type: ignore[arg-type]
    union = 10 + 1 + len("intake.hotline") + 1  # header, topic, empty event: person_key's union index
    assert written[union] == 0
    written[union] = 0x08  # branch 4 of a two-branch union
    with pytest.raises(DecodeError):
        HOPS.read(bytes(written))

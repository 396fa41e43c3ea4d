"""The one dead-letter builder (schemas/deadletter.py): rows and Kafka messages, their keys, the wire, old data."""
from __future__ import annotations

import datetime as dt
import io
import json
from pathlib import Path
from typing import Any

import fastavro
import pytest
from fastavro.schema import fingerprint, load_schema, parse_schema, to_parsing_canonical_form

from schemas.codec import AVRO_DIR, MAGIC, default_codec
from schemas.deadletter import SCHEMA, DeadLetter, message_dead_letter, row_dead_letter
from schemas.release import snapshots

NOW = dt.datetime(2024, 7, 1, 9, 30, tzinfo=dt.UTC)
SOURCE = {"department": "medical-security", "feed": "hospitalization", "origin": "住院.csv", "row": 3,
          "connector_version": "0.1.0"}
CODEC = default_codec()


def test_row_dead_letter() -> None:
    letter = row_dead_letter(SOURCE, ("out_of_pocket: negative amount", "id_number: invalid"),
                             {"name": "<redacted name>", "out_of_pocket": "-30"}, "connector", NOW)
    assert letter.key == "住院.csv:3".encode()
    assert letter.record == {
        "source": SOURCE, "stage": "connector",
        "reasons": ["out_of_pocket: negative amount", "id_number: invalid"],
        "fields": {"name": "<redacted name>", "out_of_pocket": "-30"}, "rejected_at": NOW, "message": None,
    }
    decoded = CODEC.decode(letter.encode(), expect=SCHEMA).record
    # Source v2: a source built without a key_id goes on the wire with the default, ""
    assert decoded == {**letter.record, "source": {**SOURCE, "key_id": ""}}


def test_message_dead_letter_keeps_the_offset_out_of_the_row_number() -> None:
    letter = message_dead_letter("alerts.household", 2, 1_234_567_890_123, ["case DB refused it: too long"],
                                 "casefeed", NOW, fields={"alert_id": "f" * 32})
    assert letter.key == b"alerts.household:2:1234567890123"
    record = CODEC.decode(letter.encode(), expect=SCHEMA).record
    assert record["message"] == {"topic": "alerts.household", "partition": 2, "offset": 1_234_567_890_123}
    assert record["source"] == {"department": "casefeed", "feed": "alerts.household", "origin": "alerts.household",
                                "row": 0, "connector_version": "casefeed", "key_id": ""}
    assert record["stage"] == "casefeed"
    assert record["reasons"] == ["case DB refused it: too long"]
    assert record["fields"] == {"alert_id": "f" * 32}
    assert record["rejected_at"] == NOW


def test_message_dead_letter_with_the_monitors_arguments() -> None:
    # what the monitor's park() has at hand: (topic, partition, offset, reasons, stage, now)
    letter = message_dead_letter("events.education.dropout", 0, 0, ["not an Avro single-object message"],
                                 "monitor", NOW)
    assert isinstance(letter, DeadLetter)
    assert letter.key == b"events.education.dropout:0:0"
    assert letter.record["fields"] == {}
    assert CODEC.decode(letter.encode(CODEC)).record["message"]["offset"] == 0


def test_a_consumer_outside_the_code_decodes_a_message_dead_letter_with_the_avsc_files_alone() -> None:
    data = message_dead_letter("alerts.regional", 1, 7, ["bad"], "casefeed", NOW).encode()
    assert data[:2] == MAGIC
    schema = load_schema(str(AVRO_DIR / "povwatch.DeadLetter.avsc"))
    record = fastavro.schemaless_reader(io.BytesIO(data[10:]), schema)
    assert isinstance(record, dict)
    assert record["message"] == {"topic": "alerts.regional", "partition": 1, "offset": 7}


def test_a_v1_dead_letter_reads_with_no_message() -> None:
    [(version, path), *newer] = snapshots(SCHEMA)
    assert version == 1 and newer, "DeadLetter v2 (with `message`) must be released"
    v1 = parse_schema(json.loads(Path(path).read_text(encoding="utf-8")))
    old = {"source": SOURCE, "stage": "connector", "reasons": ["r"], "fields": {}, "rejected_at": NOW}
    buf = io.BytesIO()
    buf.write(MAGIC)
    buf.write(_fingerprint(v1))
    fastavro.schemaless_writer(buf, v1, old)
    assert CODEC.decode(buf.getvalue(), expect=SCHEMA).record == {
        **old, "source": {**SOURCE, "key_id": ""}, "message": None}


def _fingerprint(schema: Any) -> bytes:
    return bytes.fromhex(fingerprint(to_parsing_canonical_form(schema), "CRC-64-AVRO"))


@pytest.mark.parametrize("call, problem", [
    (lambda: row_dead_letter(SOURCE, [], {}, "connector", NOW), "at least one reason"),
    (lambda: row_dead_letter(SOURCE, ["ok", " "], {}, "connector", NOW), "no empty one"),
    (lambda: row_dead_letter(dict(SOURCE, row=0), ["r"], {}, "connector", NOW), "starts at 1"),
    (lambda: row_dead_letter(SOURCE, ["r"], {}, "connector", NOW.replace(tzinfo=None)), "timezone-aware"),
    (lambda: row_dead_letter(SOURCE, ["r"], {}, "", NOW), "stage"),
    (lambda: message_dead_letter("t", -1, 3, ["r"], "monitor", NOW), "cannot be negative"),
    (lambda: message_dead_letter("t", 0, -1, ["r"], "monitor", NOW), "cannot be negative"),
    (lambda: message_dead_letter("", 0, 1, ["r"], "monitor", NOW), "topic"),
])
def test_a_dead_letter_without_what_makes_it_useful_is_refused(call: Any, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        call()

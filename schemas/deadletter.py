"""Dead letters: the ONE builder of `povwatch.DeadLetter` records and their Kafka keys, for the whole project.

Two kinds of things are rejected:

    row_dead_letter(source, reasons, fields, stage, now)
        a row of a department file (connectors, roster): `source` is the row's `povwatch.Source` record (file
        name and row number, header = row 1); key `<file>:<row>`; `message` is null.
    message_dead_letter(topic, partition, offset, reasons, stage, now, *, fields=None)
        a Kafka message (monitor, casefeed): its position goes in the `message` field (topic, partition,
        offset), never in the row number; key `<topic>:<partition>:<offset>`; `source` names the stage as
        department and the topic as feed and origin, with row 0 and the stage as version.

Both return a `DeadLetter` (key + record) whose `encode()` gives the single-object encoded value. Pure: no I/O;
the caller sends it to the right topic (`schemas.topics`). Callers pass reasons and fields already free of names
and ID numbers (connectors redact them; a message's reasons are about data that already travels on Kafka).
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from schemas.codec import Codec, default_codec

__all__ = ["SCHEMA", "DeadLetter", "row_dead_letter", "message_dead_letter"]

SCHEMA = "povwatch.DeadLetter"


@dataclass(frozen=True)
class DeadLetter:
    """A dead letter ready for Kafka: its key and its `povwatch.DeadLetter` record."""

    key: bytes
    record: dict[str, Any]

    def encode(self, codec: Codec | None = None) -> bytes:
        """The record, single-object encoded (SchemaError if it does not fit the schema)."""
        return (codec or default_codec()).encode(SCHEMA, self.record)


def _reasons(reasons: Iterable[str]) -> list[str]:
    listed = [str(r) for r in reasons]
    if not listed or not all(r.strip() for r in listed):
        raise ValueError("a dead letter needs at least one reason, and no empty one")
    return listed


def _moment(now: dt.datetime) -> dt.datetime:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("a dead letter's rejected_at must be timezone-aware")
    return now


def _stage(stage: str) -> str:
    if not stage.strip():
        raise ValueError("a dead letter needs the stage that rejected it")
    return stage


def row_dead_letter(source: Mapping[str, Any], reasons: Iterable[str], fields: Mapping[str, str], stage: str,
                    now: dt.datetime) -> DeadLetter:
    """The dead letter of a rejected file row. `source`: the row's `povwatch.Source` record (department, feed,
    origin = file name, row >= 1, connector_version); `fields`: the row as read, already redacted."""
    row = source["row"]
    if not isinstance(row, int) or row < 1:
        raise ValueError(f"a file row number starts at 1 (the header), not {row!r}")
    record = {"source": dict(source), "stage": _stage(stage), "reasons": _reasons(reasons),
              "fields": {str(k): str(v) for k, v in fields.items()}, "rejected_at": _moment(now), "message": None}
    return DeadLetter(f"{source['origin']}:{row}".encode(), record)


def message_dead_letter(topic: str, partition: int, offset: int, reasons: Iterable[str], stage: str,
                        now: dt.datetime, *, fields: Mapping[str, str] | None = None) -> DeadLetter:
    """The dead letter of a rejected Kafka message at topic[partition]@offset; `fields`: anything that helps to
    find or replay it (e.g. an alert's id), never a name or an ID number."""
    if not topic:
        raise ValueError("a dead-lettered message needs its topic")
    if partition < 0 or offset < 0:
        raise ValueError(f"partition and offset cannot be negative ({topic}[{partition}]@{offset})")
    stage = _stage(stage)
    record = {
        "source": {"department": stage, "feed": topic, "origin": topic, "row": 0, "connector_version": stage},
        "stage": stage, "reasons": _reasons(reasons),
        "fields": {str(k): str(v) for k, v in (fields or {}).items()}, "rejected_at": _moment(now),
        "message": {"topic": topic, "partition": partition, "offset": offset},
    }
    return DeadLetter(f"{topic}:{partition}:{offset}".encode(), record)

"""The person stage's HouseholdEvent, written and read by hand: the hottest message of the monitor.

Every event crosses from the person stage to the household stage as a `povwatch.monitor.HouseholdEvent` (the event
message itself, the household it goes to, the person it names). Through fastavro a round trip costs about 20 us,
mostly per-call overhead (a record of seven small fields); written here it costs a few. The bytes are exactly
fastavro's: the Avro single-object encoding of the current schema (`schemas/codec.py`), fields in schema order:

    topic string | event bytes | person_key [null, string] | household_id string | relation [null, string] |
    birth_date [null, date (days since 1970-01-01)] | village_code string

`read` takes only messages written with the current schema's fingerprint and hands anything else (an earlier
version, another schema, a corrupt body) to the codec, so schema resolution and its errors stay the codec's.
`tests/unit/test_hop.py` holds the layout to the schema file and the bytes to fastavro's.
"""
from __future__ import annotations

import datetime as dt
from typing import Any, NamedTuple

from schemas.codec import MAGIC, Codec, Decoded

__all__ = ["HOUSEHOLD_EVENT", "FIELDS", "HopCodec", "Hop"]

HOUSEHOLD_EVENT = "povwatch.monitor.HouseholdEvent"
FIELDS = (("topic", "string"), ("event", "bytes"), ("person_key", ("null", "string")), ("household_id", "string"),
          ("relation", ("null", "string")), ("birth_date", ("null", "date")), ("village_code", "string"))
_EPOCH = dt.date(1970, 1, 1).toordinal()


class Hop(NamedTuple):
    """A HouseholdEvent as the household stage uses it."""

    topic: str
    event: bytes
    person_key: str | None
    household_id: str
    relation: str | None
    birth_date: dt.date | None
    village_code: str


def _long(n: int) -> bytes:
    """Avro long: zig-zag, then base-128 varint, low group first."""
    z = (n << 1) ^ (n >> 63)
    if z < 0x80:
        return bytes((z,))
    out = bytearray()
    while z >= 0x80:
        out.append((z & 0x7F) | 0x80)
        z >>= 7
    out.append(z)
    return bytes(out)


def _text(value: str) -> bytes:
    data = value.encode("utf-8")
    return _long(len(data)) + data


class _Reader:
    __slots__ = ("data", "pos")

    def __init__(self, data: bytes, pos: int) -> None:
        self.data, self.pos = data, pos

    def long(self) -> int:
        data, pos = self.data, self.pos
        b = data[pos]
        pos += 1
        n, shift = b & 0x7F, 7
        while b & 0x80:
            b = data[pos]
            pos += 1
            n |= (b & 0x7F) << shift
            shift += 7
        self.pos = pos
        return (n >> 1) ^ -(n & 1)

    def raw(self) -> bytes:
        size = self.long()
        start = self.pos
        end = self.pos = start + size
        if size < 0 or end > len(self.data):
            raise IndexError("truncated")
        return self.data[start:end]

    def text(self) -> str:
        return self.raw().decode("utf-8")

    def branch(self) -> bool:
        """A [null, X] union's index: False for null, True for X."""
        index = self.long()
        if index not in (0, 1):
            raise ValueError(f"union index {index}")
        return index == 1


class HopCodec:
    """HouseholdEvent by hand, for the current schema (its fingerprint from `codec`)."""

    def __init__(self, codec: Codec) -> None:
        self._codec = codec
        self._header = MAGIC + codec.fingerprint(HOUSEHOLD_EVENT)

    def write(self, topic: str, event: bytes, person_key: str | None, household_id: str, relation: str | None,
              birth_date: dt.date | None, village_code: str) -> bytes:
        parts = [self._header, _text(topic), _long(len(event)), event]
        parts.append(b"\x00" if person_key is None else b"\x02" + _text(person_key))
        parts.append(_text(household_id))
        parts.append(b"\x00" if relation is None else b"\x02" + _text(relation))
        parts.append(b"\x00" if birth_date is None else b"\x02" + _long(birth_date.toordinal() - _EPOCH))
        parts.append(_text(village_code))
        return b"".join(parts)

    def read(self, data: bytes) -> Hop | Decoded:
        """The HouseholdEvent, or what the codec decodes of any other message (DecodeError if nothing)."""
        if data[:len(self._header)] != self._header:
            return self._codec.decode(data)
        r = _Reader(data, len(self._header))
        try:
            hop = Hop(r.text(), r.raw(), r.text() if r.branch() else None, r.text(), r.text() if r.branch() else None,
                      dt.date.fromordinal(r.long() + _EPOCH) if r.branch() else None, r.text())
        except (IndexError, ValueError, OverflowError):
            return self._codec.decode(data)  # corrupt: the codec says how, as it says for every message
        if r.pos != len(data):
            return self._codec.decode(data)
        return hop


def as_record(hop: Hop) -> dict[str, Any]:
    """The record fastavro would decode (for tests and tools)."""
    return hop._asdict()

"""The monitor's hop records, written and read by hand: the messages every event costs between its stages.

Every event crosses from the person stage to the household stage as a `povwatch.monitor.HouseholdEvent`, and each
regional record from the household stage to the village stage as a `povwatch.monitor.VillageDisaster`. Through
fastavro a round trip of such a small record costs 15-20 us, mostly per-call overhead; written here it costs a
few. `FlatCodec` does it for flat records - fields of type string, bytes, int/long, boolean, date, or a
[null, one of those] union - read from the current schema files, so the bytes are exactly fastavro's (Avro
single-object encoding, `schemas/codec.py`: fields in schema order, zig-zag varints, a union as its branch index
then the value).

It stands in for the `Codec` where the stages encode and decode: a schema it does not cover, and any message not
written with a covered schema's current fingerprint (an earlier version, another schema, a corrupt body), go to
the codec, so schema resolution and its errors stay the codec's. `tests/unit/test_flat_codec.py` holds the bytes to
fastavro's.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from typing import Any

from schemas.codec import MAGIC, Codec, Decoded, expanded_schema
from schemas.errors import SchemaError

__all__ = ["FlatCodec", "HOP_SCHEMAS", "flat_fields", "avro_long"]

HOP_SCHEMAS = ("povwatch.monitor.HouseholdEvent", "povwatch.monitor.VillageDisaster", "povwatch.monitor.VillageEvent")
_EPOCH = dt.date(1970, 1, 1).toordinal()
_HEADER = len(MAGIC) + 8
_KINDS = ("string", "bytes", "int", "long", "boolean", "date")


def flat_fields(name: str) -> list[tuple[str, str, bool]]:
    """(field, kind, nullable) of a flat schema; SchemaError for a field of any other type."""
    out = []
    for field in expanded_schema(name)["fields"]:
        kind, nullable = field["type"], False
        if isinstance(kind, list) and len(kind) == 2 and kind[0] == "null":
            kind, nullable = kind[1], True
        if isinstance(kind, dict) and kind.get("logicalType") == "date" and kind.get("type") == "int":
            kind = "date"
        if kind not in _KINDS:
            raise SchemaError(f"{name}.{field['name']}: {kind!r} is not a flat field type")
        out.append((field["name"], kind, nullable))
    return out


def avro_long(n: int) -> bytes:
    """`n` as Avro writes a long: zig-zag, then base-128 varint."""
    z = (n << 1) ^ (n >> 63)
    if z < 0x80:
        return bytes((z,))
    out = bytearray()
    while z >= 0x80:
        out.append((z & 0x7F) | 0x80)
        z >>= 7
    out.append(z)
    return bytes(out)


def _put(kind: str, value: Any) -> bytes:
    if kind == "string":
        data: bytes = value.encode("utf-8")
        return avro_long(len(data)) + data
    if kind == "bytes":
        return avro_long(len(value)) + bytes(value)
    if kind == "date":
        return avro_long(value.toordinal() - _EPOCH)
    if kind == "boolean":
        return b"\x01" if value else b"\x00"
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{value!r} is not an {kind}")
    return avro_long(value)


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    b = data[pos]
    pos += 1
    n, shift = b & 0x7F, 7
    while b & 0x80:
        b = data[pos]
        pos += 1
        n |= (b & 0x7F) << shift
        shift += 7
    return (n >> 1) ^ -(n & 1), pos


def _get(kind: str, data: bytes, pos: int) -> tuple[Any, int]:
    if kind == "boolean":
        b = data[pos]
        if b > 1:
            raise ValueError(f"boolean {b}")
        return b == 1, pos + 1
    n, pos = _varint(data, pos)
    if kind == "date":
        return dt.date.fromordinal(n + _EPOCH), pos
    if kind in ("int", "long"):
        return n, pos
    end = pos + n
    if n < 0 or end > len(data):
        raise IndexError("truncated")
    return (data[pos:end].decode("utf-8") if kind == "string" else data[pos:end]), end


class _Flat:
    """One flat schema: its header and fields."""

    def __init__(self, codec: Codec, name: str) -> None:
        self.name = name
        self.header = MAGIC + codec.fingerprint(name)
        self.fields = flat_fields(name)

    def write(self, record: Mapping[str, Any]) -> bytes:
        if len(record) != len(self.fields) or any(f not in record for f, _, _ in self.fields):
            raise KeyError(f"fields {sorted(record)} are not {[f for f, _, _ in self.fields]}")
        parts = [self.header]
        for field, kind, nullable in self.fields:
            value = record[field]
            if nullable:
                parts.append(b"\x00" if value is None else b"\x02" + _put(kind, value))
            else:
                parts.append(_put(kind, value))
        return b"".join(parts)

    def read(self, data: bytes) -> dict[str, Any]:
        pos, out = _HEADER, dict[str, Any]()
        for field, kind, nullable in self.fields:
            if nullable:
                branch = data[pos]
                pos += 1
                if branch == 0:
                    out[field] = None
                    continue
                if branch != 2:
                    raise ValueError(f"union index {branch}")
            out[field], pos = _get(kind, data, pos)
        if pos != len(data):
            raise ValueError("trailing bytes")
        return out


class FlatCodec:
    """`encode` and `decode` as the codec's, by hand for the flat schemas `names` (current versions)."""

    def __init__(self, codec: Codec, names: Iterable[str] = HOP_SCHEMAS) -> None:
        self.codec = codec
        self._by_name = {name: _Flat(codec, name) for name in names}
        self._by_header = {flat.header: flat for flat in self._by_name.values()}

    def encode(self, name: str, record: Mapping[str, Any]) -> bytes:
        flat = self._by_name.get(name)
        if flat is None:
            return self.codec.encode(name, record)
        try:
            return flat.write(record)
        except (KeyError, TypeError, AttributeError, ValueError):
            return self.codec.encode(name, record)  # the codec says what does not fit, as for every record

    def decode(self, data: bytes, expect: str | None = None) -> Decoded:
        flat = self._by_header.get(bytes(data[:_HEADER]))
        if flat is None or (expect is not None and expect != flat.name):
            return self.codec.decode(data, expect)
        try:
            return Decoded(flat.name, flat.read(data))
        except (IndexError, ValueError, OverflowError, UnicodeDecodeError):
            return self.codec.decode(data, expect)  # corrupt: the codec says how (DecodeError)

    def name_of(self, data: bytes) -> str:
        return self.codec.name_of(data)


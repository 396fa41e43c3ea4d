"""The monitor's hop records, written and read by hand: the messages every event costs between its stages.

Every event crosses from the person stage to the household stage as a `povwatch.monitor.HouseholdEvent`, and each
regional record from the household stage to the village stage as a `povwatch.monitor.VillageDisaster`. Through
fastavro a round trip of such a small record costs 13-16 us, mostly per-call overhead; written here it costs 6-7.
`FlatCodec` does it for flat records - fields of type string, bytes, int/long, boolean, date, or a [null, one of
those] union - read from the current schema files, so the bytes are exactly fastavro's (Avro single-object
encoding, `schemas/codec.py`: fields in schema order, zig-zag varints, a union as its branch index then the value).
Each schema's writer and reader are Python made from its fields when the codec is built (`_sources`: one straight
run of code per field, no lookup of the field's type per value; `write_source` and `read_source` show them).

It stands in for the `Codec` where the stages encode and decode: a schema it does not cover, and any message not
written with a covered schema's current fingerprint (an earlier version, another schema, a corrupt body), go to
the codec, so schema resolution and its errors stay the codec's. `tests/unit/test_flat_codec.py` holds the bytes to
fastavro's.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Mapping
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


_SMALL = tuple(bytes((n << 1,)) for n in range(64))  # avro_long(n) of the lengths below 64, most of them


def _length(n: int) -> bytes:
    """avro_long of a length (never negative)."""
    return _SMALL[n] if n < 64 else avro_long(n)


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


def _check_int(value: Any) -> int:
    if value.__class__ is not int:  # a bool is not an int here, as in fastavro
        raise TypeError(f"{value!r} is not an int")
    return int(value)


def _check_bytes(value: Any) -> bytes:
    if not isinstance(value, bytes | bytearray | memoryview):
        raise TypeError(f"{value!r} is not bytes")
    return bytes(value)


# How one field is written: its value `v` as Avro bytes in `b` (the non-null branch of a union).
_WRITE = {
    "string": "d = v.encode('utf-8'); b = _length(len(d)) + d",
    "bytes": "d = _check_bytes(v); b = _length(len(d)) + d",
    "int": "b = avro_long(_check_int(v))",
    "long": "b = avro_long(_check_int(v))",
    "boolean": "b = b'\\x01' if v else b'\\x00'",
    "date": "b = avro_long(v.toordinal() - _EPOCH)",
}

# How one field is read at `pos` into `v`, `pos` moved past it.
_READ_VARINT = ("b = data[pos]",
                "if b < 0x80: n = (b >> 1) ^ -(b & 1); pos += 1",
                "else: n, pos = _varint(data, pos)")
_READ = {
    "string": (*_READ_VARINT, "end = pos + n", "if n < 0 or end > size: raise IndexError('truncated')",
               "v = data[pos:end].decode('utf-8'); pos = end"),
    "bytes": (*_READ_VARINT, "end = pos + n", "if n < 0 or end > size: raise IndexError('truncated')",
              "v = data[pos:end]; pos = end"),
    "int": (*_READ_VARINT, "v = n"),
    "long": (*_READ_VARINT, "v = n"),
    "boolean": ("b = data[pos]", "if b > 1: raise ValueError(f'boolean {b}')", "v = b == 1; pos += 1"),
    "date": (*_READ_VARINT, "v = _date(n + _EPOCH)"),
}


def _indent(lines: Iterable[str], depth: int) -> list[str]:
    return ["    " * depth + line for line in lines]


def _sources(fields: list[tuple[str, str, bool]]) -> tuple[str, str]:
    """The Python source of `write(record)` and `read(data)` for one flat schema: one straight run of code per
    field (no lookup of its type per value), so a record costs a few microseconds, not fifteen."""
    write = ["def write(record):",
             f"    if len(record) != {len(fields)}: raise KeyError('fields')",
             "    parts = [HEADER]"]
    read = ["def read(data):", "    pos = HEADER_SIZE", "    size = len(data)"]
    for i, (field, kind, nullable) in enumerate(fields):
        write.append(f"    v = record[{field!r}]")
        if nullable:
            write += ["    if v is None:", "        parts.append(b'\\x00')", "    else:",
                      *_indent([_WRITE[kind], "parts.append(b'\\x02' + b)"], 2)]
            read += ["    branch = data[pos]; pos += 1",
                     "    if branch == 0: v = None",
                     "    elif branch != 2: raise ValueError(f'union index {branch}')",
                     "    else:", *_indent(_READ[kind], 2)]
        else:
            write += _indent([_WRITE[kind], "parts.append(b)"], 1)
            read += _indent(_READ[kind], 1)
        read.append(f"    f{i} = v")
    write.append("    return b''.join(parts)")
    read += ["    if pos != size: raise ValueError('trailing bytes')",
             "    return {" + ", ".join(f"{field!r}: f{i}" for i, (field, _, _) in enumerate(fields)) + "}"]
    return "\n".join(write) + "\n", "\n".join(read) + "\n"


class _Flat:
    """One flat schema: its header, fields, and its writer and reader (made from `_sources`)."""

    def __init__(self, codec: Codec, name: str) -> None:
        self.name = name
        self.header = MAGIC + codec.fingerprint(name)
        self.fields = flat_fields(name)
        self.write_source, self.read_source = _sources(self.fields)
        scope: dict[str, Any] = {"HEADER": self.header, "HEADER_SIZE": _HEADER, "_EPOCH": _EPOCH,
                                 "_length": _length, "avro_long": avro_long, "_varint": _varint,
                                 "_check_int": _check_int, "_check_bytes": _check_bytes,
                                 "_date": dt.date.fromordinal}
        exec(compile(self.write_source + self.read_source, f"<flat codec of {name}>", "exec"), scope)  # noqa: S102
        self.write: Callable[[Mapping[str, Any]], bytes] = scope["write"]
        self.read: Callable[[bytes], dict[str, Any]] = scope["read"]


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


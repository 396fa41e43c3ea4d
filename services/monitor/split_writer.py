"""Avro records whose big arrays are written from items encoded once and kept.

A household's state (and a region's) is written again for every batch that touches it, but most of what it holds -
the facts, each a map of the event's fields (a region's records) - has not changed since the last time. fastavro
encodes them anew every time (about 8 us a fact: most of a state's encoding, and while a backlog is read in many
batches the same facts are written again and again). `SplitWriter` writes such a record as fastavro would, in
pieces: the fields before the array (one fastavro call), the array as Avro writes it (one block: the item
count, the items' bytes, then 0) from items encoded once, and the fields after it (one more call); a record with
several such arrays (a region's records and its facts) is split at each. The bytes are the codec's
(`tests/unit/test_split_writer.py` compares them).

`ItemCache` keeps the items' bytes of the last write with the objects they were made from: facts are appended,
so the next write encodes only the new ones (one call), and all of them again after a prune.
"""
from __future__ import annotations

import io
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import fastavro

from schemas.codec import MAGIC, Codec, expanded_schema
from schemas.errors import SchemaError
from services.monitor.flat_codec import avro_long

__all__ = ["SplitWriter", "ItemCache", "split_writer"]

T = TypeVar("T")


class SplitWriter:
    """Writes records of schema `name` (current version) with its array fields `fields` given as encoded items."""

    def __init__(self, codec: Codec, name: str, *fields: str) -> None:
        schema = expanded_schema(name)
        names = [f["name"] for f in schema["fields"]]
        unknown = [f for f in fields if f not in names]
        if unknown:
            raise SchemaError(f"{name} has no field {', '.join(unknown)}")
        at = [names.index(f) for f in fields]
        if at != sorted(set(at)):  # `write` takes the arrays' items in this order: the schema's, no field twice
            raise SchemaError(f"{name}: split at {', '.join(fields)}: give each field once, in the schema's order")
        for i in at:
            array = schema["fields"][i]["type"]
            if not (isinstance(array, dict) and array.get("type") == "array"):
                raise SchemaError(f"{name}.{names[i]} is not an array")
        self.name = name
        self.fields = fields  # the arrays, in the schema's order
        self._header = MAGIC + codec.fingerprint(name)
        # the pieces between the arrays as records of their own, parsed in order with the named types seen so far
        # (a named type is defined where it is first used; a later piece may name it)
        named: dict[str, Any] = {}
        bounds = [-1, *at, len(names)]
        self._pieces: list[tuple[Any, list[str]]] = []
        self._items: dict[str, Any] = {}
        for n, (lo, hi) in enumerate(zip(bounds, bounds[1:], strict=False)):
            piece = schema["fields"][lo + 1:hi]
            self._pieces.append((fastavro.parse_schema({"type": "record", "name": f"{schema['name']}__{n}",
                                                        "fields": piece}, named), [f["name"] for f in piece]))
            if hi < len(names):
                self._items[names[hi]] = fastavro.parse_schema(
                    {"type": "array", "items": schema["fields"][hi]["type"]["items"]}, named)

    def items(self, records: Sequence[Mapping[str, Any]], field: str | None = None) -> bytes:
        """Items of the array `field` (the first one by default), encoded and concatenated (one fastavro call: the
        array without its count and end)."""
        if not records:
            return b""
        buf = io.BytesIO()
        try:
            fastavro.schemaless_writer(buf, self._items[field or self.fields[0]], [dict(r) for r in records],
                                       strict_allow_default=True)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise SchemaError(f"{self.name}: {exc}") from exc
        data = buf.getvalue()
        return data[len(avro_long(len(records))):-1]  # one block: its count, the items, the 0 that ends the array

    def write(self, record: Mapping[str, Any], *items: tuple[int, bytes]) -> bytes:
        """The single-object encoding of `record` (every field but the arrays) with each array's items (their
        count and bytes, from `items` or an `ItemCache`), in the order of `fields`."""
        if len(items) != len(self.fields):
            raise SchemaError(f"{self.name}: {len(items)} arrays given, {len(self.fields)} expected")
        buf = io.BytesIO()
        buf.write(self._header)
        try:
            for n, (schema, names) in enumerate(self._pieces):
                if names:
                    fastavro.schemaless_writer(buf, schema, {k: record[k] for k in names}, strict_allow_default=True)
                if n < len(items):
                    count, data = items[n]
                    if count:
                        buf.write(avro_long(count))
                        buf.write(data)
                    buf.write(b"\x00")
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise SchemaError(f"{self.name}: {exc}") from exc
        return buf.getvalue()


_WRITERS: dict[tuple[bytes, tuple[str, ...]], SplitWriter] = {}


def split_writer(codec: Codec, name: str, *fields: str) -> SplitWriter:
    """The writer of `name` split at `fields`, made once per schema version."""
    key = (codec.fingerprint(name), fields)
    writer = _WRITERS.get(key)
    if writer is None:
        writer = _WRITERS[key] = SplitWriter(codec, name, *fields)
    return writer


class ItemCache:
    """The items of an append-mostly list as last written: the objects (by identity: a kept fact is never changed
    in place) and their bytes, so the next write encodes only what was appended since (one fastavro call), and
    everything again only when the list changed otherwise (pruned, rebuilt)."""

    __slots__ = ("_objects", "_bytes")

    def __init__(self) -> None:
        self._objects: list[object] = []
        self._bytes = b""

    def encode(self, objects: Sequence[T], make: Callable[[Sequence[T]], bytes]) -> tuple[int, bytes]:
        """(count, the items' bytes) of `objects`; `make` encodes a run of objects (their items, concatenated)."""
        kept = self._objects
        n = len(kept)
        if n <= len(objects) and all(a is b for a, b in zip(kept, objects)):
            if n < len(objects):
                self._bytes += make(objects[n:])
        else:
            self._bytes = make(objects)
        self._objects = list(objects)
        return len(objects), self._bytes

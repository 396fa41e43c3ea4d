"""Avro records whose one big array is written from items encoded once and kept.

A household's state and its profile are written again for every batch that touches the household, but most of
what they hold - the facts, each a map of the event's fields - has not changed since the last time. fastavro
encodes them anew every time (about 8 us a fact: most of a state's encoding, and while a backlog is read in many
batches the same facts are written again and again). `SplitWriter` writes such a record as fastavro would, in
three pieces: the fields before the array (one fastavro call), the array as Avro writes it (its item count, each
item's bytes, a 0 block) from items encoded once, and the fields after it (one more call). The bytes are the
codec's (`tests/unit/test_split_writer.py` compares them on real states and profiles).

`ItemCache` keeps each item's bytes under the object it was made from (by identity: a kept fact is never changed
in place), for the objects of the last write only, so it never outlives what it describes.
"""
from __future__ import annotations

import io
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import fastavro

from schemas.codec import MAGIC, Codec, expanded_schema
from schemas.errors import SchemaError

__all__ = ["SplitWriter", "ItemCache", "split_writer"]

T = TypeVar("T")


def _long(n: int) -> bytes:
    z = (n << 1) ^ (n >> 63)
    out = bytearray()
    while z >= 0x80:
        out.append((z & 0x7F) | 0x80)
        z >>= 7
    out.append(z)
    return bytes(out)


class SplitWriter:
    """Writes records of schema `name` (current version) with the array field `field` given as encoded items."""

    def __init__(self, codec: Codec, name: str, field: str) -> None:
        schema = expanded_schema(name)
        names = [f["name"] for f in schema["fields"]]
        at = names.index(field)
        array = schema["fields"][at]["type"]
        if not (isinstance(array, dict) and array.get("type") == "array"):
            raise SchemaError(f"{name}.{field} is not an array")
        self.name = name
        self._header = MAGIC + codec.fingerprint(name)
        # the pieces as records of their own; a named type is defined where it is first used, so each piece
        # holds the definitions it needs (a piece naming a type defined in another would not parse)
        self._head = fastavro.parse_schema({"type": "record", "name": f"{schema['name']}__head",
                                            "fields": schema["fields"][:at]})
        self._tail = fastavro.parse_schema({"type": "record", "name": f"{schema['name']}__tail",
                                            "fields": schema["fields"][at + 1:]})
        self._item = fastavro.parse_schema(array["items"])
        self._head_names = names[:at]
        self._tail_names = names[at + 1:]

    def item(self, record: Mapping[str, Any]) -> bytes:
        """One array item, encoded."""
        buf = io.BytesIO()
        try:
            fastavro.schemaless_writer(buf, self._item, dict(record), strict_allow_default=True)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise SchemaError(f"{self.name}: {exc}") from exc
        return buf.getvalue()

    def write(self, record: Mapping[str, Any], items: Sequence[bytes]) -> bytes:
        """The single-object encoding of `record` (every field but the array) with the array's `items`."""
        buf = io.BytesIO()
        buf.write(self._header)
        try:
            fastavro.schemaless_writer(buf, self._head, {k: record[k] for k in self._head_names},
                                       strict_allow_default=True)
            if items:
                buf.write(_long(len(items)))
                for item in items:
                    buf.write(item)
            buf.write(b"\x00")
            fastavro.schemaless_writer(buf, self._tail, {k: record[k] for k in self._tail_names},
                                       strict_allow_default=True)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise SchemaError(f"{self.name}: {exc}") from exc
        return buf.getvalue()


_WRITERS: dict[tuple[bytes, str], SplitWriter] = {}


def split_writer(codec: Codec, name: str, field: str) -> SplitWriter:
    """The writer of `name` split at `field`, made once per schema version."""
    key = (codec.fingerprint(name), field)
    writer = _WRITERS.get(key)
    if writer is None:
        writer = _WRITERS[key] = SplitWriter(codec, name, field)
    return writer


class ItemCache:
    """Encoded items by the identity of the objects they were made from, as of the last `encode`."""

    __slots__ = ("_kept",)

    def __init__(self) -> None:
        self._kept: dict[int, tuple[object, bytes]] = {}

    def encode(self, objects: Sequence[T], make: Callable[[T], bytes]) -> list[bytes]:
        kept, fresh = self._kept, {}
        out = []
        for obj in objects:
            entry = kept.get(id(obj))
            if entry is None or entry[0] is not obj:
                entry = (obj, make(obj))
            fresh[id(obj)] = entry
            out.append(entry[1])
        self._kept = fresh
        return out

"""Avro single-object encoding for every povwatch message.

Wire format (Avro specification, "Single object encoding"):
    C3 01 | 8-byte CRC-64-AVRO fingerprint of the writer schema (little-endian) | Avro binary body

The `.avsc` files in `schemas/avro/` are the source of truth: one file per named type, named
`<full name>.avsc`, so `fastavro.schema.load_schema` resolves references with nothing else.
Snapshots of earlier versions live in `schemas/avro/released/<full name>/v<N>.avsc` (fully expanded);
data written with any of them is still decoded, read through the current schema (schema resolution).
"""
from __future__ import annotations

import io
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fastavro
from fastavro.schema import fingerprint, load_schema, parse_schema, to_parsing_canonical_form

from schemas.errors import DecodeError, SchemaError

__all__ = ["AVRO_DIR", "MAGIC", "Codec", "Decoded", "default_codec", "expanded_schema"]

AVRO_DIR = Path(__file__).resolve().parent / "avro"
MAGIC = b"\xc3\x01"
_HEADER = len(MAGIC) + 8


@dataclass(frozen=True)
class Decoded:
    """A decoded message: the full name of its schema and the record read through the current version."""

    name: str
    record: dict[str, Any]


def _fingerprint(parsed: Any) -> bytes:
    return bytes.fromhex(fingerprint(to_parsing_canonical_form(parsed), "CRC-64-AVRO"))


def _without_docs(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_docs(v) for k, v in value.items() if k != "doc" and not k.startswith("__")}
    if isinstance(value, list):
        return [_without_docs(v) for v in value]
    return value


def expanded_schema(name: str, directory: Path = AVRO_DIR) -> Any:
    """The schema `name` with every referenced named type inlined (a JSON-able value).

    Docs are dropped; logical types and defaults are kept (not the Parsing Canonical Form, which strips them):
    a released snapshot is used as the *writer* schema, and fastavro applies the writer's logical types, so a
    snapshot without them would decode old dates as ints and decimals as bytes."""
    return _without_docs(load_schema(str(directory / f"{name}.avsc")))


class Codec:
    """Encodes and decodes povwatch messages. Parse once, reuse everywhere (thread-safe, no I/O after init)."""

    def __init__(self, directory: Path = AVRO_DIR) -> None:
        self._current: dict[str, Any] = {}
        self._fp_by_name: dict[str, bytes] = {}
        self._writers: dict[bytes, tuple[str, Any]] = {}
        for path in sorted(directory.glob("*.avsc")):
            name = path.name[: -len(".avsc")]
            try:
                parsed = load_schema(str(path))
            except Exception as exc:  # fastavro raises several types for a bad schema file
                raise SchemaError(f"{path.name}: {exc}") from exc
            fp = _fingerprint(parsed)
            self._current[name] = parsed
            self._fp_by_name[name] = fp
            self._writers[fp] = (name, parsed)
        released = directory / "released"
        for path in sorted(released.glob("*/v*.avsc")) if released.is_dir() else []:
            name = path.parent.name
            parsed = parse_schema(json.loads(path.read_text(encoding="utf-8")))
            self._writers.setdefault(_fingerprint(parsed), (name, parsed))

    @property
    def names(self) -> list[str]:
        return sorted(self._current)

    def fingerprint(self, name: str) -> bytes:
        return self._fp_by_name[self._schema_name(name)]

    def schema(self, name: str) -> Any:
        return self._current[self._schema_name(name)]

    def _schema_name(self, name: str) -> str:
        if name not in self._current:
            raise SchemaError(f"unknown schema {name!r}")
        return name

    def encode(self, name: str, record: Mapping[str, Any]) -> bytes:
        """Single-object encoding of `record` with the current schema `name`; SchemaError if it does not fit.

        Strict: an unknown field or a missing one is an error - except a missing field that has a default in the
        schema, which gets it, so a writer made for the previous version survives a compatible field addition."""
        schema = self.schema(name)
        buf = io.BytesIO()
        buf.write(MAGIC)
        buf.write(self._fp_by_name[name])
        try:
            fastavro.schemaless_writer(buf, schema, dict(record), strict_allow_default=True)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise SchemaError(f"{name}: {exc}") from exc
        return buf.getvalue()

    def _writer(self, data: bytes) -> tuple[str, Any]:
        if len(data) < _HEADER or data[:2] != MAGIC:
            raise DecodeError("not an Avro single-object message (no C3 01 marker)")
        writer = self._writers.get(bytes(data[2:_HEADER]))
        if writer is None:
            raise DecodeError(f"unknown writer schema fingerprint {bytes(data[2:_HEADER]).hex()}")
        return writer

    def name_of(self, data: bytes) -> str:
        """The full schema name a message was written with, from its header alone (DecodeError if unknown):
        for routing a message without decoding its body."""
        return self._writer(data)[0]

    def decode(self, data: bytes, expect: str | None = None) -> Decoded:
        """Decode a message; DecodeError for anything that is not a known povwatch message."""
        name, writer_schema = self._writer(data)
        if expect is not None and name != expect:
            raise DecodeError(f"expected {expect}, got {name}")
        reader = self._current.get(name, writer_schema)
        try:  # no reader schema when the writer is the current one: fastavro then skips schema resolution
            record = fastavro.schemaless_reader(
                io.BytesIO(data[_HEADER:]), writer_schema, None if reader is writer_schema else reader
            )
        except Exception as exc:  # truncated or corrupt body: fastavro raises EOFError, ValueError, ...
            raise DecodeError(f"{name}: corrupt body ({type(exc).__name__}: {exc})") from exc
        if not isinstance(record, dict):
            raise DecodeError(f"{name}: body is not a record")
        return Decoded(name, record)


_DEFAULT: Codec | None = None


def default_codec() -> Codec:
    """The codec over the packaged schemas, parsed on first use."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = Codec()
    return _DEFAULT

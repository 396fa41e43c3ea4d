"""The bureau's roster file into the case DB's `households` and `members` (`povwatch cases roster FILE`).

The file is read and validated by the same machinery as `povwatch roster load` (connectors.departments.bureau:
ROSTER's columns and checks, RosterHandler's household consistency: a row that contradicts its household, a
second 户主, a person listed twice differently is rejected). Nothing is published: the handler's household messages
are decoded back into rows here, and each accepted person's row - with the name, which never travels on a topic -
is kept under the key of each Person message the handler made (its person_key, and aliases during a rotation).
Rejected rows are listed, not imported. Then households and members are upserted: added, updated (any field
differs) or unchanged. Pure apart from reading the file; the writing is services/cases/roster_import.py's.
"""
from __future__ import annotations

import asyncio
import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from connectors.departments.bureau import ROSTER, RosterHandler
from connectors.framework import DEFAULT_ZONE, Accepted, Message, ValidRecord, run_file
from connectors.idcard import birth_date
from connectors.pseudonym import Pseudonymiser
from plumbing.clock import Clock
from schemas.codec import Codec
from schemas.topics import REGISTRY_HOUSEHOLDS, REGISTRY_PERSONS

__all__ = ["RosterFile", "read_roster", "HOUSEHOLD_FIELDS", "MEMBER_FIELDS"]

HOUSEHOLD_FIELDS = ("village_code", "head_person_key", "category", "monitoring_status", "labour_capacity",
                    "per_capita_income", "household_size")
MEMBER_FIELDS = ("household_id", "name", "relation", "sex", "birth_date")


@dataclass
class RosterFile:
    """A roster file as the case DB wants it: household_id -> fields, person_key -> fields (with the name)."""

    file: str
    households: dict[str, dict[str, Any]] = field(default_factory=dict)
    members: dict[str, dict[str, Any]] = field(default_factory=dict)
    read: int = 0
    rejected: int = 0
    duplicates: int = 0
    rejects: list[tuple[int, tuple[str, ...]]] = field(default_factory=list)


class _NamingHandler:
    """RosterHandler's validation, plus each accepted person's name (kept here, never encoded)."""

    def __init__(self, inner: RosterHandler, codec: Codec, out: RosterFile) -> None:
        self._inner = inner
        self._codec = codec
        self._out = out

    def rejected(self, raw: Any) -> None:
        self._inner.rejected(raw)

    def handle(self, record: ValidRecord, source: dict[str, Any]) -> Accepted | list[str]:
        outcome = self._inner.handle(record, source)
        if isinstance(outcome, Accepted):
            # the Person records' fields are the row's values (RosterHandler copies them; birth_date is the ID
            # number's), keyed by each message's key - the person_key, and during a key rotation each alias too -
            # so the messages need not be decoded back
            v = record.values
            fields = {"household_id": v["household_id"], "name": v["name"], "relation": v["relation"],
                      "sex": v["sex"], "birth_date": birth_date(v["id_number"])}
            for message in outcome.messages:
                if message.topic == REGISTRY_PERSONS:
                    self._out.members[message.key.decode("ascii")] = dict(fields)
        return outcome

    def finish(self) -> list[Message]:
        for message in self._inner.finish():
            if message.topic == REGISTRY_HOUSEHOLDS:
                h = self._codec.decode(message.value, expect="povwatch.registry.Household").record
                self._out.households[h["household_id"]] = {
                    name: (Decimal(h[name]).quantize(Decimal("0.01")) if name == "per_capita_income" else h[name])
                    for name in HOUSEHOLD_FIELDS}
        return []  # nothing is published


class _Discard:
    """The publisher of an import: dead letters are not sent (the rejected rows are listed instead)."""

    async def __aenter__(self) -> _Discard:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    async def send(self, topic: str, key: bytes, value: bytes) -> None:
        return None

    async def flush(self) -> None:
        return None


def read_roster(path: Path, *, pseudonymiser: Pseudonymiser, codec: Codec, clock: Clock,
                zone: dt.tzinfo = DEFAULT_ZONE) -> RosterFile:
    """Read and validate a roster file (InputFileError if it cannot be read at all: missing, no header...)."""
    out = RosterFile(path.name)
    handler = _NamingHandler(RosterHandler(pseudonymiser=pseudonymiser, codec=codec, clock=clock), codec, out)
    summary = asyncio.run(run_file(ROSTER, path, handler, publisher_factory=_Discard, codec=codec, clock=clock,
                                   stage="case-roster", on_reject=handler.rejected, zone=zone))
    out.read, out.rejected, out.duplicates = summary.read, summary.rejected, summary.duplicates
    out.rejects = list(summary.rejects)
    # a household whose every row was rejected has no household record: its accepted members cannot exist
    out.members = {k: m for k, m in out.members.items() if m["household_id"] in out.households}
    return out
